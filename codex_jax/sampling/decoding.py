"""The jitted batched sampler: prefill once, then decode with a KV cache inside one `while_loop`.

Einsum letters in shape comments: G prompts in a batch (each prefilled once), R sample rows
(each row continues one prompt; n rows may share a prompt and its prefill), P padded prompt
length, S cache slots (P + N - 1), N `max_new_tokens`, V vocabulary.

The decode loop (`generate`) is written against a small `Decoder` interface (prepare the
parameters once, before any `generate` call; init a cache; map tokens at positions and cache
slots to logits), so it is tested with toy logits functions and the GPT is plugged in by
`GPTDecoder`. How each token is chosen (and its log-prob) is `codex_jax.sampling.strategies`.

Prompts are left-padded to a bucketed length P so every row's last prompt token sits in slot
P - 1 and all rows decode in lockstep; per-row `positions` start at 0 on the first real token
and `kv_mask` hides the pad slots, so a prompt's tokens do not depend on its batch neighbours.
"""

import dataclasses
import functools
import math
from typing import Any, NamedTuple, Protocol

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import numpy as np

from codex_jax.model import layers
from codex_jax.model import transformer as model_lib
from codex_jax.sampling.strategies import SamplingConfig, sample_tokens

# Decode steps per while_loop; each loop sees a cache of the slots filled by its end.
_DECODE_CHUNK = 32
_OUT_FIRST_MIN_ROWS = (
    4  # fewest rows whose CPU decode steps use output-first kernels (`GPTDecoder`)
)


class Decoder(Protocol):
    """What the decode loop needs from a model (hashable: a static argument of the jit)."""

    def prepare(self, params: Any) -> Any:
        """The parameters as `__call__` and `generate` take them (e.g. with a copy in another
        layout); usually `params` itself. Made once per set of parameters, not per call."""

    def init_cache(self, batch_size: int, cache_len: int) -> Any:
        """A zeroed cache pytree of cache_len slots whose leaves have batch_size rows first.

        Caches of two lengths may differ only in each leaf's slot dimension: the decode loop
        grows its cache by copying the shorter into the corner of the longer.
        """

    def __call__(
        self,
        params: Any,
        tokens: jax.Array,
        positions: jax.Array,
        cache: Any,
        cache_index: jax.Array | int,
        kv_mask: jax.Array,
    ) -> tuple[jax.Array, Any]:
        """tokens, positions int32[B, T] into slots cache_index.. -> (logits f32[B, T, V], cache).

        A query in slot s attends to slots <= s whose kv_mask bool[B, S] is True.
        """


@dataclasses.dataclass(frozen=True)
class GPTDecoder:
    """`codex_jax.model.GPT` as a `Decoder`; the cache is kept in the compute dtype.

    On CPU, decode steps of at least `_OUT_FIRST_MIN_ROWS` rows run on a copy of the parameters
    with every kernel stored output axes first (`layers.kernels_out_first`, made by `prepare`),
    which XLA:CPU multiplies without repacking the weights every step (see `layers.project`).
    Fewer rows (and the prefill) run on the parameters as trained, where the copy was slower
    (benchmarks/RESULTS.md, "Sampling").
    """

    config: model_lib.GPTConfig

    def prepare(self, params):
        if jax.default_backend() != "cpu":
            return {"trained": params}
        return {"trained": params, "out_first": jax.jit(layers.kernels_out_first)(params)}

    def init_cache(self, batch_size: int, cache_len: int) -> model_lib.Cache:
        return model_lib.init_cache(self.config, batch_size, cache_len, self.config.compute_dtype)

    def __call__(self, prepared, tokens, positions, cache, cache_index, kv_mask):
        if "trained" not in prepared:
            raise ValueError("GPTDecoder takes the parameters as its prepare() returns them")
        config, params = self.config, prepared["trained"]
        rows, length = tokens.shape
        if length == 1 and rows >= _OUT_FIRST_MIN_ROWS and "out_first" in prepared:
            config, params = (
                dataclasses.replace(config, out_first_kernels=True),
                prepared["out_first"],
            )
        return model_lib.GPT(config).apply(
            {"params": params},
            tokens,
            positions=positions,
            cache=cache,
            cache_index=cache_index,
            kv_mask=kv_mask,
        )


