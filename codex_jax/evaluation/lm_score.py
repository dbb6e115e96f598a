"""Bits per byte of a trained model on any code, every byte of every file scored exactly once.

A document is scored as the model saw training documents: end-of-document, then the file's
tokens. The targets are the file's tokens (the leading eod is context only and no eod after the
file is scored), so their UTF-8 bytes are exactly the file's, and

    nats_per_token = summed cross-entropy (nats) over the targets / number of targets
    bits_per_byte  = summed cross-entropy (nats) over the targets / ln 2 / UTF-8 bytes of the files

Long documents, a sliding window: a document of n tokens is n + 1 ids (eod first). The first
window reads ids [0, seq_len) and scores targets 1..seq_len; each later window ends `stride`
targets further on (the last one at the document's end) and scores only the targets no window
scored before, so every target is scored once, after all ids before it or at least
seq_len - stride + 1 of them. stride = seq_len is non-overlapping windows (each id read once,
least context); stride = seq_len // 2 (the script's default) reads each about twice. A window
never holds two documents.

The windows of all documents are stacked into rows, padded to whole batches with rows whose loss
mask is 0, and scored by the trainer's jitted `eval_step` (`trainer.Scorer`, `trainer.evaluate`:
the formula of val_bits_per_byte), so shapes are fixed and it compiles once. val_bits_per_byte
itself reads packed windows that cross document boundaries and also scores each eod, so it reads
a little differently.

Files (`resolve_files`): a path, a glob, a folder (its .py files as the corpus walks them:
sorted, hidden folders and site-packages skipped) or a .jsonl(.gz)/.parquet corpus file (one
document per record's `content`). Files that are not UTF-8 are skipped and counted, as the
corpus drops them (`undecodable`).
"""

import dataclasses
import glob
import math
import os
from collections.abc import Iterator, Sequence

import numpy as np
import tqdm

from codex_jax.data import sources
from codex_jax.data.tokenizer import PAD_ID
from codex_jax.training import checkpoint, sharding, trainer

CORPUS_FILES = (".jsonl", ".jsonl.gz", ".parquet")


def resolve_files(spec: str) -> list[sources.Document]:
    """The documents of a comma-separated list of files, globs, folders and corpus files.

    Raises:
        ValueError: an entry matches nothing; the message names it.
    """
    documents = []
    for entry in (e.strip() for e in spec.split(",")):
        is_glob = any(char in entry for char in "*?[")
        paths = sorted(glob.glob(entry, recursive=True)) if is_glob else [entry]
        if not paths or not os.path.exists(paths[0]):  # a glob's matches all exist
            raise ValueError(f"--files: {entry!r} matches no file or folder")
        for path in paths:
            if os.path.isfile(path) and not path.endswith(CORPUS_FILES):  # any code, not only .py
                documents.append(sources.Document(path, path, None))
            else:
                documents.extend(sources.open_source(path))
    return documents


def read_texts(
    documents: Sequence[sources.Document], max_bytes: int | None = None
) -> tuple[list[str], list[str]]:
    """(texts, paths of the documents skipped as not UTF-8), in order; with `max_bytes`, the
    documents before the first that would take the total past it."""
    texts, skipped, total = [], [], 0
    for document in documents:
        try:
            if document.content is None:
                with open(document.file, "rb") as f:
                    text = f.read().decode("utf-8")
            else:
                text = document.content
            size = len(text.encode("utf-8"))  # a JSON row may hold a lone surrogate
        except UnicodeError:
            skipped.append(document.path)
            continue
        if max_bytes is not None and total + size > max_bytes:
            break
        texts.append(text)
        total += size
    return texts, skipped


