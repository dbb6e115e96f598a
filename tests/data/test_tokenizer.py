import os
import random

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from codex_jax import jsonl, pipeline
from codex_jax.data import tokenizer as tokenizer_lib

WORDS = (
    "def",
    "return",
    "self",
    "value",
    "items",
    "for",
    "in",
    "if",
    "else",
    "None",
    "import",
    "class",
    "print",
    "range",
    "len",
    "x",
    "y",
    "_private",
    "données",
    "名前",
)


def synthetic_file(rng: random.Random) -> str:
    """A Python-like file: nested indentation, tab-indented lines, non-ASCII names, CR line ends,
    and methods frequent enough that BPE would merge across their line ends if it were allowed."""
    lines = []
    for _ in range(rng.randint(20, 60)):
        if rng.random() < 0.3:
            lines.append("    def run(self):\n        return self.value")
            continue
        depth = rng.randint(0, 3)
        indent = "\t" * depth if rng.random() < 0.1 else "    " * depth
        words = " ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 6)))
        lines.append(
            f"{indent}{words}({rng.randint(0, 999)}):" + ("\r" if rng.random() < 0.05 else "")
        )
    return "\n".join(lines) + "\n"


@pytest.fixture(scope="module")
def documents() -> list[str]:
    rng = random.Random(0)
    return [synthetic_file(rng) for _ in range(150)]


@pytest.fixture(scope="module")
def tok(documents) -> tokenizer_lib.Tokenizer:
    return tokenizer_lib.train_from_documents(documents, vocab_size=600, num_threads=1)


TRICKY = [
    "",
    "\tindented\twith\ttabs\t",
    "x  =   1     ",  # runs of spaces and trailing spaces
    "line one\r\nline two\r\n",
    "\ufeffimport os\n",  # byte-order mark
    "naïve = 'café' + '名前' + '😀'\n",
    "\u2581",  # sentencepiece's own space marker, as real text
    "a\u2581b \u2581\u2581 c\u2581",
    " \u2581 ",
    "\x00",
    "nul\x00inside\x00",
    "\x01\x02\x1b[0m\x7f",
    "lone\rreturn\r",
    "\r",
    "\n\n\n",
    "        ",
    " leading space",
    "<|endoftext|><pad><unk></s> \u2047 ",
    "\U0010ffff\ue000",  # last code point, private use
    f"a{tokenizer_lib.LINE_DELIMITER}b\n{tokenizer_lib.LINE_DELIMITER}",  # the trainer's line delimiter
]


@pytest.mark.parametrize("text", TRICKY)
def test_tricky_strings_round_trip(tok, text):
    assert tok.decode(tok.encode(text)) == text


text_strategy = st.one_of(
    st.text(alphabet=st.characters(exclude_categories=("Cs",))),  # any code point but surrogates
    st.lists(
        st.sampled_from(
            [
                " ",
                "\t",
                "\n",
                "\r",
                "\x00",
                "\x0b",
                "\x0c",
                "\x1b",
                "\u2581",
                "\ufeff",
                "\u00a0",
                "\u3000",
                "é",
                "x",
                "def",
                "    ",
            ]
        ),
        max_size=40,
    ).map("".join),
)


@settings(max_examples=300, deadline=None)
@given(text=text_strategy)
def test_round_trip_any_text(tok, text):
    assert tok.decode(tok.encode(text)) == text


@settings(max_examples=200, deadline=None)
@given(text=text_strategy)
def test_encoding_never_produces_special_ids(tok, text):
    assert not {tok.pad_id, tok.eod_id, tokenizer_lib.UNK_ID} & set(tok.encode(text))


def test_lone_surrogate_is_refused_with_its_position(tok):
    with pytest.raises(UnicodeEncodeError, match="position 1"):
        tok.encode("a\ud800b")


def test_special_ids_are_distinct_and_decode_to_nothing(tok):
    specials = [tok.pad_id, tok.eod_id, tokenizer_lib.UNK_ID]
    assert len(set(specials)) == 3
    assert all(0 <= i < tok.vocab_size for i in specials)
    assert tok.decode(specials + tok.encode("x = 1") + [tok.eod_id, tok.pad_id]) == "x = 1"


def test_completion_decoded_alone_keeps_leading_spaces(tok):
    text = "def f(x):\n    return x\n\n\ndef g(y):\n        return   y  \n"
    ids = tok.encode(text)
    cuts_before_space = 0
    for cut in range(len(ids) + 1):
        head, tail = tok.decode(ids[:cut]), tok.decode(ids[cut:])
        assert head + tail == text
        cuts_before_space += tail.startswith(" ")
    assert cuts_before_space > 0  # some suffix does start with spaces, so the check above bites


