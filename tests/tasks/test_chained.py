"""The chained-operations probe: each block against hand-worked outputs, reference solutions
against their own tests (in process and in the sandbox), determinism, the split between
fine-tuning chains and evaluated chains, and the report."""

import json

import pytest

from codex_jax import jsonl
from codex_jax.evaluation import correctness
from codex_jax.evaluation import problems as problems_lib
from codex_jax.tasks import chained, chained_report

# (input, expected) worked out by hand from each block's docstring clause.
HAND_WORKED = {
    "remove_letter_e": [("Eerie tree", "Eri tr")],  # lowercase e only, as the paper's code
    "spaces_to_exclamation_points": [("a b  c", "a!b!!c")],
    "lowercase": [("HeLLo World!", "hello world!")],
    "remove_two_each_end": [("abcdefg", "cde"), ("abcd", ""), ("abc", "")],
    "remove_vowels": [("Queue AIR", "Q R")],
    "remove_every_third": [("abcdefgh", "abdegh")],  # the 3rd and 6th characters go
    "drop_last_half": [("abcdef", "abc"), ("abcde", "ab")],  # odd: the first len // 2 stay
    "triple_spaces": [("a b c", "a   b   c")],
    "reverse_words": [("one two  three", "three two one")],  # whitespace runs become one space
    "drop_first_half_words": [("a b c d", "c d"), ("a b c", "b c")],  # odd: n // 2 words go
    "add_apples": [("hi there", "hi apples there apples")],
    "every_other_uppercase": [("abcde", "AbCdE"), ("a bc", "A Bc")],  # from the first character
    "delete_punctuation": [("Hi! Why? Ok, fine.", "Hi Why Ok, fine")],
}


def run_check(problem, body):
    """Runs `body` under the problem's prompt against its test in this process."""
    namespace = {}
    exec(problem["prompt"] + body + "\n" + problem["test"], namespace)
    namespace["check"](namespace[problem["entry_point"]])


def test_every_block_has_hand_worked_examples():
    assert set(HAND_WORKED) == set(chained.BLOCKS_BY_NAME)
    assert len(chained.BLOCKS) == 13


@pytest.mark.parametrize("name, examples", HAND_WORKED.items())
def test_block_does_what_its_docstring_says(name, examples):
    for given, expected in examples:
        assert chained.BLOCKS_BY_NAME[name].apply(given) == expected


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference_solutions_pass_and_every_block_is_needed(seed):
    for chain_length in range(1, 11):
        problem = chained.make_problem(chain_length, 0, seed)
        blocks = [chained.BLOCKS_BY_NAME[name] for name in problem["blocks"]]
        assert len(set(problem["blocks"])) == chain_length
        run_check(problem, problem["canonical_solution"])
        for skipped in range(chain_length):  # a solution that leaves out any one block fails
            body = "".join(
                f"    s = {b.expression}\n" for i, b in enumerate(blocks) if i != skipped
            )
            with pytest.raises(AssertionError):
                run_check(problem, body + "    return s\n")
        with pytest.raises(AssertionError):
            run_check(problem, "    return s\n")


def test_docstring_states_the_blocks_in_order():
    problem = chained.make_problem(6, 3, seed=0)
    text = " ".join(problem["prompt"].split())
    positions = [
        text.lower().index(chained.BLOCKS_BY_NAME[name].description) for name in problem["blocks"]
    ]
    assert positions == sorted(positions)
    assert problem["prompt"].startswith('def process(s: str) -> str:\n    """')
    assert problem["task_id"] == "Chained/6/3" and problem["chain_length"] == 6


def test_generation_is_deterministic_per_seed_and_problem():
    first = chained.make_problems([1, 4, 10], 3, seed=0)
    assert first == chained.make_problems([1, 4, 10], 3, seed=0)
    assert [p["prompt"] for p in first] != [
        p["prompt"] for p in chained.make_problems([1, 4, 10], 3, seed=1)
    ]
    # a problem does not depend on which other lengths or how many were asked for
    assert (
        chained.make_problems([4], 5, seed=0)[2]
        == first[3 + 2]
        == chained.make_problem(4, 2, seed=0)
    )
    assert len({p["test"] for p in first}) == len(first)  # 1-chains may repeat, their inputs differ


@pytest.mark.parametrize("chain_length", [0, 14])
def test_chain_length_out_of_range_is_an_error(chain_length):
    with pytest.raises(ValueError, match="chain_length"):
        chained.make_problem(chain_length, 0)


