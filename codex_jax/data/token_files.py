"""Token data: the corpus splits encoded once into flat token files, and batches drawn from them.

Artifacts in `<workdir>/data/`: `train.bin` and `val.bin` (raw token ids, uint16 when the
vocabulary fits, else uint32; every document followed by one eod id, so documents are packed
back to back) and `meta.json` (dtype, vocab_size, eod_id, pad_id, tokenizer_sha256 and per split
n_tokens, n_documents, n_bytes), written last and atomically: it marks the data complete.

Batches are pure functions of their arguments, so a restarted run needs no iterator state.
Training views a split as W = (n_tokens - 1) // seq_len windows of seq_len + 1 tokens (stride
seq_len: consecutive windows share one token, the last target of one being the first input of
the next, so every token is a target exactly once per epoch). Epoch e visits the windows in a
permutation keyed by (seed, e); global step s takes windows s*B .. (s+1)*B - 1 of the epochs laid
end to end, and process p of P takes rows p*B/P .. (p+1)*B/P - 1 of that global batch.
Validation takes consecutive windows in file order, so every evaluation scores the same tokens.
"""

import functools
import gzip
import hashlib
import json
import os
import time
from collections.abc import Iterator

import ml_collections
import numpy as np
import tqdm
from absl import logging

from codex_jax import jsonl
from codex_jax.data import parallel_map
from codex_jax.data import tokenizer as tokenizer_lib
from codex_jax.workdir import Workdir, require

SPLITS = ("train", "val")
_CHUNK_DOCUMENTS = 32  # documents per task sent to an encoding worker

_worker_tokenizer: tokenizer_lib.Tokenizer | None = None


def token_dtype(vocab_size: int) -> np.dtype:
    """uint16 when every id fits in it, else uint32."""
    return np.dtype(np.uint16 if vocab_size <= 1 << 16 else np.uint32)


def _init_worker(tokenizer_path: str) -> None:
    global _worker_tokenizer
    _worker_tokenizer = tokenizer_lib.load_tokenizer(tokenizer_path)


def _encode_line(line: str) -> tuple[np.ndarray, int]:
    """A JSONL line -> (ids of its document followed by eod, uint32; UTF-8 bytes of the content)."""
    content = json.loads(line)["content"]
    ids = _worker_tokenizer.encode(content)
    ids.append(_worker_tokenizer.eod_id)
    return np.asarray(ids, dtype=np.uint32), len(content.encode("utf-8"))


def _lines(jsonl_path: str, progress: tqdm.tqdm) -> Iterator[str]:
    """Non-blank lines of a .jsonl.gz file; advances `progress` by compressed bytes read."""
    with open(jsonl_path, "rb") as raw, gzip.open(raw, "rt", encoding="utf-8") as text:
        for line in text:
            if line.strip():
                yield line
            progress.update(raw.tell() - progress.n)
        progress.update(raw.tell() - progress.n)


def encode_split(
    jsonl_path: str | os.PathLike,
    bin_path: str | os.PathLike,
    tokenizer_path: str | os.PathLike,
    dtype: np.dtype,
    n_workers: int,
) -> dict[str, int]:
    """Encodes a corpus split into a token file, streaming, on `n_workers` processes (0 = every core).

    Documents keep their order (encoded in parallel, written in order; parallel.ordered_map reads
    only a few chunks ahead); the file is written under a temporary name and renamed when complete.

    Returns:
        {"n_tokens", "n_documents", "n_bytes"}: ids written (eod included), documents, and UTF-8
        bytes of their contents.
    """
    jsonl_path, bin_path = os.fspath(jsonl_path), os.fspath(bin_path)
    counts = {"n_tokens": 0, "n_documents": 0, "n_bytes": 0}
    with (
        jsonl.atomic_path(bin_path) as temp_path,
        tqdm.tqdm(
            total=os.path.getsize(jsonl_path),
            unit="B",
            unit_scale=True,
            desc=f"encode {os.path.basename(jsonl_path)}",
        ) as progress,
        open(temp_path, "wb") as out,
    ):
        for ids, n_bytes in parallel_map.ordered_map(
            _encode_line,
            _lines(jsonl_path, progress),
            n_workers=n_workers,
            chunk_size=_CHUNK_DOCUMENTS,
            initializer=_init_worker,
            initargs=(os.fspath(tokenizer_path),),
        ):
            out.write(ids.astype(dtype).tobytes())
            counts["n_tokens"] += len(ids)
            counts["n_documents"] += 1
            counts["n_bytes"] += n_bytes
            progress.set_postfix(tokens=counts["n_tokens"], refresh=False)
    return counts


