"""The decomposition probe's report: pass@k against chain length for each model, the factor by
which pass@1 falls per added block, and the plot (as the Codex paper's figure 11)."""

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from codex_jax import jsonl
from codex_jax.evaluation import pass_at_k as pass_at_k_lib

PLOT_FILENAME = "chained_pass_by_length.png"


def pass_by_length(
    results_file: str | os.PathLike, problems: dict[str, dict[str, Any]], k: Sequence[int]
) -> list[dict[str, Any]]:
    """pass@k per chain length from an evaluation's `<samples>_results.jsonl`.

    Returns one row per chain length, ascending: {chain_length, problems, samples, "pass@k"...,
    ci95: {"pass@k": [low, high]}}; a k is reported only when every problem of that length has
    >= k samples.
    """
    counts = pass_at_k_lib.count_by_problem(jsonl.read_jsonl(results_file))
    rows = []
    for length in sorted({problems[task]["chain_length"] for task in counts}):
        of_length = {
            task: c for task, c in counts.items() if problems[task]["chain_length"] == length
        }
        rows.append(
            {
                "chain_length": length,
                "problems": len(of_length),
                "samples": sum(samples for samples, _ in of_length.values()),
                **pass_at_k_lib.pass_at_k(of_length, k),
                "ci95": pass_at_k_lib.pass_at_k_interval(of_length, k),
            }
        )
    return rows


def _pass_names(results: Sequence[dict[str, Any]]) -> list[str]:
    names = {key for row in results for key in row if key.startswith("pass@")}
    return sorted(names, key=lambda name: int(name.split("@")[1]))


def decay_per_block(results: Sequence[dict[str, Any]], name: str = "pass@1") -> float | None:
    """The factor by which `name` falls per added block: exp(-slope) of a least-squares line
    through (chain length, log pass rate) over the lengths with a positive rate; None with fewer
    than two such lengths."""
    points = [(row["chain_length"], row[name]) for row in results if row.get(name, 0.0) > 0.0]
    if len(points) < 2:
        return None
    lengths, rates = np.array(points).T
    slope = np.polyfit(lengths, np.log(rates), 1)[0]
    return float(np.exp(-slope))


def plot_pass_by_length(by_model: dict[str, Sequence[dict[str, Any]]], path: str) -> str:
    """A PNG of pass@1 and the largest pass@k against chain length for each model, log y as the
    paper's figure 11 (rates of zero, which a log axis cannot show, are left out of the lines;
    the tables have them), with pass@1's interval as a band."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axis = plt.subplots(figsize=(6.5, 4))
    lengths = sorted({row["chain_length"] for rows in by_model.values() for row in rows})
    for model, rows in by_model.items():
        names = _pass_names(rows)
        for name in dict.fromkeys(names[:1] + names[-1:]):
            kept = [row for row in rows if row.get(name, 0.0) > 0.0]
            if not kept:
                continue
            x = [row["chain_length"] for row in kept]
            line = axis.plot(x, [row[name] for row in kept], marker="o", label=f"{model} {name}")
            if name == "pass@1":
                low = [max(row["ci95"][name][0], 1e-3) for row in kept]
                high = [row["ci95"][name][1] for row in kept]
                axis.fill_between(x, low, high, color=line[0].get_color(), alpha=0.15)
    axis.set(
        title="pass rate against chained building blocks",
        xlabel="blocks chained in the docstring",
        ylabel="pass rate",
        yscale="log",
    )
    if lengths:
        axis.set_xticks(lengths)
        axis.set_xlim(min(lengths) - 0.5, max(lengths) + 0.5)
    axis.grid(alpha=0.3, which="both")
    if axis.get_legend_handles_labels()[0]:
        axis.legend(fontsize=8)
        axis.set_ylim(top=1.2)
    else:
        axis.set_ylim(1e-3, 1.2)
        axis.text(
            0.5, 0.5, "no sample passed at any chain length", transform=axis.transAxes, ha="center"
        )
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def length_table(rows: Sequence[dict[str, Any]]) -> list[str]:
    """Markdown rows: pass@k with its interval per chain length, and the decay per block."""
    names = _pass_names(rows)
    lines = [
        "| chain length | problems | samples | " + " | ".join(names) + " |",
        "|" + "---|" * (3 + len(names)),
    ]
    lines += [
        f"| {row['chain_length']}{' (fine-tuning data)' if row['chain_length'] == 1 else ''} "
        f"| {row['problems']} | {row['samples']} | "
        + " | ".join(
            pass_at_k_lib.format_with_interval(row[name], row["ci95"].get(name))
            if name in row
            else ""
            for name in names
        )
        + " |"
        for row in rows
    ]
    factor = decay_per_block([row for row in rows if row["chain_length"] > 1])
    lines += [
        "",
        f"pass@1 falls by a factor of {factor:.2f} per added block over 2+ blocks (least-squares "
        "fit of log pass@1 on chain length; Codex-12B: about 2-3)."
        if factor is not None
        else "Fewer than two chain lengths of 2+ blocks have a positive pass@1: no decay to fit.",
    ]
    return lines


def report(
    problems: dict[str, dict[str, Any]],
    results_files: dict[str, str],
    k: Sequence[int],
    plot_dir: str,
) -> str:
    """The report section: per model, pass@k by chain length; the plot in `plot_dir`."""
    by_model = {
        model: pass_by_length(path, problems, k)
        for model, path in results_files.items()
        if os.path.exists(path)
    }
    if not by_model:
        return ""
    plot = plot_pass_by_length(by_model, os.path.join(plot_dir, PLOT_FILENAME))
    lines = [
        "Chains of 2 or more blocks are never fine-tuning chains (2-block chains come from the "
        "held-out pairs); single blocks are all seen when `config.finetune.synthetic_pairs` > 0, "
        "so length 1 is reported apart from the decay.",
        "",
    ]
    for model, rows in by_model.items():
        lines += [f"**{model}**", "", *length_table(rows), ""]
    lines.append(
        f"![pass rate against chain length]({os.path.basename(plot_dir)}/{os.path.basename(plot)})"
    )
    return "\n".join(lines)
