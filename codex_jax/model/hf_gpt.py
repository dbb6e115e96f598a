"""GPT-2, GPT-NeoX and GPTBigCode checkpoints as `codex_jax.model.GPT`, in and out (GPT-2's
layout only, for learned-position models); `codex_jax.model.hf` dispatches here by model_type.

    family       positions            attention            block                  GELU
    gpt2         learned              H key/value heads    sequential             tanh (gelu_new)
    gpt_neox     rotary on a fraction H key/value heads    parallel or sequential exact or tanh
    gpt_bigcode  learned              1 (multi-query) or H sequential             tanh

Weight layouts: GPT-2's Conv1D stores [in, out] (our kernels, flattened); GPT-NeoX's and
GPTBigCode's Linear store [out, in]; their fused query/key/value output is ordered (head, q|k|v,
dim), GPT-2's (q|k|v, head, dim), multi-query GPTBigCode's [q (D) | k (K) | v (K)].
"""

from collections.abc import Callable
from typing import Any

import numpy as np

from codex_jax.model import transformer as model_lib

FAMILIES = ("gpt2", "gpt_neox", "gpt_bigcode")
GELU = {"gelu_new": "tanh", "gelu_pytorch_tanh": "tanh", "gelu": "exact"}
GPT2_PREFIX = "transformer."


def _get(hf: dict[str, Any], *names: str, default: Any = None) -> Any:
    """The first of `names` set in the HF config (the families renamed fields over time)."""
    return next((hf[n] for n in names if hf.get(n) is not None), default)


def _require(condition: bool, hf: dict[str, Any], field: str, expected: str) -> None:
    if not condition:
        raise ValueError(
            f"config.json ({hf.get('model_type')}): {field} = {hf.get(field)!r} is not "
            f"supported; expected {expected}"
        )


def config_from_hf(hf: dict[str, Any]) -> model_lib.GPTConfig:
    """The GPTConfig of a HF config.json (float32 compute)."""
    family = hf["model_type"]
    activation = _get(hf, "activation_function", "hidden_act")
    _require(
        activation in GELU,
        hf,
        "activation_function" if family != "gpt_neox" else "hidden_act",
        f"one of {tuple(GELU)}",
    )
    d_model = _get(hf, "n_embd", "hidden_size")
    common = dict(
        vocab_size=hf["vocab_size"],
        n_layers=_get(hf, "n_layer", "num_hidden_layers"),
        d_model=d_model,
        n_heads=_get(hf, "n_head", "num_attention_heads"),
        d_ff=_get(hf, "n_inner", "intermediate_size", default=4 * d_model),
        max_len=_get(hf, "n_positions", "max_position_embeddings"),
        gelu=GELU[activation],
        layer_norm_epsilon=_get(hf, "layer_norm_epsilon", "layer_norm_eps"),
        tie_embeddings=hf.get("tie_word_embeddings", family != "gpt_neox"),
    )
    if family == "gpt_neox":
        rope = hf.get("rope_parameters") or hf.get("rope_scaling") or {}
        _require(
            rope.get("rope_type", "default") == "default",
            hf,
            "rope_parameters",
            "rope_type 'default'",
        )
        return model_lib.GPTConfig(
            **common,
            positional="rotary",
            parallel_residual=hf.get("use_parallel_residual", True),
            rotary_fraction=_get(rope, "partial_rotary_factor", default=hf.get("rotary_pct", 0.25)),
            rotary_base=_get(rope, "rope_theta", default=hf.get("rotary_emb_base", 10_000.0)),
        )
    _require(hf.get("scale_attn_weights", True), hf, "scale_attn_weights", "true")
    _require(
        not hf.get("scale_attn_by_inverse_layer_idx"),
        hf,
        "scale_attn_by_inverse_layer_idx",
        "false",
    )
    multi_query = family == "gpt_bigcode" and hf.get("multi_query", True)
    return model_lib.GPTConfig(**common, n_kv_heads=1 if multi_query else 0)


