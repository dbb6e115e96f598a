"""The sampler: sampling math against sort-based references, the decode loop on toy logits
functions and on the GPT, stop sequences against a reference cut, and compilation counts."""

import dataclasses
import re

import flax.linen as nn
import hypothesis
import hypothesis.strategies as st
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from codex_jax.model import transformer
from codex_jax.sampling import completions, decoding, stopping, strategies

# --- references -----------------------------------------------------------------------------


def reference_probs(logits: np.ndarray, temperature: float) -> np.ndarray:
    scaled = logits.astype(np.float64) / temperature
    probs = np.exp(scaled - scaled.max(-1, keepdims=True))
    return probs / probs.sum(-1, keepdims=True)


def reference_top_k(probs: np.ndarray, k: int) -> np.ndarray:
    kth = -np.sort(-probs, axis=-1)[:, k - 1 : k]
    return probs >= kth


def reference_nucleus(probs: np.ndarray, top_p: float) -> np.ndarray:
    """Sort descending, keep tokens until the cumulative mass first reaches top_p."""
    order = np.argsort(-probs, axis=-1, kind="stable")
    sorted_probs = np.take_along_axis(probs, order, -1)
    mass_before = np.cumsum(sorted_probs, -1) - sorted_probs
    keep_sorted = mass_before < top_p * sorted_probs.sum(-1, keepdims=True)
    keep = np.zeros_like(keep_sorted)
    np.put_along_axis(keep, order, keep_sorted, -1)
    return keep


def reference_cut(text: str, stop: tuple[str, ...]) -> str:
    """The cut used by Codex evaluations: split on an alternation of the escaped stops."""
    return re.split("|".join(map(re.escape, stop)), text)[0] if stop else text


# --- sampling math ---------------------------------------------------------------------------

sample_tokens = jax.jit(strategies.sample_tokens, static_argnames="sampling")
top_k_mask = jax.jit(strategies.top_k_mask, static_argnames="k")
top_p_mask = jax.jit(strategies.top_p_mask, static_argnames="top_p")


def random_logits(seed: int, shape=(16, 1000), scale=3.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(shape) * scale).astype(np.float32)


@pytest.mark.parametrize("temperature", [0.5, 1.0])
def test_top_k_and_top_p_masks_equal_sort_based_references(temperature):
    logits = random_logits(0)
    probs = reference_probs(logits, temperature)
    weights = jnp.exp(
        jnp.asarray(logits) / temperature - jnp.max(logits / temperature, -1, keepdims=True)
    )
    for k in (1, 7, 50):
        np.testing.assert_array_equal(top_k_mask(weights, k), reference_top_k(probs, k))
    for top_p in (0.1, 0.5, 0.9, 0.95):
        np.testing.assert_array_equal(top_p_mask(weights, top_p), reference_nucleus(probs, top_p))


def test_top_k_keeps_ties_at_the_kth_value():
    weights = jnp.asarray([[1.0, 0.5, 0.5, 0.5, 0.1]])
    np.testing.assert_array_equal(top_k_mask(weights, 2), [[True, True, True, True, False]])


@pytest.mark.parametrize("top_p,top_k", [(1.0, 0), (0.9, 0), (1.0, 5), (0.5, 3)])
def test_temperature_zero_is_greedy(top_p, top_k):
    logits = random_logits(1)
    config = strategies.SamplingConfig(temperature=0.0, top_p=top_p, top_k=top_k)
    tokens, log_probs = sample_tokens(jax.random.key(0), jnp.asarray(logits), config)
    np.testing.assert_array_equal(tokens, logits.argmax(-1))
    expected = np.log(reference_probs(logits, 1.0)[np.arange(len(logits)), logits.argmax(-1)])
    np.testing.assert_allclose(log_probs, expected, rtol=1e-5, atol=1e-5)


def test_sampled_tokens_lie_in_the_top_k_and_nucleus_sets():
    logits = np.repeat(random_logits(2, (4, 1000)), 256, axis=0)  # 256 draws from each of 4 rows
    config = strategies.SamplingConfig(temperature=0.8, top_p=0.9, top_k=40)
    tokens, log_probs = sample_tokens(jax.random.key(3), jnp.asarray(logits), config)
    tokens = np.asarray(tokens)
    probs = reference_probs(logits, 0.8)
    kept = reference_top_k(probs, 40)
    kept &= reference_nucleus(np.where(kept, probs, 0.0), 0.9)
    assert kept[np.arange(len(tokens)), tokens].all()
    assert len(np.unique(tokens)) > 8  # sampling, not argmax
    # log-probs are the untruncated temperature-scaled distribution's
    np.testing.assert_allclose(log_probs, np.log(probs[np.arange(len(tokens)), tokens]), rtol=1e-4)


