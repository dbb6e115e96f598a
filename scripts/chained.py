"""Codex's decomposition probe: pass@k against the number of operations a docstring chains.

    python scripts/chained.py --workdir=W [--chain_lengths=1,2,4,8] [--per_length=20]
        [--problem_seed=0] [--config.sample.n=10] [--config.sample.max_new_tokens=256]
        [--config.eval.k='(1,10)']

Generates problems that chain k of the 13 string operations of the Codex paper (appendix C),
samples them from W's latest checkpoint (fine-tuned if any, else pretrained), runs the samples
in the sandbox and writes W/chained/: problems.jsonl, samples.jsonl(_results.jsonl),
results.json, pass_by_length.png and chained.md. Sampling and evaluation settings are the
config's `sample` and `eval` fields (a reference solution of 8 blocks takes ~120 tokens: raise
`--config.sample.max_new_tokens` for long chains).
"""

from absl import flags

from codex_jax import cli
from codex_jax.evaluation import chained
from codex_jax.workdir import Workdir

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()
_CHAIN_LENGTHS = flags.DEFINE_list(
    "chain_lengths",
    ["1", "2", "4", "8"],
    f"Blocks chained per docstring, each in 1..{len(chained.BLOCKS)}.",
)
_PER_LENGTH = flags.DEFINE_integer("per_length", 20, "Problems per chain length.")
_PROBLEM_SEED = flags.DEFINE_integer("problem_seed", 0, "Seed of the generated problems.")


def main(argv: list[str]) -> None:
    del argv
    config = _CONFIG.value
    cli.log_progress()
    results = chained.run(
        config,
        _WORKDIR.value,
        [int(k) for k in _CHAIN_LENGTHS.value],
        _PER_LENGTH.value,
        _PROBLEM_SEED.value,
    )
    for row in results:
        rates = "  ".join(
            f"{key} {value:.4f}" for key, value in row.items() if key.startswith("pass@")
        )
        print(f"chain length {row['chain_length']:>2}: {row['problems']} problems  {rates}")
    print(f"report: {Workdir(_WORKDIR.value).chained}/chained.md")


if __name__ == "__main__":
    cli.run(main)
