"""Pretrains the GPT on the packed corpus: <workdir>/ckpt/pretrain/ + <workdir>/metrics.jsonl.

    python scripts/pretrain.py --config=configs/tiny.py --workdir=workdir [--config.train.steps=100]

A workdir without corpus, tokenizer or data gets them built first (the pipeline's own stages).
Rerunning the same command resumes from the latest checkpoint. Across hosts (a TPU pod slice,
a GPU cluster), run the same command on every host with --multihost and a workdir all hosts
share; see codex_jax/distributed.py for the environment variables outside TPU/SLURM/MPI.
"""

import os

from absl import app

from codex_jax import cli

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()
_MULTIHOST = cli.define_multihost_flag()


def main(argv: list[str]) -> None:
    del argv
    import jax

    from codex_jax import distributed, train

    cli.start(_MULTIHOST.value)
    state = train.train_and_evaluate(_CONFIG.value, _WORKDIR.value)
    if not distributed.is_main_process():
        return
    workdir = os.path.abspath(_WORKDIR.value)
    print(f"pretrained {int(state.step)} steps on {jax.device_count()} {jax.devices()[0].device_kind} device(s)")
    print(f"  checkpoints: {os.path.join(workdir, 'ckpt', 'pretrain')}")
    print(f"  metrics:     {os.path.join(workdir, 'metrics.jsonl')}")


if __name__ == "__main__":
    app.run(main)
