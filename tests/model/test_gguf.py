"""GGUF import against transformers' own GGUF loading: a random Llama (and Qwen2) written with the
`gguf` package's writer, as llama.cpp's converter lays it out (q/k rows permuted, tensors
quantized), loaded by both and compared logit for logit and id for id."""

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers

gguf = pytest.importorskip("gguf")  # in the [test] extra; a plain install has no GGUF support

from codex_jax.model import gguf_file, hf, transformer  # noqa: E402
from tests.model.test_hf import byte_level_tokenizer  # noqa: E402

TEMPLATE = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
Q = gguf.GGMLQuantizationType
TYPES = {  # a tensor of every tested type
    "token_embd": Q.Q8_0,
    "attn_q": Q.Q4_0,
    "attn_k": Q.Q4_1,
    "attn_v": Q.F16,
    "attn_output": Q.BF16,
    "ffn_gate": Q.Q4_1,
    "ffn_up": Q.Q8_0,
    "ffn_down": Q.Q4_0,
    "output": Q.F16,
}


def permute(weight: np.ndarray, heads: int) -> np.ndarray:
    """llama.cpp's convert_hf_to_gguf reordering of q/k rows (what the loader undoes)."""
    return (
        weight.reshape(heads, 2, weight.shape[0] // heads // 2, *weight.shape[1:])
        .swapaxes(1, 2)
        .reshape(weight.shape)
    )


def tokens_and_types(tokenizer):
    vocab = tokenizer.get_vocab()
    tokens = [t for t, _ in sorted(vocab.items(), key=lambda item: item[1])]
    specials = {"<|endoftext|>", "<|im_start|>", "<|im_end|>"}
    return tokens, [3 if t in specials else 1 for t in tokens]


def write_gguf(path, architecture: str, add_bos: bool, tied: bool):
    """A random 2-layer model in `path` and the transformers model its weights come from."""
    tokenizer = byte_level_tokenizer()
    tokenizer.add_special_tokens(["<|im_start|>", "<|im_end|>"])
    tokens, types = tokens_and_types(tokenizer)
    vocab = 320  # the tokenizer's 302 ids padded, as models are; a multiple of 32 for Q8_0
    tokens += [f"[PAD{i}]" for i in range(vocab - len(tokens))]
    types += [1] * (vocab - len(types))
    kwargs = dict(
        vocab_size=vocab,
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=96,
        max_position_embeddings=64,
        rms_norm_eps=1e-5,
        rope_theta=1000.0,
        tie_word_embeddings=tied,
        bos_token_id=1,
        eos_token_id=0,
    )
    config = (transformers.Qwen2Config if architecture == "qwen2" else transformers.LlamaConfig)(
        **kwargs
    )
    torch.manual_seed(0)
    model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.normal_(0.0, 0.3)
    writer = gguf.GGUFWriter(str(path), architecture)
    writer.add_block_count(2)
    writer.add_context_length(64)
    writer.add_embedding_length(64)
    writer.add_feed_forward_length(96)
    writer.add_head_count(4)
    writer.add_head_count_kv(2)
    writer.add_rope_freq_base(1000.0)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("smollm")
    writer.add_token_list(tokens)
    writer.add_token_types(types)
    writer.add_token_merges([" ".join(m) for m in merges_of(tokenizer)])
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(0)
    writer.add_pad_token_id(0)
    writer.add_add_bos_token(add_bos)
    writer.add_chat_template(TEMPLATE)
    names = {v: k for k, v in {**gguf_file.LAYER_TENSORS, **gguf_file.TOP_TENSORS}.items()}
    for name, tensor in model.state_dict().items():
        value = tensor.numpy().astype(np.float32)
        base, _, suffix = name.rpartition(".")
        if base.startswith("model.layers."):
            layer, module = base.removeprefix("model.layers.").split(".", 1)
            kind = names[module]
            gguf_name = f"blk.{layer}.{kind}.{suffix}"
        else:
            if name == "lm_head.weight" and tied:
                continue
            kind = names[base]
            gguf_name = f"{kind}.{suffix}"
        if architecture == "llama" and kind in ("attn_q", "attn_k"):
            value = permute(value, 4 if kind == "attn_q" else 2)
        qtype = TYPES.get(kind, Q.F32) if suffix == "weight" and value.ndim == 2 else Q.F32
        data = value if qtype == Q.F32 else gguf.quants.quantize(value, qtype)
        writer.add_tensor(gguf_name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def merges_of(tokenizer):
    import json

    return [
        tuple(m.split(" ")) if isinstance(m, str) else tuple(m)
        for m in json.loads(tokenizer.to_str())["model"]["merges"]
    ]


@pytest.fixture(
    scope="module",
    params=[("llama", False, False), ("llama", True, True), ("qwen2", False, True)],
    ids=["llama_untied", "llama_tied_bos", "qwen2"],
)
def written(request, tmp_path_factory):
    architecture, add_bos, tied = request.param
    directory = tmp_path_factory.mktemp(architecture)
    write_gguf(directory / "model.gguf", architecture, add_bos, tied)
    theirs = transformers.AutoModelForCausalLM.from_pretrained(
        directory, gguf_file="model.gguf", dtype=torch.float32
    ).eval()
    their_tokenizer = transformers.AutoTokenizer.from_pretrained(directory, gguf_file="model.gguf")
    return hf.load(directory / "model.gguf"), theirs, their_tokenizer


def test_gguf_logits_equal_transformers_gguf_loading(written):
    (config, params, _), theirs, _ = written
    tokens = np.random.default_rng(0).integers(0, config.vocab_size, (2, 24))
    ours = transformer.GPT(config).apply({"params": params}, jnp.asarray(tokens))
    with torch.no_grad():
        expected = theirs(torch.tensor(tokens)).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours), expected, atol=1e-4, rtol=1e-5)


