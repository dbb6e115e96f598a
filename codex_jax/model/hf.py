"""Hugging Face checkpoints in and out as `codex_jax.model.GPT`: one entry for every family
(GPT-2, GPT-NeoX, GPTBigCode in `hf_gpt`; Llama, Mistral, Qwen2, StarCoder2 in `hf_llama`) and
both sources (a save_pretrained folder, or a GGUF file through `gguf_file`).

    gpt_config, params, tokenizer = hf.load("DIR" or "FILE.gguf")
    hf.save(gpt_config, params, "OUT", tokenizer)    # -> a save_pretrained folder
    config = hf.configure(config)                    # config.model <- config.init.hf_checkpoint

`load` reads `config.json`, the weights (`model.safetensors` or `pytorch_model.bin`, sharded
or not, any float dtype, converted to float32) and `tokenizer.json` (the `tokenizers` library)
with the chat template of `tokenizer_config.json` or `chat_template.jinja`; no `transformers`
is needed.
"""

import dataclasses
import glob
import json
import os
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from codex_jax.model import hf_gpt, hf_llama, hf_tokenizer
from codex_jax.model import transformer as model_lib

FAMILIES = hf_gpt.FAMILIES + hf_llama.FAMILIES


def read_config(directory: str) -> dict[str, Any]:
    path = os.path.join(directory, "config.json")
    if not os.path.exists(path):
        raise FileNotFoundError(f"{path}: no config.json; expected a save_pretrained folder")
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def read_weights(directory: str) -> dict[str, np.ndarray]:
    """Every tensor of the checkpoint in `directory` as float32 numpy, by its name."""
    safetensors_files = sorted(glob.glob(os.path.join(directory, "model*.safetensors")))
    if safetensors_files:
        from safetensors.flax import load_file  # reads bfloat16, which numpy cannot

        return {
            name: np.asarray(tensor, np.float32)
            for path in safetensors_files
            for name, tensor in load_file(path).items()
        }
    torch_files = sorted(glob.glob(os.path.join(directory, "pytorch_model*.bin")))
    if torch_files:
        import torch

        return {
            name: tensor.float().numpy()
            for path in torch_files
            for name, tensor in torch.load(path, map_location="cpu", weights_only=True).items()
        }
    raise FileNotFoundError(f"{directory}: no model*.safetensors or pytorch_model*.bin weights")


def _family(hf: dict[str, Any]) -> Any:
    family = hf.get("model_type")
    if family not in FAMILIES:
        raise ValueError(
            f"config.json: model_type {family!r} is not supported; expected one of {FAMILIES}"
        )
    return hf_gpt if family in hf_gpt.FAMILIES else hf_llama


def config_from_hf(hf: dict[str, Any]) -> model_lib.GPTConfig:
    """The GPTConfig of a HF config.json (float32 compute)."""
    return _family(hf).config_from_hf(hf)


def _check_shapes(cfg: model_lib.GPTConfig, params: Any, source: str) -> None:
    """Raises if `params` is not the tree of shapes `GPT(cfg)` expects."""
    import flax.linen as nn

    expected = nn.unbox(
        jax.eval_shape(model_lib.GPT(cfg).init, jax.random.key(0), jnp.zeros((1, 1), jnp.int32))[
            "params"
        ]
    )
    got = jax.tree.map(np.shape, params)
    want = jax.tree.map(lambda x: x.shape, expected)
    if got != want:
        raise ValueError(f"{source}: parameter shapes {got} differ from the model's {want}")


def load(
    path: str | os.PathLike,
) -> tuple[model_lib.GPTConfig, dict[str, Any], hf_tokenizer.HFTokenizer]:
    """(config, params as jax float32 arrays, tokenizer) of a save_pretrained folder or a .gguf
    file (`codex_jax.model.gguf_file`)."""
    path = os.fspath(path)
    hf, weights, tokenizer = _read(path, weights=True)
    cfg = config_from_hf(hf)
    if hf["model_type"] in hf_gpt.FAMILIES:
        params = hf_gpt.params_from_hf(cfg, hf["model_type"], weights)
    else:
        params = hf_llama.params_from_hf(cfg, weights)
    _check_shapes(cfg, params, path)
    if tokenizer is None:
        tokenizer = hf_tokenizer.HFTokenizer.from_directory(path, hf, cfg.vocab_size)
    return cfg, jax.tree.map(jnp.asarray, params), tokenizer