def chi_square(counts: np.ndarray, probs: np.ndarray) -> float:
    expected = probs * counts.sum()
    return float(np.sum((counts - expected) ** 2 / expected))


@pytest.mark.parametrize(
    "config,expected",
    [
        (strategies.SamplingConfig(temperature=1.0), [0.5, 0.25, 0.125, 0.0625, 0.0625]),
        (strategies.SamplingConfig(temperature=0.5), np.array([64, 16, 4, 1, 1]) / 86),
        # nucleus 0.8: {0.5, 0.25, 0.125} (0.75 < 0.8 <= 0.875), renormalised
        (strategies.SamplingConfig(temperature=1.0, top_p=0.8), [4 / 7, 2 / 7, 1 / 7, 0, 0]),
        (strategies.SamplingConfig(temperature=1.0, top_k=2), [2 / 3, 1 / 3, 0, 0, 0]),
    ],
)
def test_sampling_frequencies_match_the_probabilities(config, expected):
    draws = 20_000
    logits = jnp.broadcast_to(jnp.log(jnp.asarray([0.5, 0.25, 0.125, 0.0625, 0.0625])), (draws, 5))
    tokens, _ = sample_tokens(jax.random.key(42), logits, config)
    counts = np.bincount(np.asarray(tokens), minlength=5)
    expected = np.asarray(expected)
    assert counts[expected == 0].sum() == 0
    positive = expected > 0
    # chi-square critical value at p = 0.001 for up to 4 degrees of freedom is 18.47
    assert chi_square(counts[positive], expected[positive]) < 18.47


def test_inverse_cdf_sampling_spans_blocks_and_never_draws_zero_weights():
    vocab = 300  # three blocks of 128, the last partial
    weights = np.zeros((1, vocab), np.float32)
    chosen = [0, 127, 128, 200, 299]
    weights[0, chosen] = [1.0, 2.0, 3.0, 1.0, 3.0]
    draws = 20_000
    tokens = jax.jit(strategies.sample_from_weights)(
        jax.random.key(7), jnp.tile(weights, (draws, 1))
    )
    counts = np.bincount(np.asarray(tokens), minlength=vocab)
    assert counts.sum() == counts[chosen].sum()
    assert chi_square(counts[chosen], weights[0, chosen] / weights.sum()) < 18.47


def test_sampling_config_rejects_bad_values():
    for bad in (dict(temperature=-1.0), dict(top_p=0.0), dict(top_p=1.5), dict(top_k=-1)):
        with pytest.raises(ValueError):
            strategies.SamplingConfig(**bad)


# --- stop sequences --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text,stop",
    [
        ("\ndef f():\n    pass", stopping.HUMAN_EVAL_STOP),  # stop at position 0
        ("    return x\n\ndef g", stopping.HUMAN_EVAL_STOP),
        ("    return x\n", stopping.HUMAN_EVAL_STOP),  # no stop
        ("", stopping.HUMAN_EVAL_STOP),
        ("a\n#x\nif", ("\nif", "#x", "\n#")),  # overlapping stops: the earliest start wins
        ("abc\n", ("c\n", "bc")),
        ("x = 'é'\n# ünï", ("\n# ü",)),  # unicode
        ("naïve\nprint(1)", ("\nprint", "\nprin")),  # one stop a prefix of another
        ("    return 1\nclass", ()),  # no stop sequences at all
    ],
)
def test_cut_matches_reference_on_edge_cases(text, stop):
    assert stopping.cut_at_stop(text, stop) == reference_cut(text, stop)


@hypothesis.given(
    st.text(alphabet="\n#defiéx ", max_size=30),
    st.lists(st.text(alphabet="\n#defiéx", min_size=1, max_size=4), max_size=4),
)
def test_cut_matches_reference(text, stop):
    assert stopping.cut_at_stop(text, tuple(stop)) == reference_cut(text, tuple(stop))


def test_stop_rejects_empty_and_bare_strings():
    with pytest.raises(ValueError, match="non-empty"):
        stopping.StopTable.build(("\ndef", ""), [b"a"])
    with pytest.raises(TypeError, match="single string"):
        stopping.StopTable.build("\ndef", [b"a"])


# Tokens that split stop sequences and multi-byte characters in every way.
STOP_VOCAB = [
    b"",
    b"\n",
    b"\nd",
    b"ef",
    b"def",
    b"de",
    b"f",
    b"#",
    b"\n#",
    b"i",
    b"\ni",
    b"x",
    b" ",
    b"cl",
    b"ass",
    b"\nclass",
    "é".encode(),
    b"\xc3",
    b"\xa9",
    b"\n\xc3",
    b"ab",
    b"c",
]


