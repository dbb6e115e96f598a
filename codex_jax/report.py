"""The pipeline's report: W/report.md and W/plots/*.png from W/metrics.json and the run's files.

`W/metrics.json` (written by `codex_jax.pipeline`) holds every number the report shows; this
module only reads artifacts and draws. Nothing here trains, samples or executes.
"""

import collections
import json
import os
from typing import Any

import numpy as np

from codex_jax import evaluation, jsonl
from codex_jax.pipeline import MODELS, samples_path


def results_summary(results_path: str, k: tuple[int, ...]) -> dict[str, Any]:
    """pass@k, pass@1 when picking each problem's sample of highest mean log-prob, and counts.

    Codex (section 3.4, figure 7) ranks samples by mean token log-prob when only one may be
    submitted; "random" is the unbiased pass@1, the expected result of picking a sample at random.
    """
    by_task: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for row in jsonl.read_jsonl(results_path):
        by_task[row["task_id"]].append(row)
    n = np.array([len(rows) for rows in by_task.values()])
    correct = np.array([sum(r["passed"] for r in rows) for rows in by_task.values()])
    ranked = [max(rows, key=lambda r: r.get("mean_log_prob", 0.0))["passed"] for rows in by_task.values()]
    return {
        "pass_at_k": {f"pass@{kk}": float(evaluation.estimate_pass_at_k(n, correct, kk).mean())
                      for kk in k if (n >= kk).all()},
        "pass@1_ranked_by_mean_log_prob": float(np.mean(ranked)),
        "pass@1_random": float(np.mean(correct / n)),
        "problems": len(by_task), "samples": int(n.sum()),
        "passed_per_problem": {task: int(c) for task, c in zip(by_task, correct)},
    }


def _read_curve(path: str) -> dict[str, list[tuple[int, float]]]:
    curves: dict[str, list[tuple[int, float]]] = collections.defaultdict(list)
    if os.path.exists(path):
        for record in jsonl.read_jsonl(path):
            for key in ("loss", "val_loss", "val_bits_per_byte"):
                if record.get(key) is not None:
                    curves[key].append((record["step"], record[key]))
    return curves


def plot_training(workdir: str) -> list[str]:
    """plots/training.png: loss and validation bits per byte of pretraining and fine-tuning."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for name, filename in (("pretrain", "metrics.jsonl"), ("finetune", "finetune_metrics.jsonl")):
        curves = _read_curve(os.path.join(workdir, filename))
        for axis, key in zip(axes, ("loss", "val_bits_per_byte")):
            if curves.get(key):
                steps, values = zip(*curves[key])
                axis.plot(steps, values, marker="." if key.startswith("val") else None, label=name)
    axes[0].set(title="training loss (nats per scored token)", xlabel="step", yscale="log")
    axes[1].set(title="validation bits per byte", xlabel="step")
    for axis in axes:
        axis.legend()
        axis.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(workdir, "plots", "training.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_passes(workdir: str, metrics: dict[str, Any]) -> list[str]:
    """plots/pass_counts.png: how many samples of each problem passed, per model."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(11, 3.5))
    for name in MODELS:
        counts = metrics.get("evaluation", {}).get(name, {}).get("passed_per_problem")
        if counts:
            axis.bar(np.arange(len(counts)), list(counts.values()), alpha=0.6, label=name, width=1.0)
    axis.set(title="passing samples per HumanEval problem", xlabel="problem index", ylabel="samples passed")
    axis.legend()
    fig.tight_layout()
    path = os.path.join(workdir, "plots", "pass_counts.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _examples(workdir: str, limit: int = 3) -> str:
    """A few passing completions of the fine-tuned model (else the pretrained one), with their prompts."""
    from codex_jax import problems

    for name in reversed(MODELS):
        path = samples_path(workdir, name) + "_results.jsonl"
        if not os.path.exists(path):
            continue
        passed, seen = [], set()
        for row in jsonl.read_jsonl(path):
            if row["passed"] and row["task_id"] not in seen:
                seen.add(row["task_id"])
                passed.append(row)
        if not passed:
            return f"No completion of the {name} model passed."
        tasks = problems.read_problems(_problem_file(workdir))
        blocks = [f"**{row['task_id']}** ({name} model, passed):\n\n```python\n"
                  f"{tasks[row['task_id']]['prompt']}{row['completion']}\n```" for row in passed[:limit]]
        return "\n\n".join(blocks)
    return "No samples."


def _problem_file(workdir: str) -> str | None:
    path = os.path.join(workdir, "metrics.json")
    with open(path, encoding="utf-8") as f:
        return json.load(f).get("problem_file") or None


def write_report(workdir: str) -> str:
    """Renders W/report.md and W/plots/*.png from W/metrics.json; returns the report's path."""
    workdir = os.fspath(workdir)
    with open(os.path.join(workdir, "metrics.json"), encoding="utf-8") as f:
        metrics = json.load(f)
    os.makedirs(os.path.join(workdir, "plots"), exist_ok=True)
    plot_training(workdir)
    plot_passes(workdir, metrics)
    evaluations = metrics.get("evaluation", {})
    k_names = sorted({key for e in evaluations.values() for key in e.get("pass_at_k", {})},
                     key=lambda key: int(key.split("@")[1]))
    sections = [
        "# codex_jax report",
        f"Workdir `{workdir}`; config `{metrics.get('config_name', '')}`.",
        "## HumanEval: pretrained vs fine-tuned (Codex-S)",
        _table(["model", *k_names, "pass@1 ranked by mean log-prob", "pass@1 random", "samples"],
               [[name, *[e["pass_at_k"].get(key, "") for key in k_names], e["pass@1_ranked_by_mean_log_prob"],
                 e["pass@1_random"], e["samples"]] for name, e in evaluations.items()]),
        "## Held-out loss on function bodies",
        "The validation (prompt, completion) pairs, completion tokens scored:",
        _table(["model", "val loss (nats/token)", "val bits per byte"],
               [[name, v["val_loss"], v["val_bits_per_byte"]] for name, v in metrics.get("body_loss", {}).items()]),
        "## Training",
        _table(["run", "steps", "final loss", "val bits per byte", "tokens/s"],
               [[name, r.get("step"), r.get("loss"), r.get("val_bits_per_byte"), r.get("tokens_per_s")]
                for name, r in metrics.get("training", {}).items()]),
        "![training curves](plots/training.png)",
        "![passes per problem](plots/pass_counts.png)",
        "## Data",
        _table(["stage", "numbers"], [[name, json.dumps(value)] for name, value in metrics.get("data", {}).items()]),
        "## Time per stage",
        _table(["stage", "seconds"], [[name, round(s, 1)] for name, s in metrics.get("timings", {}).items()]
               + [["total", round(sum(metrics.get("timings", {}).values()), 1)]]),
        "## Example completions",
        _examples(workdir),
        "## Config",
        "```json\n" + json.dumps(metrics.get("config", {}), indent=1) + "\n```",
    ]
    path = os.path.join(workdir, "report.md")
    with open(path + ".tmp", "w", encoding="utf-8") as f:
        f.write("\n\n".join(sections) + "\n")
    os.replace(path + ".tmp", path)
    return path
