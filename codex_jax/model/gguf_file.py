"""GGUF files (llama.cpp's format) as Hugging Face checkpoints: `read(path)` gives the
config.json a save_pretrained folder would hold, the tensors under transformers' names and the
tokenizer the file carries, and `codex_jax.model.hf` maps them onto the model as for a folder.

    architecture  tensors                                      tokenizer
    llama         q/k rows permuted by llama.cpp (undone here)  tokenizer.ggml.model "gpt2"
    qwen2         q/k/v biases                                  (byte-level BPE) only

Tensors are dequantized to float32 by the `gguf` package (`pip install gguf`; F32, F16, BF16,
Q8_0, Q4_0 and Q4_1 are tested). The tokenizer is rebuilt as transformers' GGUF loader builds
it: the file's vocabulary and merges, GPT-2's pre-tokenizer unless `tokenizer.ggml.pre` names
a split transformers knows (Llama 3's, Qwen2's), control tokens special, a BOS put first when
`tokenizer.ggml.add_bos_token` says so, and `tokenizer.chat_template`.
"""

import os
from typing import Any

import numpy as np

from codex_jax.model import hf_tokenizer

ARCHITECTURES = {"llama": "llama", "qwen2": "qwen2"}  # GGUF architecture -> model_type
TESTED_TYPES = ("F32", "F16", "BF16", "Q8_0", "Q4_0", "Q4_1")
LAYER_TENSORS = {  # GGUF name in blk.{i}. -> transformers' name in model.layers.{i}.
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
TOP_TENSORS = {
    "token_embd": "model.embed_tokens",
    "output_norm": "model.norm",
    "output": "lm_head",
}
_LLAMA3_SPLIT = (  # transformers' splits for these `tokenizer.ggml.pre` values
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
_QWEN2_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)
SPLITS = {
    "llama3": _LLAMA3_SPLIT,
    "llama-v3": _LLAMA3_SPLIT,
    "llama-bpe": _LLAMA3_SPLIT,
    "qwen2": _QWEN2_SPLIT,
    "deepseek-r1-qwen": _QWEN2_SPLIT,
}


def unpermute(weight: np.ndarray, heads: int) -> np.ndarray:
    """Undoes llama.cpp's reordering of a q or k projection's rows [heads * K, D]: it stores
    each head's two rotary halves interleaved (GPT-J's pairing), transformers them split."""
    half = weight.shape[0] // heads // 2
    return weight.reshape(heads, half, 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _field(reader: Any, name: str, default: Any = None) -> Any:
    field = reader.fields.get(name)
    return default if field is None else field.contents()


def _tokenizer(reader: Any, path: str, vocab_size: int) -> hf_tokenizer.HFTokenizer:
    import tokenizers
    from tokenizers import decoders, pre_tokenizers, processors

    model = _field(reader, "tokenizer.ggml.model")
    if model != "gpt2":
        raise ValueError(
            f"{path}: tokenizer.ggml.model = {model!r}; only 'gpt2' (byte-level BPE) is supported"
        )
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type", [])
    merges = [tuple(m.split(" ", 1)) for m in _field(reader, "tokenizer.ggml.merges", [])]
    spelled = set(hf_tokenizer._bytes_to_unicode().values())
    vocab = {token: i for i, token in enumerate(tokens)}
    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE(vocab=vocab, merges=merges))
    split = SPLITS.get(_field(reader, "tokenizer.ggml.pre"))
    if split is None:
        tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    else:
        tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split(tokenizers.Regex(split), behavior="isolated"),
                pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
            ]
        )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(
        [
            tokenizers.AddedToken(t, special=True, normalized=False)
            for t, kind in zip(tokens, types)
            if kind == 3 and set(t) <= spelled  # CONTROL, spelled in the byte alphabet
        ]
    )
    tokenizer.add_tokens(
        [
            tokenizers.AddedToken(t, special=False, normalized=False)
            for t, kind in zip(tokens, types)
            if kind == 4  # USER_DEFINED
        ]
    )
    bos_id = _field(reader, "tokenizer.ggml.bos_token_id")
    eos_id = _field(reader, "tokenizer.ggml.eos_token_id")
    pad_id = _field(reader, "tokenizer.ggml.padding_token_id", eos_id)
    if eos_id is None:
        raise ValueError(f"{path}: no tokenizer.ggml.eos_token_id (the end-of-document token)")
    if _field(reader, "tokenizer.ggml.add_bos_token", False) and bos_id is not None:
        bos = tokens[bos_id]
        tokenizer.post_processor = processors.TemplateProcessing(
            single=f"{bos}:0 $A:0", pair=f"{bos}:0 $A:0 $B:1", special_tokens=[(bos, bos_id)]
        )
    return hf_tokenizer.HFTokenizer(
        tokenizer,
        vocab_size,
        int(eos_id),
        int(pad_id),
        bos_id=None if bos_id is None else int(bos_id),
        chat_template=_field(reader, "tokenizer.chat_template"),
        source=path,
    )


