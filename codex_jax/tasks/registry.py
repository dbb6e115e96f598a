"""The tasks `config.eval.tasks` can name."""

from codex_jax.tasks import chained, humaneval, mbpp
from codex_jax.tasks.base import Task

TASKS = {task.name: task for task in (humaneval.TASK, mbpp.TASK, chained.TASK)}


def get(name: str) -> Task:
    """The task called `name`.

    Raises:
        ValueError: no such task; the message lists the known ones.
    """
    if name not in TASKS:
        raise ValueError(
            f"config.eval.tasks: unknown task {name!r}; expected some of {', '.join(TASKS)}"
        )
    return TASKS[name]


def configured(config) -> list[Task]:
    """The tasks of `config.eval.tasks`, in order."""
    if not config.eval.tasks:
        raise ValueError("config.eval.tasks: empty; expected some of " + ", ".join(TASKS))
    return [get(name) for name in config.eval.tasks]


def decontamination_problems(config) -> list[dict]:
    """Every problem (not only the sampled ones) of the configured tasks that the corpus and the
    fine-tuning pairs are decontaminated against (`Task.decontaminate`)."""
    return [
        problem
        for task in configured(config)
        if task.decontaminate
        for problem in task.load(config).values()
    ]