def windows(
    ids: Sequence[int], seq_len: int, stride: int
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """(tokens int32[seq_len + 1], loss_mask int32[seq_len]) rows that score each target of `ids`
    (eod, then a document's tokens; targets are ids[1:]) once, as the module docstring says."""
    ids = np.asarray(ids, np.int32)
    n_targets, scored = len(ids) - 1, 0  # targets 1..scored are done
    while scored < n_targets:
        end = min(n_targets, scored + stride if scored else seq_len)  # last target of the window
        start = max(0, end - seq_len)  # its first input id
        tokens = np.full(seq_len + 1, PAD_ID, np.int32)
        tokens[: end + 1 - start] = ids[start : end + 1]
        loss_mask = np.zeros(seq_len, np.int32)
        loss_mask[scored - start : end - start] = 1  # target p sits at p - start - 1
        yield tokens, loss_mask
        scored = end


@dataclasses.dataclass(frozen=True)
class Score:
    files: int
    bytes: int  # UTF-8 bytes of the files, = bytes of the scored targets
    tokens: int  # scored targets: the files' tokens
    nats_per_token: float
    bits_per_byte: float


def score(
    model: checkpoint.Model,
    texts: Sequence[str],
    seq_len: int,
    stride: int,
    batch_size: int,
    progress: bool = True,
) -> Score:
    """Scores `texts` with windows of `seq_len` ids moving `stride` targets; `batch_size` rows a
    step, rounded up to a multiple of the mesh's batch shards.

    Raises:
        ValueError: seq_len beyond the model's positions, or stride outside 1..seq_len.
    """
    if not 1 <= seq_len <= model.gpt.config.max_len:
        raise ValueError(
            f"--seq_len={seq_len}: expected 1..{model.gpt.config.max_len} (model.max_len)"
        )
    if not 1 <= stride <= seq_len:
        raise ValueError(f"--stride={stride}: expected 1..seq_len ({seq_len})")
    shards = sharding.batch_shards(model.mesh.shape, model.rules)
    batch_size = math.ceil(batch_size / shards) * shards
    tokenizer, byte_lengths = model.tokenizer, model.tokenizer.token_byte_lengths()
    rows = [
        row for text in texts for row in windows(tokenizer.encode_prompt(text), seq_len, stride)
    ]
    if not rows:
        raise ValueError(f"nothing to score: the {len(texts)} files are empty")
    n_batches = math.ceil(len(rows) / batch_size)
    padding = [(np.full(seq_len + 1, PAD_ID, np.int32), np.zeros(seq_len, np.int32))]
    rows += padding * (n_batches * batch_size - len(rows))
    tokens = np.stack([t for t, _ in rows])  # (N, seq_len + 1)
    loss_mask = np.stack([m for _, m in rows])  # (N, seq_len)

    n_tokens = int(loss_mask.sum())
    n_bytes = int(np.sum(byte_lengths[tokens[:, 1:]] * loss_mask))
    file_bytes = sum(len(text.encode("utf-8")) for text in texts)
    if n_bytes != file_bytes:  # the tokenizer decodes byte-exactly and each target counts once
        raise AssertionError(f"scored targets cover {n_bytes} bytes, the files {file_bytes}")
    bar = tqdm.tqdm(total=n_tokens, unit="tok", unit_scale=True, disable=not progress)

    def eval_batch(index: int) -> dict[str, np.ndarray]:
        batch = slice(index * batch_size, (index + 1) * batch_size)
        bar.update(int(loss_mask[batch].sum()))
        return {"tokens": tokens[batch], "loss_mask": loss_mask[batch]}

    data = trainer.DataSource(
        vocab_size=tokenizer.vocab_size,
        train_batch=eval_batch,  # never called: evaluate reads eval_batch
        eval_batch=eval_batch,
        token_byte_lengths=byte_lengths,
    )
    with bar:
        sums = trainer.evaluate(trainer.Scorer.for_model(model), model.params, data, n_batches)
    return Score(
        files=len(texts),
        bytes=n_bytes,
        tokens=n_tokens,
        nats_per_token=sums["val_loss"],
        bits_per_byte=sums["val_bits_per_byte"],
    )