class Generation(NamedTuple):
    """The sampler's output for R rows and N = max_new_tokens.

    Attributes:
        tokens: int32[R, N]; entries at and after `num_tokens` are -1.
        log_probs: float32[R, N]; 0 at and after `num_tokens` (see the module docstring).
        num_tokens: int32[R]: tokens generated, including the end-of-document token or the
            token that completed a stop sequence.
        steps: int32 scalar: decode steps run, fewer than N when every row stopped early.
    """

    tokens: jax.Array
    log_probs: jax.Array
    num_tokens: jax.Array
    steps: jax.Array


@flax.struct.dataclass
class DecodeState:
    """The decode loop's carry, for R rows and N = max_new_tokens.

    Attributes:
        step: int32 scalar: decode steps taken; step n writes cache slot P - 1 + n.
        token: int32[R]: the token fed next (the last prompt token, then each sampled one).
        cache: the decoder's KV cache, rows first.
        stop_state: int32[R]: each row's state in the stop-sequence automaton (`StopTable`).
        done: bool[R]: rows that have stopped (end-of-document or a stop sequence).
        tokens, log_probs: [R, N]: what `Generation` returns, filled up to `step`.
        num_tokens: int32[R]: tokens generated per row so far.
    """

    step: jax.Array
    token: jax.Array
    cache: Any
    stop_state: jax.Array
    done: jax.Array
    tokens: jax.Array
    log_probs: jax.Array
    num_tokens: jax.Array


def _shard_rows(tree: Any) -> Any:
    """Constrains every leaf's first dimension (the rows) to the logical `batch` axis.

    A no-op outside `nn.logical_axis_rules`; under the training rules it splits rows over the
    mesh's data axes.
    """
    return jax.tree.map(
        lambda x: nn.with_logical_constraint(x, ("batch",) + (None,) * (x.ndim - 1)), tree
    )


def _grow_cache(decoder: Decoder, cache: Any, batch_size: int, cache_len: int) -> Any:
    """The cache extended with zeroed slots to cache_len slots.

    Copies each leaf into the corner of `decoder.init_cache`'s: leaves differ only in slots.
    """
    return _shard_rows(
        jax.tree.map(
            lambda new, old: jax.lax.dynamic_update_slice(new, old, (0,) * old.ndim),
            decoder.init_cache(batch_size, cache_len),
            cache,
        )
    )