def test_gguf_tokenizer_encodes_and_renders_chat_as_transformers(written):
    (_, _, tokenizer), _, their_tokenizer = written
    text = "<|im_start|>user\nx = 12345 + 'é'\n<|im_end|>"
    assert tokenizer.encode_prompt(text) == their_tokenizer(text).input_ids
    assert tokenizer.decode(tokenizer.encode(text)) == text.replace("<|im_start|>", "").replace(
        "<|im_end|>", ""
    )  # special tokens decode to nothing
    messages = [{"role": "user", "content": "Write f."}]
    assert tokenizer.apply_chat_template(messages) == their_tokenizer.apply_chat_template(
        messages, add_generation_prompt=True, tokenize=False
    )


def test_unpermute_inverts_llama_cpp_permutation():
    weight = np.arange(8 * 4 * 3, dtype=np.float32).reshape(8 * 4, 3)
    np.testing.assert_array_equal(gguf_file.unpermute(permute(weight, 4), 4), weight)
    assert not np.array_equal(permute(weight, 4), weight)


def test_unsupported_architecture_is_one_clear_error(tmp_path):
    writer = gguf.GGUFWriter(str(tmp_path / "m.gguf"), "gemma")
    writer.add_block_count(1)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    with pytest.raises(ValueError, match=r"m\.gguf: general.architecture = 'gemma'"):
        hf.load(tmp_path / "m.gguf")


def test_export_of_a_gguf_model_loads_in_transformers_with_its_tokenizer(written, tmp_path):
    (config, params, tokenizer), theirs, their_tokenizer = written
    hf.save(config, params, tmp_path, tokenizer)
    exported = transformers.AutoModelForCausalLM.from_pretrained(tmp_path).eval()
    tokens = torch.tensor(np.random.default_rng(1).integers(0, config.vocab_size, (1, 16)))
    with torch.no_grad():
        np.testing.assert_allclose(
            exported(tokens).logits.numpy(), theirs(tokens).logits.numpy(), atol=1e-4, rtol=1e-5
        )
    text = "def f(x):\n    return 12 + x"
    reloaded = hf.load(tmp_path)[2]
    assert reloaded.encode_prompt(text) == their_tokenizer(text).input_ids
    assert reloaded.chat_template == TEMPLATE
    if config.qkv_bias:  # transformers gives a qwen2 folder Qwen2's own split, whatever the file
        return
    assert transformers.AutoTokenizer.from_pretrained(tmp_path)(text).input_ids == (
        their_tokenizer(text).input_ids
    )