def _config(reader: Any, path: str, arch: str, names: dict[str, Any]) -> dict[str, Any]:
    """config.json of the file's metadata; `names`: transformers' tensor names -> GGUF tensors."""

    def get(key: str, default: Any = None) -> Any:
        value = _field(reader, f"{arch}.{key}", default)
        if value is None:
            raise ValueError(f"{path}: no {arch}.{key} in the file's metadata")
        return value

    heads = get("attention.head_count")
    hf = {
        "model_type": ARCHITECTURES[arch],
        "vocab_size": int(names["model.embed_tokens.weight"].shape[-1]),  # GGUF: [D, V]
        "num_hidden_layers": get("block_count"),
        "hidden_size": get("embedding_length"),
        "intermediate_size": get("feed_forward_length"),
        "num_attention_heads": heads,
        "num_key_value_heads": get("attention.head_count_kv", heads),
        "max_position_embeddings": get("context_length"),
        "rope_theta": float(get("rope.freq_base", 10_000.0)),
        "rms_norm_eps": float(get("attention.layer_norm_rms_epsilon")),
        "tie_word_embeddings": "lm_head.weight" not in names,
        "attention_bias": False,
        "mlp_bias": False,
    }
    scaling = _field(reader, f"{arch}.rope.scaling.type", "none")
    if scaling == "linear":
        hf["rope_scaling"] = {"rope_type": "linear", "factor": get("rope.scaling.factor")}
    elif scaling != "none":
        raise ValueError(f"{path}: {arch}.rope.scaling.type {scaling!r}; expected none or linear")
    return hf


def _hf_name(tensor_name: str, path: str, arch: str) -> str:
    prefix, _, rest = tensor_name.partition(".")
    if prefix == "blk":
        layer, kind, suffix = rest.split(".", 2)
        if kind in LAYER_TENSORS:
            return f"model.layers.{layer}.{LAYER_TENSORS[kind]}.{suffix}"
    elif prefix in TOP_TENSORS:
        return f"{TOP_TENSORS[prefix]}.{rest}"
    elif prefix == "rope_freqs":
        raise ValueError(f"{path}: rope_freqs (Llama 3.1's rope scaling) is not supported")
    raise ValueError(f"{path}: tensor {tensor_name!r} has no place in a {arch} model")


def read(
    path: str | os.PathLike, weights: bool = True
) -> tuple[dict[str, Any], dict[str, np.ndarray], Any]:
    """(config.json as a dict, float32 tensors by transformers' names, HFTokenizer) of a GGUF
    file; `weights=False` leaves the tensors out (nothing is dequantized).

    Raises:
        ValueError: an architecture, tensor type, tokenizer or rope scaling not supported; the
            message names the file and the field.
    """
    import gguf

    path = os.fspath(path)
    reader = gguf.GGUFReader(path)
    arch = _field(reader, "general.architecture")
    if arch not in ARCHITECTURES:
        raise ValueError(
            f"{path}: general.architecture = {arch!r}; expected one of {tuple(ARCHITECTURES)}"
        )
    names = {_hf_name(tensor.name, path, arch): tensor for tensor in reader.tensors}
    hf = _config(reader, path, arch, names)
    tensors = {}
    for name, tensor in names.items() if weights else ():
        try:
            value = gguf.quants.dequantize(tensor.data, tensor.tensor_type)
        except NotImplementedError as error:
            raise ValueError(
                f"{path}: tensor {tensor.name} of type {tensor.tensor_type.name} cannot be "
                f"dequantized ({error}); tested: {TESTED_TYPES}"
            ) from error
        value = np.asarray(value, np.float32).reshape(tuple(reversed(tensor.shape)))
        if arch == "llama" and name.endswith(("q_proj.weight", "k_proj.weight")):
            heads = hf["num_attention_heads" if "q_proj" in name else "num_key_value_heads"]
            value = unpermute(value, heads)
        tensors[name] = value
    return hf, tensors, _tokenizer(reader, path, hf["vocab_size"])
