"""Decoder-only GPT (GPT-2/3, Codex): pre-norm blocks, causal multi-head attention, an MLP.

Einsum letters, used in shape comments throughout:
    B batch, T query length, S key/value length (cache slots), D d_model, H heads,
    K head dim (D // H), N key/value heads (H by default), G query heads per key/value head
    (H // N), F d_ff, V vocabulary, L layers.

The architecture is a set of fields, one per choice, so that one model holds GPT-2, GPT-NeoX,
GPTBigCode, Llama, Mistral, Qwen2 and StarCoder2 (`codex_jax.model.hf`; the defaults are GPT-2's):
    norm               layernorm (with bias) | rmsnorm (Llama)
    mlp                gelu (fc -> GELU -> proj) | swiglu (proj(silu(gate) * fc), Llama)
    qkv_bias, bias     biases of the query/key/value projections; of the others (out, MLP)
    n_kv_heads         multi-query / grouped-query attention (GPTBigCode, Llama)
    parallel_residual  attention and MLP side by side (GPT-NeoX)
    positional         learned | rotary, with rotary_fraction, rotary_base, rotary_scaling
    sliding_window     attend to the last W positions only (Mistral, StarCoder2); 0 = all
    gelu, norm_epsilon, tie_embeddings

Parameters are float32; activations are computed in `GPTConfig.dtype` (bfloat16 on
accelerators), logits are returned in float32. Every parameter carries logical axis names
(`batch`, `length`, `embed`, `mlp`, `heads`, `vocab`) and nothing else: `codex_jax.training.sharding`
alone maps them onto a device mesh.

Two ways to run the model, one code path:

Training / scoring (no cache):
    logits = GPT(cfg).apply({"params": params}, tokens)        # tokens int32[B, T] -> f32[B, T, V]

Incremental decoding with a KV cache (the sampler):
    cache = init_cache(cfg, batch_size=B, cache_len=S, dtype=jnp.float32)
    logits, cache = GPT(cfg).apply({"params": params}, tokens, positions=positions,
                                   cache=cache, cache_index=i, kv_mask=kv_mask)
  - `cache`: a list with one {"k", "v"} dict per layer, each [B, N, S, K] (`init_cache`); heads
    before slots so that decode attention reads the cache without transposing it.
  - `tokens` int32[B, T] are written into cache slots i .. i+T-1 (`cache_index` = i, a scalar
    int, may be traced); T = prompt length for the prefill, 1 per decode step.
  - `positions` int32[B, T]: the position of each token within its own row, so a left-padded
    prompt's first real token has position 0 (learned or rotary positions read it).
    Default: i + arange(T) for every row.
  - `kv_mask` bool[B, S]: False marks slots that hold padding; default all True.
  - A query in slot i+t attends to slots s <= i+t with kv_mask[b, s] True.
  - Returns float32 logits [B, T, V] and the updated cache (same structure and shapes).
"""

import dataclasses
import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from codex_jax.model.layers import (
    PROJECTIONS,
    Projection,
    cached_attention,
    kernel_param,
    normal_init,
    project,
    rotary,
    rotary_frequencies,
    zeros_init,
)

Cache = list[dict[str, jax.Array]]

POSITIONAL = ("learned", "rotary")
NORMS = ("layernorm", "rmsnorm")
MLPS = ("gelu", "swiglu")
DTYPES = ("float32", "bfloat16", "float16")
GELU = ("tanh", "exact")
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
    n_kv_heads: int = 0  # key/value heads, dividing n_heads: 0 = n_heads, 1 = multi-query attention
    parallel_residual: bool = (
        False  # x + attn(ln(x)) + mlp(ln(x)) (GPT-NeoX); else one after the other
    )
    rotary_fraction: float = 1.0  # the leading share of each head's dimensions that rotary rotates
    rotary_base: float = 10_000.0  # rotary: the wavelengths grow geometrically up to 2 pi * base
    rotary_scaling: tuple = ()  # () or a checkpoint's scaling (`layers.rotary_frequencies`)
    gelu: str = "tanh"  # "tanh" approximation (GPT-2's gelu_new) or "exact" (erf, GPT-NeoX)
    layer_norm_epsilon: float = 1e-5  # the norms' epsilon (LayerNorm or RMSNorm)
    norm: str = "layernorm"  # "layernorm" (scale and bias) or "rmsnorm" (scale only, Llama)
    mlp: str = "gelu"  # "gelu": proj(gelu(fc(x))); "swiglu": proj(silu(gate(x)) * fc(x))
    qkv_bias: bool = True  # biases on the query, key and value projections
    bias: bool = True  # biases on the attention output and MLP projections
    sliding_window: int = 0  # each query sees the last `sliding_window` positions; 0: all
    out_first_kernels: bool = (
        False  # kernels stored output axes first, the left matmul operand (`project`)
    )

    @classmethod
    def from_config(cls, model_config: Any, vocab_size: int) -> "GPTConfig":
        """Builds from `config.model` (ml_collections); `vocab_size` comes from the data meta."""
        fields = {f.name for f in dataclasses.fields(cls)} - {"vocab_size"}
        values = {name: model_config[name] for name in fields if name in model_config}
        if "rotary_scaling" in values:  # a list once the config has been through JSON
            values["rotary_scaling"] = tuple(values["rotary_scaling"])
        return cls(vocab_size=int(vocab_size), **values)

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    @property
    def kv_heads(self) -> int:
        return self.n_kv_heads or self.n_heads

    @property
    def compute_dtype(self) -> jnp.dtype:
        return jnp.dtype(self.dtype)


