"""The jitted batched sampler: prefill once, then decode with a KV cache inside one `while_loop`.

Einsum letters in shape comments: G prompts in a batch (each prefilled once), R sample rows
(each row continues one prompt; n rows may share a prompt and its prefill), P padded prompt
length, S cache slots (P + N - 1), N `max_new_tokens`, V vocabulary.

Two layers, one concern each:
- the sampling math (`sample_tokens`): greedy, temperature, top-k and top-p (nucleus) on a
  batch of logits, with no sort over the vocabulary (sorting 8k logits is very slow on XLA
  CPU): top-k and top-p thresholds are found by bisection on the float bits of the
  probabilities, which finds the exact threshold in 30 passes, and the token is drawn by
  inverse-CDF sampling with one uniform per row (no vocabulary-sized Gumbel noise);
- the decode loop (`generate`), written against a small `Decoder` interface (prepare the
  parameters once, before any `generate` call; init a cache; map tokens at positions and cache
  slots to logits), so it is tested with toy logits functions and the GPT is plugged in by
  `GPTDecoder`.

Log-probs: each chosen token's log-probability under the temperature-scaled model
distribution, log softmax(logits / T), *before* top-k/top-p truncation (T = 1 for greedy).
Truncation would renormalise each step's distribution differently, which makes the sums of
two samples incomparable; Codex ranks samples by this mean log-prob.

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

from codex_jax.model import transformer as model_lib

# Bisection over float32 bit patterns in [0, bits(1.0)]: 2**30 > 0x3F800000 candidates.
_BISECTION_STEPS = 30
_ONE_BITS = 0x3F800000  # float32 1.0
_SAMPLE_BLOCK = 128  # inverse-CDF sampling picks a block of this many tokens, then a token in it
_DECODE_CHUNK = (
    32  # decode steps per while_loop; each loop sees a cache of the slots filled by its end
)
_OUT_FIRST_MIN_ROWS = (
    4  # fewest rows whose CPU decode steps use output-first kernels (`GPTDecoder`)
)


@dataclasses.dataclass(frozen=True)
class SamplingConfig:
    """How a token is chosen from logits (hashable: a static argument of the jitted loop).

    Attributes:
        temperature: 0 = greedy (argmax); otherwise logits are divided by it.
        top_p: nucleus: keep the most probable tokens whose mass first reaches top_p (ties at
            the threshold all kept); 1.0 = off.
        top_k: keep the k most probable tokens (ties at the k-th all kept, as transformers);
            0 = off.
    """

    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0

    def __post_init__(self):
        if not self.temperature >= 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < 0:
            raise ValueError(f"top_k must be >= 0 (0 = off), got {self.top_k}")


def _largest_threshold(satisfied, shape: tuple[int, ...]) -> jax.Array:
    """The largest float32 t in [0, 1] with satisfied(t), per row, by bisection on float bits.

    `satisfied(t)`: float32[B, 1] -> bool[B, 1], true at t = 0, false above 1, and monotone
    (true at t implies true below t). Positive floats order like their bit patterns, so
    bisection over the integers finds the exact threshold, not an approximation.
    Returns float32 of `shape` ([B, 1]).
    """

    def step(_, bounds):
        low, high = bounds  # satisfied(low) holds, satisfied(high) does not
        middle = low + (high - low) // 2
        ok = satisfied(jax.lax.bitcast_convert_type(middle, jnp.float32))
        return jnp.where(ok, middle, low), jnp.where(ok, high, middle)

    low, _ = jax.lax.fori_loop(
        0,
        _BISECTION_STEPS,
        step,
        (jnp.zeros(shape, jnp.int32), jnp.full(shape, _ONE_BITS + 1, jnp.int32)),
    )
    return jax.lax.bitcast_convert_type(low, jnp.float32)


def top_k_mask(weights: jax.Array, k: int) -> jax.Array:
    """bool[B, V]: the k largest of weights float32[B, V] in [0, 1] (ties at the k-th kept)."""
    if k >= weights.shape[-1]:
        return jnp.ones(weights.shape, bool)
    threshold = _largest_threshold(
        lambda t: jnp.sum(weights >= t, axis=-1, keepdims=True) >= k, weights.shape[:-1] + (1,)
    )
    return weights >= threshold


def top_p_mask(weights: jax.Array, top_p: float) -> jax.Array:
    """bool[B, V]: the nucleus of unnormalised probabilities weights float32[B, V] in [0, 1].

    The nucleus is the smallest set of most probable tokens whose mass reaches top_p of the
    total: all tokens with weight >= t*, t* the largest t whose tokens at or above it hold
    that mass. Each row needs a weight of 1 (the argmax, as `exp(logits - max)` gives).
    """
    target = top_p * jnp.sum(weights, axis=-1, keepdims=True)  # (B, 1)
    threshold = _largest_threshold(
        lambda t: jnp.sum(jnp.where(weights >= t, weights, 0.0), axis=-1, keepdims=True) >= target,
        target.shape,
    )
    return weights >= threshold


def _last_positive(weights: jax.Array) -> jax.Array:
    """int32[...]: index of the last positive entry along the last axis."""
    indices = jnp.arange(weights.shape[-1], dtype=jnp.int32)
    return jnp.max(jnp.where(weights > 0, indices, -1), axis=-1)


def sample_from_weights(rng: jax.Array, weights: jax.Array) -> jax.Array:
    """Draws int32[B] with probability weights / sum(weights), weights float32[B, V] >= 0.

    Inverse-CDF sampling with one uniform per row, in two levels (which block of
    `_SAMPLE_BLOCK` tokens, then which token in it) so no vocabulary-long cumulative sum or
    vocabulary-sized noise is needed. Never returns a zero-weight token: where float rounding
    would step past the last positive block or token, it is clamped back to it.
    """
    batch, vocab = weights.shape
    blocks = -(-vocab // _SAMPLE_BLOCK)
    weights = jnp.pad(weights, ((0, 0), (0, blocks * _SAMPLE_BLOCK - vocab)))
    weights = weights.reshape(batch, blocks, _SAMPLE_BLOCK)  # (B, blocks, block)
    block_mass = jnp.sum(weights, axis=-1)  # (B, blocks)
    cumulative = jnp.cumsum(block_mass, axis=-1)  # (B, blocks)
    u = jax.random.uniform(rng, (batch, 1)) * cumulative[:, -1:]  # (B, 1)
    block = jnp.minimum(jnp.sum(cumulative <= u, axis=-1), _last_positive(block_mass))  # (B,)
    before = jnp.take_along_axis(cumulative, jnp.maximum(block - 1, 0)[:, None], axis=-1)
    before = jnp.where(block[:, None] > 0, before, 0.0)  # (B, 1): mass of the earlier blocks
    inner = jnp.take_along_axis(weights, block[:, None, None], axis=1)[:, 0]  # (B, block)
    inner_cumulative = jnp.cumsum(inner, axis=-1)
    index = jnp.sum(inner_cumulative <= u - before, axis=-1)
    index = jnp.minimum(index, _last_positive(inner))
    return (block * _SAMPLE_BLOCK + index).astype(jnp.int32)


def sample_tokens(
    rng: jax.Array, logits: jax.Array, sampling: SamplingConfig
) -> tuple[jax.Array, jax.Array]:
    """Chooses one token per row of logits float32[B, V].

    Returns (tokens int32[B], log-probs float32[B]); a log-prob is the token's under
    log softmax(logits / temperature), untruncated (temperature 1 for greedy).
    """
    greedy = sampling.temperature == 0
    scaled = logits.astype(jnp.float32) / (1.0 if greedy else sampling.temperature)
    top = jnp.max(scaled, axis=-1, keepdims=True)
    weights = jnp.exp(scaled - top)  # (B, V) unnormalised probabilities, max exactly 1
    log_normaliser = jnp.log(jnp.sum(weights, axis=-1))  # (B,)
    if greedy:
        tokens = jnp.argmax(scaled, axis=-1).astype(jnp.int32)
    else:
        if sampling.top_k:
            weights = jnp.where(top_k_mask(weights, sampling.top_k), weights, 0.0)
        if sampling.top_p < 1:
            weights = jnp.where(top_p_mask(weights, sampling.top_p), weights, 0.0)
        tokens = sample_from_weights(rng, weights)
    chosen = jnp.take_along_axis(scaled, tokens[:, None], axis=-1)[:, 0]
    return tokens, chosen - top[:, 0] - log_normaliser


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
    with every kernel stored output axes first (`model.kernels_out_first`, made by `prepare`),
    which XLA:CPU multiplies without repacking the weights every step (see
    `model.project`). Measured on the project's 2-core VM (greedy, 64-token prompts, 128 new
    tokens; the same `generate` with and without the copy, 9 alternated rounds, median of the
    paired ratios): 4 x 256 at 4, 8, 16, 32 rows 1.20x, 1.28x, 1.16x, 1.10x; 8 x 512 at 32 rows 1.27x;
    2 x 128 at 8 and 32 rows 1.14x and 1.01x; but 0.92-0.93x at 1 and 2 rows, which therefore
    decode, as the prefill does, on the parameters as trained.
    """

    config: model_lib.GPTConfig

    def prepare(self, params):
        if jax.default_backend() != "cpu":
            return {"trained": params}
        return {"trained": params, "out_first": jax.jit(model_lib.kernels_out_first)(params)}

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
