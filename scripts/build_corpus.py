"""Builds the Python code corpus: <workdir>/corpus/{train,val}.jsonl.gz + stats.json.

    python scripts/build_corpus.py --workdir=workdir [--config.corpus.sources="('json', 'my/repo')"]

Sources default to this interpreter's standard library. A complete corpus (stats.json present)
is kept unless --rebuild is given.
"""

import os

from absl import app, flags
from ml_collections import config_flags

from codex_jax import corpus

_CONFIG = config_flags.DEFINE_config_file(
    "config", os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "configs", "tiny.py"),
    "ml_collections config file.")
_WORKDIR = flags.DEFINE_string("workdir", "workdir", "Folder for every artifact of the pipeline.")
_REBUILD = flags.DEFINE_bool("rebuild", False, "Build again even when a complete corpus exists.")


def main(argv: list[str]) -> None:
    del argv
    if _REBUILD.value:
        corpus.build_corpus(_CONFIG.value, _WORKDIR.value)
    corpus_dir = corpus.ensure_corpus(_CONFIG.value, _WORKDIR.value)
    print(corpus.summarize(corpus.read_stats(corpus_dir)))
    print(f"  stats: {os.path.join(corpus_dir, 'stats.json')}")


if __name__ == "__main__":
    app.run(main)