def encode_corpus(
    corpus_dir: str | os.PathLike,
    tokenizer_path: str | os.PathLike,
    data_dir: str | os.PathLike,
    n_workers: int = 0,
) -> str:
    """Encodes `corpus_dir/{train,val}.jsonl.gz` into `data_dir` on `n_workers` processes (0 = every
    core); meta.json is written last."""
    data_dir = os.fspath(data_dir)
    os.makedirs(data_dir, exist_ok=True)
    meta_path = os.path.join(data_dir, "meta.json")
    if os.path.exists(meta_path):
        os.remove(meta_path)  # the old marker must not vouch for files being rewritten
    tokenizer = tokenizer_lib.load_tokenizer(tokenizer_path)
    dtype = token_dtype(tokenizer.vocab_size)
    meta = {
        "dtype": dtype.name,
        "vocab_size": tokenizer.vocab_size,
        "eod_id": tokenizer.eod_id,
        "pad_id": tokenizer.pad_id,
        "tokenizer_sha256": _file_sha256(tokenizer_path),
    }
    for split in SPLITS:
        start = time.perf_counter()
        meta[split] = counts = encode_split(
            os.path.join(corpus_dir, f"{split}.jsonl.gz"),
            os.path.join(data_dir, f"{split}.bin"),
            tokenizer_path,
            dtype,
            n_workers,
        )
        seconds = time.perf_counter() - start
        logging.info(
            "data: %s: %d documents, %d tokens, %.2f bytes/token, %.1f s (%.1f MB/s)",
            split,
            counts["n_documents"],
            counts["n_tokens"],
            counts["n_bytes"] / max(counts["n_tokens"], 1),
            seconds,
            counts["n_bytes"] / 1e6 / max(seconds, 1e-9),
        )
    jsonl.write_json_atomically(meta_path, meta)
    return data_dir


