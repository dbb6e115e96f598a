"""Hugging Face import and export against transformers itself: tiny random models of each family,
saved with save_pretrained, imported, and compared logit for logit and token for token."""

import copy
import dataclasses
import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tokenizers
import torch
import transformers

from codex_jax import jsonl
from codex_jax.model import hf, transformer
from codex_jax.sampling import decoding, samples, stopping, strategies
from configs import tiny

VOCAB, EOD = 320, 0  # the tokenizer: <|endoftext|>, 256 bytes and a few merges; the model pads

LLAMA_SHAPE = dict(  # the Llama families' shape below
    max_position_embeddings=64,
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=4,
    num_key_value_heads=2,
    intermediate_size=48,
)
FAMILIES = {
    "gpt2": lambda: transformers.GPT2Config(n_positions=64, n_embd=32, n_layer=2, n_head=4),
    "gpt2_untied": lambda: transformers.GPT2Config(
        n_positions=64, n_embd=32, n_layer=2, n_head=4, n_inner=48, tie_word_embeddings=False
    ),
    "neox": lambda: (
        transformers.GPTNeoXConfig(  # parallel attention/MLP, rotary on half, exact GELU
            max_position_embeddings=64,
            hidden_size=32,
            num_hidden_layers=2,
            num_attention_heads=4,
            intermediate_size=64,
            rotary_pct=0.5,
            rotary_emb_base=100.0,
            layer_norm_eps=1e-3,
        )
    ),
    "neox_sequential": lambda: transformers.GPTNeoXConfig(
        max_position_embeddings=64,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        use_parallel_residual=False,
        hidden_act="gelu_new",
        rotary_pct=1.0,
    ),
    "bigcode_multi_query": lambda: transformers.GPTBigCodeConfig(
        n_positions=64, n_embd=32, n_layer=2, n_head=4
    ),
    "bigcode": lambda: transformers.GPTBigCodeConfig(
        n_positions=64, n_embd=32, n_layer=2, n_head=4, multi_query=False
    ),
    "llama": lambda: transformers.LlamaConfig(  # grouped-query attention, untied, no biases
        **LLAMA_SHAPE,
        rope_theta=500.0,
        rms_norm_eps=1e-4,
    ),
    "llama_tied_biases_scaled": lambda: transformers.LlamaConfig(
        **dict(LLAMA_SHAPE, num_key_value_heads=4),
        tie_word_embeddings=True,
        attention_bias=True,
        mlp_bias=True,
        rope_scaling={
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 16,
        },
    ),
    "llama_linear_rope": lambda: transformers.LlamaConfig(  # multi-query
        **dict(LLAMA_SHAPE, num_hidden_layers=1, num_key_value_heads=1),
        rope_scaling={"rope_type": "linear", "factor": 4.0},
    ),
    "mistral_window": lambda: transformers.MistralConfig(  # 40 tokens over a window of 8
        **LLAMA_SHAPE,
        sliding_window=8,
    ),
    "qwen2": lambda: transformers.Qwen2Config(  # q/k/v biases only
        **LLAMA_SHAPE,
        tie_word_embeddings=True,
    ),
    "starcoder2": lambda: transformers.Starcoder2Config(  # LayerNorm, GELU MLP, biases
        **LLAMA_SHAPE,
    ),
}


def byte_level_tokenizer() -> "tokenizers.Tokenizer":
    """A GPT-2 style byte-level BPE with a few merges learned from code."""
    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE())
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=300,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=tokenizers.pre_tokenizers.ByteLevel.alphabet(),
    )
    tokenizer.train_from_iterator(
        ["def f(x):\n    return x + 1\n", "for i in range(10):\n    print(i)\n"] * 20, trainer
    )
    return tokenizer


def save_random_model(family: str, directory: str, **overrides):
    """A transformers model of `family` with every parameter random (biases and norms too);
    `overrides` change its config."""
    config = FAMILIES[family]()
    config.update(overrides)
    config.vocab_size, config.bos_token_id, config.eos_token_id = VOCAB, EOD, EOD
    torch.manual_seed(0)
    hf_model = transformers.AutoModelForCausalLM.from_config(config).eval()
    with torch.no_grad():
        for parameter in hf_model.parameters():
            parameter.normal_(0.0, 0.7)  # large enough that greedy varies
    hf_model.save_pretrained(directory)
    tokenizer = byte_level_tokenizer()
    assert tokenizer.token_to_id("<|endoftext|>") == EOD
    tokenizer.save(os.path.join(directory, "tokenizer.json"))
    return hf_model


@pytest.fixture(scope="module", params=list(FAMILIES))
def imported(request, tmp_path_factory):
    directory = str(tmp_path_factory.mktemp(request.param))
    hf_model = save_random_model(request.param, directory)
    return hf_model, hf.load(directory)