def init_cache(
    config: GPTConfig, batch_size: int, cache_len: int, dtype: Any = jnp.float32
) -> Cache:
    """Zeroed KV cache: per layer {"k", "v"} of [batch_size, N, cache_len, K] in `dtype`."""
    shape = (batch_size, config.kv_heads, cache_len, config.head_dim)
    return [
        {"k": jnp.zeros(shape, dtype), "v": jnp.zeros(shape, dtype)} for _ in range(config.n_layers)
    ]


def _layer_norm(config: GPTConfig, name: str) -> nn.Module:
    if config.norm == "rmsnorm":
        return nn.RMSNorm(
            epsilon=config.layer_norm_epsilon,
            dtype=config.compute_dtype,
            param_dtype=jnp.float32,
            name=name,
            scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",)),
        )
    return nn.LayerNorm(
        epsilon=config.layer_norm_epsilon,
        dtype=config.compute_dtype,
        param_dtype=jnp.float32,
        name=name,
        scale_init=nn.with_logical_partitioning(nn.initializers.ones_init(), ("embed",)),
        bias_init=zeros_init(("embed",)),
    )


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
    def __call__(
        self,
        x: jax.Array,
        positions: jax.Array,
        layer_cache: dict[str, jax.Array] | None,
        cache_index: jax.Array | None,
        mask: jax.Array | None,
    ):
        """x [B, T, D] -> ([B, T, D], updated layer cache or None); mask bool[B, 1, T, S] or None."""
        cfg = self.config
        residual_std = 0.02 / math.sqrt(2 * cfg.n_layers)  # GPT-2: scale residual projections
        dtype, heads, head_dim = cfg.compute_dtype, cfg.n_heads, cfg.head_dim
        if cfg.kv_heads == heads:
            qkv = Projection(
                (cfg.d_model, 3, heads, head_dim),
                ("embed", None, "heads", None),
                (None, "heads", None),
                0.02,
                dtype,
                cfg.out_first_kernels,
                cfg.qkv_bias,
                name="qkv",
            )(x)  # (B, T, 3, H, K)
            q, k, v = qkv[:, :, 0], qkv[:, :, 1], qkv[:, :, 2]  # (B, T, H, K) each
        else:  # fewer key/value heads: their own projection
            q = Projection(
                (cfg.d_model, heads, head_dim),
                ("embed", "heads", None),
                ("heads", None),
                0.02,
                dtype,
                cfg.out_first_kernels,
                cfg.qkv_bias,
                name="q",
            )(x)  # (B, T, H, K)
            kv = Projection(
                (cfg.d_model, 2, cfg.kv_heads, head_dim),
                ("embed", None, None, None),
                (None, None, None),
                0.02,
                dtype,
                cfg.out_first_kernels,
                cfg.qkv_bias,
                name="kv",
            )(x)  # (B, T, 2, N, K)
            k, v = kv[:, :, 0], kv[:, :, 1]  # (B, T, N, K) each
        if cfg.positional == "rotary":
            inv_freq = rotary_frequencies(
                int(head_dim * cfg.rotary_fraction), cfg.rotary_base, cfg.rotary_scaling
            )
            q, k = (rotary(t, positions, inv_freq, cfg.rotary_fraction) for t in (q, k))
        if layer_cache is None:
            new_cache = None
            y = jax.nn.dot_product_attention(
                q,
                k,
                v,
                mask=mask,
                is_causal=mask is None,
                implementation=attention_implementation(cfg) if mask is None else None,
                local_window_size=(cfg.sliding_window - 1, 0) if cfg.sliding_window else None,
            )  # (B, T, H, K)
        else:
            index = (0, 0, cache_index, 0)
            new_cache = {
                name: jax.lax.dynamic_update_slice(
                    layer_cache[name],
                    x.transpose(0, 2, 1, 3).astype(layer_cache[name].dtype),
                    index,
                )
                for name, x in (("k", k), ("v", v))
            }  # (B, N, S, K)
            y = cached_attention(q, new_cache["k"], new_cache["v"], mask)  # (B, T, H, K)
        y = Projection(
            (heads, head_dim, cfg.d_model),
            ("heads", None, "embed"),
            ("embed",),
            residual_std,
            dtype,
            cfg.out_first_kernels,
            cfg.bias,
            name="out",
        )(y)  # (B, T, D)
        return y, new_cache


