"""Llama, Mistral, Qwen2 and StarCoder2 checkpoints as `codex_jax.model.GPT`, in and out.

The four families share one layout (transformers' `model.layers.{i}.self_attn.q_proj`, ...,
Linear weights stored [out, in]) and differ by options of the one model:

    family      norm       MLP                         biases             other
    llama       RMSNorm    SwiGLU (gate_proj, up_proj)  none (or all)      rotary scaling
    mistral     RMSNorm    SwiGLU                       none               sliding window
    qwen2       RMSNorm    SwiGLU                       q, k, v only       -
    starcoder2  LayerNorm  GELU (c_fc, c_proj)          all (use_bias)     sliding window

All use rotary positions on the whole head (rotate_half), grouped-query attention and tied or
untied output layers. `codex_jax.model.hf` dispatches here by `model_type`.
"""

from typing import Any

import numpy as np

from codex_jax.model import transformer as model_lib

FAMILIES = ("llama", "mistral", "qwen2", "starcoder2")
ARCHITECTURES = {
    "llama": "LlamaForCausalLM",
    "mistral": "MistralForCausalLM",
    "qwen2": "Qwen2ForCausalLM",
    "starcoder2": "Starcoder2ForCausalLM",
}
GELU = {"gelu_pytorch_tanh": "tanh", "gelu_new": "tanh", "gelu": "exact"}


def _unsupported(hf: dict[str, Any], field: str, expected: str) -> ValueError:
    return ValueError(
        f"config.json ({hf.get('model_type')}): {field} = {hf.get(field)!r} is not supported; "
        f"expected {expected}"
    )


def _rotary_scaling(hf: dict[str, Any]) -> tuple:
    rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
    kind = rope.get("rope_type", rope.get("type", "default"))
    if kind == "default":
        return ()
    if kind == "linear":
        return ("linear", float(rope["factor"]))
    if kind == "llama3":
        return (
            "llama3",
            float(rope["factor"]),
            float(rope["low_freq_factor"]),
            float(rope["high_freq_factor"]),
            int(rope["original_max_position_embeddings"]),
        )
    raise _unsupported(hf, "rope_parameters", "rope_type 'default', 'linear' or 'llama3'")