def _layer_norm(get: Callable[[str], np.ndarray], name: str) -> dict[str, np.ndarray]:
    return {"scale": get(name + ".weight"), "bias": get(name + ".bias")}


def _dense(get, name: str, kernel_shape: tuple[int, ...], transpose: bool) -> dict[str, np.ndarray]:
    """A projection from weight [in, out] (Conv1D) or [out, in] (Linear, `transpose`)."""
    weight = get(name + ".weight")
    weight = weight.T if transpose else weight
    bias = get(name + ".bias")
    return {"kernel": weight.reshape(kernel_shape), "bias": bias.reshape(kernel_shape[-1:])}


def _attention(get, name: str, cfg: model_lib.GPTConfig, family: str) -> dict[str, Any]:
    """The fused query/key/value projection as our qkv [D, 3, H, K] (or q and kv)."""
    d, h, k = cfg.d_model, cfg.n_heads, cfg.head_dim
    weight, bias = get(name + ".weight"), get(name + ".bias")
    if family == "gpt2":  # Conv1D [D, 3D], outputs (3, H, K)
        return {"qkv": {"kernel": weight.reshape(d, 3, h, k), "bias": bias.reshape(3, h, k)}}
    weight = weight.T  # Linear [out, D] -> [D, out]
    if cfg.kv_heads == 1:  # multi-query GPTBigCode: outputs [q (D) | k (K) | v (K)]
        return {
            "q": {"kernel": weight[:, :d].reshape(d, h, k), "bias": bias[:d].reshape(h, k)},
            "kv": {"kernel": weight[:, d:].reshape(d, 2, 1, k), "bias": bias[d:].reshape(2, 1, k)},
        }
    # outputs (H, 3, K)
    return {
        "qkv": {
            "kernel": weight.reshape(d, h, 3, k).transpose(0, 2, 1, 3),
            "bias": bias.reshape(h, 3, k).transpose(1, 0, 2),
        }
    }


def params_from_hf(
    cfg: model_lib.GPTConfig, family: str, weights: dict[str, np.ndarray]
) -> dict[str, Any]:
    """Our parameter tree (float32 numpy) from a checkpoint's tensors."""

    def get(name: str) -> np.ndarray:
        # The original GPT-2 files lack the "transformer." prefix; transformers 5 names GPT-NeoX's
        # output layer lm_head in memory, embed_out on disk.
        for key in (name, name.removeprefix(GPT2_PREFIX), name.replace("embed_out.", "lm_head.")):
            if key in weights:
                return weights[key]
        if name.endswith(".bias") and family == "gpt_neox":  # attention_bias = false
            return np.zeros(get(name.removesuffix(".bias") + ".weight").shape[0], np.float32)
        raise KeyError(f"checkpoint ({family}): no tensor named {name!r}")

    d, f, h, k = cfg.d_model, cfg.d_ff, cfg.n_heads, cfg.head_dim
    linear = family != "gpt2"
    if family == "gpt_neox":
        root, layer, names = (
            "gpt_neox.",
            "gpt_neox.layers.",
            dict(
                wte="embed_in",
                ln_attn="input_layernorm",
                ln_mlp="post_attention_layernorm",
                qkv="attention.query_key_value",
                out="attention.dense",
                fc="mlp.dense_h_to_4h",
                proj="mlp.dense_4h_to_h",
                ln_f="final_layer_norm",
                head="embed_out",
            ),
        )
    else:
        root, layer, names = (
            GPT2_PREFIX,
            GPT2_PREFIX + "h.",
            dict(
                wte="wte",
                wpe="wpe",
                ln_attn="ln_1",
                ln_mlp="ln_2",
                qkv="attn.c_attn",
                out="attn.c_proj",
                fc="mlp.c_fc",
                proj="mlp.c_proj",
                ln_f="ln_f",
                head="lm_head",
            ),
        )
    params: dict[str, Any] = {
        "wte": {"embedding": get(root + names["wte"] + ".weight")},
        "ln_f": _layer_norm(get, root + names["ln_f"]),
    }
    if cfg.positional == "learned":
        params["wpe"] = {"embedding": get(root + names["wpe"] + ".weight")}
    if not cfg.tie_embeddings:
        params["head"] = get(names["head"] + ".weight").T
    for i in range(cfg.n_layers):
        prefix = f"{layer}{i}."
        params[f"block_{i}"] = {
            "ln_attn": _layer_norm(get, prefix + names["ln_attn"]),
            "ln_mlp": _layer_norm(get, prefix + names["ln_mlp"]),
            "attn": {
                **_attention(get, prefix + names["qkv"], cfg, family),
                "out": _dense(get, prefix + names["out"], (h, k, d), linear),
            },
            "mlp": {
                "fc": _dense(get, prefix + names["fc"], (d, f), linear),
                "proj": _dense(get, prefix + names["proj"], (f, d), linear),
            },
        }
    return params


