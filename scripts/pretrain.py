"""Pretrains the GPT on the packed corpus: <workdir>/ckpt/pretrain/ + <workdir>/metrics.jsonl.

    python scripts/pretrain.py --config=configs/tiny.py --workdir=workdir [--config.train.steps=100]

A workdir without corpus, tokenizer or data gets them built first (the pipeline's stages).
Rerunning the same command resumes from the latest checkpoint. Across hosts (a TPU pod slice,
a GPU cluster), run the same command on every host with --multihost and a workdir all hosts
share; see codex_jax/distributed.py for the environment variables outside TPU/SLURM/MPI.
"""

from codex_jax import cli
from codex_jax.workdir import Workdir

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()
_MULTIHOST = cli.define_multihost_flag()


def main(argv: list[str]) -> None:
    del argv
    import jax

    from codex_jax import pipeline
    from codex_jax.training import checkpoint, distributed

    cli.start(_MULTIHOST.value)
    pipeline.run(_CONFIG.value, _WORKDIR.value, ["pretrain"])
    if not distributed.is_main_process():
        return
    paths = Workdir(_WORKDIR.value)
    step = checkpoint.latest_step(paths.checkpoint("pretrain"))
    print(
        f"pretrained {step} steps on {jax.device_count()} {jax.devices()[0].device_kind} device(s)"
    )
    print(f"  checkpoints: {paths.checkpoint('pretrain')}")
    print(f"  metrics:     {paths.training_log('pretrain')}")


if __name__ == "__main__":
    cli.run(main)
