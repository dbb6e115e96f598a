"""The main job as one table of stages, corpus to pass@k, with a report.

    corpus -> tokenizer -> data -> pretrain -> functions -> finetune -> sample -> execute -> report

`STAGES` says, for each stage, what it needs, what it writes (`codex_jax.workdir`) and whether
process 0 alone builds it. A stage's `build` returns at once when its artifact is complete and
resumes when it is partial (training from its latest checkpoint, sampling after its last
finished chunk of problems, execution after its last finished sample); it never builds what it
needs itself: `run` runs the stages asked for together with everything they need, in table
order, so a killed pipeline rerun loses at most the work since then. Both models are sampled and
executed on every task of `config.eval.tasks`, the pretrained and the fine-tuned one: their
pass@k side by side is Codex-S's ablation.
`W/timings.json` sums the seconds each stage spent over all runs.
"""

import dataclasses
import importlib
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

import ml_collections
from absl import logging

from codex_jax import jsonl
from codex_jax.workdir import MODELS, Workdir, require


@dataclasses.dataclass(frozen=True)
class Stage:
    name: str
    needs: tuple[str, ...]  # stages whose artifacts this one reads
    writes: Callable[[Workdir], tuple[str, ...]]  # its artifacts
    build: Callable[
        [ml_collections.ConfigDict, str], Any
    ]  # makes them, or returns at once when complete
    main_process_only: bool = (
        False  # process 0 builds it while the others wait; else SPMD / shared out
    )


def _call(module: str, function: str) -> Callable[[ml_collections.ConfigDict, str], Any]:
    """`module.function(config, workdir)`, imported only when the stage runs."""

    def build(config: ml_collections.ConfigDict, workdir: str) -> Any:
        return getattr(importlib.import_module(f"codex_jax.{module}"), function)(config, workdir)

    return build


def _sample(config: ml_collections.ConfigDict, workdir: str) -> None:
    from codex_jax.sampling import samples
    from codex_jax.tasks import registry

    paths = Workdir(workdir)
    for task in registry.configured(config):
        samples.write_problems(config, workdir, task.name)
        for model in MODELS:
            samples.ensure_samples(
                config,
                workdir,
                task=task.name,
                checkpoint_dir=paths.checkpoint(model),
                path=paths.samples(model, task.name),
            )


def _execute(config: ml_collections.ConfigDict, workdir: str) -> None:
    from codex_jax.evaluation import correctness

    paths = Workdir(workdir)
    for task in config.eval.tasks:
        problem_file = require(paths.problems(task), "sample")
        for model in MODELS:
            correctness.evaluate_with_config(config, paths.samples(model, task), problem_file)


def _report(config: ml_collections.ConfigDict, workdir: str) -> None:
    from codex_jax import report
    from codex_jax.training import distributed, finetune

    paths = Workdir(workdir)  # the body losses are SPMD like training
    body_loss = {
        model: finetune.body_loss(config, workdir, paths.checkpoint(model)) for model in MODELS
    }
    if distributed.is_main_process():
        jsonl.write_json_atomically(
            paths.metrics, report.collect_metrics(config, workdir, body_loss)
        )
        report.write_report(workdir)


STAGES = (
    Stage(
        "corpus",
        (),
        lambda w: (w.corpus,),
        _call("data.corpus", "ensure_corpus"),
        main_process_only=True,
    ),
    Stage(
        "tokenizer",
        ("corpus",),
        lambda w: (w.tokenizer,),
        _call("data.tokenizer", "ensure_tokenizer"),
        main_process_only=True,
    ),
    Stage(
        "data",
        ("corpus", "tokenizer"),
        lambda w: (w.data,),
        _call("data.token_files", "ensure_data"),
        main_process_only=True,
    ),
    Stage(
        "pretrain",
        ("data",),
        lambda w: (w.checkpoint("pretrain"), w.training_log("pretrain")),
        _call("training.finetune", "ensure_pretrained"),
    ),
    Stage(
        "functions",
        ("corpus",),
        lambda w: (w.sft,),
        _call("data.sft_pairs", "ensure_functions"),
        main_process_only=True,
    ),
    Stage(
        "finetune",
        ("tokenizer", "pretrain", "functions"),
        lambda w: (w.checkpoint("finetune"), w.training_log("finetune")),
        _call("training.finetune", "ensure_finetuned"),
    ),
    Stage("sample", ("pretrain", "finetune"), lambda w: (w.sample_root,), _sample),
    Stage(
        "execute",
        ("sample",),
        lambda w: (w.sample_root,),  # each samples file's _results.jsonl and _metrics.json
        _execute,
    ),
    Stage("report", ("execute", "functions"), lambda w: (w.metrics, w.report, w.plots), _report),
)
BY_NAME = {stage.name: stage for stage in STAGES}
NAMES = tuple(BY_NAME)


def parse_stages(names: str | Sequence[str]) -> tuple[str, ...]:
    """Stage names ("all", or a comma-separated subset) in pipeline order; unknown names raise."""
    if isinstance(names, str):
        names = [name.strip() for name in names.split(",") if name.strip()]
    if list(names) == ["all"]:
        return NAMES
    unknown = sorted(set(names) - set(NAMES))
    if unknown or not names:
        raise ValueError(
            f"--stages: unknown stage(s) {unknown or names}; expected 'all' or a comma-separated "
            f"subset of {','.join(NAMES)}"
        )
    return tuple(name for name in NAMES if name in names)


def with_needs(names: Sequence[str]) -> tuple[str, ...]:
    """`names` and every stage they need, directly or not, in table order."""
    wanted: set[str] = set()
    todo = list(names)
    while todo:
        name = todo.pop()
        if name not in wanted:
            wanted.add(name)
            todo.extend(BY_NAME[name].needs)
    return tuple(name for name in NAMES if name in wanted)


def run(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike, stages: Sequence[str] = NAMES
) -> str:
    """Runs `stages` and what they need (`with_needs`), in order, each skipping or resuming by
    itself; returns the report's path.

    Seconds spent in each stage are added to W/timings.json as it ends, even when it fails. On
    several processes (`codex_jax.training.distributed`), every process runs this with the same
    arguments.
    """
    from codex_jax.training import distributed

    paths = Workdir(workdir)
    main = distributed.is_main_process()
    os.makedirs(paths.root, exist_ok=True)
    order = with_needs(stages)
    if "sample" in order:  # a misspelled task fails now, not after training
        from codex_jax.tasks import registry

        registry.configured(config)
    for index, name in enumerate(order, start=1):
        stage = BY_NAME[name]
        if main:
            logging.info("pipeline: [%d/%d] %s", index, len(order), name)
        start = time.perf_counter()
        try:
            if main or not stage.main_process_only:
                stage.build(config, paths.root)
            distributed.barrier(f"pipeline: {name}")
        finally:
            seconds = time.perf_counter() - start
            if main:
                timings = jsonl.read_json(paths.timings, default={})
                timings[name] = round(timings.get(name, 0.0) + seconds, 1)
                jsonl.write_json_atomically(paths.timings, timings)
        if main and name == "report":  # its time table, now with the report stage's own time
            from codex_jax import report

            report.write_report(paths.root, plots=False)
        if main:
            logging.info("pipeline: %s done in %.1f s", name, seconds)
    return paths.report
