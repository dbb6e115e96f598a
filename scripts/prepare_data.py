"""Encodes the corpus splits into packed token files: <workdir>/data/{train,val}.bin + meta.json.

    python scripts/prepare_data.py --workdir=workdir

Builds the corpus and the tokenizer first when they are missing; complete data (meta.json
present, encoded with the current tokenizer.model) is kept unless --rebuild is given.
"""

import os

from absl import flags

from codex_jax import cli, pipeline
from codex_jax.data import token_files
from codex_jax.workdir import Workdir

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()
_REBUILD = flags.DEFINE_bool("rebuild", False, "Encode again even when complete token data exists.")


def main(argv: list[str]) -> None:
    del argv
    cli.log_progress()
    if _REBUILD.value:
        pipeline.run(_CONFIG.value, _WORKDIR.value, ["tokenizer"])
        token_files.prepare_data(_CONFIG.value, _WORKDIR.value)
    pipeline.run(_CONFIG.value, _WORKDIR.value, ["data"])
    data_dir = Workdir(_WORKDIR.value).data
    meta = token_files.load_meta(data_dir)
    for split in token_files.SPLITS:
        counts = meta[split]
        print(
            f"data: {os.path.join(data_dir, split + '.bin')}: {counts['n_documents']} documents, "
            f"{counts['n_tokens']:,} tokens ({meta['dtype']}), "
            f"{counts['n_bytes'] / max(counts['n_tokens'], 1):.2f} bytes/token"
        )


if __name__ == "__main__":
    cli.run(main)
