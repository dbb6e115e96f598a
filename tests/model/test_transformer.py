"""The GPT: causality, the KV-cache decode path, and parameter axis names."""

import dataclasses
import functools

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from codex_jax.model import layers, transformer
from codex_jax.training import sharding

VOCAB = 64


# Model variants: GPT-2 (learned positions); rotary; GPT-NeoX's options; GPTBigCode's multi-query.
VARIANTS = {
    "learned": dict(positional="learned"),
    "rotary": dict(positional="rotary", tie_embeddings=False),
    "neox": dict(
        positional="rotary",
        tie_embeddings=False,
        parallel_residual=True,
        rotary_fraction=0.5,
        rotary_base=500.0,
        gelu="exact",
        layer_norm_epsilon=1e-3,
    ),
    "multi_query": dict(positional="learned", n_kv_heads=1),
}


@functools.lru_cache  # one init per variant for the whole module
def _gpt(variant: str) -> tuple[transformer.GPT, dict]:
    config = transformer.GPTConfig(
        vocab_size=VOCAB,
        n_layers=2,
        d_model=32,
        n_heads=4,
        d_ff=64,
        max_len=32,
        **VARIANTS[variant],
    )
    gpt = transformer.GPT(config)
    with jax.threefry_partitionable(False):  # as train.setup: XLA:CPU compiles it 5x faster
        params = nn.unbox(
            jax.jit(gpt.init)(jax.random.key(0), jnp.zeros((1, 8), jnp.int32))["params"]
        )
    return gpt, params


@pytest.mark.parametrize("variant", VARIANTS)
def test_changing_a_token_changes_every_later_logit_and_no_earlier_one(variant):
    gpt, params = _gpt(variant)
    tokens = jnp.asarray(np.random.RandomState(1).randint(0, VOCAB, (2, 12)), jnp.int32)
    changed_at = 7
    edited = tokens.at[:, changed_at].set((tokens[:, changed_at] + 1) % VOCAB)
    forward = jax.jit(gpt.apply)
    before, after = forward({"params": params}, tokens), forward({"params": params}, edited)
    np.testing.assert_array_equal(before[:, :changed_at], after[:, :changed_at])
    # ... and every later logit does see it (attention reaches back).
    assert np.abs(before[:, changed_at:] - after[:, changed_at:]).max(axis=-1).min() > 1e-4


@pytest.mark.parametrize(
    "out_first", [False, True], ids=["kernels_as_trained", "kernels_out_first"]
)
@pytest.mark.parametrize("variant", VARIANTS)
def test_prefill_then_cached_decode_equals_uncached_forward_with_left_padding(variant, out_first):
    """Rows of lengths 12, 7, 9 left-padded to 12 slots: prefill 8 slots, decode 4 one by one;
    each row's logits must equal the uncached forward of that row alone, unpadded (which uses the
    kernels as trained, also when the cached path runs on them stored output axes first, as the
    sampler does on CPU)."""
    gpt, params = _gpt(variant)
    uncached_forward = functools.partial(jax.jit(gpt.apply), {"params": params})
    if out_first:
        gpt = transformer.GPT(dataclasses.replace(gpt.config, out_first_kernels=True))
        params = layers.kernels_out_first(params)
        expected_shapes = jax.eval_shape(gpt.init, jax.random.key(0), jnp.zeros((1, 8), jnp.int32))[
            "params"
        ]
        assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, nn.unbox(expected_shapes))
    rng = np.random.RandomState(2)
    lengths, slots, prefill = [12, 7, 9], 12, 8
    rows = [rng.randint(0, VOCAB, n) for n in lengths]
    pads = [slots - n for n in lengths]
    tokens = np.stack([np.concatenate([np.zeros(p, np.int32), r]) for p, r in zip(pads, rows)])
    positions = np.stack([np.maximum(np.arange(slots) - p, 0) for p in pads]).astype(np.int32)
    cache_len = 16  # longer than used: unused slots must be ignored too
    kv_mask = np.stack([np.arange(cache_len) >= p for p in pads])

    cache = transformer.init_cache(gpt.config, batch_size=3, cache_len=cache_len, dtype=jnp.float32)
    logits, cache = jax.jit(gpt.apply)(
        {"params": params},
        jnp.asarray(tokens[:, :prefill]),
        positions=jnp.asarray(positions[:, :prefill]),
        cache=cache,
        cache_index=0,
        kv_mask=jnp.asarray(kv_mask),
    )
    steps = [logits]
    decode = jax.jit(
        lambda c, tok, pos, i: gpt.apply(
            {"params": params},
            tok,
            positions=pos,
            cache=c,
            cache_index=i,
            kv_mask=jnp.asarray(kv_mask),
        )
    )
    for slot in range(prefill, slots):
        logits, cache = decode(
            cache,
            jnp.asarray(tokens[:, slot : slot + 1]),
            jnp.asarray(positions[:, slot : slot + 1]),
            slot,
        )
        steps.append(logits)
    cached = np.concatenate(steps, axis=1)  # (3, 12, V)
    assert [c["k"].shape for c in cache] == [(3, gpt.config.kv_heads, cache_len, 8)] * 2
    # Each row alone from position 0; right padding cannot reach earlier logits (causality).
    right_padded = np.stack(
        [np.concatenate([r, np.zeros(p, np.int32)]) for p, r in zip(pads, rows)]
    )
    uncached = uncached_forward(jnp.asarray(right_padded))
    for row, (pad, length) in enumerate(zip(pads, lengths)):
        np.testing.assert_allclose(cached[row, pad:], uncached[row, :length], atol=1e-5, rtol=1e-5)


def test_init_cache_holds_each_key_value_head_in_the_compute_dtype():
    from configs import tiny

    config = transformer.GPTConfig.from_config(tiny.get_config().model, vocab_size=VOCAB)
    cache = transformer.init_cache(config, batch_size=2, cache_len=5, dtype=jnp.bfloat16)
    head_dim = config.d_model // config.n_heads
    assert len(cache) == config.n_layers and cache[0]["k"].dtype == jnp.bfloat16
    assert cache[0]["v"].shape == (2, config.n_heads, 5, head_dim)
    multi_query = dataclasses.replace(config, n_kv_heads=1)
    assert transformer.init_cache(multi_query, batch_size=2, cache_len=5)[0]["k"].shape == (
        2,
        1,
        5,
        head_dim,
    )


def test_parameters_are_float32_named_only_by_logical_axes_even_in_bfloat16():
    config = transformer.GPTConfig(
        vocab_size=VOCAB,
        n_layers=1,
        d_model=16,
        n_heads=2,
        d_ff=32,
        max_len=8,
        tie_embeddings=False,
        dtype="bfloat16",
    )
    gpt = transformer.GPT(config)
    variables = jax.eval_shape(gpt.init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32))
    specs = jax.tree.leaves(
        nn.get_partition_spec(variables),
        is_leaf=lambda x: isinstance(x, jax.sharding.PartitionSpec),
    )
    names = {name for spec in specs for name in spec if name is not None}
    assert names <= set(sharding.LOGICAL_AXES) and {"embed", "mlp", "heads", "vocab"} <= names
    assert {x.dtype for x in jax.tree.leaves(nn.unbox(variables))} == {jnp.dtype(jnp.float32)}
    assert (
        jax.eval_shape(gpt.apply, nn.unbox(variables), jnp.zeros((1, 4), jnp.int32)).dtype
        == jnp.float32
    )