def first_stop_token(tokens: list[int], stop: tuple[str, ...]) -> int | None:
    """Brute force: the first t such that the text of tokens[:t + 1] contains a stop."""
    for t in range(len(tokens)):
        text = b"".join(STOP_VOCAB[i] for i in tokens[: t + 1]).decode("utf-8", errors="replace")
        if any(s in text for s in stop):
            return t
    return None


@hypothesis.settings(max_examples=200)
@hypothesis.given(
    st.lists(st.integers(0, len(STOP_VOCAB) - 1), max_size=12),
    st.sampled_from([stopping.HUMAN_EVAL_STOP, ("\né", "abc", "bc"), ("\n\n",)]),
)
def test_stop_table_stops_exactly_on_the_first_stop(tokens, stop):
    table = stopping.StopTable.build(stop, STOP_VOCAB)
    state, first = 0, None
    for t, token in enumerate(tokens):
        state = table.next_state[state, token]
        if state == table.matched and first is None:
            first = t
    assert first == first_stop_token(tokens, stop)


def test_stop_table_finds_a_stop_inside_another_stops_prefix():
    # after "ab" (a prefix of "abx") the byte "c" completes "bc"
    table = stopping.StopTable.build(("abx", "bc"), [b"a", b"b", b"c"])
    state = 0
    for token in (0, 1, 2):
        state = table.next_state[state, token]
    assert state == table.matched


# --- the decode loop on toy logits functions -------------------------------------------------


@dataclasses.dataclass(frozen=True)
class BigramDecoder:
    """logits[b, t] = params[tokens[b, t]]: a bigram table; the cache records the tokens."""

    traces: list = dataclasses.field(default_factory=list, compare=False, hash=False)

    def prepare(self, params):
        return params

    def init_cache(self, batch_size, cache_len):
        self.traces.append((batch_size, cache_len))  # runs once per compilation
        return {"tokens": jnp.zeros((batch_size, cache_len), jnp.int32)}

    def __call__(self, params, tokens, positions, cache, cache_index, kv_mask):
        cache = {"tokens": jax.lax.dynamic_update_slice(cache["tokens"], tokens, (0, cache_index))}
        return params[tokens], cache


class ByteTokenizer:
    """One id per byte (3 + byte) after pad 0, unknown 1, end-of-document 2."""

    vocab_size, pad_id, eod_id = 259, 0, 2

    def encode(self, text):
        return [3 + b for b in text.encode("utf-8")]

    def encode_prompt(self, text):
        return [self.eod_id] + self.encode(text)

    def decode_bytes(self, ids):
        return bytes(i - 3 for i in ids if i >= 3)

    def decode(self, ids):
        return self.decode_bytes(ids).decode("utf-8", errors="replace")


def chain_params(script: str, vocab: int = 259) -> jnp.ndarray:
    """Bigram logits under which greedy decoding follows `script` (distinct characters)."""
    table = np.zeros((vocab, vocab), np.float32)
    ids = ByteTokenizer().encode(script)
    for current, following in zip(ids, ids[1:]):
        table[current, following] = 10.0
    return jnp.asarray(table)


def no_stop(vocab: int) -> stopping.StopTable:
    return stopping.StopTable.build((), [b"x"] * vocab)


def test_rows_stop_at_end_of_document_and_the_batch_stops_when_all_have(decode_chunk):
    vocab = 8
    params = np.zeros((vocab, vocab), np.float32)
    params[3, 4] = params[4, 2] = params[5, 6] = params[6, 7] = params[7, 2] = 10.0  # 2 = eod
    table = no_stop(vocab)
    out = decoding.generate(
        BigramDecoder(),
        jnp.asarray(params),
        np.array([[0, 1, 3], [1, 1, 5]], np.int32),
        np.array([1, 2], np.int32),
        np.array([0, 1, 1], np.int32),
        jax.random.key(0),
        table.next_state,
        table.matched,
        max_new_tokens=10,
        sampling=strategies.SamplingConfig(temperature=0.0),
        eod_id=2,
    )
    np.testing.assert_array_equal(out.num_tokens, [2, 3, 3])
    np.testing.assert_array_equal(out.tokens[0, :3], [4, 2, -1])
    np.testing.assert_array_equal(out.tokens[1, :4], [6, 7, 2, -1])
    assert int(out.steps) == 3  # not max_new_tokens
    assert float(jnp.abs(out.log_probs[:, 3:]).sum()) == 0.0


