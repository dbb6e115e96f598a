"""Trains the code tokenizer on the corpus's train split: <workdir>/tokenizer.model.

    python scripts/train_tokenizer.py --workdir=workdir [--config.tokenizer.vocab_size=16384]

Builds the corpus first when it is missing; an existing tokenizer.model is kept unless --rebuild
is given (token data encoded with the old model is then encoded again by prepare_data). Prints
the model path and bytes/token on the validation split, which training never saw.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from codex_jax import corpus, tokenizer

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "tiny.py"),
    "ml_collections config file.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir", "Folder for every artifact of the pipeline.")
_REBUILD = flags.DEFINE_bool("rebuild", False, "Train again even when tokenizer.model exists.")


def main(argv: list[str]) -> None:
    del argv
    if _REBUILD.value:
        tokenizer.train_tokenizer(_CONFIG.value, _WORKDIR.value)
    path = tokenizer.ensure_tokenizer(_CONFIG.value, _WORKDIR.value)
    val_path = os.path.join(corpus.ensure_corpus(_CONFIG.value, _WORKDIR.value), "val.jsonl.gz")
    loaded = tokenizer.load_tokenizer(path)
    print(f"tokenizer: {path} ({loaded.vocab_size} ids; "
          f"{tokenizer.bytes_per_token(loaded, val_path):.2f} bytes/token on {val_path})")


if __name__ == "__main__":
    app.run(main)
