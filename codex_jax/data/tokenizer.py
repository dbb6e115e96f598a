"""The code tokenizer: sentencepiece BPE learned from whole Python files, decoded byte-exactly.

Training reads a deterministic sample of the corpus's train split (whole files, up to
`config.tokenizer.max_train_bytes`) and writes `<workdir>/tokenizer.model` atomically. The
trainer options are those for code: no normalization, whitespace kept as it is, whitespace-only
pieces, bytes as the fallback for any character outside the vocabulary, and pieces that may
cross spaces and letter/punctuation boundaries, so indentation and frequent statement parts
("▁▁▁▁▁▁▁▁", "▁=▁self.", "):\n") become single tokens, as Codex's whitespace tokens do.

Line-aligned: every newline ends a token (the trainer sees each line as a separate piece of text,
so no piece holds a newline except at its end). Hence encode(a) + encode(b) == encode(a + b)
whenever `a` ends with "\n": a HumanEval prompt (which ends with a newline) is tokenized as it
would be inside a training file, and a completion starts at a token boundary the model has seen.
That costs 6-7% of compression (table below).

Exactness: `decode(encode(text)) == text` for any string without lone surrogates. Two things in
sentencepiece stand in the way and are handled here:
  - it writes spaces as U+2581 ("▁") and turns every U+2581 back into a space, so a real U+2581
    in the text is encoded as its three UTF-8 byte-fallback ids instead;
  - its decoder trims and rewrites (a leading space, unknown pieces), so decoding goes through a
    table of the bytes each id stands for, and a completion decoded on its own keeps its leading
    spaces.
The same table gives `token_byte_lengths`, the UTF-8 bytes each id contributes, which turns
summed cross-entropy into bits per byte.
"""

import hashlib
import io
import os
import time
from collections.abc import Iterable

import ml_collections
import numpy as np
import sentencepiece as spm
from absl import logging

from codex_jax import jsonl
from codex_jax.data import parallel_map
from codex_jax.workdir import Workdir, require

SPACE_MARKER = "\u2581"  # sentencepiece's symbol for a space inside pieces
PAD_ID, UNK_ID, EOD_ID = 0, 1, 2
EOD_PIECE = "<|endoftext|>"  # GPT-2/Codex's document separator; a control id, never matched in text
MODEL_FILENAME = "tokenizer.model"

# Bytes/token on held-out Python at vocab 8,192, trained on 20 MB of the 3.11 stdlib corpus
# (corpus.py defaults): "val" = its validation split, "numpy" = numpy 2's .py files (9 MB).
#   sentencepiece defaults + the code options ....................... val 3.55  numpy 3.13
#   + split_by_whitespace=False ..................................... val 3.84  numpy 3.35
#   + split_by_unicode_script=False ................................. val 4.53  numpy 3.66
#   + treat_whitespace_as_suffix=True, max_sentencepiece_length=32 .. val 4.86  numpy 3.85
#   line-aligned instead, max_sentencepiece_length=32 (chosen) ...... val 4.53  numpy 3.61
#   chosen with treat_whitespace_as_suffix=True ..................... val 4.38  numpy 3.57
#   chosen, but runs of blank lines may merge ....................... val 4.59  numpy 3.64
#   (split_digits=True costs about 0.3 everywhere; vocab 4,096 / 16,384 without line alignment:
#    numpy 3.37 / 4.27)
LINE_DELIMITER = "\ue000"  # a private-use character: the trainer splits its input there, drops it
TRAINER_OPTIONS = dict(
    model_type="bpe",
    normalization_rule_name="identity",  # code is byte-exact: no NFKC, no case or width folding
    remove_extra_whitespaces=False,  # indentation and trailing spaces are content
    add_dummy_prefix=False,  # no invented leading space
    allow_whitespace_only_pieces=True,  # runs of spaces (indentation) as single pieces
    byte_fallback=True,  # any character outside the vocabulary becomes its UTF-8 bytes: no <unk>
    character_coverage=1.0,  # every character seen in training gets a piece
    split_by_whitespace=False,  # pieces may cross spaces ("▁in▁range(", "▁=▁")
    split_by_unicode_script=False,  # and letter/punctuation boundaries ("self.", "):\n")
    pretokenization_delimiter=LINE_DELIMITER,  # training only: no piece crosses a line end
    max_sentencepiece_length=32,  # long enough for deep indentation and common statements
    hard_vocab_limit=False,  # a small corpus yields fewer pieces instead of failing
    pad_id=PAD_ID,
    unk_id=UNK_ID,
    eos_id=EOD_ID,
    bos_id=-1,
    eos_piece=EOD_PIECE,
    minloglevel=1,  # warnings only: the trainer's INFO log is thousands of lines
)