def test_complete_cuts_at_stop_sequences_and_keeps_sample_order():
    tokenizer = ByteTokenizer()
    # ':' -> "ret x\n#..." ; '!' -> end of document after "ok"
    params = chain_params(":ret x\n#") + chain_params("!ok")
    params = params.at[3 + ord("k"), tokenizer.eod_id].set(10.0)
    sampler = completions.Sampler(
        BigramDecoder(),
        params,
        tokenizer,
        sampling_config=strategies.SamplingConfig(temperature=0.0),
        max_new_tokens=12,
        stop=stopping.HUMAN_EVAL_STOP,
        max_prompt_len=32,
        batch_size=4,
    )
    results = sampler.complete(["def f():", "x = 1!", "y"], n=3, progress=False)
    assert [[c.text for c in r] for r in results] == [["ret x"] * 3, ["ok"] * 3, [""] * 3]
    assert [r[0].finish_reason for r in results] == ["stop", "eod", "length"]
    assert [r[0].num_tokens for r in results] == [7, 3, 12]


def test_samples_of_one_prompt_differ_and_follow_its_distribution():
    """n rows share one prefill; each row samples independently from its own prompt's logits."""
    vocab = 6
    params = np.full((vocab, vocab), -30.0, np.float32)
    params[3, 4] = params[3, 5] = 0.0  # after 3: 4 or 5, each with probability 1/2
    params[4, 2] = params[5, 2] = params[1, 1] = 0.0  # then eod; prompt 1 repeats token 1
    table = no_stop(vocab)
    rows = 4000
    row_prompt = np.arange(rows, dtype=np.int32) % 2
    out = decoding.generate(
        BigramDecoder(),
        jnp.asarray(params),
        np.array([[0, 3], [1, 1]], np.int32),
        np.array([1, 2], np.int32),
        row_prompt,
        jax.random.key(1),
        table.next_state,
        table.matched,
        max_new_tokens=3,
        sampling=strategies.SamplingConfig(temperature=1.0),
        eod_id=2,
    )
    first = np.asarray(out.tokens[:, 0])
    assert set(first[row_prompt == 1]) == {1}
    counts = np.bincount(first[row_prompt == 0], minlength=vocab)[4:6]
    assert chi_square(counts, np.array([0.5, 0.5])) < 10.83  # p = 0.001, 1 degree of freedom


def test_a_humaneval_run_compiles_once_per_length_bucket():
    from codex_jax.evaluation import problems

    decoder = BigramDecoder()
    sampler = completions.Sampler(
        decoder,
        jnp.zeros((259, 259)),
        ByteTokenizer(),
        sampling_config=strategies.SamplingConfig(temperature=0.8, top_p=0.95),
        max_new_tokens=4,
        stop=stopping.HUMAN_EVAL_STOP,
        max_prompt_len=300,
        batch_size=32,
    )
    prompts = [p["prompt"] for p in problems.read_problems().values()]
    results = sampler.complete(prompts, n=2, progress=False)
    assert len(results) == 164 and all(len(r) == 2 for r in results)
    assert sampler.buckets == (32, 64, 128, 256, 300)
    padded_lengths = [cache_len - 3 for _, cache_len in decoder.traces]  # cache: P + N - 1 slots
    assert len(padded_lengths) == len(set(padded_lengths)) and set(padded_lengths) <= {
        128,
        256,
        300,
    }
    assert 300 in padded_lengths  # the long prompts were truncated, not given their own shape


# --- the GPT through its KV cache ------------------------------------------------------------

GPT_CONFIG = transformer.GPTConfig(
    vocab_size=96, n_layers=2, d_model=64, n_heads=4, d_ff=128, max_len=64
)


@pytest.fixture(scope="module")
def gpt_params():
    """Random GPT params scaled up so greedy decoding does not just repeat its input."""
    params = jax.jit(transformer.GPT(GPT_CONFIG).init)(
        jax.random.key(0), jnp.zeros((1, 4), jnp.int32)
    )
    return jax.tree.map(lambda x: x * 25.0, nn.unbox(params["params"]))


def greedy_by_full_forward(params, prompts: list[list[int]], steps: int) -> list[list[int]]:
    """Greedy continuations recomputing the whole causal forward pass (no cache) every step.

    Rows are right-padded: causal attention keeps padding after a row's end from mattering.
    """
    forward = jax.jit(lambda tokens: transformer.GPT(GPT_CONFIG).apply({"params": params}, tokens))
    sequences = [list(p) for p in prompts]
    width = max(map(len, prompts)) + steps
    for _ in range(steps):
        logits = forward(jnp.asarray([s + [0] * (width - len(s)) for s in sequences]))
        for row, sequence in enumerate(sequences):
            sequence.append(int(jnp.argmax(logits[row, len(sequence) - 1])))
    return [s[len(p) :] for s, p in zip(sequences, prompts)]


