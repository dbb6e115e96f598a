"""The main job, one stage after another: corpus to pass@k, with a report.

    corpus -> tokenizer -> data -> pretrain -> functions -> finetune -> sample -> execute -> report

Each stage is the `ensure_*` function of its module: it returns at once when its artifact is
complete and resumes when it is partial (training from its latest checkpoint, sampling after
its last finished chunk of problems, execution after its last finished sample), so a killed
pipeline rerun loses at most the work since then. Both models are sampled and executed, the
pretrained one (`W/ckpt/pretrain`) and the fine-tuned one (`W/ckpt/finetune`): their pass@k side
by side is Codex-S's ablation.

Artifacts beyond the stages' own: `W/samples/{pretrain,finetune}.jsonl` (+ `_results.jsonl`),
`W/timings.json` (seconds spent in each stage, summed over runs), `W/metrics.json` (every
number of the report) and `W/report.md` with `W/plots/*.png`.
"""

import importlib
import json
import os
import time
from typing import Any, Callable, Sequence

import ml_collections
import numpy as np
from absl import logging

from codex_jax import jsonl

STAGES = ("corpus", "tokenizer", "data", "pretrain", "functions", "finetune", "sample", "execute", "report")
# Stages whose artifact process 0 builds while the others wait; the others run in every process:
# training and sampling are SPMD, execution shares out the problems.
BUILT_BY_MAIN_PROCESS = ("corpus", "tokenizer", "data", "functions")
MODELS = ("pretrain", "finetune")  # the Codex-S ablation: the same model before and after fine-tuning


def samples_path(workdir: str, model: str) -> str:
    return os.path.join(workdir, "samples", f"{model}.jsonl")


def _ensure(module: str, function: str) -> Callable[[ml_collections.ConfigDict, str], None]:
    """A stage that is one `ensure_*` function (imported only when the stage runs)."""
    def stage(config: ml_collections.ConfigDict, workdir: str) -> None:
        getattr(importlib.import_module(f"codex_jax.{module}"), function)(config, workdir)
    return stage


def _sample(config, workdir):
    from codex_jax import completions, finetune
    directories = finetune.checkpoint_dirs(workdir)
    for model in MODELS:
        completions.ensure_samples(config, workdir, checkpoint_dir=directories[model],
                                   path=samples_path(workdir, model))


def _execute(config, workdir):
    from codex_jax import evaluation
    for model in MODELS:
        evaluation.evaluate_with_config(config, samples_path(workdir, model))


def _report(config, workdir):
    from codex_jax import distributed, finetune, report
    directories = finetune.checkpoint_dirs(workdir)  # the body losses are SPMD like training
    body_loss = {model: finetune.body_loss(config, workdir, directories[model]) for model in MODELS}
    if distributed.is_main_process():
        jsonl.write_json_atomically(os.path.join(workdir, "metrics.json"),
                                    collect_metrics(config, workdir, body_loss))
        report.write_report(workdir)


RUNNERS: dict[str, Callable[[ml_collections.ConfigDict, str], None]] = {
    "corpus": _ensure("corpus", "ensure_corpus"), "tokenizer": _ensure("tokenizer", "ensure_tokenizer"),
    "data": _ensure("data", "ensure_data"), "pretrain": _ensure("finetune", "ensure_pretrained"),
    "functions": _ensure("functions", "ensure_functions"), "finetune": _ensure("finetune", "ensure_finetuned"),
    "sample": _sample, "execute": _execute, "report": _report}