@jax.jit(static_argnames=("decoder", "max_new_tokens", "sampling", "eod_id"))
def generate(
    decoder: Decoder,
    params: Any,
    prompt: jax.Array,
    prompt_lengths: jax.Array,
    row_prompt: jax.Array,
    rng: jax.Array,
    stop_next_state: jax.Array,
    stop_matched: jax.Array,
    *,
    max_new_tokens: int,
    sampling: SamplingConfig,
    eod_id: int,
) -> Generation:
    """Samples up to max_new_tokens for every row; a row stops at eod_id or a stop sequence.

    Args:
        decoder: the model (see `Decoder`).
        params: `decoder.prepare(params)` of its parameters (sharded as in training).
        prompt: int32[G, P], left-padded; P >= 2.
        prompt_lengths: int32[G], each in [1, P].
        row_prompt: int32[R]: which prompt each row continues.
        rng: a PRNG key.
        stop_next_state: int32[states, V], `StopTable.next_state`.
        stop_matched: int32 scalar, `StopTable.matched`.
        max_new_tokens: N.
        sampling: how tokens are chosen.
        eod_id: the end-of-document token.

    The loop ends as soon as every row has stopped.
    """
    num_prompts, prompt_len = prompt.shape
    num_rows = row_prompt.shape[0]
    slots = jnp.arange(prompt_len, dtype=jnp.int32)
    padding = (prompt_len - prompt_lengths)[:, None]  # (G, 1)
    positions = jnp.maximum(slots - padding, 0)  # (G, P)
    kv_mask = jnp.concatenate(
        [slots >= padding, jnp.ones((num_prompts, max_new_tokens - 1), bool)], axis=1
    )  # (G, S): pad slots hidden, the slots to come open
    # Decode in chunks of _DECODE_CHUNK steps over a cache that holds only the slots written so
    # far: attention streams the whole cache every step (memory bound), so the early steps
    # read a fraction of it. Step n writes slot P - 1 + n.
    chunk_ends = list(range(_DECODE_CHUNK, max_new_tokens, _DECODE_CHUNK)) + [max_new_tokens]
    cache_len = prompt_len - 1 + chunk_ends[0]
    cache = decoder.init_cache(num_prompts, cache_len)
    # Prefill all but the last prompt token; its logits are unused, so XLA drops the output
    # layer. The last token is fed by the first decode step, which yields the first logits.
    _, cache = decoder(params, prompt[:, :-1], positions[:, :-1], cache, 0, kv_mask[:, :cache_len])

    cache, kv_mask = _shard_rows(jax.tree.map(lambda x: x[row_prompt], (cache, kv_mask)))
    next_position = prompt_lengths[row_prompt] - 1  # (R,) position of the token fed next
    first_token = prompt[row_prompt, -1]  # (R,)

    def decode_step(kv_mask, state: DecodeState) -> DecodeState:
        logits, cache = decoder(
            params,
            state.token[:, None],
            (next_position + state.step)[:, None],
            state.cache,
            prompt_len - 1 + state.step,
            kv_mask,
        )  # (R, 1, V)
        token, log_prob = sample_tokens(jax.random.fold_in(rng, state.step), logits[:, 0], sampling)
        done = state.done
        stop_state = jnp.where(done, state.stop_state, stop_next_state[state.stop_state, token])
        return DecodeState(
            step=state.step + 1,
            token=token,
            cache=cache,
            stop_state=stop_state,
            done=done | (token == eod_id) | (stop_state == stop_matched),
            tokens=state.tokens.at[:, state.step].set(jnp.where(done, -1, token)),
            log_probs=state.log_probs.at[:, state.step].set(jnp.where(done, 0.0, log_prob)),
            num_tokens=state.num_tokens + (~done).astype(jnp.int32),
        )

    state = DecodeState(
        step=jnp.int32(0),
        token=first_token,
        cache=cache,
        stop_state=jnp.zeros(num_rows, jnp.int32),
        done=jnp.zeros(num_rows, bool),
        tokens=_shard_rows(jnp.full((num_rows, max_new_tokens), -1, jnp.int32)),
        log_probs=_shard_rows(jnp.zeros((num_rows, max_new_tokens), jnp.float32)),
        num_tokens=jnp.zeros(num_rows, jnp.int32),
    )
    for end in chunk_ends:
        if prompt_len - 1 + end > cache_len:
            cache_len = prompt_len - 1 + end
            state = state.replace(cache=_grow_cache(decoder, state.cache, num_rows, cache_len))
        running = lambda state, end=end: (state.step < end) & ~jnp.all(state.done)
        state = jax.lax.while_loop(
            running, functools.partial(decode_step, kv_mask[:, :cache_len]), state
        )
    return Generation(
        tokens=state.tokens,
        log_probs=state.log_probs,
        num_tokens=state.num_tokens,
        steps=state.step,
    )


def prompt_buckets(max_prompt_len: int, smallest: int = 32) -> tuple[int, ...]:
    """Padded prompt lengths: powers of two from `smallest` below `max_prompt_len`, then it."""
    if max_prompt_len < 2:
        raise ValueError(f"prompts need room for at least 2 tokens, got {max_prompt_len}")
    count = max(0, math.ceil(math.log2(max_prompt_len / smallest)))
    return tuple(smallest << i for i in range(count)) + (max_prompt_len,)


def bucket_for(length: int, buckets: tuple[int, ...]) -> int:
    """The smallest bucket that holds `length` tokens."""
    return next(b for b in buckets if b >= length)


def left_pad(prompts: list[np.ndarray], length: int, pad_id: int) -> np.ndarray:
    """int32[G, length]: each prompt right-aligned after pad_id."""
    out = np.full((len(prompts), length), pad_id, np.int32)
    for row, prompt in enumerate(prompts):
        out[row, length - len(prompt) :] = prompt
    return out