def to_hf(cfg: model_lib.GPTConfig, p: Any) -> tuple[dict[str, Any], dict[str, np.ndarray]]:
    """(config.json, tensors) of a learned-position model in GPT-2's layout."""
    unsupported = {
        "n_kv_heads": cfg.kv_heads != cfg.n_heads,
        "parallel_residual": cfg.parallel_residual,
        "gelu": cfg.gelu != "tanh",
        "norm": cfg.norm != "layernorm",
        "mlp": cfg.mlp != "gelu",
        "qkv_bias/bias": not (cfg.qkv_bias and cfg.bias),
        "sliding_window": cfg.sliding_window > 0,
    }
    if any(unsupported.values()):
        raise ValueError(
            f"GPT-2 has no equivalent of GPTConfig fields "
            f"{[name for name, bad in unsupported.items() if bad]}"
        )
    d = cfg.d_model
    tensors = {
        "wte.weight": p["wte"]["embedding"],
        "wpe.weight": p["wpe"]["embedding"],
        "ln_f.weight": p["ln_f"]["scale"],
        "ln_f.bias": p["ln_f"]["bias"],
    }
    for i in range(cfg.n_layers):
        block, prefix = p[f"block_{i}"], f"h.{i}."
        for ours, theirs in (("ln_attn", "ln_1"), ("ln_mlp", "ln_2")):
            tensors[prefix + theirs + ".weight"] = block[ours]["scale"]
            tensors[prefix + theirs + ".bias"] = block[ours]["bias"]
        for ours, theirs, inputs in (
            (block["attn"]["qkv"], "attn.c_attn", d),
            (block["attn"]["out"], "attn.c_proj", d),
            (block["mlp"]["fc"], "mlp.c_fc", d),
            (block["mlp"]["proj"], "mlp.c_proj", cfg.d_ff),
        ):
            tensors[prefix + theirs + ".weight"] = ours["kernel"].reshape(inputs, -1)  # Conv1D
            tensors[prefix + theirs + ".bias"] = ours["bias"].reshape(-1)
    tensors = {GPT2_PREFIX + name: tensor for name, tensor in tensors.items()}
    if not cfg.tie_embeddings:
        tensors["lm_head.weight"] = p["head"].T
    hf = {
        "model_type": "gpt2",
        "architectures": ["GPT2LMHeadModel"],
        "vocab_size": cfg.vocab_size,
        "n_positions": cfg.max_len,
        "n_embd": d,
        "n_layer": cfg.n_layers,
        "n_head": cfg.n_heads,
        "n_inner": cfg.d_ff,
        "activation_function": "gelu_new",
        "layer_norm_epsilon": cfg.layer_norm_epsilon,
        "tie_word_embeddings": cfg.tie_embeddings,
    }
    return hf, tensors
