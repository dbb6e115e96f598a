"""Codex's decomposition probe: pass@k against the number of operations a docstring chains.

    python scripts/chained.py --workdir=W [--chain_lengths=1,2,4,8] [--per_length=20] [--n=10]
        [--temperature=0.8] [--max_new_tokens=256] [--problem_seed=0] [--k=1,10]

Generates problems that chain k of the 13 string operations of the Codex paper (appendix C),
samples them from W's latest checkpoint (fine-tuned if any, else pretrained), runs the samples
in the sandbox and writes W/chained/: problems.jsonl, samples.jsonl(_results.jsonl),
results.json, pass_by_length.png and chained.md. --n, --temperature, --top_p and --k left
unset take their values from the config's `sample` and `eval` sections.
"""

from absl import app, flags

from codex_jax import cli
from codex_jax.tasks import chained

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()
_CHAIN_LENGTHS = flags.DEFINE_list("chain_lengths", ["1", "2", "4", "8"],
                                   f"Blocks chained per docstring, each in 1..{len(chained.BLOCKS)}.")
_PER_LENGTH = flags.DEFINE_integer("per_length", 20, "Problems per chain length.")
_PROBLEM_SEED = flags.DEFINE_integer("problem_seed", 0, "Seed of the generated problems.")
_N = flags.DEFINE_integer("n", None, "Completions per problem.")
_TEMPERATURE = flags.DEFINE_float("temperature", None, "Softmax temperature; 0 = greedy.")
_TOP_P = flags.DEFINE_float("top_p", None, "Nucleus mass; 1.0 = off.")
_MAX_NEW_TOKENS = flags.DEFINE_integer(
    "max_new_tokens", 256, "Longest completion in tokens (a 10-block reference solution takes ~150).")
_K = flags.DEFINE_list("k", None, "pass@k to report, e.g. 1,10 (each k <= n)")


def main(argv: list[str]) -> None:
    del argv
    config = _CONFIG.value
    for field, value in {"n": _N.value, "temperature": _TEMPERATURE.value, "top_p": _TOP_P.value,
                         "max_new_tokens": _MAX_NEW_TOKENS.value}.items():
        if value is not None:
            config.sample[field] = value
    if _K.value is not None:
        config.eval.k = tuple(int(k) for k in _K.value)
    results = chained.run(config, _WORKDIR.value, [int(k) for k in _CHAIN_LENGTHS.value],
                          _PER_LENGTH.value, _PROBLEM_SEED.value)
    for row in results:
        rates = "  ".join(f"{key} {value:.4f}" for key, value in row.items() if key.startswith("pass@"))
        print(f"chain length {row['chain_length']:>2}: {row['problems']} problems  {rates}")
    print(f"report: {_WORKDIR.value}/{chained.FOLDER}/chained.md")


if __name__ == "__main__":
    app.run(main)