def config_from_hf(hf: dict[str, Any]) -> model_lib.GPTConfig:
    """The GPTConfig of one of these families' config.json (float32 compute)."""
    family = hf["model_type"]
    d_model, heads = hf["hidden_size"], hf["num_attention_heads"]
    if hf.get("head_dim") not in (None, d_model // heads):
        raise _unsupported(
            hf, "head_dim", f"hidden_size / num_attention_heads = {d_model // heads}"
        )
    activation = hf.get("hidden_act", "silu")
    starcoder = family == "starcoder2"
    if activation not in (GELU if starcoder else ("silu",)):
        raise _unsupported(hf, "hidden_act", "gelu_pytorch_tanh" if starcoder else "silu")
    window = hf.get("sliding_window") if family in ("mistral", "starcoder2") else None
    if family == "qwen2" and hf.get("use_sliding_window"):
        raise _unsupported(hf, "use_sliding_window", "false (Qwen2's per-layer windows)")
    if family == "llama" and hf.get("attention_bias") != hf.get("mlp_bias", False):
        raise _unsupported(hf, "mlp_bias", f"equal to attention_bias ({hf.get('attention_bias')})")
    rope = hf.get("rope_parameters") or {}
    biases = {
        "llama": (bool(hf.get("attention_bias")), bool(hf.get("attention_bias"))),
        "mistral": (False, False),
        "qwen2": (True, False),
        "starcoder2": (hf.get("use_bias", True), hf.get("use_bias", True)),
    }[family]
    return model_lib.GPTConfig(
        vocab_size=hf["vocab_size"],
        n_layers=hf["num_hidden_layers"],
        d_model=d_model,
        n_heads=heads,
        d_ff=hf["intermediate_size"],
        max_len=hf["max_position_embeddings"],
        positional="rotary",
        tie_embeddings=hf.get("tie_word_embeddings", starcoder),
        n_kv_heads=hf.get("num_key_value_heads") or 0,
        rotary_base=float(rope.get("rope_theta", hf.get("rope_theta", 10_000.0))),
        rotary_scaling=_rotary_scaling(hf),
        gelu=GELU.get(activation, "tanh"),
        layer_norm_epsilon=hf["norm_epsilon"] if starcoder else hf["rms_norm_eps"],
        norm="layernorm" if starcoder else "rmsnorm",
        mlp="gelu" if starcoder else "swiglu",
        qkv_bias=biases[0],
        bias=biases[1],
        sliding_window=window or 0,
    )


def _mlp_names(cfg: model_lib.GPTConfig) -> dict[str, str]:
    """Our MLP projection -> the checkpoint's module."""
    if cfg.mlp == "swiglu":
        return {"gate": "mlp.gate_proj", "fc": "mlp.up_proj", "proj": "mlp.down_proj"}
    return {"fc": "mlp.c_fc", "proj": "mlp.c_proj"}


def params_from_hf(cfg: model_lib.GPTConfig, weights: dict[str, np.ndarray]) -> dict[str, Any]:
    """Our parameter tree (float32 numpy) from a checkpoint's tensors."""

    def get(name: str) -> np.ndarray:
        if name not in weights:
            raise KeyError(f"checkpoint: no tensor named {name!r}")
        return weights[name]

    def norm(name: str) -> dict[str, np.ndarray]:
        if cfg.norm == "rmsnorm":
            return {"scale": get(name + ".weight")}
        return {"scale": get(name + ".weight"), "bias": get(name + ".bias")}

    def linear(name: str, shape: tuple[int, ...], bias: bool, inputs: int = 1) -> dict[str, Any]:
        """A Linear [out, in] as our kernel of `shape`, its first `inputs` axes the input's."""
        out = {"kernel": get(name + ".weight").T.reshape(shape)}
        if bias:
            out["bias"] = get(name + ".bias").reshape(shape[inputs:])
        return out

    d, f, h, n, k = cfg.d_model, cfg.d_ff, cfg.n_heads, cfg.kv_heads, cfg.head_dim
    params: dict[str, Any] = {
        "wte": {"embedding": get("model.embed_tokens.weight")},
        "ln_f": norm("model.norm"),
    }
    if not cfg.tie_embeddings:
        params["head"] = get("lm_head.weight").T
    for i in range(cfg.n_layers):
        prefix = f"model.layers.{i}."
        q, key, v = (
            linear(prefix + f"self_attn.{p}_proj", (d, heads, k), cfg.qkv_bias)
            for p, heads in (("q", h), ("k", n), ("v", n))
        )
        if n == h:
            attention = {"qkv": {name: np.stack([q[name], key[name], v[name]], 1) for name in q}}
            if cfg.qkv_bias:
                attention["qkv"]["bias"] = np.stack([q["bias"], key["bias"], v["bias"]])
        else:
            attention = {"q": q, "kv": {"kernel": np.stack([key["kernel"], v["kernel"]], 1)}}
            if cfg.qkv_bias:
                attention["kv"]["bias"] = np.stack([key["bias"], v["bias"]])
        attention["out"] = linear(prefix + "self_attn.o_proj", (h, k, d), cfg.bias, inputs=2)
        mlp = {
            ours: linear(prefix + theirs, (f, d) if ours == "proj" else (d, f), cfg.bias)
            for ours, theirs in _mlp_names(cfg).items()
        }
        params[f"block_{i}"] = {
            "ln_attn": norm(prefix + "input_layernorm"),
            "ln_mlp": norm(prefix + "post_attention_layernorm"),
            "attn": attention,
            "mlp": mlp,
        }
    return params


def family_of(cfg: model_lib.GPTConfig) -> str:
    """The family that expresses `cfg` (for export).

    Raises:
        ValueError: none of the four does; the message names the fields.
    """
    checks = {
        "positional": cfg.positional == "rotary",
        "rotary_fraction": cfg.rotary_fraction == 1.0,
        "parallel_residual": not cfg.parallel_residual,
        "norm/mlp": (cfg.norm, cfg.mlp) in (("rmsnorm", "swiglu"), ("layernorm", "gelu")),
    }
    if cfg.mlp == "gelu":
        checks["qkv_bias/bias"] = cfg.qkv_bias == cfg.bias and cfg.gelu == "tanh"
        family = "starcoder2"
    elif cfg.sliding_window:
        checks["qkv_bias/bias"] = not cfg.qkv_bias and not cfg.bias
        family = "mistral"
    else:
        checks["qkv_bias/bias"] = cfg.qkv_bias or not cfg.bias
        family = "qwen2" if cfg.qkv_bias and not cfg.bias else "llama"
    bad = [name for name, ok in checks.items() if not ok]
    if bad:
        raise ValueError(f"no Llama-family checkpoint expresses GPTConfig fields {bad}")
    return family


def to_hf(cfg: model_lib.GPTConfig, params: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(config.json, tensors by name) of `cfg` and its params in its family's layout; the
    inverse of `config_from_hf` and `params_from_hf`."""
    family = family_of(cfg)
    d, h, k = cfg.d_model, cfg.n_heads, cfg.head_dim
    p = params
    tensors = {"model.embed_tokens.weight": p["wte"]["embedding"]}

    def norm(name: str, ours: dict[str, np.ndarray]) -> None:
        tensors[name + ".weight"] = ours["scale"]
        if "bias" in ours:
            tensors[name + ".bias"] = ours["bias"]

    def linear(name: str, ours: dict[str, np.ndarray], inputs: int) -> None:
        tensors[name + ".weight"] = ours["kernel"].reshape(inputs, -1).T
        if "bias" in ours:
            tensors[name + ".bias"] = ours["bias"].reshape(-1)

    norm("model.norm", p["ln_f"])
    if not cfg.tie_embeddings:
        tensors["lm_head.weight"] = p["head"].T
    for i in range(cfg.n_layers):
        block, prefix = p[f"block_{i}"], f"model.layers.{i}."
        attn = block["attn"]
        if "qkv" in attn:
            parts = [
                {n: v[:, j] if n == "kernel" else v[j] for n, v in attn["qkv"].items()}
                for j in range(3)
            ]
        else:
            kv = attn["kv"]
            parts = [attn["q"]] + [
                {n: v[:, j] if n == "kernel" else v[j] for n, v in kv.items()} for j in range(2)
            ]
        for name, part in zip("qkv", parts):
            linear(prefix + f"self_attn.{name}_proj", part, d)
        linear(prefix + "self_attn.o_proj", attn["out"], h * k)
        for ours, theirs in _mlp_names(cfg).items():
            linear(prefix + theirs, block["mlp"][ours], cfg.d_ff if ours == "proj" else d)
        norm(prefix + "input_layernorm", block["ln_attn"])
        norm(prefix + "post_attention_layernorm", block["ln_mlp"])
    hf: dict[str, Any] = {
        "model_type": family,
        "architectures": [ARCHITECTURES[family]],
        "vocab_size": cfg.vocab_size,
        "hidden_size": d,
        "intermediate_size": cfg.d_ff,
        "num_hidden_layers": cfg.n_layers,
        "num_attention_heads": h,
        "num_key_value_heads": cfg.kv_heads,
        "head_dim": k,
        "max_position_embeddings": cfg.max_len,
        "tie_word_embeddings": cfg.tie_embeddings,
        "rope_theta": cfg.rotary_base,
        "rope_scaling": _rope_scaling_json(cfg.rotary_scaling),
    }
    if family == "starcoder2":
        hf.update(
            hidden_act="gelu_pytorch_tanh", norm_epsilon=cfg.layer_norm_epsilon, use_bias=cfg.bias
        )
    else:
        hf.update(hidden_act="silu", rms_norm_eps=cfg.layer_norm_epsilon)
    if family == "llama":
        hf.update(attention_bias=cfg.bias, mlp_bias=cfg.bias)
    if family in ("mistral", "starcoder2"):
        hf["sliding_window"] = cfg.sliding_window or None
    return hf, tensors


def _rope_scaling_json(scaling: tuple) -> dict[str, Any] | None:
    if not scaling:
        return None
    if scaling[0] == "linear":
        return {"rope_type": "linear", "factor": scaling[1]}
    names = ("factor", "low_freq_factor", "high_freq_factor", "original_max_position_embeddings")
    return {"rope_type": scaling[0], **dict(zip(names, scaling[1:]))}
