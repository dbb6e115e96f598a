import json
import os

import numpy as np
import pytest
from helpers import DOCUMENTS

from codex_jax import jsonl, pipeline
from codex_jax.data import token_files
from codex_jax.data import tokenizer as tokenizer_lib


def corpus_config(folder_source, folder, data_workers: int):
    """The tiny config over a folder of DOCUMENTS, a 400-id tokenizer and ~10% validation files."""
    config = folder_source(folder, {f"pkg/m{i:03d}.py": d for i, d in enumerate(DOCUMENTS)})
    config.corpus.val_fraction = 0.1
    config.tokenizer.vocab_size = 400
    config.data.n_workers = data_workers
    return config


def corpus_split(workdir, split: str) -> list[str]:
    """The documents of a corpus split, in file order."""
    return [r["content"] for r in jsonl.read_jsonl(workdir / "corpus" / f"{split}.jsonl.gz")]


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, folder_source):
    """A workdir whose corpus, tokenizer and data the pipeline's stages built (data on 2 workers)."""
    root = tmp_path_factory.mktemp("data")
    config, workdir = corpus_config(folder_source, root / "src", data_workers=2), root / "work"
    pipeline.run(config, workdir, ["data"])
    train, val = corpus_split(workdir, "train"), corpus_split(workdir, "val")
    assert sorted(train + val) == sorted(DOCUMENTS) and len(val) >= 3
    assert (
        len(train) > 2 * token_files._CHUNK_DOCUMENTS
    )  # several chunks: their order across workers is tested
    markers = [workdir / p for p in ("corpus/stats.json", "tokenizer.model", "data/meta.json")]
    mtimes = [os.stat(p).st_mtime_ns for p in markers]
    pipeline.run(config, workdir, ["data"])  # complete: returns without touching any stage's files
    assert [os.stat(p).st_mtime_ns for p in markers] == mtimes
    return workdir


def test_ensure_data_encodes_again_after_the_tokenizer_changes(tmp_path, folder_source):
    config = corpus_config(folder_source, tmp_path / "src", data_workers=1)
    workdir = tmp_path / "work"
    pipeline.run(config, workdir, ["corpus"])
    for vocab_size in (400, 350):
        tokenizer_lib.write_model(
            tokenizer_lib.train_from_documents(DOCUMENTS, vocab_size, num_threads=1),
            workdir / "tokenizer.model",
        )
        data_dir = token_files.ensure_data(config, workdir)
        assert token_files.load_meta(data_dir)["vocab_size"] == vocab_size
    tok = tokenizer_lib.load_tokenizer(workdir / "tokenizer.model")
    assert tok.decode(token_files.load_tokens(data_dir, "val")) == "".join(
        corpus_split(workdir, "val")
    )


def test_meta_json_counts(workdir):
    with open(workdir / "data" / "meta.json") as f:
        meta = json.load(f)
    assert meta["dtype"] == "uint16" and meta["vocab_size"] == 400
    assert meta["eod_id"] != meta["pad_id"]
    for split in token_files.SPLITS:
        documents = corpus_split(workdir, split)
        assert meta[split]["n_documents"] == len(documents)
        assert meta[split]["n_bytes"] == sum(len(d.encode("utf-8")) for d in documents)
        assert meta[split]["n_tokens"] * 2 == os.path.getsize(workdir / "data" / f"{split}.bin")
    assert sorted(os.listdir(workdir / "data")) == [
        "meta.json",
        "train.bin",
        "val.bin",
    ]  # no temp files


@pytest.mark.parametrize("split", token_files.SPLITS)
def test_bin_is_the_corpus_split_in_order_each_document_followed_by_eod(workdir, split):
    documents = corpus_split(workdir, split)
    tokens = token_files.load_tokens(workdir / "data", split)
    assert tokens.dtype == np.uint16
    tok = tokenizer_lib.load_tokenizer(workdir / "tokenizer.model")
    ends = np.flatnonzero(tokens == tok.eod_id)
    assert len(ends) == len(documents) and ends[-1] == len(tokens) - 1
    starts = np.concatenate([[0], ends[:-1] + 1])
    assert [tok.decode(tokens[s:e]) for s, e in zip(starts, ends)] == documents


def arange_tokens(n_windows: int, seq_len: int) -> np.ndarray:
    """Token i has value i, so a row's first token names the window it came from."""
    return np.arange(n_windows * seq_len + 1, dtype=np.uint16)


