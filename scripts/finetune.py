"""Codex-S supervised fine-tuning: <workdir>/ckpt/finetune/ + <workdir>/finetune_metrics.jsonl.

    python scripts/finetune.py --workdir=W [--config.finetune.steps=100] [--config.finetune.lr=1e-4]

Starts from the final pretraining checkpoint (pretraining first when it is missing or
unfinished) and trains on W/sft's (docstring prompt, body) pairs, extracting them first when
missing, with the loss on the bodies only; `config.finetune` overrides `config.train`.
Rerunning the same command resumes. Prints the held-out loss on function bodies of the
pretrained and the fine-tuned model (the Codex-S comparison).
"""

from codex_jax import cli

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()
_MULTIHOST = cli.define_multihost_flag()


def main(argv: list[str]) -> None:
    del argv
    from codex_jax import pipeline
    from codex_jax.training import distributed, finetune
    from codex_jax.workdir import MODELS, Workdir

    cli.start(_MULTIHOST.value)
    config, workdir = _CONFIG.value, _WORKDIR.value
    pipeline.run(config, workdir, ["finetune"])
    losses = {
        model: finetune.body_loss(config, workdir, Workdir(workdir).checkpoint(model))
        for model in MODELS
    }
    if distributed.is_main_process():
        for stage, loss in losses.items():
            print(
                f"{stage:>9}: held-out function bodies {loss['val_loss']:.4f} nats/token, "
                f"{loss['val_bits_per_byte']:.4f} bits/byte"
            )


if __name__ == "__main__":
    cli.run(main)
