"""Builds the Python code corpus: <workdir>/corpus/{train,val}.jsonl.gz + stats.json.

    python scripts/build_corpus.py --workdir=workdir [--config.corpus.sources="('json', 'my/repo')"]

Sources default to this interpreter's standard library. A complete corpus (stats.json present)
is kept unless --rebuild is given.
"""

import os

from absl import flags

from codex_jax import cli, pipeline
from codex_jax.data import corpus
from codex_jax.workdir import Workdir

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()
_REBUILD = flags.DEFINE_bool("rebuild", False, "Build again even when a complete corpus exists.")


def main(argv: list[str]) -> None:
    del argv
    cli.log_progress()
    if _REBUILD.value:
        corpus.build_corpus(_CONFIG.value, _WORKDIR.value)
    pipeline.run(_CONFIG.value, _WORKDIR.value, ["corpus"])
    corpus_dir = Workdir(_WORKDIR.value).corpus
    print(corpus.summarize(corpus.read_stats(corpus_dir)))
    print(f"  stats: {os.path.join(corpus_dir, 'stats.json')}")


if __name__ == "__main__":
    cli.run(main)