class Tokenizer:
    """A trained sentencepiece model with exact, byte-level decoding.

    Attributes:
        model_proto: the serialized sentencepiece model, as written to tokenizer.model.
        vocab_size: number of ids, specials included.
        pad_id: padding; decodes to nothing.
        eod_id: end of document, appended after every document in the token data; decodes to
            nothing.
    """

    def __init__(self, model_proto: bytes):
        self.model_proto = model_proto
        self._processor = spm.SentencePieceProcessor(model_proto=model_proto)
        self.vocab_size = self._processor.get_piece_size()
        self.pad_id = self._processor.pad_id()
        self.eod_id = self._processor.eos_id()
        self._id_bytes = [self._piece_bytes(i) for i in range(self.vocab_size)]
        self._marker_ids = [
            self._processor.piece_to_id(f"<0x{b:02X}>") for b in SPACE_MARKER.encode()
        ]

    def _piece_bytes(self, token_id: int) -> bytes:
        piece = self._processor.id_to_piece(token_id)
        if self._processor.is_control(token_id) or self._processor.is_unknown(token_id):
            return b""
        if self._processor.is_byte(token_id):
            return bytes([int(piece[3:5], 16)])  # "<0xHH>"
        return piece.replace(SPACE_MARKER, " ").encode("utf-8")

    def encode_prompt(self, text: str) -> list[int]:
        """The ids a prompt is given to the model as: end-of-document, then `text`'s, as every
        training document follows one (pretraining's packing, fine-tuning's rows)."""
        return [self.eod_id] + self.encode(text)

    def encode(self, text: str) -> list[int]:
        """Token ids of `text` (no eod added).

        Raises:
            UnicodeEncodeError: `text` holds a lone surrogate (not encodable as UTF-8).
        """
        parts = text.split(SPACE_MARKER)
        try:
            encoded_parts = [self._processor.encode(part) for part in parts]
        except RuntimeError:
            text.encode("utf-8")  # sentencepiece's own error is opaque; this one names the position
            raise
        ids: list[int] = []
        for index, part_ids in enumerate(encoded_parts):
            if index:
                ids.extend(self._marker_ids)
            ids.extend(part_ids)
        return ids

    def decode_bytes(self, ids: Iterable[int]) -> bytes:
        """The UTF-8 bytes `ids` stand for; pad and eod contribute nothing."""
        return b"".join(self._id_bytes[int(i)] for i in ids)

    def decode(self, ids: Iterable[int]) -> str:
        """The text of `ids`, exactly as encoded; pad and eod are skipped.

        Byte-fallback ids that do not form whole UTF-8 characters (a sequence cut inside a
        character) decode to U+FFFD.
        """
        return self.decode_bytes(ids).decode("utf-8", errors="replace")

    def token_byte_lengths(self) -> np.ndarray:
        """int32 [vocab_size]: UTF-8 bytes each id contributes when decoded (0 for specials)."""
        return np.array([len(b) for b in self._id_bytes], dtype=np.int32)


def load_tokenizer(path: str | os.PathLike) -> Tokenizer:
    """Loads a model written by `train_tokenizer`, or the JSON bundle of an imported model's
    tokenizer that a workdir started from it keeps instead (`ensure_tokenizer`)."""
    with open(path, "rb") as f:
        content = f.read()
    if content.startswith(b"{"):  # a serialized sentencepiece model starts with a field tag
        from codex_jax.model import hf_tokenizer

        return hf_tokenizer.HFTokenizer.from_bundle(content.decode("utf-8"), os.fspath(path))
    return Tokenizer(content)


