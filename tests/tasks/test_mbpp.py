"""MBPP as shipped: the split, bigcode-evaluation-harness's prompt and stops, and every reference
solution against its own tests in the sandbox."""

import json
import os

import ml_collections

from codex_jax import jsonl
from codex_jax.sandbox import executor
from codex_jax.tasks import mbpp, registry


def config(sanitized=False):
    return ml_collections.ConfigDict(
        {"tasks": {"mbpp": {"limit": 0, "sanitized": sanitized}}, "eval": {"problem_file": ""}}
    )


def upstream_problems():
    """Every record of both shipped files as a problem (not only the test split)."""
    full = [
        mbpp.make_problem(r["task_id"], r["text"], r["code"], r["test_list"], r["test_setup_code"])
        for r in jsonl.read_jsonl(os.path.join(mbpp.DATA_DIR, "mbpp.jsonl"))
    ]
    with open(os.path.join(mbpp.DATA_DIR, "sanitized-mbpp.json"), encoding="utf-8") as f:
        sanitized = [
            mbpp.make_problem(
                r["task_id"], r["prompt"], r["code"], r["test_list"], "\n".join(r["test_imports"])
            )
            for r in json.load(f)
        ]
    return full, sanitized


def run(problems, completions):
    with executor.ExecutorPool(2) as pool:
        jobs = [executor.Job(i, p, c, 10.0) for i, (p, c) in enumerate(zip(problems, completions))]
        results = {job.key: r for job, r in pool.run(jobs)}
    return [results[i] for i in range(len(problems))]


def test_the_test_split_and_the_sanitized_subset():
    full = mbpp.TASK.load(config())
    assert len(full) == 499  # task ids 11-510, less the one whose reference fails (341)
    assert list(full)[:2] == ["Mbpp/11", "Mbpp/12"] and list(full)[-1] == "Mbpp/510"
    assert "Mbpp/341" not in full
    sanitized = mbpp.TASK.load(config(sanitized=True))
    assert len(sanitized) == 257 and set(sanitized) < set(full) | {"Mbpp/341"}
    assert registry.get("mbpp") is mbpp.TASK


def test_prompt_and_stops_are_bigcode_evaluation_harness_conventions():
    problem = mbpp.TASK.load(config())["Mbpp/11"]
    assert problem["prompt"] == (
        '"""\nWrite a python function to remove first and last occurrence of a given character '
        'from the string.\nassert remove_Occ("hello","l") == "heo"\n"""\n'
    )
    assert problem["entry_point"] == "remove_Occ"
    assert mbpp.STOP == ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```")


def test_every_reference_solution_passes_its_own_tests_except_the_listed_ones():
    full, sanitized = upstream_problems()
    results = run(full + sanitized, [p["canonical_solution"] for p in full + sanitized])
    failed = sorted({p["task_id"] for p, r in zip(full + sanitized, results) if not r["passed"]})
    # 341 is in the test split (left out: BROKEN); 596 and 642 are training problems, unused.
    assert failed == ["Mbpp/341", "Mbpp/596", "Mbpp/642"]
    assert set(mbpp.BROKEN) == {341}


def test_wrong_and_shadowing_completions_fail():
    problems = mbpp.TASK.load(config())
    p11, p56 = problems["Mbpp/11"], problems["Mbpp/56"]  # 56's solution is called check
    assert p56["entry_point"] == mbpp.SOLUTION_CHECK
    results = run(
        [p11, p11, p56, p56],
        [
            "def remove_Occ(s, ch):\n    return s[1:-1]\n",  # the ends, not the character
            "",  # defines nothing
            p56["canonical_solution"],
            "def check(n):\n    return True\n",  # always true: the tests expect some False
        ],
    )
    assert [r["passed"] for r in results] == [False, False, True, False]
