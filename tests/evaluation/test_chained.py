"""The chained-operations probe: each block against hand-worked outputs, reference solutions
against their own tests (in process and in the sandbox), determinism, and the report."""

import json

import pytest

from codex_jax.evaluation import chained, correctness
from codex_jax.evaluation import problems as problems_lib

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
    problem_file = chained.write_problems(
        tmp_path / "problems.jsonl", [1, 3, 10], per_length=2, seed=5
    )
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
    assert chained.pass_by_length(sample_file + "_results.jsonl", problems, k=(1, 2)) == [
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
    assert chained.pass_by_length(path, problems, k=(1, 2, 3)) == [
        {"chain_length": 2, "problems": 2, "samples": 4, "pass@1": 0.75, "pass@2": 1.0},
        {"chain_length": 5, "problems": 1, "samples": 2, "pass@1": 0.0, "pass@2": 0.0},
    ]


def test_report_table_decay_and_plot_from_hand_made_rates(tmp_path):
    results = [
        {"chain_length": 1, "problems": 4, "samples": 40, "pass@1": 0.5, "pass@10": 0.9},
        {"chain_length": 2, "problems": 4, "samples": 40, "pass@1": 0.25, "pass@10": 0.6},
        {"chain_length": 3, "problems": 4, "samples": 40, "pass@1": 0.125},
        {"chain_length": 8, "problems": 4, "samples": 40, "pass@1": 0.0, "pass@10": 0.0},
    ]
    section = chained.report_section(results, image="chained/pass_by_length.png")
    assert "| chain length | problems | samples | pass@1 | pass@10 |" in section
    assert "| 2 | 4 | 40 | 0.2500 | 0.6000 |" in section
    assert "| 3 | 4 | 40 | 0.1250 |  |" in section
    assert "| 8 | 4 | 40 | 0.0000 | 0.0000 |" in section
    assert chained.decay_per_block(results) == pytest.approx(2.0)  # zeros left out of the fit
    assert "factor of 2.00 per added block" in section
    assert "![pass rate against chain length](chained/pass_by_length.png)" in section
    assert chained.decay_per_block(results[:1]) is None
    assert "no decay rate" in chained.report_section(results[:1])

    path = chained.plot_pass_by_length(results, tmp_path / "plot.png")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"
