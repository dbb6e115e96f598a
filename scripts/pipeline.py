"""The main job: corpus -> tokenizer -> data -> pretrain -> functions -> finetune -> sample ->
execute -> report, each stage skipped when its artifact is complete and resumed when partial.

    python scripts/pipeline.py [--config=configs/tiny.py] [--workdir=workdir] [--stages=all]
    python scripts/pipeline.py --workdir=W --stages=sample,execute,report   # a subset, in order

Writes W/report.md (pass@k of the pretrained and the fine-tuned model, training curves, data
statistics, time per stage), W/metrics.json and W/plots/*.png. Rerun the same command after an
interruption: finished stages are skipped and the interrupted one resumes. Across hosts, run
the same command on every host with --multihost (see README, "Multi-host").
"""

from absl import flags

from codex_jax import cli

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()
_MULTIHOST = cli.define_multihost_flag()
_STAGES = flags.DEFINE_string(
    "stages",
    "all",
    "'all' or a comma-separated subset of: corpus, tokenizer, "
    "data, pretrain, functions, finetune, sample, execute, report",
)


def main(argv: list[str]) -> None:
    del argv
    from codex_jax import pipeline
    from codex_jax.training import distributed

    stages = pipeline.parse_stages(_STAGES.value)
    cli.start(_MULTIHOST.value)
    path = pipeline.run(_CONFIG.value, _WORKDIR.value, stages)
    if "report" in stages and distributed.is_main_process():
        print(f"report: {path}")


if __name__ == "__main__":
    cli.run(main)
