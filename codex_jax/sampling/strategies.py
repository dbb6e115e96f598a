"""The sampling math: greedy, temperature, top-k and top-p (nucleus) on a batch of logits.

No sort over the vocabulary (sorting 8k logits is very slow on XLA:CPU): top-k and top-p
thresholds are found by bisection on the float bits of the probabilities, which finds the exact
threshold in 30 passes, and the token is drawn by inverse-CDF sampling with one uniform per row
(no vocabulary-sized Gumbel noise).

Log-probs: each chosen token's log-probability under the temperature-scaled model
distribution, log softmax(logits / T), *before* top-k/top-p truncation (T = 1 for greedy).
Truncation would renormalise each step's distribution differently, which makes the sums of
two samples incomparable; Codex ranks samples by this mean log-prob.
"""

import dataclasses

import jax
import jax.numpy as jnp

# Bisection over float32 bit patterns in [0, bits(1.0)]: 2**30 > 0x3F800000 candidates.
_BISECTION_STEPS = 30
_ONE_BITS = 0x3F800000  # float32 1.0
_SAMPLE_BLOCK = 128  # inverse-CDF sampling picks a block of this many tokens, then a token in it


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