class MLP(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """x [B, T, D] -> [B, T, D] through a hidden layer of width F (GELU or SwiGLU)."""
        cfg = self.config

        def hidden(name: str) -> jax.Array:
            h = Projection(
                (cfg.d_model, cfg.d_ff),
                ("embed", "mlp"),
                ("mlp",),
                0.02,
                cfg.compute_dtype,
                cfg.out_first_kernels,
                cfg.bias,
                name=name,
            )(x)  # (B, T, F)
            return nn.with_logical_constraint(h, ("batch", "length", "mlp"))

        if cfg.mlp == "swiglu":
            h = jax.nn.silu(hidden("gate")) * hidden("fc")
        else:
            h = jax.nn.gelu(hidden("fc"), approximate=cfg.gelu == "tanh")
        return Projection(
            (cfg.d_ff, cfg.d_model),
            ("mlp", "embed"),
            ("embed",),
            0.02 / math.sqrt(2 * cfg.n_layers),
            cfg.compute_dtype,
            cfg.out_first_kernels,
            cfg.bias,
            name="proj",
        )(h)  # (B, T, D)


class Block(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(self, x, positions, layer_cache, cache_index, mask):
        """Pre-LN residual block: x [B, T, D] -> ([B, T, D], updated layer cache or None)."""
        cfg = self.config
        y, new_cache = CausalSelfAttention(cfg, name="attn")(
            _layer_norm(cfg, "ln_attn")(x), positions, layer_cache, cache_index, mask
        )
        mlp_input = x if cfg.parallel_residual else x + y
        x = nn.with_logical_constraint(x + y, ("batch", "length", "embed"))
        x = x + MLP(cfg, name="mlp")(_layer_norm(cfg, "ln_mlp")(mlp_input))
        return nn.with_logical_constraint(x, ("batch", "length", "embed")), new_cache


class GPT(nn.Module):
    config: GPTConfig

    @nn.compact
    def __call__(
        self,
        tokens: jax.Array,
        positions: jax.Array | None = None,
        cache: Cache | None = None,
        cache_index: jax.Array | int | None = None,
        kv_mask: jax.Array | None = None,
    ):
        """tokens int32[B, T] -> float32 logits [B, T, V], or (logits, new cache) given `cache`.

        See the module docstring for the cache arguments.
        """
        cfg = self.config
        batch, length = tokens.shape
        if cache is not None and cache_index is None:
            raise ValueError(
                "GPT: a cache needs cache_index, the slot the first token is written to"
            )
        offset = 0 if cache is None else cache_index
        if positions is None:
            positions = jnp.broadcast_to(
                offset + jnp.arange(length, dtype=jnp.int32), (batch, length)
            )

        mask = None  # None: plain causal attention over [0, T) (the fast, flash-attention path)
        if cache is not None or kv_mask is not None:
            slots = cache[0]["k"].shape[2] if cache is not None else length
            query_slot = offset + jnp.arange(length)  # (T,)
            mask = jnp.arange(slots)[None, :] <= query_slot[:, None]  # (T, S)
            if cfg.sliding_window:
                mask &= jnp.arange(slots)[None, :] > query_slot[:, None] - cfg.sliding_window
            mask = mask[None, None]  # (1, 1, T, S)
            if kv_mask is not None:
                mask = mask & kv_mask[:, None, None, :]  # (B, 1, T, S)

        embed = nn.Embed(
            cfg.vocab_size,
            cfg.d_model,
            dtype=cfg.compute_dtype,
            param_dtype=jnp.float32,
            embedding_init=normal_init(0.02, ("vocab", "embed")),
            name="wte",
        )
        x = embed(tokens)  # (B, T, D)
        if cfg.positional == "learned":
            x = x + nn.Embed(
                cfg.max_len,
                cfg.d_model,
                dtype=cfg.compute_dtype,
                param_dtype=jnp.float32,
                embedding_init=normal_init(0.02, (None, "embed")),
                name="wpe",
            )(positions)
        x = nn.with_logical_constraint(x, ("batch", "length", "embed"))

        block = nn.remat(Block, prevent_cse=True) if cfg.remat else Block
        new_cache = []
        for i in range(cfg.n_layers):
            x, layer_cache = block(cfg, name=f"block_{i}")(
                x, positions, None if cache is None else cache[i], cache_index, mask
            )
            new_cache.append(layer_cache)
        x = _layer_norm(cfg, "ln_f")(x)
        if cfg.tie_embeddings:  # the embedding [V, D] is the kernel, output axes first already
            equation, kernel = "BTD,VD->BTV", embed.embedding
        else:
            equation = PROJECTIONS["head"]
            kernel = kernel_param(
                self,
                "head",
                equation,
                (cfg.d_model, cfg.vocab_size),
                ("embed", "vocab"),
                0.02,
                cfg.out_first_kernels,
            )
        dtype = cfg.compute_dtype
        logits = project(
            equation, x.astype(dtype), kernel.astype(dtype), cfg.out_first_kernels
        )  # (B, T, V)
        logits = nn.with_logical_constraint(logits, ("batch", "length", "vocab")).astype(
            jnp.float32
        )
        return logits if cache is None else (logits, new_cache)