def prepare_data(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> str:
    """Encodes the corpus with the tokenizer (the stages before this one); returns `<workdir>/data`."""
    paths = Workdir(workdir)
    require(os.path.join(paths.corpus, "stats.json"), "corpus")
    return encode_corpus(
        paths.corpus, require(paths.tokenizer, "tokenizer"), paths.data, config.data.n_workers
    )


def ensure_data(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> str:
    """`<workdir>/data`, built first unless complete (meta.json present) and encoded with the
    current tokenizer.model (it records the model's SHA-256; a retrained tokenizer re-encodes)."""
    paths = Workdir(workdir)
    tokenizer_path, data_dir = require(paths.tokenizer, "tokenizer"), paths.data
    if os.path.exists(os.path.join(data_dir, "meta.json")):
        if load_meta(data_dir).get("tokenizer_sha256") == _file_sha256(tokenizer_path):
            return data_dir
        logging.info(
            "data: %s was encoded with another tokenizer than %s; encoding again",
            data_dir,
            tokenizer_path,
        )
    return prepare_data(config, workdir)


def _file_sha256(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.sha256(f.read()).hexdigest()


def load_meta(data_dir: str | os.PathLike) -> dict:
    """meta.json of complete token data (see the module docstring for its fields)."""
    path = os.path.join(os.fspath(data_dir), "meta.json")
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path}: not found, the token data is incomplete; the 'data' stage makes it "
            "(scripts/prepare_data.py)"
        )
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def load_tokens(data_dir: str | os.PathLike, split: str) -> np.memmap:
    """The token ids of a split, memory-mapped read-only: [n_tokens] of meta.json's dtype."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    meta = load_meta(data_dir)
    return np.memmap(
        os.path.join(os.fspath(data_dir), f"{split}.bin"),
        dtype=meta["dtype"],
        mode="r",
        shape=(meta[split]["n_tokens"],),
    )


def _num_windows(tokens: np.ndarray, seq_len: int, batch_size: int, process_count: int) -> int:
    if batch_size % process_count:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by process_count {process_count}"
        )
    n_windows = (len(tokens) - 1) // seq_len
    if n_windows < 1:
        raise ValueError(
            f"the split has {len(tokens)} tokens, fewer than one window of seq_len + 1 = {seq_len + 1}"
        )
    return n_windows


@functools.lru_cache(maxsize=4)
def _epoch_permutation(n_windows: int, seed: int, epoch: int) -> np.ndarray:
    return np.random.default_rng([seed, epoch]).permutation(n_windows)


def _gather(tokens: np.ndarray, windows: np.ndarray, seq_len: int) -> np.ndarray:
    starts = windows.astype(np.int64) * seq_len
    return np.asarray(tokens[starts[:, None] + np.arange(seq_len + 1)], dtype=np.int32)


def _process_rows(batch_size: int, process_index: int, process_count: int) -> np.ndarray:
    rows = batch_size // process_count
    return np.arange(process_index * rows, (process_index + 1) * rows, dtype=np.int64)


def shuffled_indices(
    n_items: int,
    *,
    batch_size: int,
    seed: int,
    step: int,
    process_index: int = 0,
    process_count: int = 1,
) -> np.ndarray:
    """Item indices of this process's rows at `step`: items [step*B, (step+1)*B) of the
    concatenated per-epoch permutations of range(n_items), keyed by (seed, epoch). int64[B // P]."""
    if batch_size % process_count:
        raise ValueError(
            f"batch_size {batch_size} is not divisible by process_count {process_count}"
        )
    global_items = step * batch_size + _process_rows(batch_size, process_index, process_count)
    epochs, positions = np.divmod(global_items, n_items)
    items = np.empty_like(positions)
    for epoch in np.unique(epochs):
        in_epoch = epochs == epoch
        items[in_epoch] = _epoch_permutation(n_items, seed, int(epoch))[positions[in_epoch]]
    return items


def get_batch(
    tokens: np.ndarray,
    *,
    batch_size: int,
    seq_len: int,
    seed: int,
    step: int,
    process_index: int = 0,
    process_count: int = 1,
) -> np.ndarray:
    """This process's rows of the global training batch of `step` (see the module docstring).

    Returns:
        int32 [batch_size // process_count, seq_len + 1]: inputs are [:, :-1], targets [:, 1:].
    """
    n_windows = _num_windows(tokens, seq_len, batch_size, process_count)
    windows = shuffled_indices(
        n_windows,
        batch_size=batch_size,
        seed=seed,
        step=step,
        process_index=process_index,
        process_count=process_count,
    )
    return _gather(tokens, windows, seq_len)


def get_eval_batch(
    tokens: np.ndarray,
    *,
    batch_size: int,
    seq_len: int,
    index: int,
    num_batches: int = 0,
    process_index: int = 0,
    process_count: int = 1,
) -> np.ndarray:
    """This process's rows of validation batch `index` of a pass of `num_batches` batches.

    The pass's N = num_batches * batch_size windows are spread evenly over the whole split:
    window j of the pass is the split's window floor(j * n / N) (every (n / N)-th of its n
    windows), so a validation pass scores a fixed sample of every part of the split rather than
    its first files. When N >= n (or num_batches = 0: no pass length given), window j is j,
    wrapping around to the start.

    Returns:
        int32 [batch_size // process_count, seq_len + 1].
    """
    n_windows = _num_windows(tokens, seq_len, batch_size, process_count)
    j = index * batch_size + _process_rows(batch_size, process_index, process_count)
    total = num_batches * batch_size
    windows = j * n_windows // total if 0 < total < n_windows else j % n_windows
    return _gather(tokens, windows, seq_len)
