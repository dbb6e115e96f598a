"""Bits per byte of a checkpoint on files: byte counts, sliding windows, file resolution, CLI.

The checkpoint is a 2-layer, 32-wide GPT with a 400-id tokenizer learned from the shared test
documents; its initial parameters get noise of std 0.3, so predictions depend on the context
(an untrained model predicts nearly uniformly, whatever its context, and would hide a wrong
window).
"""

import json
import math
import os
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from helpers import DOCUMENTS

from codex_jax.data import tokenizer as tokenizer_lib
from codex_jax.evaluation import lm_score
from codex_jax.training import checkpoint, trainer

SEQ_LEN = 16
REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
TEXTS = [*DOCUMENTS[:6], "x = 1\r\n", "", "s = '\u2581\u2581 é'\n"]  # CRLF, empty, U+2581


@pytest.fixture(scope="module")
def checkpoint_dir(tmp_path_factory):
    from configs import tiny

    root = tmp_path_factory.mktemp("lm_score")
    tokenizer_path = str(root / "tokenizer.model")
    tokenizer_lib.write_model(
        tokenizer_lib.train_from_documents(DOCUMENTS, 400, num_threads=1), tokenizer_path
    )
    config = tiny.get_config()
    config.model.update(n_layers=2, d_model=32, n_heads=4, d_ff=64, max_len=2 * SEQ_LEN)
    config.train.update(seq_len=SEQ_LEN, batch_size=8)
    run = trainer.setup(config, 400)  # mesh data=8: batches round up to 8 rows
    state = run.init()
    keys = iter(jax.random.split(jax.random.key(1), len(jax.tree.leaves(state.params))))
    params = jax.tree.map(lambda x: x + 0.3 * jax.random.normal(next(keys), x.shape), state.params)
    checkpointer = checkpoint.Checkpointer(
        root / "ckpt", config=config, tokenizer_path=tokenizer_path
    )
    checkpointer.save(0, params, state.opt_state, force=True)
    checkpointer.wait()
    checkpointer.close()
    return str(root / "ckpt")


@pytest.fixture(scope="module")
def model(checkpoint_dir):
    return checkpoint.load_model(checkpoint_dir)


def target_nats(model, ids) -> np.ndarray:
    """float64[len(ids) - 1]: -log p(ids[t + 1] | ids[: t + 1]) from a forward pass of one row on
    one device, of the params copied to the host (no mesh, no batching, no loss mask)."""
    logits = model.gpt.apply(
        {"params": jax.device_get(model.params)}, jnp.asarray([ids[:-1]], jnp.int32)
    )
    log_probs = np.asarray(jax.nn.log_softmax(logits[0]), np.float64)  # (T, V)
    return -log_probs[np.arange(len(ids) - 1), np.asarray(ids[1:])]


def test_one_window_equals_the_direct_log_softmax_and_counts_the_files_bytes(model):
    text = "def f(x):\n    return x\n"
    ids = model.tokenizer.encode_prompt(text)
    assert len(ids) - 1 <= SEQ_LEN  # fits one window
    result = lm_score.score(model, [text], SEQ_LEN, stride=4, batch_size=3, progress=False)
    nats = target_nats(model, ids).sum()
    assert (result.files, result.bytes, result.tokens) == (1, len(text.encode()), len(ids) - 1)
    np.testing.assert_allclose(result.bits_per_byte, nats / math.log(2) / result.bytes, rtol=1e-5)
    np.testing.assert_allclose(result.nats_per_token, nats / result.tokens, rtol=1e-5)


@pytest.mark.parametrize("stride", [1, 5, SEQ_LEN])
def test_windows_score_each_target_once_in_order_after_enough_context(stride):
    ids = list(range(100, 100 + 3 * SEQ_LEN + 7))  # eod stand-in, then 54 targets
    scored, rows = [], list(lm_score.windows(ids, SEQ_LEN, stride))
    for tokens, loss_mask in rows:
        assert tokens.shape == (SEQ_LEN + 1,) and loss_mask.shape == (SEQ_LEN,)
        first = int(np.flatnonzero(loss_mask)[0])  # the window reads ids[start:], contiguously
        start = ids.index(int(tokens[first + 1])) - first - 1
        assert list(tokens) == ids[start : start + SEQ_LEN + 1]
        for j in np.flatnonzero(loss_mask):
            position = start + j + 1
            assert j + 1 >= min(position, SEQ_LEN - stride + 1)  # ids of context before it
            scored.append(int(tokens[j + 1]))
    assert scored == ids[1:]
    assert len(rows) == 1 + math.ceil((len(ids) - 1 - SEQ_LEN) / stride)


