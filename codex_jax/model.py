"""Decoder-only GPT (GPT-2/3, Codex): pre-LayerNorm blocks, causal multi-head attention, GELU MLP.

Einsum letters, used in shape comments throughout:
    B batch, T query length, S key/value length (cache slots), D d_model, H heads,
    K head dim (D // H), F d_ff, V vocabulary, L layers.

Parameters are float32; activations are computed in `GPTConfig.dtype` (bfloat16 on
accelerators), logits are returned in float32. Every parameter carries logical axis names
(`batch`, `length`, `embed`, `mlp`, `heads`, `vocab`) and nothing else: `codex_jax.sharding`
alone maps them onto a device mesh.

Two ways to run the model, one code path:

Training / scoring (no cache):
    logits = GPT(cfg).apply({"params": params}, tokens)        # tokens int32[B, T] -> f32[B, T, V]

Incremental decoding with a KV cache (the sampler):
    cache = init_cache(cfg, batch_size=B, cache_len=S, dtype=jnp.float32)
    logits, cache = GPT(cfg).apply({"params": params}, tokens, positions=positions,
                                   cache=cache, cache_index=i, kv_mask=kv_mask)
  - `cache`: a list with one {"k", "v"} dict per layer, each [B, S, H, K] (`init_cache`).
  - `tokens` int32[B, T] are written into cache slots i .. i+T-1 (`cache_index` = i, a scalar
    int, may be traced); T = prompt length for the prefill, 1 per decode step.
  - `positions` int32[B, T]: the position of each token within its own row, so a left-padded
    prompt's first real token has position 0 (learned or rotary positions read it).
    Default: i + arange(T) for every row.
  - `kv_mask` bool[B, S]: False marks slots that hold padding; default all True.
  - A query in slot i+t attends to slots s <= i+t with kv_mask[b, s] True.
  - Returns float32 logits [B, T, V] and the updated cache (same structure and shapes).
  `init_cache` accepts this module's `GPTConfig` or the `config.model` section of a
  ml_collections config (it reads only n_layers, n_heads, d_model).
"""

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

Cache = list[dict[str, jax.Array]]

POSITIONAL = ("learned", "rotary")
DTYPES = ("float32", "bfloat16", "float16")
ATTENTION = ("auto", "xla", "cudnn")


@dataclasses.dataclass(frozen=True)
class GPTConfig:
    """Model hyper-parameters: the `config.model` section plus the tokenizer's vocabulary size."""

    vocab_size: int
    n_layers: int
    d_model: int
    n_heads: int
    d_ff: int
    max_len: int
    positional: str = "learned"
    tie_embeddings: bool = True
    dtype: str = "float32"
    remat: bool = False
    attention: str = "auto"  # jax.nn.dot_product_attention implementation: xla | cudnn | auto

    @classmethod
    def from_config(cls, model_config: Any, vocab_size: int) -> "GPTConfig":
        """Builds from `config.model` (ml_collections); `vocab_size` comes from the data meta."""
        fields = {f.name for f in dataclasses.fields(cls)} - {"vocab_size"}
        values = {name: model_config[name] for name in fields if name in model_config}
        return cls(vocab_size=int(vocab_size), **values)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)


