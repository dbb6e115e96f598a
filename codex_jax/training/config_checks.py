"""Every config field the trainer reads, checked before anything is built or compiled: a bad
value fails with one line naming `config.<section>.<field>` and what was expected."""

import importlib.util
from typing import Any

import jax
import ml_collections

from codex_jax.model import transformer
from codex_jax.training import sharding


def _check(condition: bool, field: str, value: Any, expected: str) -> None:
    if not condition:
        raise ValueError(f"config.{field}={value!r}: expected {expected}")


def validate_config(config: ml_collections.ConfigDict, n_devices: int | None = None) -> None:
    """Raises ValueError naming the field when the config cannot train (before any compile)."""
    m, t, c = config.model, config.train, config.checkpoint
    for field in ("n_layers", "d_model", "n_heads", "d_ff", "max_len"):
        _check(
            isinstance(m[field], int) and m[field] > 0, f"model.{field}", m[field], "a positive int"
        )
    _check(
        m.d_model % m.n_heads == 0, "model.d_model", m.d_model, f"a multiple of n_heads={m.n_heads}"
    )
    _check(
        m.positional in transformer.POSITIONAL,
        "model.positional",
        m.positional,
        f"one of {transformer.POSITIONAL}",
    )
    _check(
        m.positional != "rotary" or (m.d_model // m.n_heads) % 2 == 0,
        "model.d_model",
        m.d_model,
        "an even head dim (d_model / n_heads) for rotary positions",
    )
    _check(m.dtype in transformer.DTYPES, "model.dtype", m.dtype, f"one of {transformer.DTYPES}")
    _check(
        m.attention in transformer.ATTENTION,
        "model.attention",
        m.attention,
        f"one of {transformer.ATTENTION}",
    )
    for field, default, allowed in (
        ("norm", "layernorm", transformer.NORMS),
        ("mlp", "gelu", transformer.MLPS),
    ):
        _check(
            m.get(field, default) in allowed, f"model.{field}", m.get(field), f"one of {allowed}"
        )
    _check(
        m.get("gelu", "tanh") in transformer.GELU,
        "model.gelu",
        m.get("gelu"),
        f"one of {transformer.GELU}",
    )
    kv_heads = m.get("n_kv_heads", 0)
    _check(
        isinstance(kv_heads, int) and kv_heads >= 0 and m.n_heads % (kv_heads or m.n_heads) == 0,
        "model.n_kv_heads",
        kv_heads,
        f"0 (= n_heads) or a divisor of n_heads={m.n_heads}",
    )
    _check(
        0 < m.get("rotary_fraction", 1.0) <= 1,
        "model.rotary_fraction",
        m.get("rotary_fraction"),
        "in (0, 1]",
    )
    imported = bool(config.get("init", {}).get("hf_checkpoint"))
    _check(
        isinstance(t.steps, int) and (t.steps >= 0 if imported else t.steps > 0),
        "train.steps",
        t.steps,
        "an int >= 0 (0: the imported model as it is)" if imported else "a positive int",
    )
    for field in ("batch_size", "seq_len", "grad_accum", "log_every", "eval_every"):
        _check(
            isinstance(t[field], int) and t[field] > 0, f"train.{field}", t[field], "a positive int"
        )
    _check(t.seq_len <= m.max_len, "train.seq_len", t.seq_len, f"<= model.max_len={m.max_len}")
    _check(t.lr > 0, "train.lr", t.lr, "> 0")
    _check(t.get("budget_s", 0) >= 0, "train.budget_s", t.get("budget_s"), ">= 0 (0 = off)")
    _check(
        0 <= t.warmup_steps < t.steps or (t.steps == 0 and imported),
        "train.warmup_steps",
        t.warmup_steps,
        f"in [0, steps={t.steps}): the cosine decay needs a step after warmup",
    )
    _check(t.weight_decay >= 0, "train.weight_decay", t.weight_decay, ">= 0")
    _check(t.grad_clip >= 0, "train.grad_clip", t.grad_clip, ">= 0 (0 = no clipping)")
    _check(t.eval_batches >= 0, "train.eval_batches", t.eval_batches, ">= 0")
    _check(
        t.batch_size % t.grad_accum == 0,
        "train.batch_size",
        t.batch_size,
        f"a multiple of train.grad_accum={t.grad_accum}",
    )
    _check(
        t.batch_size % jax.process_count() == 0,
        "train.batch_size",
        t.batch_size,
        f"a multiple of the {jax.process_count()} processes",
    )
    _check(
        not t.get("tensorboard") or importlib.util.find_spec("tensorboardX") is not None,
        "train.tensorboard",
        t.get("tensorboard"),
        "False, or `pip install tensorboardX` first",
    )
    _check(c.every_steps > 0, "checkpoint.every_steps", c.every_steps, "a positive int")
    _check(c.keep > 0, "checkpoint.keep", c.keep, "a positive int")
    mesh_shape = sharding.mesh_shape(config.mesh, n_devices or jax.device_count())
    shards = sharding.batch_shards(
        dict(zip(sharding.MESH_AXES, mesh_shape)), sharding.rules_from_config(config.mesh)
    )
    _check(
        (t.batch_size // t.grad_accum) % shards == 0,
        "train.batch_size",
        t.batch_size,
        f"batch_size / grad_accum divisible by the {shards} batch shards of mesh {mesh_shape}",
    )
