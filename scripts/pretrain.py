"""Pretrains the GPT on the packed corpus: <workdir>/ckpt/pretrain/ + <workdir>/metrics.jsonl.

    python scripts/pretrain.py --config=configs/tiny.py --workdir=workdir [--config.train.steps=100]

A workdir without corpus, tokenizer or data gets them built first (the pipeline's own stages).
Rerunning the same command resumes from the latest checkpoint. On a TPU pod, run the same
command on every host with --multihost (calls jax.distributed.initialize()).
"""

import os

from absl import app, flags, logging

from codex_jax import cli

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()
_MULTIHOST = flags.DEFINE_bool("multihost", False, "Call jax.distributed.initialize() first (TPU pods).")


def main(argv: list[str]) -> None:
    del argv
    import jax

    from codex_jax import train

    if _MULTIHOST.value:
        jax.distributed.initialize()
    logging.set_verbosity(logging.INFO)
    # orbax narrates every save at INFO; keep its warnings, drop the chatter.
    logging.get_absl_handler().addFilter(
        lambda record: record.levelno >= logging.WARNING or "orbax" not in record.pathname)
    state = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    workdir = os.path.abspath(_WORKDIR.value)
    print(f"pretrained {int(state.step)} steps on {jax.device_count()} {jax.devices()[0].device_kind} device(s)")
    print(f"  checkpoints: {os.path.join(workdir, 'ckpt', 'pretrain')}")
    print(f"  metrics:     {os.path.join(workdir, 'metrics.jsonl')}")


if __name__ == "__main__":
    app.run(main)