def init_cache(config: Any, batch_size: int, cache_len: int, dtype: Any = jnp.float32) -> Cache:
    """Zeroed KV cache: per layer {"k", "v"} of [batch_size, cache_len, H, K] in `dtype`."""
    shape = (batch_size, cache_len, config.n_heads, config.d_model // config.n_heads)
    return [{"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)}
            for _ in range(config.n_layers)]


def _normal(stddev: float, axes: tuple[str | None, ...]):
    return nn.with_logical_partitioning(nn.initializers.normal(stddev), axes)


def _zeros(axes: tuple[str | None, ...]):
    return nn.with_logical_partitioning(nn.initializers.zeros_init(), axes)


def _layer_norm(dtype: jnp.dtype, name: str) -> nn.LayerNorm:
    return nn.LayerNorm(epsilon=1e-5, dtype=dtype, param_dtype=jnp.float32, name=name,
                        scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",)),
                        bias_init=_zeros(("embed",)))


class Projection(nn.Module):
    """einsum(equation, x, kernel) + bias, with float32 parameters named by logical axes.

    The bias has the kernel's trailing `len(bias_axes)` dimensions (the output features).
    """

    equation: str
    kernel_shape: tuple[int, ...]
    kernel_axes: tuple[str | None, ...]
    bias_axes: tuple[str | None, ...]
    stddev: float
    dtype: jnp.dtype

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        kernel = self.param("kernel", _normal(self.stddev, self.kernel_axes), self.kernel_shape, jnp.float32)
        bias = self.param("bias", _zeros(self.bias_axes), self.kernel_shape[-len(self.bias_axes):],
                          jnp.float32)
        return jnp.einsum(self.equation, x.astype(self.dtype), kernel.astype(self.dtype)) + bias.astype(self.dtype)


def rotary(x: jax.Array, positions: jax.Array) -> jax.Array:
    """Rotary position embedding (RoFormer) of x [B, T, H, K] at positions int32[B, T]."""
    half = x.shape[-1] // 2
    inv_freq = 1.0 / (10_000.0 ** (jnp.arange(half, dtype=jnp.float32) / half))  # (K/2,)
    angles = positions[:, :, None, None].astype(jnp.float32) * inv_freq  # (B, T, 1, K/2)
    sin, cos = jnp.sin(angles), jnp.cos(angles)
    x1, x2 = jnp.split(x.astype(jnp.float32), 2, axis=-1)
    return jnp.concatenate([x1 * cos - x2 * sin, x2 * cos + x1 * sin], axis=-1).astype(x.dtype)


def attention_implementation(config: GPTConfig) -> str | None:
    """cuDNN flash attention on GPU in 16-bit floats (what it supports), XLA otherwise."""
    if config.attention != "auto":
        return config.attention
    if jax.default_backend() == "gpu" and config.dtype in ("bfloat16", "float16"):
        return "cudnn"
    return "xla"


class CausalSelfAttention(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array, positions: jax.Array, layer_cache: dict[str, jax.Array] | None,
                 cache_index: jax.Array | None, mask: jax.Array | None):
        """x [B, T, D] -> ([B, T, D], updated layer cache or None); mask bool[B, 1, T, S] or None."""
        cfg = self.config
        residual_std = 0.02 / math.sqrt(2 * cfg.n_layers)  # GPT-2: scale residual projections
        dtype, heads, head_dim = cfg.compute_dtype, cfg.n_heads, cfg.head_dim
        qkv = Projection("BTD,DSHK->BTSHK", (cfg.d_model, 3, heads, head_dim), ("embed", None, "heads", None),
                         (None, "heads", None), 0.02, dtype, name="qkv")(x)  # (B, T, 3, H, K)
        q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, T, H, K) each
        if cfg.positional == "rotary":
            q, k = rotary(q, positions), rotary(k, positions)
        new_cache = None
        if layer_cache is not None:
            index = (0, cache_index, 0, 0)
            k = jax.lax.dynamic_update_slice(layer_cache["k"], k.astype(layer_cache["k"].dtype), index)
            v = jax.lax.dynamic_update_slice(layer_cache["v"], v.astype(layer_cache["v"].dtype), index)
            new_cache = {"k": k, "v": v}  # (B, S, H, K)
            k, v = k.astype(q.dtype), v.astype(q.dtype)
        y = jax.nn.dot_product_attention(
            q, k, v, mask=mask, is_causal=mask is None,
            implementation=attention_implementation(cfg) if mask is None else None)  # (B, T, H, K)
        y = Projection("BTHK,HKD->BTD", (heads, head_dim, cfg.d_model), ("heads", None, "embed"),
                       ("embed",), residual_std, dtype, name="out")(y)  # (B, T, D)
        return y, new_cache


class MLP(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, T, D] -> [B, T, D] through a GELU hidden layer of width F."""
        cfg = self.config
        h = Projection("BTD,DF->BTF", (cfg.d_model, cfg.d_ff), ("embed", "mlp"), ("mlp",), 0.02,
                       cfg.compute_dtype, name="fc")(x)  # (B, T, F)
        h = nn.with_logical_constraint(h, ("batch", "length", "mlp"))
        h = jax.nn.gelu(h, approximate=True)  # GPT-2's tanh GELU
        return Projection("BTF,FD->BTD", (cfg.d_ff, cfg.d_model), ("mlp", "embed"), ("embed",),
                          0.02 / math.sqrt(2 * cfg.n_layers), cfg.compute_dtype, name="proj")(h)  # (B, T, D)


class Block(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(self, x, positions, layer_cache, cache_index, mask):
        """Pre-LN residual block: x [B, T, D] -> ([B, T, D], updated layer cache or None)."""
        dtype = self.config.compute_dtype
        y, new_cache = CausalSelfAttention(self.config, name="attn")(
            _layer_norm(dtype, "ln_attn")(x), positions, layer_cache, cache_index, mask)
        x = nn.with_logical_constraint(x + y, ("batch", "length", "embed"))
        x = x + MLP(self.config, name="mlp")(_layer_norm(dtype, "ln_mlp")(x))
        return nn.with_logical_constraint(x, ("batch", "length", "embed")), new_cache


class GPT(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(self, tokens: jax.Array, positions: jax.Array | None = None,
                 cache: Cache | None = None, cache_index: jax.Array | int | None = None,
                 kv_mask: jax.Array | None = None):
        """tokens int32[B, T] -> float32 logits [B, T, V], or (logits, new cache) given `cache`.

        See the module docstring for the cache arguments.
        """
        cfg = self.config
        batch, length = tokens.shape
        if cache is not None and cache_index is None:
            raise ValueError("GPT: a cache needs cache_index, the slot the first token is written to")
        offset = 0 if cache is None else cache_index
        if positions is None:
            positions = jnp.broadcast_to(offset + jnp.arange(length, dtype=jnp.int32), (batch, length))

        mask = None  # None: plain causal attention over [0, T) (the fast, flash-attention path)
        if cache is not None or kv_mask is not None:
            slots = cache[0]["k"].shape[1] if cache is not None else length
            query_slot = offset + jnp.arange(length)  # (T,)
            mask = jnp.arange(slots)[None, :] <= query_slot[:, None]  # (T, S)
            mask = mask[None, None]  # (1, 1, T, S)
            if kv_mask is not None:
                mask = mask & kv_mask[:, None, None, :]  # (B, 1, T, S)

        embed = nn.Embed(cfg.vocab_size, cfg.d_model, dtype=cfg.compute_dtype, param_dtype=jnp.float32,
                         embedding_init=_normal(0.02, ("vocab", "embed")), name="wte")
        x = embed(tokens)  # (B, T, D)
        if cfg.positional == "learned":
            x = x + nn.Embed(cfg.max_len, cfg.d_model, dtype=cfg.compute_dtype,
                             param_dtype=jnp.float32, embedding_init=_normal(0.02, (None, "embed")),
                             name="wpe")(positions)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))

        block = nn.remat(Block, prevent_cse=True) if cfg.remat else Block
        new_cache = []
        for i in range(cfg.n_layers):
            x, layer_cache = block(cfg, name=f"block_{i}")(
                x, positions, None if cache is None else cache[i], cache_index, mask)
            new_cache.append(layer_cache)
        x = _layer_norm(cfg.compute_dtype, "ln_f")(x)
        if cfg.tie_embeddings:
            logits = embed.attend(x)  # (B, T, V)
        else:
            kernel = self.param("head", _normal(0.02, ("embed", "vocab")), (cfg.d_model, cfg.vocab_size),
                                jnp.float32)
            logits = jnp.einsum("BTD,DV->BTV", x, kernel.astype(cfg.compute_dtype))
        logits = nn.with_logical_constraint(logits, ("batch", "length", "vocab")).astype(jnp.float32)
        return logits if cache is None else (logits, new_cache)