def window_ids(batch: np.ndarray, seq_len: int) -> list[int]:
    assert (batch == batch[:, :1] + np.arange(batch.shape[1])).all()  # each row: consecutive tokens
    return (batch[:, 0] // seq_len).tolist()


def test_batch_dtype_shape_and_determinism():
    tokens = arange_tokens(50, 8)
    batch = token_files.get_batch(tokens, batch_size=6, seq_len=8, seed=3, step=4)
    assert batch.dtype == np.int32 and batch.shape == (6, 9)
    np.testing.assert_array_equal(
        batch, token_files.get_batch(tokens, batch_size=6, seq_len=8, seed=3, step=4)
    )
    assert not np.array_equal(
        batch, token_files.get_batch(tokens, batch_size=6, seq_len=8, seed=3, step=5)
    )
    assert not np.array_equal(
        batch, token_files.get_batch(tokens, batch_size=6, seq_len=8, seed=4, step=4)
    )


def test_restart_at_step_gives_the_same_batch():
    tokens = arange_tokens(37, 4)
    run = [
        token_files.get_batch(tokens, batch_size=5, seq_len=4, seed=0, step=s) for s in range(20)
    ]
    token_files._epoch_permutation.cache_clear()  # a restarted process starts with no cached state
    for step in (13, 7, 19):
        np.testing.assert_array_equal(
            token_files.get_batch(tokens, batch_size=5, seq_len=4, seed=0, step=step), run[step]
        )


def test_processes_split_the_global_batch_without_overlap():
    tokens = arange_tokens(40, 4)
    for step in range(6):
        whole = token_files.get_batch(tokens, batch_size=8, seq_len=4, seed=1, step=step)
        parts = [
            token_files.get_batch(
                tokens, batch_size=8, seq_len=4, seed=1, step=step, process_index=p, process_count=4
            )
            for p in range(4)
        ]
        assert all(p.shape == (2, 5) for p in parts)
        np.testing.assert_array_equal(np.concatenate(parts), whole)
        assert len(set(window_ids(whole, 4))) == 8


def test_each_epoch_covers_every_window_once():
    n_windows, seq_len, batch_size = 30, 4, 6
    tokens = arange_tokens(n_windows, seq_len)
    epochs = []
    for epoch in range(2):
        seen = []
        for step in range(epoch * 5, (epoch + 1) * 5):
            seen += window_ids(
                token_files.get_batch(
                    tokens, batch_size=batch_size, seq_len=seq_len, seed=0, step=step
                ),
                seq_len,
            )
        assert sorted(seen) == list(range(n_windows))
        epochs.append(seen)
    assert epochs[0] != epochs[1]  # each epoch is shuffled anew
    assert epochs[0] != list(range(n_windows))


def test_batches_straddle_epochs_when_they_do_not_divide_the_split():
    tokens = arange_tokens(7, 4)
    seen = []
    for step in range(7):  # 7 steps x 3 rows = 3 epochs of 7 windows
        seen += window_ids(
            token_files.get_batch(tokens, batch_size=3, seq_len=4, seed=2, step=step), 4
        )
    for epoch in range(3):
        assert sorted(seen[epoch * 7 : (epoch + 1) * 7]) == list(range(7))


def test_eval_batches_are_consecutive_windows_in_file_order():
    tokens = arange_tokens(10, 4)
    assert window_ids(token_files.get_eval_batch(tokens, batch_size=4, seq_len=4, index=1), 4) == [
        4,
        5,
        6,
        7,
    ]
    assert window_ids(token_files.get_eval_batch(tokens, batch_size=4, seq_len=4, index=2), 4) == [
        8,
        9,
        0,
        1,
    ]
    part = token_files.get_eval_batch(
        tokens, batch_size=4, seq_len=4, index=1, process_index=1, process_count=2
    )
    assert part.dtype == np.int32 and window_ids(part, 4) == [6, 7]


def test_a_validation_pass_samples_the_whole_split_evenly():
    tokens = arange_tokens(40, 4)  # 40 windows; a pass of 2 batches x 4 = every 5th window
    seen = [
        window_ids(
            token_files.get_eval_batch(tokens, batch_size=4, seq_len=4, index=i, num_batches=2),
            4,
        )
        for i in range(2)
    ]
    assert seen == [[0, 5, 10, 15], [20, 25, 30, 35]]
    part = token_files.get_eval_batch(
        tokens, batch_size=4, seq_len=4, index=1, num_batches=2, process_index=1, process_count=2
    )
    assert window_ids(part, 4) == [30, 35]  # each process its rows of the same windows
    wrapped = token_files.get_eval_batch(tokens, batch_size=4, seq_len=4, index=0, num_batches=20)
    assert window_ids(wrapped, 4) == [0, 1, 2, 3]  # a pass longer than the split: in order


def test_errors_name_the_numbers():
    with pytest.raises(ValueError, match=r"10 tokens.*seq_len \+ 1 = 11"):
        token_files.get_batch(np.zeros(10, np.uint16), batch_size=2, seq_len=10, seed=0, step=0)
    with pytest.raises(ValueError, match="batch_size 6 is not divisible by process_count 4"):
        token_files.get_eval_batch(
            arange_tokens(10, 4), batch_size=6, seq_len=4, index=0, process_count=4
        )


def test_batches_from_encoded_data(workdir):
    tokens = token_files.load_tokens(workdir / "data", "train")
    batch = token_files.get_batch(tokens, batch_size=4, seq_len=16, seed=0, step=0)
    assert batch.shape == (4, 17) and batch.dtype == np.int32
    for row in batch:  # every row is one of the stride-16 windows of the file
        assert any(
            np.array_equal(tokens[start : start + 17], row)
            for start in range(0, len(tokens) - 16, 16)
        )
