"""MBPP (Austin et al. 2021), the test split, prompted as bigcode-evaluation-harness does.

Problems: task ids 11-510 of `mbpp.jsonl` (500; the upstream README's evaluation split), or with
`config.tasks.mbpp.sanitized` those of the 427 hand-verified `sanitized-mbpp.json` (257). The
files ship in `codex_jax/tasks/data/mbpp/` (CC BY 4.0; attribution in its README).

Convention (bigcode-evaluation-harness's `mbpp` task for completion models, after InCoder): the
prompt is a module docstring (triple double quotes, each on its own line) holding the
description and then the first test; completions are cut at `STOP` (the harness's stop words:
a new class, assert, docstring, print or if statement, and two end-of-file markers); a sample
passes when prompt + completion and then every assert of `test_list` run without error. The
asserts call the function by name, so the test here is the problem's setup code
(`test_setup_code`, or the sanitized set's `test_imports`) and a `check(candidate)` that runs
them; `entry_point` is the function the first test calls (see `SOLUTION_CHECK`). Problems whose reference solution
fails its own tests are left out (`BROKEN`).
"""

import json
import os
import re

import ml_collections

from codex_jax import jsonl
from codex_jax.tasks.base import Problems, Task

DATA_DIR = os.path.join(os.path.dirname(__file__), "data", "mbpp")
TEST_IDS = range(11, 511)
STOP = ("\nclass", "\nassert", '\n"""', "\nprint", "\nif", "\n<|/", "\n```")
# Test-split problems whose reference solution fails its own tests in the executor
# (tests/tasks/test_mbpp.py finds them), left out of the set.
BROKEN = {
    341: "expects tuple({6, 7, 8, 9, 10, 11}) == (6, 7, 8, 9, 10, 11), but CPython iterates that "
    "set as (8, 9, 10, 11, 6, 7): the reference fails its own test",
}
# A solution whose function is called `check` (tasks 56, 349, ...) would be shadowed by the
# test's own check(candidate): the test binds it to this name first, and its asserts call that.
SOLUTION_CHECK = "mbpp_solution_check"


def _entry_point(code: str, first_test: str) -> str:
    """The function of `code` that the first test calls."""
    defined = set(re.findall(r"^\s*def\s+([A-Za-z_]\w*)", code, re.MULTILINE))
    for name in re.findall(r"([A-Za-z_]\w*)\s*\(", first_test):
        if name in defined:
            return name
    raise ValueError(f"MBPP: no function of the reference solution is called in {first_test!r}")


def make_problem(task_id: int, text: str, code: str, tests: list[str], setup: str) -> dict:
    """One MBPP record as a problem in HumanEval's schema (see the module docstring)."""
    code = code.replace("\r\n", "\n")
    entry_point = _entry_point(code, tests[0])
    if entry_point == "check":  # the name of the test's own function: keep the solution's apart
        setup = f"{setup}\n{SOLUTION_CHECK} = check"
        tests = [re.sub(r"\bcheck\(", f"{SOLUTION_CHECK}(", test) for test in tests]
        entry_point = SOLUTION_CHECK
    asserts = "".join(f"    {test}\n" for test in tests)
    return {
        "task_id": f"Mbpp/{task_id}",
        "prompt": f'"""\n{text}\n{tests[0]}\n"""\n',
        "entry_point": entry_point,
        "test": f"{setup.strip()}\n\n\ndef check(candidate):\n{asserts}".lstrip("\n"),
        "canonical_solution": code.strip("\n") + "\n",
        "test_list": tests,
    }


def load(config: ml_collections.ConfigDict) -> Problems:
    if config.tasks.mbpp.sanitized:
        with open(os.path.join(DATA_DIR, "sanitized-mbpp.json"), encoding="utf-8") as f:
            records = [
                (r["task_id"], r["prompt"], r["code"], r["test_list"], "\n".join(r["test_imports"]))
                for r in json.load(f)
            ]
    else:
        records = [
            (r["task_id"], r["text"], r["code"], r["test_list"], r["test_setup_code"])
            for r in jsonl.read_jsonl(os.path.join(DATA_DIR, "mbpp.jsonl"))
        ]
    problems = [
        make_problem(*record)
        for record in sorted(records)
        if record[0] in TEST_IDS and record[0] not in BROKEN
    ]
    return {p["task_id"]: p for p in problems}


TASK = Task(
    name="mbpp",
    title="MBPP",
    convention="bigcode-evaluation-harness `mbpp`: docstring of description + first test; stops "
    + ", ".join(map(repr, STOP)),
    stop=STOP,
    load=load,
)