def test_logits_equal_transformers(imported):
    """Against transformers in float64: its own float32 logits stray up to ~7e-5 from those (as
    ours do, with logits near 17 from these weights), so float32 on both sides could differ by
    twice that."""
    hf_model, (config, params, _) = imported
    tokens = np.random.default_rng(0).integers(0, VOCAB, (3, 40))
    ours = transformer.GPT(config).apply({"params": params}, jnp.asarray(tokens))
    with torch.no_grad():
        theirs = copy.deepcopy(hf_model).double()(torch.tensor(tokens)).logits.numpy()
    np.testing.assert_allclose(np.asarray(ours), theirs, atol=1e-4, rtol=0)


def test_greedy_generation_equals_transformers_generate(imported):
    """32 tokens from 3 prompts, each row ending at end-of-document as transformers' rows do."""
    hf_model, (config, params, _) = imported
    prompts = np.random.default_rng(1).integers(1, VOCAB, (3, 8)).astype(np.int32)
    table = stopping.StopTable.build((), [b""] * config.vocab_size)
    decoder = decoding.GPTDecoder(config)
    ours = decoding.generate(
        decoder,
        decoder.prepare(params),
        prompts,
        np.full(3, 8, np.int32),
        np.arange(3, dtype=np.int32),
        jax.random.key(0),
        table.next_state,
        table.matched,
        max_new_tokens=32,
        sampling=strategies.SamplingConfig(temperature=0.0),
        eod_id=EOD,
    ).tokens
    with torch.no_grad():
        theirs = hf_model.generate(
            torch.tensor(prompts),
            attention_mask=torch.ones(prompts.shape, dtype=torch.long),
            do_sample=False,
            max_new_tokens=32,
            pad_token_id=EOD,
        )[:, 8:].numpy()
    theirs = np.pad(theirs, ((0, 0), (0, 32 - theirs.shape[1])), constant_values=EOD)
    after_end = np.cumsum(theirs == EOD, axis=1) - (theirs == EOD) > 0  # transformers pads there
    theirs = np.where(after_end, -1, theirs)
    assert len(np.unique(theirs[theirs >= 0])) > 2  # not one token repeated
    np.testing.assert_array_equal(np.asarray(ours), theirs)


def test_pytorch_bin_checkpoints_load_like_safetensors(tmp_path):
    hf_model = save_random_model("neox", str(tmp_path))
    from_safetensors = hf.load(tmp_path)[1]
    torch.save(hf_model.state_dict(), tmp_path / "pytorch_model.bin")
    os.remove(tmp_path / "model.safetensors")
    jax.tree.map(np.testing.assert_array_equal, hf.load(tmp_path)[1], from_safetensors)


@pytest.mark.parametrize("tie_embeddings", [True, False])
def test_export_to_gpt2_reimports_exactly_and_transformers_agrees(tmp_path, tie_embeddings):
    config = transformer.GPTConfig(
        vocab_size=VOCAB,
        n_layers=2,
        d_model=32,
        n_heads=4,
        d_ff=48,
        max_len=64,
        tie_embeddings=tie_embeddings,
        layer_norm_epsilon=1e-4,
    )
    params = jax.jit(transformer.GPT(config).init)(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))[
        "params"
    ]
    params = jax.tree.map(
        lambda x: x + 0.1 * jax.random.normal(jax.random.key(1), x.shape),
        __import__("flax").linen.unbox(params),
    )  # biases and norms not at their init
    hf.save(config, params, tmp_path, eos_token_id=EOD)
    byte_level_tokenizer().save(str(tmp_path / "tokenizer.json"))
    config_back, params_back, _ = hf.load(tmp_path)
    assert config_back == config
    jax.tree.map(np.testing.assert_array_equal, params_back, params)
    tokens = np.random.default_rng(2).integers(0, VOCAB, (2, 30))
    with torch.no_grad():
        theirs = (
            transformers.GPT2LMHeadModel.from_pretrained(tmp_path)
            .eval()(torch.tensor(tokens))
            .logits
        )
    ours = transformer.GPT(config).apply({"params": params}, jnp.asarray(tokens))
    np.testing.assert_allclose(np.asarray(ours), theirs.numpy(), atol=1e-4, rtol=0)


EXPORTED_AS = {  # what `hf.save` writes each family as (GPT-NeoX and multi-query BigCode: nothing)
    "gpt2": "gpt2",
    "gpt2_untied": "gpt2",
    "bigcode": "gpt2",
    "llama": "llama",
    "llama_tied_biases_scaled": "llama",
    "llama_linear_rope": "llama",
    "mistral_window": "mistral",
    "qwen2": "qwen2",
    "starcoder2": "starcoder2",
}


