"""The pipeline's report: W/metrics.json from the run's artifacts, then W/report.md and
W/plots/*.png from W/metrics.json.

`W/metrics.json` holds every number the report shows; this module only reads artifacts and
draws. Nothing here trains, samples or executes (the held-out losses it reports are computed by
the report stage of `codex_jax.pipeline` and passed in).
"""

import collections
import json
import os
from typing import Any

import numpy as np

from codex_jax import jsonl
from codex_jax.evaluation import pass_at_k as pass_at_k_lib
from codex_jax.workdir import MODELS, Workdir, results_path, samples_meta_path


def results_summary(results_path: str, k: tuple[int, ...]) -> dict[str, Any]:
    """pass@k, pass@1 when picking each problem's sample of highest mean log-prob, and counts.

    Codex (section 3.4, figure 7) ranks samples by mean token log-prob when only one may be
    submitted; "random" is the unbiased pass@1, the expected result of picking a sample at random.
    """
    rows = list(jsonl.read_jsonl(results_path))
    counts = pass_at_k_lib.count_by_problem(rows)
    by_task: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for row in rows:
        by_task[row["task_id"]].append(row)
    n = np.array([samples for samples, _ in counts.values()])
    correct = np.array([passed for _, passed in counts.values()])
    ranked = [
        max(by_task[task], key=lambda r: r.get("mean_log_prob", 0.0))["passed"] for task in counts
    ]
    return {
        "pass_at_k": pass_at_k_lib.pass_at_k(counts, k),
        "pass@1_ranked_by_mean_log_prob": float(np.mean(ranked)),
        "pass@1_random": float(np.mean(correct / n)),
        "problems": len(by_task),
        "samples": int(n.sum()),
        "passed_per_problem": {task: int(c) for task, c in zip(counts, correct)},
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
    for name in MODELS:
        curves = _read_curve(Workdir(workdir).training_log(name))
        for axis, key in zip(axes, ("loss", "val_bits_per_byte")):
            if curves.get(key):
                steps, values = zip(*curves[key])
                axis.plot(steps, values, marker="." if key.startswith("val") else None, label=name)
    axes[0].set(title="training loss (nats per scored token)", xlabel="step", yscale="log")
    axes[1].set(
        title="validation bits per byte (pretrain: held-out files;\nfinetune: held-out function bodies)",
        xlabel="step",
    )
    for axis in axes:
        axis.legend()
        axis.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(Workdir(workdir).plots, "training.png")
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
            axis.bar(
                np.arange(len(counts)), list(counts.values()), alpha=0.6, label=name, width=1.0
            )
    axis.set(
        title="passing samples per HumanEval problem",
        xlabel="problem index",
        ylabel="samples passed",
    )
    axis.legend()
    fig.tight_layout()
    path = os.path.join(Workdir(workdir).plots, "pass_counts.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _examples(workdir: str, problem_file: str | None, limit: int = 3) -> str:
    """A few completions of the fine-tuned model with their prompts: passing ones when there are,
    else each problem's most likely sample (by mean log-prob) and why it failed."""
    from codex_jax.evaluation import problems

    path = results_path(Workdir(workdir).samples(MODELS[-1]))
    if not os.path.exists(path):
        return "No samples."

    def rank(row: dict[str, Any]) -> tuple[bool, float]:
        return row["passed"], row.get("mean_log_prob", 0.0)

    best: dict[str, dict[str, Any]] = {}
    for row in jsonl.read_jsonl(path):
        kept = best.get(row["task_id"])
        best[row["task_id"]] = row if kept is None else max(kept, row, key=rank)
    passed = [row for row in best.values() if row["passed"]]
    shown = (passed or list(best.values()))[:limit]
    tasks = problems.read_problems(problem_file)
    return "\n\n".join(
        f"**{row['task_id']}** ({MODELS[-1]} model, {row['result'][:80]}, mean log-prob "
        f"{row.get('mean_log_prob', float('nan')):.2f}):\n\n```python\n{tasks[row['task_id']]['prompt']}"
        f"{row['completion']}\n```"
        for row in shown
    )


def _data_lines(data: dict[str, Any]) -> str:
    corpus, tokenizer, tokens, functions = (
        data.get(key, {}) for key in ("corpus", "tokenizer", "tokens", "functions")
    )
    lines = [
        f"- corpus: {corpus.get('files_kept', 0):,} of {corpus.get('files_seen', 0):,} files kept "
        f"({corpus.get('mb_kept', 0)} MB)",
        f"- tokenizer: vocabulary {tokenizer.get('vocab_size', 0):,}, "
        f"{tokenizer.get('val_bytes_per_token', 0)} bytes per token on the validation split",
        f"- tokens: {tokens.get('train', 0):,} train, {tokens.get('val', 0):,} validation",
    ]
    for split, counts in functions.items():
        lines.append(
            f"- fine-tuning functions ({split}): {counts['functions']:,}, {counts['with_doctest']} with "
            f"doctests, {counts['doctest_verified']} of them verified in the sandbox"
        )
    return "\n".join(lines)


def _passed_problems(evaluations: dict[str, Any]) -> str:
    """Problems at least one model solved at least once, with each model's passing samples."""
    counts = {name: e.get("passed_per_problem", {}) for name, e in evaluations.items()}
    solved = sorted(
        {task for per_problem in counts.values() for task, c in per_problem.items() if c},
        key=lambda task: [int(part) if part.isdigit() else part for part in task.split("/")],
    )
    if not solved:
        return "No problem was solved by any sample."
    samples = {name: e["samples"] // max(e["problems"], 1) for name, e in evaluations.items()}
    return _table(
        ["problem", *[f"{name} (of {samples[name]})" for name in counts]],
        [[task, *[per_problem.get(task, 0) for per_problem in counts.values()]] for task in solved],
    )


def write_report(workdir: str) -> str:
    """Renders W/report.md and W/plots/*.png from W/metrics.json; returns the report's path."""
    paths = Workdir(workdir)
    workdir = paths.root
    metrics = jsonl.read_json(paths.metrics)
    os.makedirs(paths.plots, exist_ok=True)
    plot_training(workdir)
    plot_passes(workdir, metrics)
    evaluations = metrics.get("evaluation", {})
    k_names = sorted(
        {key for e in evaluations.values() for key in e.get("pass_at_k", {})},
        key=lambda key: int(key.split("@")[1]),
    )
    timings = metrics.get("timings", {})
    sampling = metrics.get("sampling", {})
    sections = [
        "# codex_jax report",
        f"Workdir `{workdir}`. Problems: {metrics.get('problem_file') or 'HumanEval'}.",
        "## Pass@k: pretrained vs fine-tuned (Codex-S)",
        _table(
            ["model", *k_names, "pass@1 ranked by mean log-prob", "pass@1 random", "samples"],
            [
                [
                    name,
                    *[e["pass_at_k"].get(key, "") for key in k_names],
                    e["pass@1_ranked_by_mean_log_prob"],
                    e["pass@1_random"],
                    e["samples"],
                ]
                for name, e in evaluations.items()
            ],
        ),
        "Sampling: "
        + "; ".join(
            f"{name} T={s.get('temperature')}, top_p={s.get('top_p')}, n={s.get('n')}, "
            f"{s.get('tokens_per_s') or 0:,.0f} tokens/s"
            for name, s in sampling.items()
        ),
        "### Problems solved",
        _passed_problems(evaluations),
        "![passes per problem](plots/pass_counts.png)",
        "## Held-out loss on function bodies",
        "The validation (prompt, completion) pairs, completion tokens scored:",
        _table(
            ["model", "val loss (nats/token)", "val bits per byte"],
            [
                [name, v["val_loss"], v["val_bits_per_byte"]]
                for name, v in metrics.get("body_loss", {}).items()
            ],
        ),
        "## Training",
        _table(
            ["run", "steps", "final loss", "val loss", "val bits per byte", "tokens/s (median)"],
            [
                [
                    name,
                    r.get("step"),
                    r.get("loss"),
                    r.get("val_loss"),
                    r.get("val_bits_per_byte"),
                    round(r.get("tokens_per_s") or 0),
                ]
                for name, r in metrics.get("training", {}).items()
            ],
        ),
        "![training curves](plots/training.png)",
        "## Data",
        _data_lines(metrics.get("data", {})),
        "## Time per stage",
        _table(
            ["stage", "seconds"],
            [[name, f"{seconds:.1f}"] for name, seconds in timings.items()]
            + [["total", f"{sum(timings.values()):.1f}"]],
        ),
        "## Example completions",
        _examples(workdir, metrics.get("problem_file") or None),
        *_chained_section(workdir),
        "## Config",
        "```json\n" + json.dumps(metrics.get("config", {}), indent=1) + "\n```",
    ]
    jsonl.write_text_atomically(paths.report, "\n\n".join(sections) + "\n")
    return paths.report


def _chained_section(workdir: str) -> list[str]:
    """The decomposition probe's table and plot, when scripts/chained.py has run in this workdir."""
    from codex_jax.evaluation import chained

    folder = Workdir(workdir).chained
    path = os.path.join(folder, "results.json")
    if not os.path.exists(path):
        return []
    image = f"{os.path.basename(folder)}/{chained.PLOT_FILENAME}"
    return [chained.report_section(jsonl.read_json(path), image=image)]


def _training_summary(metrics_path: str) -> dict[str, Any]:
    """The last logged step of a metrics.jsonl, its last validation numbers and median tokens/s."""
    records = list(jsonl.read_jsonl(metrics_path))
    last_val = next((r for r in reversed(records) if "val_loss" in r), {})
    return {
        "step": records[-1]["step"],
        "loss": records[-1]["loss"],
        "val_loss": last_val.get("val_loss"),
        "val_bits_per_byte": last_val.get("val_bits_per_byte"),
        "tokens_per_s": float(np.median([r["tokens_per_s"] for r in records])),
    }


def collect_metrics(config: Any, workdir: str, body_loss: dict[str, Any]) -> dict[str, Any]:
    """Every number of the report: `body_loss` ({model: finetune.body_loss}) and the stages' artifacts."""
    from codex_jax.data import corpus, token_files

    paths = Workdir(workdir)
    corpus_stats = corpus.read_stats(paths.corpus)
    data_meta = token_files.load_meta(paths.data)
    functions_stats = jsonl.read_json(os.path.join(paths.sft, "stats.json"))
    return {
        "problem_file": config.eval.problem_file,
        "evaluation": {
            model: results_summary(results_path(paths.samples(model)), tuple(config.eval.k))
            for model in MODELS
        },
        "body_loss": body_loss,
        "training": {model: _training_summary(paths.training_log(model)) for model in MODELS},
        "data": {
            "corpus": {
                "files_kept": corpus_stats["files"]["kept"],
                "files_seen": corpus_stats["files"]["seen"],
                "mb_kept": round(corpus_stats["bytes"]["kept"] / 1e6, 1),
            },
            "tokenizer": {
                "vocab_size": data_meta["vocab_size"],
                "val_bytes_per_token": round(
                    data_meta["val"]["n_bytes"] / data_meta["val"]["n_tokens"], 2
                ),
            },
            "tokens": {split: data_meta[split]["n_tokens"] for split in ("train", "val")},
            "functions": functions_stats["splits"],
        },
        "sampling": {
            model: {
                key: value
                for key, value in jsonl.read_json(samples_meta_path(paths.samples(model))).items()
                if key in ("n", "temperature", "top_p", "samples", "tokens", "tokens_per_s")
            }
            for model in MODELS
        },
        "timings": jsonl.read_json(paths.timings, default={}),
        "config": config.to_dict(),
    }