def sample_documents(jsonl_path: str | os.PathLike, max_bytes: int) -> list[str]:
    """Whole documents from a corpus split, up to `max_bytes` UTF-8 bytes in all.

    The sample is deterministic and independent of file order: documents are taken in the order
    of a hash of their path (a uniform random order), skipping any that would overflow the budget.
    Two passes over the file, so only the sample is ever held in memory.
    """
    sizes = []
    for row, record in enumerate(jsonl.read_jsonl(jsonl_path)):
        key = hashlib.blake2b(record["path"].encode("utf-8"), digest_size=8).digest()
        sizes.append((key, row, len(record["content"].encode("utf-8"))))
    chosen, total = set(), 0
    for _, row, size in sorted(sizes):
        if total + size <= max_bytes:
            chosen.add(row)
            total += size
    return [
        record["content"]
        for row, record in enumerate(jsonl.read_jsonl(jsonl_path))
        if row in chosen
    ]


def train_from_documents(
    documents: list[str], vocab_size: int, num_threads: int | None = None
) -> Tokenizer:
    """Learns a BPE model from whole documents and returns it (not yet saved)."""
    if not documents:
        raise ValueError("no documents to train the tokenizer on")
    # one "sentence" per document, its lines cut apart by the delimiter; a longer sentence
    # would be dropped silently, hence the exact maximum
    delimited = [d.replace("\n", "\n" + LINE_DELIMITER) for d in documents]
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(delimited),
        model_writer=model,
        vocab_size=vocab_size,
        max_sentence_length=max(len(d.encode("utf-8")) for d in delimited) + 1,
        num_threads=num_threads or parallel_map.available_cores(),
        **TRAINER_OPTIONS,
    )
    return Tokenizer(model.getvalue())


def write_model(tokenizer: Tokenizer, path: str | os.PathLike) -> None:
    """Writes the model file atomically (temp file + rename), so a present file is complete."""
    with jsonl.atomic_path(path) as temporary, open(temporary, "wb") as f:
        f.write(tokenizer.model_proto)


def train_tokenizer(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> str:
    """Trains on the corpus's train split (the corpus stage's); returns the model path."""
    paths = Workdir(workdir)
    corpus_dir = require(os.path.join(paths.corpus, "stats.json"), "corpus") and paths.corpus
    path = paths.tokenizer
    start = time.perf_counter()
    documents = sample_documents(
        os.path.join(corpus_dir, "train.jsonl.gz"), config.tokenizer.max_train_bytes
    )
    n_bytes = sum(len(d.encode("utf-8")) for d in documents)
    logging.info(
        "tokenizer: sampled %d files, %.1f MB, in %.1f s; training BPE, vocab %d",
        len(documents),
        n_bytes / 1e6,
        time.perf_counter() - start,
        config.tokenizer.vocab_size,
    )
    tokenizer = train_from_documents(documents, config.tokenizer.vocab_size)
    write_model(tokenizer, path)
    logging.info(
        "tokenizer: %d pieces in %.1f s -> %s",
        tokenizer.vocab_size,
        time.perf_counter() - start,
        path,
    )
    return path


def ensure_tokenizer(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> str:
    """`<workdir>/tokenizer.model`, trained first when it is missing; with
    `config.init.hf_checkpoint`, that model's own tokenizer instead (`codex_jax.model.hf`),
    written again when the workdir holds another."""
    path = Workdir(workdir).tokenizer
    imported = config.get("init", {}).get("hf_checkpoint")
    if imported:
        from codex_jax.model import hf

        bundle = hf.load_tokenizer(imported).to_bundle()
        current = None
        if os.path.exists(path):
            with open(path, encoding="utf-8", errors="replace") as f:
                current = f.read()
        if current != bundle:
            jsonl.write_text_atomically(path, bundle)
            logging.info("tokenizer: %s's own -> %s", imported, path)
        return path
    if os.path.exists(path):
        return path
    return train_tokenizer(config, workdir)


def bytes_per_token(tokenizer: Tokenizer, jsonl_path: str | os.PathLike) -> float:
    """Mean UTF-8 bytes per token over the documents of a JSONL corpus file (no eod counted)."""
    n_bytes = n_tokens = 0
    for record in jsonl.read_jsonl(jsonl_path):
        n_bytes += len(record["content"].encode("utf-8"))
        n_tokens += len(tokenizer.encode(record["content"]))
    return n_bytes / max(n_tokens, 1)