def run_greedy(params, prompts: list[list[int]], steps: int, prompt_len: int = 16) -> np.ndarray:
    table = no_stop(GPT_CONFIG.vocab_size)
    decoder = decoding.GPTDecoder(GPT_CONFIG)
    out = decoding.generate(
        decoder,
        decoder.prepare(params),
        decoding.left_pad(prompts, prompt_len, 0),
        np.array([len(p) for p in prompts], np.int32),
        np.arange(len(prompts), dtype=np.int32),
        jax.random.key(0),
        table.next_state,
        table.matched,
        max_new_tokens=steps,
        sampling=strategies.SamplingConfig(temperature=0.0),
        eod_id=-1,
    )
    return np.asarray(out.tokens)


def test_gpt_decoder_given_unprepared_parameters_says_so(gpt_params):
    table = no_stop(GPT_CONFIG.vocab_size)
    with pytest.raises(ValueError, match="prepare"):
        decoding.generate(
            decoding.GPTDecoder(GPT_CONFIG),
            gpt_params,
            np.array([[5, 6]], np.int32),
            np.array([2], np.int32),
            np.zeros(1, np.int32),
            jax.random.key(0),
            table.next_state,
            table.matched,
            max_new_tokens=2,
            sampling=strategies.SamplingConfig(temperature=0.0),
            eod_id=-1,
        )


@pytest.fixture(params=[32, 3], ids=["one_chunk", "chunks_of_3"])
def decode_chunk(request, monkeypatch):
    """The decode loop's chunk length; 3 makes 8 steps run as loops of 3, 3 and 2 steps."""
    monkeypatch.setattr(decoding, "_DECODE_CHUNK", request.param)
    decoding.generate.clear_cache()  # the chunk length is read when generate is traced
    yield request.param
    decoding.generate.clear_cache()


def test_gpt_greedy_decoding_equals_argmax_of_full_forward_and_ignores_batch_neighbours(
    gpt_params, decode_chunk
):
    rng = np.random.default_rng(0)
    prompts = [rng.integers(3, 96, size=n).tolist() for n in (3, 16, 9, 1)]
    steps = 8
    batched = run_greedy(gpt_params, prompts, steps)
    expected = greedy_by_full_forward(gpt_params, prompts, steps)
    assert all(len(set(row)) > 2 for row in expected)  # the model does not merely repeat a token
    np.testing.assert_array_equal(batched, expected)
    alone = run_greedy(gpt_params, prompts[:1], steps)
    np.testing.assert_array_equal(alone[0], batched[0])


def test_rows_are_sharded_over_the_data_axes_with_the_same_tokens(gpt_params):
    import ml_collections

    from codex_jax.training import sharding

    mesh_config = ml_collections.ConfigDict(
        dict(
            data=-1,
            fsdp=2,
            model=1,
            rules=(
                ("batch", ("data", "fsdp")),
                ("embed", "fsdp"),
                ("mlp", "model"),
                ("heads", "model"),
                ("vocab", "model"),
                ("length", None),
            ),
        )
    )
    mesh, rules = sharding.make_mesh(mesh_config), sharding.rules_from_config(mesh_config)
    boxed = jax.eval_shape(
        transformer.GPT(GPT_CONFIG).init, jax.random.key(0), jnp.zeros((1, 4), jnp.int32)
    )
    placed = jax.device_put(
        gpt_params,
        sharding.logical_to_sharding(nn.get_partition_spec(boxed)["params"], mesh, rules),
    )
    prompts = [[5, 6, 7], list(range(10, 26))]
    table = no_stop(GPT_CONFIG.vocab_size)
    decoder = decoding.GPTDecoder(GPT_CONFIG)
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        out = decoding.generate(
            decoder,
            decoder.prepare(placed),
            decoding.left_pad(prompts, 16, 0),
            np.array([3, 16], np.int32),
            np.arange(16, dtype=np.int32) % 2,
            jax.random.key(0),
            table.next_state,
            table.matched,
            max_new_tokens=6,
            sampling=strategies.SamplingConfig(temperature=0.0),
            eod_id=-1,
        )
    assert out.tokens.sharding.spec[0] == ("data", "fsdp")
    assert out.tokens.sharding.shard_shape(out.tokens.shape)[0] == 2  # 16 rows over 8 devices
    alone = run_greedy(gpt_params, prompts, 6)
    np.testing.assert_array_equal(np.asarray(out.tokens), alone[np.arange(16) % 2])