@pytest.mark.parametrize("family", list(EXPORTED_AS))
def test_export_reimports_exactly_and_transformers_loads_it(family, tmp_path):
    hf_model = save_random_model(family, str(tmp_path / "in"))
    config, params, tokenizer = hf.load(tmp_path / "in")
    assert hf.save(config, params, tmp_path / "out", tokenizer) == EXPORTED_AS[family]
    config_back, params_back, tokenizer_back = hf.load(tmp_path / "out")
    assert config_back == config
    jax.tree.map(np.testing.assert_array_equal, params_back, params)
    assert tokenizer_back.encode("def f(x):\n    return x\n") == tokenizer.encode(
        "def f(x):\n    return x\n"
    )
    tokens = torch.tensor(np.random.default_rng(3).integers(0, VOCAB, (2, 30)))
    exported = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "out").eval()
    with torch.no_grad():
        np.testing.assert_allclose(
            exported(tokens).logits.numpy(), hf_model(tokens).logits.numpy(), atol=1e-5, rtol=0
        )


def test_export_rejects_what_gpt2_cannot_express(tmp_path):
    config = transformer.GPTConfig(
        vocab_size=VOCAB,
        n_layers=1,
        d_model=32,
        n_heads=4,
        d_ff=48,
        max_len=64,
        parallel_residual=True,
        norm="rmsnorm",
    )
    with pytest.raises(ValueError, match="GPT-2 .*parallel_residual.*norm"):
        hf.save(config, {"wte": {}}, tmp_path)
    rotary = dataclasses.replace(config, positional="rotary")
    with pytest.raises(ValueError, match="Llama-family .*parallel_residual.*norm/mlp"):
        hf.save(rotary, {"wte": {}}, tmp_path)


def test_tokenizer_matches_the_tokenizers_library_and_hides_special_tokens(tmp_path):
    save_random_model("gpt2", str(tmp_path))
    tokenizer = hf.load(tmp_path)[2]
    reference = tokenizers.Tokenizer.from_file(str(tmp_path / "tokenizer.json"))
    text = "def f(x):\n    return 'é' + x  # ünï\n"
    ids = tokenizer.encode(text)
    assert ids == reference.encode(text).ids and tokenizer.decode(ids) == text
    assert (tokenizer.vocab_size, tokenizer.eod_id, tokenizer.pad_id) == (VOCAB, EOD, EOD)
    e_acute = tokenizer.encode("é")
    assert (
        len(e_acute) == 2 and tokenizer.decode_bytes(e_acute[:1]) == "é".encode()[:1]
    )  # bytes, split
    assert (
        tokenizer.decode_bytes([EOD, VOCAB - 1]) == b""
    )  # end of document; an id past the tokenizer


def test_samples_of_an_imported_model_equal_transformers_generate(tmp_path):
    """scripts/sample.py --hf_checkpoint's path: ensure_samples on a problem file."""
    hf_model = save_random_model("bigcode_multi_query", str(tmp_path / "hf"))
    prompt = "def f(x):\n"
    jsonl.write_jsonl(
        tmp_path / "problems.jsonl",
        [
            {
                "task_id": "t/0",
                "prompt": prompt,
                "entry_point": "f",
                "test": "",
                "canonical_solution": "",
            }
        ],
    )
    config = tiny.get_config()
    config.sample.update(n=1, temperature=0.0, max_new_tokens=12, batch_size=2)
    config.eval.problem_file = str(tmp_path / "problems.jsonl")
    path = samples.ensure_samples(config, tmp_path, hf_checkpoint=str(tmp_path / "hf"))
    [completion] = jsonl.read_jsonl(path)
    _, _, tokenizer = hf.load(tmp_path / "hf")
    # The prompt as transformers' own tokenizer encodes it (no end-of-document put first).
    ids = transformers.PreTrainedTokenizerFast(
        tokenizer_file=str(tmp_path / "hf" / "tokenizer.json")
    )(prompt).input_ids
    assert ids == tokenizer.encode_prompt(prompt) and ids[0] != EOD
    with torch.no_grad():
        out = hf_model.generate(
            torch.tensor([ids]),
            attention_mask=torch.ones((1, len(ids)), dtype=torch.long),
            do_sample=False,
            max_new_tokens=12,
            pad_token_id=EOD,
        )
    expected = out[0, len(ids) :].tolist()
    expected = expected[: expected.index(EOD) + 1] if EOD in expected else expected
    assert completion["num_tokens"] == len(expected) and completion[
        "completion"
    ] == tokenizer.decode(expected)