def _read(path: str, weights: bool) -> tuple[dict[str, Any], dict[str, np.ndarray], Any]:
    """(config.json, tensors or {}, tokenizer or None) of a folder or a .gguf file."""
    if path.endswith(".gguf"):
        from codex_jax.model import gguf_file

        return gguf_file.read(path, weights=weights)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: not a save_pretrained folder or a .gguf file")
    return read_config(path), read_weights(path) if weights else {}, None


def load_tokenizer(path: str | os.PathLike) -> hf_tokenizer.HFTokenizer:
    """The tokenizer of a save_pretrained folder or .gguf file, without its weights."""
    path = os.fspath(path)
    hf, _, tokenizer = _read(path, weights=False)
    return tokenizer or hf_tokenizer.HFTokenizer.from_directory(
        path, hf, config_from_hf(hf).vocab_size
    )


# config.model fields an imported checkpoint does not decide: how the model is run.
RUN_FIELDS = ("dtype", "remat", "attention", "out_first_kernels")


def configure(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`config` with `config.model` set to the architecture of `config.init.hf_checkpoint`, when
    one is given (its run settings, `RUN_FIELDS`, stay the config's); else `config` itself.

    Raises:
        ValueError: the checkpoint's positions are fewer than `config.train.seq_len`.
    """
    checkpoint = config.get("init", {}).get("hf_checkpoint")
    if not checkpoint:
        return config
    imported = config_from_hf(_read(os.fspath(checkpoint), weights=False)[0])
    config = ml_collections.ConfigDict(config.to_dict())
    fields = {
        f.name: getattr(imported, f.name)
        for f in dataclasses.fields(imported)
        if f.name not in RUN_FIELDS + ("vocab_size",)
    }
    with config.unlocked():
        config.model.update(fields)
    if imported.max_len < config.train.seq_len:
        raise ValueError(
            f"config.train.seq_len = {config.train.seq_len}: {checkpoint} covers "
            f"{imported.max_len} positions"
        )
    return config


def save(
    cfg: model_lib.GPTConfig,
    params: Any,
    directory: str | os.PathLike,
    tokenizer: Any = None,
    eos_token_id: int | None = None,
) -> str:
    """Writes the model as a save_pretrained folder transformers loads (config.json,
    model.safetensors and, given an imported `tokenizer`, its tokenizer files); returns the
    family: GPT-2 for learned positions, else the Llama family that expresses the config
    (`hf_llama.family_of`).

    Raises:
        ValueError: no supported family expresses `cfg`; the message names the fields.
    """
    from safetensors.numpy import save_file

    p = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
    if cfg.positional == "learned":
        hf, tensors = hf_gpt.to_hf(cfg, p)
    else:
        hf, tensors = hf_llama.to_hf(cfg, p)
    if tokenizer is not None and eos_token_id is None:
        eos_token_id = tokenizer.eod_id
    hf.update(bos_token_id=eos_token_id, eos_token_id=eos_token_id, torch_dtype="float32")
    if tokenizer is not None and getattr(tokenizer, "bos_id", None) is not None:
        hf["bos_token_id"] = tokenizer.bos_id
    directory = os.fspath(directory)
    os.makedirs(directory, exist_ok=True)
    save_file(
        {name: np.ascontiguousarray(t) for name, t in tensors.items()},
        os.path.join(directory, "model.safetensors"),
        metadata={"format": "pt"},
    )
    with open(os.path.join(directory, "config.json"), "w", encoding="utf-8") as f:
        json.dump(hf, f, indent=2)
    if isinstance(tokenizer, hf_tokenizer.HFTokenizer):
        tokenizer.save(directory)
    return hf["model_type"]
