"""Trains the code tokenizer on the corpus's train split: <workdir>/tokenizer.model.

    python scripts/train_tokenizer.py --workdir=workdir [--config.tokenizer.vocab_size=16384]

Builds the corpus first when it is missing (the pipeline's stages); an existing tokenizer.model is kept unless --rebuild
is given (token data encoded with the old model is then encoded again by prepare_data). Prints
the model path and bytes/token on the validation split, which training never saw.
"""

import os

from absl import flags

from codex_jax import cli, pipeline
from codex_jax.data import tokenizer
from codex_jax.workdir import Workdir

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()
_REBUILD = flags.DEFINE_bool("rebuild", False, "Train again even when tokenizer.model exists.")


def main(argv: list[str]) -> None:
    del argv
    cli.log_progress()
    paths = Workdir(_WORKDIR.value)
    if _REBUILD.value and os.path.exists(paths.tokenizer):
        os.remove(paths.tokenizer)
    pipeline.run(_CONFIG.value, paths.root, ["tokenizer"])
    path, val_path = paths.tokenizer, os.path.join(paths.corpus, "val.jsonl.gz")
    loaded = tokenizer.load_tokenizer(path)
    print(
        f"tokenizer: {path} ({loaded.vocab_size} ids; "
        f"{tokenizer.bytes_per_token(loaded, val_path):.2f} bytes/token on {val_path})"
    )


if __name__ == "__main__":
    cli.run(main)