def test_batched_windows_equal_each_window_scored_alone_and_count_every_byte(model):
    stride, texts = 5, TEXTS
    result = lm_score.score(model, texts, SEQ_LEN, stride, batch_size=3, progress=False)
    nats = n_targets = 0
    for text in texts:
        for tokens, loss_mask in lm_score.windows(
            model.tokenizer.encode_prompt(text), SEQ_LEN, stride
        ):
            # Causal: the padding after a short window's ids changes none of their predictions.
            nats += (target_nats(model, list(tokens)) * loss_mask).sum()
            n_targets += int(loss_mask.sum())
    file_bytes = sum(len(text.encode("utf-8")) for text in texts)
    assert file_bytes > len("".join(texts))  # multi-byte characters are counted as bytes
    assert (result.files, result.bytes) == (len(texts), file_bytes)
    assert result.tokens == n_targets == sum(len(model.tokenizer.encode(t)) for t in texts)
    assert max(len(model.tokenizer.encode(t)) for t in texts) > 2 * SEQ_LEN  # several windows
    np.testing.assert_allclose(result.bits_per_byte, nats / math.log(2) / file_bytes, rtol=1e-5)
    # More context helps a model whose predictions depend on it; here it must at least change.
    no_overlap = lm_score.score(model, texts, SEQ_LEN, SEQ_LEN, batch_size=3, progress=False)
    assert no_overlap.tokens == result.tokens
    assert abs(no_overlap.bits_per_byte - result.bits_per_byte) > 1e-4


def test_files_globs_folders_and_corpus_files_resolve_in_order(tmp_path):
    files = {
        "src/b.py": "b = 2\n",
        "src/a.py": "a = 1\n",
        "src/pkg/c.py": "c = 3\n",
        "src/.hidden/h.py": "hidden\n",
        "src/pkg/__pycache__/p.py": "cache\n",
        "src/notes.txt": "not python\n",
        "other/x.js": "let x = 1;\n",
        "other/y.js": "let y = 2;\n",
    }
    for name, content in files.items():
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text(content, encoding="utf-8")
    (tmp_path / "src" / "latin.py").write_bytes("é = 1\n".encode("latin-1"))
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(
        "".join(json.dumps({"path": p, "content": f"{p} = 0\n"}) + "\n" for p in ("r1", "r2"))
    )
    spec = f"{tmp_path / 'src'}, {tmp_path / 'other' / '*.js'},{corpus},{tmp_path / 'src/a.py'}"
    documents = lm_score.resolve_files(spec)
    js = [str(tmp_path / "other" / n) for n in ("x.js", "y.js")]
    expected = ["a.py", "b.py", "latin.py", "pkg/c.py", *js, "r1", "r2", str(tmp_path / "src/a.py")]
    assert [d.path for d in documents] == expected
    texts, skipped = lm_score.read_texts(documents)
    assert skipped == ["latin.py"]
    assert texts == ["a = 1\n", "b = 2\n", "c = 3\n", "let x = 1;\n", "let y = 2;\n"] + [
        "r1 = 0\n",
        "r2 = 0\n",
        "a = 1\n",
    ]
    assert lm_score.read_texts(documents, max_bytes=13)[0] == ["a = 1\n", "b = 2\n"]
    for bad in (tmp_path / "missing.py", tmp_path / "src" / "*.rs", ""):
        with pytest.raises(ValueError, match="matches no file or folder"):
            lm_score.resolve_files(f"{tmp_path / 'src'},{bad}")


def run_script(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": REPO, "XLA_FLAGS": "", "JAX_PLATFORMS": "cpu"}
    return subprocess.run(
        [sys.executable, os.path.join(REPO, "scripts", "evaluate_lm.py"), *args],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_script_scores_files_like_the_library_and_writes_json(tmp_path, checkpoint_dir, model):
    for index, text in enumerate(TEXTS):
        (tmp_path / "src" / f"m{index}.py").parent.mkdir(exist_ok=True)
        (tmp_path / "src" / f"m{index}.py").write_text(text, encoding="utf-8", newline="")
    output = tmp_path / "out.json"
    process = run_script(
        f"--checkpoint={checkpoint_dir}",
        f"--files={tmp_path / 'src'}",
        "--stride=5",
        "--batch_size=3",
        f"--output={output}",
    )
    assert process.returncode == 0, process.stderr
    written = json.loads(output.read_text())
    expected = lm_score.score(model, TEXTS, SEQ_LEN, 5, batch_size=3, progress=False)
    assert (written["files"], written["bytes"], written["tokens"]) == (
        expected.files,
        expected.bytes,
        expected.tokens,
    )
    assert (written["seq_len"], written["stride"], written["step"]) == (SEQ_LEN, 5, 0)
    np.testing.assert_allclose(written["bits_per_byte"], expected.bits_per_byte, rtol=1e-5)
    assert f"{expected.bits_per_byte:.4f} bits/byte" in process.stdout.strip().splitlines()[-1]


@pytest.mark.parametrize("kind", ["missing_path", "only_latin1", "no_files_flag"])
def test_bad_input_ends_in_one_line_and_exit_status_2(tmp_path, kind):
    (tmp_path / "latin.py").write_bytes("é = 1\n".encode("latin-1"))
    files = {
        "missing_path": [f"--files={tmp_path / 'nothing' / '*.py'}"],
        "only_latin1": [f"--files={tmp_path / 'latin.py'}"],
        "no_files_flag": [],
    }[kind]
    process = run_script(f"--workdir={tmp_path}", *files)
    errors = [line for line in process.stderr.splitlines() if line.startswith("error:")]
    assert process.returncode == 2 and len(errors) == 1, process.stderr
    assert "--files" in errors[0]