def parse_stages(names: str | Sequence[str]) -> tuple[str, ...]:
    """Stage names ("all", or a comma-separated subset) in pipeline order; unknown names raise."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    if list(names) == ["all"]:
        return STAGES
    unknown = sorted(set(names) - set(STAGES))
    if unknown or not names:
        raise ValueError(f"--stages: unknown stage(s) {unknown or names}; expected 'all' or a comma-separated "
                         f"subset of {','.join(STAGES)}")
    return tuple(stage for stage in STAGES if stage in names)


def _read_json(path: str) -> dict[str, Any]:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def _training_summary(metrics_path: str) -> dict[str, Any]:
    """The last logged step of a metrics.jsonl, its last validation numbers and median tokens/s."""
    records = list(jsonl.read_jsonl(metrics_path))
    last_val = next((r for r in reversed(records) if "val_loss" in r), {})
    return {"step": records[-1]["step"], "loss": records[-1]["loss"], "val_loss": last_val.get("val_loss"),
            "val_bits_per_byte": last_val.get("val_bits_per_byte"),
            "tokens_per_s": float(np.median([r["tokens_per_s"] for r in records]))}


def collect_metrics(config: ml_collections.ConfigDict, workdir: str, body_loss: dict[str, Any]) -> dict[str, Any]:
    """Every number of the report: `body_loss` ({model: finetune.body_loss}) and the stages' artifacts."""
    from codex_jax import completions, corpus, data, report

    corpus_stats = corpus.read_stats(os.path.join(workdir, "corpus"))
    data_meta = data.load_meta(os.path.join(workdir, "data"))
    functions_stats = _read_json(os.path.join(workdir, "sft", "stats.json"))
    metrics: dict[str, Any] = {
        "problem_file": config.eval.problem_file,
        "evaluation": {model: report.results_summary(samples_path(workdir, model) + "_results.jsonl",
                                                     tuple(config.eval.k)) for model in MODELS},
        "body_loss": body_loss,
        "training": {"pretrain": _training_summary(os.path.join(workdir, "metrics.jsonl")),
                     "finetune": _training_summary(os.path.join(workdir, "finetune_metrics.jsonl"))},
        "data": {
            "corpus": {"files_kept": corpus_stats["files"]["kept"], "files_seen": corpus_stats["files"]["seen"],
                       "mb_kept": round(corpus_stats["bytes"]["kept"] / 1e6, 1)},
            "tokenizer": {"vocab_size": data_meta["vocab_size"],
                          "val_bytes_per_token": round(data_meta["val"]["n_bytes"] / data_meta["val"]["n_tokens"], 2)},
            "tokens": {split: data_meta[split]["n_tokens"] for split in ("train", "val")},
            "functions": functions_stats["splits"],
        },
        "sampling": {model: {key: value for key, value in _read_json(
            completions.meta_path(samples_path(workdir, model))).items()
            if key in ("n", "temperature", "top_p", "samples", "tokens", "tokens_per_s")} for model in MODELS},
        "timings": read_timings(workdir),
        "config": config.to_dict(),
    }
    return metrics


def read_timings(workdir: str) -> dict[str, float]:
    path = os.path.join(workdir, "timings.json")
    return _read_json(path) if os.path.exists(path) else {}


def run(config: ml_collections.ConfigDict, workdir: str | os.PathLike,
        stages: Sequence[str] = STAGES) -> str:
    """Runs `stages` in order (each skips or resumes by itself); returns the report's path.

    Seconds spent in each stage are added to W/timings.json as it ends, even when it fails. On
    several processes (`codex_jax.distributed`), every process runs this with the same arguments.
    """
    from codex_jax import distributed

    workdir = os.path.abspath(os.fspath(workdir))
    main = distributed.is_main_process()
    os.makedirs(workdir, exist_ok=True)
    for index, stage in enumerate(stages, start=1):
        if main:
            logging.info("pipeline: [%d/%d] %s", index, len(stages), stage)
        start = time.perf_counter()
        try:
            if main or stage not in BUILT_BY_MAIN_PROCESS:
                RUNNERS[stage](config, workdir)
            distributed.barrier(f"pipeline: {stage}")
        finally:
            seconds = time.perf_counter() - start
            if main:
                timings = read_timings(workdir)
                timings[stage] = round(timings.get(stage, 0.0) + seconds, 1)
                jsonl.write_json_atomically(os.path.join(workdir, "timings.json"), timings)
        if main:
            logging.info("pipeline: %s done in %.1f s", stage, seconds)
    return os.path.join(workdir, "report.md")