def test_reference_solutions_pass_in_the_sandbox(tmp_path):
    problem_file = str(tmp_path / "problems.jsonl")
    jsonl.write_jsonl(problem_file, chained.make_problems([1, 3, 10], per_length=2, seed=5))
    problems = problems_lib.read_problems(problem_file)  # the format every evaluation tool reads
    samples = []
    for task_id, problem in problems.items():
        last_block_left_out = problem["canonical_solution"].splitlines(keepends=True)
        del last_block_left_out[-2]
        samples += [
            {"task_id": task_id, "completion": problem["canonical_solution"]},
            {"task_id": task_id, "completion": "".join(last_block_left_out)},
        ]
    sample_file = str(tmp_path / "samples.jsonl")
    with open(sample_file, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(s) + "\n" for s in samples)

    metrics = correctness.evaluate_functional_correctness(
        sample_file, k=(1,), n_workers=2, problem_file=problem_file
    )

    assert metrics == {"pass@1": 0.5}
    rows = [json.loads(line) for line in open(sample_file + "_results.jsonl", encoding="utf-8")]
    assert [row["passed"] for row in rows] == [True, False] * len(problems)
    rows = chained_report.pass_by_length(sample_file + "_results.jsonl", problems, k=(1, 2))
    assert [{k: v for k, v in row.items() if k != "ci95"} for row in rows] == [
        {"chain_length": length, "problems": 2, "samples": 4, "pass@1": 0.5, "pass@2": 1.0}
        for length in (1, 3, 10)
    ]


def test_pass_by_length_from_hand_made_results(tmp_path):
    problems = {"a": {"chain_length": 2}, "b": {"chain_length": 2}, "c": {"chain_length": 5}}
    verdicts = {"a": [True, False], "b": [True, True], "c": [False, False]}
    path = tmp_path / "results.jsonl"
    path.write_text(
        "".join(
            json.dumps({"task_id": task, "passed": passed}) + "\n"
            for task, row in verdicts.items()
            for passed in row
        )
    )
    rows = chained_report.pass_by_length(path, problems, k=(1, 2, 3))
    assert [{k: v for k, v in row.items() if k != "ci95"} for row in rows] == [
        {"chain_length": 2, "problems": 2, "samples": 4, "pass@1": 0.75, "pass@2": 1.0},
        {"chain_length": 5, "problems": 1, "samples": 2, "pass@1": 0.0, "pass@2": 0.0},
    ]
    # Two problems of length 2 with per-problem pass@1 0.5 and 1.0: every resample's mean is
    # one of 0.5, 0.75, 1.0, so the interval's ends are among them.
    low, high = rows[0]["ci95"]["pass@1"]
    assert {low, high} <= {0.5, 0.75, 1.0} and low < high
    assert rows[1]["ci95"]["pass@1"] == [0.0, 0.0]


def test_report_table_decay_and_plot_from_hand_made_rates(tmp_path):
    interval = {"pass@1": [0.1, 0.2]}
    rows = [
        {"chain_length": 1, "problems": 4, "samples": 40, "pass@1": 0.9, "ci95": interval},
        {
            "chain_length": 2,
            "problems": 4,
            "samples": 40,
            "pass@1": 0.5,
            "pass@10": 0.6,
            "ci95": interval,
        },
        {"chain_length": 3, "problems": 4, "samples": 40, "pass@1": 0.25, "ci95": interval},
        {"chain_length": 4, "problems": 4, "samples": 40, "pass@1": 0.125, "ci95": interval},
        {
            "chain_length": 8,
            "problems": 4,
            "samples": 40,
            "pass@1": 0.0,
            "pass@10": 0.0,
            "ci95": interval,
        },
    ]
    lines = chained_report.length_table(rows)
    assert "| chain length | problems | samples | pass@1 | pass@10 |" in lines
    assert "| 1 (fine-tuning data) | 4 | 40 | 0.9000 [0.1000, 0.2000] |  |" in lines
    assert "| 2 | 4 | 40 | 0.5000 [0.1000, 0.2000] | 0.6000 |" in lines
    assert "| 8 | 4 | 40 | 0.0000 [0.1000, 0.2000] | 0.0000 |" in lines
    # Fitted over 2+ blocks only (length 1 is seen in training); zeros left out.
    assert chained_report.decay_per_block(rows[1:]) == pytest.approx(2.0)
    assert any("factor of 2.00 per added block" in line for line in lines)
    assert chained_report.decay_per_block(rows[1:2]) is None
    assert any("no decay to fit" in line for line in chained_report.length_table(rows[:2]))

    path = chained_report.plot_pass_by_length({"finetune": rows}, str(tmp_path / "plot.png"))
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_fine_tuning_chains_and_evaluated_chains_are_apart():
    train, held_out = chained.two_block_split(seed=3, train_share=0.5)
    assert not set(train) & set(held_out) and len(train) + len(held_out) > 100
    assert abs(len(train) - len(held_out)) <= 1
    seen = set(chained.training_chains(seed=3, train_share=0.5))
    assert {(block.name,) for block in chained.BLOCKS} <= seen
    problems = chained.make_problems([2, 3, 5], per_length=15, seed=3, train_share=0.5)
    for problem in problems:
        assert tuple(problem["blocks"]) not in seen
        if problem["chain_length"] == 2:
            assert tuple(problem["blocks"]) in held_out
    pairs = chained.training_problems(len(seen) + 5, seed=3, train_share=0.5)
    assert {tuple(p["blocks"]) for p in pairs} == seen  # every training chain, in turn
    for pair in pairs[:20]:
        run_check(pair, pair["canonical_solution"])  # their completions are correct
