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
    """pass@k with its 95% interval, pass@1 when picking each problem's sample of highest mean
    log-prob, and counts.

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
        "ci95": pass_at_k_lib.pass_at_k_interval(counts, k),
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
    """plots/training.png: training loss of both runs, then each run's validation bits per byte on
    its own axis (pretraining: held-out files; fine-tuning: held-out function bodies)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    curves = {name: _read_curve(Workdir(workdir).training_log(name)) for name in MODELS}
    for name in MODELS:
        if curves[name].get("loss"):
            axes[0].plot(*zip(*curves[name]["loss"]), label=name)
    for axis, name, what in zip(axes[1:], MODELS, ("held-out files", "held-out function bodies")):
        if curves[name].get("val_bits_per_byte"):
            axis.plot(*zip(*curves[name]["val_bits_per_byte"]), marker=".", label=name)
        axis.set(title=f"{name}: validation bits per byte\n({what})", xlabel="step")
    axes[0].set(title="training loss (nats per scored token)", xlabel="step", yscale="log")
    for axis in axes:
        if axis.get_legend_handles_labels()[0]:
            axis.legend()
        axis.grid(alpha=0.3)
    fig.tight_layout()
    path = os.path.join(Workdir(workdir).plots, "training.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return [path]


def plot_passes(workdir: str, task: str, evaluations: dict[str, Any]) -> str | None:
    """plots/pass_counts_{task}.png: passing samples of each problem some sample solved, per
    model; None (no file) when nothing passed, which the report says in words instead."""
    solved = _solved(evaluations)
    if not solved:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(min(14, 3 + 0.25 * len(solved)), 3.5))
    width = 0.8 / max(len(evaluations), 1)
    for offset, (name, e) in enumerate(evaluations.items()):
        counts = [e["passed_per_problem"].get(t, 0) for t in solved]
        axis.bar(np.arange(len(solved)) + offset * width, counts, width=width, label=name)
    axis.set_xticks(np.arange(len(solved)) + width * (len(evaluations) - 1) / 2)
    axis.set_xticklabels(solved, rotation=90, fontsize=6)
    axis.set(title=f"passing samples per solved problem ({task})", ylabel="samples passed")
    axis.legend()
    fig.tight_layout()
    path = os.path.join(Workdir(workdir).plots, f"pass_counts_{task}.png")
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _examples(workdir: str, task: str, limit: int = 2) -> str:
    """A few completions of the fine-tuned model with their prompts: passing ones when there are,
    else each problem's most likely sample (by mean log-prob) and why it failed."""
    paths = Workdir(workdir)
    path = results_path(paths.samples(MODELS[-1], task))
    if not os.path.exists(path) or not os.path.exists(paths.problems(task)):
        return "No samples."

    def rank(row: dict[str, Any]) -> tuple[bool, float]:
        return row["passed"], row.get("mean_log_prob", 0.0)

    best: dict[str, dict[str, Any]] = {}
    for row in jsonl.read_jsonl(path):
        kept = best.get(row["task_id"])
        best[row["task_id"]] = row if kept is None else max(kept, row, key=rank)
    passed = [row for row in best.values() if row["passed"]]
    shown = (passed or list(best.values()))[:limit]
    prompts = {p["task_id"]: p["prompt"] for p in jsonl.read_jsonl(paths.problems(task))}
    return "\n\n".join(
        f"**{row['task_id']}** ({MODELS[-1]} model, {row['result'][:80]}, mean log-prob "
        f"{row.get('mean_log_prob', float('nan')):.2f}):\n\n```python\n{prompts[row['task_id']]}"
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


def _solved(evaluations: dict[str, Any]) -> list[str]:
    """Problems some sample of some model passed, in the set's order."""
    solved = {
        task for e in evaluations.values() for task, c in e["passed_per_problem"].items() if c
    }
    order = next(iter(evaluations.values()), {}).get("passed_per_problem", {})
    return [task for task in order if task in solved]


def _passed_problems(evaluations: dict[str, Any], limit: int = 20) -> str:
    """Problems at least one model solved at least once, with each model's passing samples."""
    solved = _solved(evaluations)
    if not solved:
        return "No sample of either model passed any problem."
    samples = {name: e["samples"] // max(e["problems"], 1) for name, e in evaluations.items()}
    table = _table(
        ["problem", *[f"{name} (of {samples[name]})" for name in evaluations]],
        [[t, *[e["passed_per_problem"].get(t, 0) for e in evaluations.values()]] for t in solved][
            :limit
        ],
    )
    more = f"\n\n(and {len(solved) - limit} more)" if len(solved) > limit else ""
    return f"{len(solved)} problems solved by some sample.\n\n{table}{more}"


def _sampling_line(sampling: dict[str, Any]) -> str:
    """Per model: settings, samples/s, mean tokens per sample and tokens/s. Rates of models that
    write completions of different lengths differ for that reason (a short completion still
    costs a prefill and a batch's slowest row), so samples/s and length are shown together."""
    return "Sampling: " + "; ".join(
        f"{name} T={s.get('temperature')}, top_p={s.get('top_p')}, n={s.get('n')}: "
        f"{s['samples'] / s['seconds']:,.1f} samples/s, "
        f"{s['tokens'] / max(s['samples'], 1):.0f} tokens per sample, "
        f"{s['tokens'] / s['seconds']:,.0f} tokens/s"
        if s.get("seconds")
        else f"{name}: no timing (sampled in an earlier run)"
        for name, s in sampling.items()
    )


def _task_section(workdir: str, name: str, t: dict[str, Any], k_names: list[str]) -> list[str]:
    evaluations = t["evaluation"]
    plot = plot_passes(workdir, name, evaluations)
    return [
        f"## {t['title']}",
        f"{t['problems']} problems; prompts and stops: {t['convention']}. "
        "Intervals: 95% bootstrap over problems.",
        _table(
            ["model", *k_names, "pass@1 ranked by mean log-prob", "pass@1 random", "samples"],
            [
                [
                    model,
                    *[_with_interval(e, key) for key in k_names],
                    e["pass@1_ranked_by_mean_log_prob"],
                    e["pass@1_random"],
                    e["samples"],
                ]
                for model, e in evaluations.items()
            ],
        ),
        _sampling_line(t["sampling"]),
        _passed_problems(evaluations),
        *([f"![passes per problem](plots/{os.path.basename(plot)})"] if plot else []),
        *([t["extra"]] if t.get("extra") else []),
        "Example completions:",
        _examples(workdir, name),
    ]


def _with_interval(evaluation: dict[str, Any], key: str) -> str:
    if key not in evaluation["pass_at_k"]:
        return ""
    return pass_at_k_lib.format_with_interval(
        evaluation["pass_at_k"][key], evaluation.get("ci95", {}).get(key)
    )


def write_report(workdir: str, plots: bool = True) -> str:
    """Renders W/report.md (and, with `plots`, W/plots/*.png) from W/metrics.json and
    W/timings.json; returns the report's path."""
    paths = Workdir(workdir)
    workdir = paths.root
    metrics = jsonl.read_json(paths.metrics)
    os.makedirs(paths.plots, exist_ok=True)
    if plots:
        plot_training(workdir)
    tasks = metrics.get("tasks", {})
    k_names = sorted(
        {
            key
            for t in tasks.values()
            for e in t["evaluation"].values()
            for key in e.get("pass_at_k", {})
        },
        key=lambda key: int(key.split("@")[1]),
    )
    timings = jsonl.read_json(paths.timings, default={})
    imported = metrics.get("config", {}).get("init", {}).get("hf_checkpoint")
    steps = metrics.get("config", {}).get("train", {}).get("steps")
    start = (
        f"Started from the imported model `{imported}` (its tokenizer and weights), pretraining "
        f'continued for {steps} steps; "pretrain" below is that model.'
        if imported
        else "Trained from scratch (a random init and this workdir's tokenizer)."
    )
    sections = [
        "# codex_jax report",
        f"Workdir `{workdir}`. {start}",
        "## pass@k: pretrained vs fine-tuned (Codex-S), per task",
        _table(
            ["task", "model", *k_names],
            [
                [t["title"], model, *[_with_interval(e, key) for key in k_names]]
                for t in tasks.values()
                for model, e in t["evaluation"].items()
            ],
        ),
    ]
    for name, t in tasks.items():
        sections += _task_section(workdir, name, t, k_names)
    sections += [
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
        "Seconds each stage spent, summed over every run in this workdir:",
        _table(
            ["stage", "seconds"],
            [[name, f"{seconds:.1f}"] for name, seconds in timings.items()]
            + [["total", f"{sum(timings.values()):.1f}"]],
        ),
        "## Config",
        "```json\n" + json.dumps(metrics.get("config", {}), indent=1) + "\n```",
    ]
    jsonl.write_text_atomically(paths.report, "\n\n".join(sections) + "\n")
    return paths.report


def _training_summary(metrics_path: str) -> dict[str, Any]:
    """The last logged step of a metrics.jsonl, its last validation numbers and median tokens/s."""
    records = list(jsonl.read_jsonl(metrics_path))
    last_val = next((r for r in reversed(records) if "val_loss" in r), {})
    rates = [r["tokens_per_s"] for r in records if r.get("tokens_per_s")]
    return {  # an imported model kept as it is (train.steps = 0) logs step 0 without a loss
        "step": records[-1]["step"],
        "loss": records[-1].get("loss"),
        "val_loss": last_val.get("val_loss"),
        "val_bits_per_byte": last_val.get("val_bits_per_byte"),
        "tokens_per_s": float(np.median(rates)) if rates else None,
    }


def _task_metrics(config: Any, workdir: str, name: str) -> dict[str, Any]:
    from codex_jax.tasks import registry

    task, paths = registry.get(name), Workdir(workdir)
    problems = {p["task_id"]: p for p in jsonl.read_jsonl(paths.problems(name))}
    results = {model: results_path(paths.samples(model, name)) for model in MODELS}
    k = tuple(config.eval.k)
    sampling = {}
    for model in MODELS:
        meta = jsonl.read_json(samples_meta_path(paths.samples(model, name)))
        sampling[model] = {
            key: meta.get(key)
            for key in ("n", "temperature", "top_p", "samples", "tokens", "seconds")
        }
    return {
        "title": task.title,
        "convention": task.convention,
        "problems": len(problems),
        "evaluation": {model: results_summary(path, k) for model, path in results.items()},
        "sampling": sampling,
        "extra": task.report(problems, results, k, paths.plots) if task.report else "",
    }


def collect_metrics(config: Any, workdir: str, body_loss: dict[str, Any]) -> dict[str, Any]:
    """Every number of the report: `body_loss` ({model: finetune.body_loss}) and the stages' artifacts."""
    from codex_jax.data import corpus, token_files

    paths = Workdir(workdir)
    os.makedirs(paths.plots, exist_ok=True)
    corpus_stats = corpus.read_stats(paths.corpus)
    data_meta = token_files.load_meta(paths.data)
    functions_stats = jsonl.read_json(os.path.join(paths.sft, "stats.json"))
    return {
        "tasks": {name: _task_metrics(config, workdir, name) for name in config.eval.tasks},
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
        "config": config.to_dict(),
    }