@settings(max_examples=200, deadline=None)
@given(head=text_strategy, tail=text_strategy)
@example(
    head="    def run(self):", tail="        return self.value"
)  # frequent in the training files
def test_tokens_are_line_aligned(tok, head, tail):
    """A prompt ending with a newline tokenizes as it does inside a longer text."""
    assert tok.encode(head + "\n") + tok.encode(tail) == tok.encode(head + "\n" + tail)


def test_no_token_holds_a_newline_except_at_its_end(tok):
    pieces = [tok.decode_bytes([i]) for i in range(tok.vocab_size)]
    assert any(
        p.endswith(b"\n") and len(p) > 1 for p in pieces
    )  # newlines do merge with what precedes
    assert not [p for p in pieces if b"\n" in p[:-1]]


def test_real_space_marker_is_not_a_space(tok):
    decoded = tok.decode(tok.encode("a\u2581b"))
    assert decoded == "a\u2581b" and " " not in decoded


def test_whitespace_runs_are_cheap(tok):
    """Indentation is learned as whole pieces: 8 spaces cost far fewer than 8 tokens."""
    assert len(tok.encode("        ")) <= 2


@settings(max_examples=200, deadline=None)
@given(text=text_strategy)
def test_token_byte_lengths_count_the_encoded_bytes(tok, text):
    lengths = tok.token_byte_lengths()
    assert int(lengths[tok.encode(text)].sum()) == len(text.encode("utf-8"))


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_token_byte_lengths_match_decode_of_any_ids(tok, data):
    """Any ids (byte-fallback ids only as whole encoded characters) decode to as many bytes as counted."""
    non_byte_ids = [i for i in range(tok.vocab_size) if not (3 <= i < 3 + 256)]
    ids = []
    for _ in range(data.draw(st.integers(0, 8))):
        if data.draw(st.booleans()):
            ids += data.draw(st.lists(st.sampled_from(non_byte_ids), max_size=10))
        else:
            ids += tok.encode(data.draw(st.text(max_size=8)))
    lengths = tok.token_byte_lengths()
    assert lengths.dtype == np.int32 and lengths.shape == (tok.vocab_size,)
    assert int(lengths[np.asarray(ids, dtype=np.int64)].sum()) == len(
        tok.decode(ids).encode("utf-8")
    )


def test_byte_fallback_ids_are_the_256_byte_values(tok):
    """ids 3..258 are sentencepiece's <0x00>..<0xFF>; the test above relies on this layout."""
    assert [tok.decode_bytes([3 + b]) for b in range(256)] == [bytes([b]) for b in range(256)]
    assert tok.token_byte_lengths()[[tok.pad_id, tok.eod_id, tokenizer_lib.UNK_ID]].tolist() == [
        0,
        0,
        0,
    ]


def test_sample_documents_is_deterministic_within_budget_and_order_free(tmp_path, documents):
    records = [{"path": f"pkg/module_{i}.py", "content": d} for i, d in enumerate(documents)]
    jsonl.write_jsonl(tmp_path / "a.jsonl.gz", records)
    jsonl.write_jsonl(tmp_path / "b.jsonl.gz", records[::-1])
    budget = sum(len(d.encode()) for d in documents) // 3
    sample_a = tokenizer_lib.sample_documents(tmp_path / "a.jsonl.gz", budget)
    sample_b = tokenizer_lib.sample_documents(tmp_path / "b.jsonl.gz", budget)
    assert sorted(sample_a) == sorted(sample_b)
    assert 0.9 * budget < sum(len(d.encode()) for d in sample_a) <= budget
    assert set(sample_a) < set(documents)


def test_the_tokenizer_stage_builds_the_corpus_trains_once_then_reuses(
    tmp_path, folder_source, documents
):
    config = folder_source(
        tmp_path / "src", {f"pkg/m{i:03d}.py": d for i, d in enumerate(documents)}
    )
    config.tokenizer.vocab_size = 400
    workdir = tmp_path / "work"
    pipeline.run(config, workdir, ["tokenizer"])
    path = os.path.join(workdir, "tokenizer.model")
    assert tokenizer_lib.load_tokenizer(path).vocab_size == 400
    assert sorted(os.listdir(workdir)) == [
        "corpus",
        "timings.json",
        "tokenizer.model",
    ]  # no temp file
    mtimes = [os.stat(p).st_mtime_ns for p in (path, workdir / "corpus" / "stats.json")]
    pipeline.run(config, workdir, ["tokenizer"])
    assert [os.stat(p).st_mtime_ns for p in (path, workdir / "corpus" / "stats.json")] == mtimes
