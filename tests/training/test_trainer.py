"""Training: overfitting, loss masking, checkpoints, kill-and-resume, config validation.

Everything runs on synthetic token arrays with a 2-layer, 32-wide model so the file takes
well under a minute on two busy cores.
"""

import functools
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time

import jax
import ml_collections
import numpy as np
import pytest

from codex_jax.training import checkpoint, trainer

VOCAB = 64
SEQ_LEN = 16
BYTES_PER_TOKEN = 3  # synthetic tokenizer: every token covers 3 UTF-8 bytes


def tiny_config(**train_overrides) -> ml_collections.ConfigDict:
    """configs/tiny.py shrunk to a toy model; `train_overrides` set config.train fields."""
    from configs import tiny

    config = tiny.get_config()
    config.model.update(n_layers=2, d_model=32, n_heads=4, d_ff=64, max_len=SEQ_LEN)
    config.train.update(
        steps=20,
        batch_size=8,
        seq_len=SEQ_LEN,
        lr=1e-2,
        warmup_steps=2,
        log_every=1,
        eval_every=10,
        eval_batches=2,
        peak_flops=1e12,
    )
    config.train.update(**train_overrides)
    config.checkpoint.update(every_steps=10, keep=2)
    return config


def synthetic_data(batch_size: int = 8, seconds_per_batch: float = 0.0) -> trainer.DataSource:
    """Batches of windows of one fixed token stream, a pure function of the step. The stream is
    learnable: each token is (5 * previous + 3) mod VOCAB, except 20% drawn at random."""
    rng = np.random.RandomState(0)
    stream = rng.randint(0, VOCAB, 4096).astype(np.int32)
    for i in np.flatnonzero(rng.rand(len(stream)) > 0.2)[1:]:
        stream[i] = (5 * stream[i - 1] + 3) % VOCAB

    def batch(index: int) -> dict[str, np.ndarray]:
        time.sleep(seconds_per_batch)
        starts = np.random.RandomState(index).randint(0, len(stream) - SEQ_LEN - 1, batch_size)
        return {"tokens": np.stack([stream[s : s + SEQ_LEN + 1] for s in starts])}

    return trainer.DataSource(
        vocab_size=VOCAB,
        train_batch=batch,
        eval_batch=lambda i: batch(1_000_000 + i),
        token_byte_lengths=np.full(VOCAB, BYTES_PER_TOKEN),
    )


def _losses(metrics_path) -> dict[int, float]:
    with open(metrics_path, encoding="utf-8") as f:
        return {record["step"]: record["loss"] for record in map(json.loads, f)}


def test_overfitting_one_batch_drives_the_loss_near_zero():
    config = tiny_config(lr=1e-2, warmup_steps=10, steps=100, weight_decay=0.0)
    config.mesh.data = 1
    run = trainer.setup(config, VOCAB, devices=jax.devices()[:1])
    batch = run.shard_batch(synthetic_data(batch_size=4).train_batch(0))
    state = run.init()
    for _ in range(config.train.steps):
        state, step_metrics = run.train_step(state, batch)
    assert float(step_metrics["loss"]) < 0.05  # from ln(64) = 4.16


def test_loss_mask_scores_only_the_marked_targets():
    config = tiny_config()
    config.mesh.data = 1
    run = trainer.setup(config, VOCAB, devices=jax.devices()[:1])
    params = run.init().params
    tokens = synthetic_data().train_batch(0)["tokens"]
    loss_mask = np.random.RandomState(3).rand(8, SEQ_LEN) < 0.3
    sums = run.eval_step(params, run.shard_batch({"tokens": tokens, "loss_mask": loss_mask}))
    logits = np.asarray(jax.jit(run.gpt.apply)({"params": params}, tokens[:, :-1]), np.float64)
    log_probs = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    target_log_probs = np.take_along_axis(log_probs, tokens[:, 1:, None], axis=-1)[..., 0]
    assert float(sums["count"]) == loss_mask.sum()
    np.testing.assert_allclose(
        float(sums["loss_sum"]), -target_log_probs[loss_mask].sum(), rtol=1e-5
    )


def test_checkpoint_round_trip_into_another_mesh_ignores_half_written_steps(tmp_path):
    config = tiny_config()
    saved_run = trainer.setup(config, VOCAB)  # data=8
    state = saved_run.init()
    checkpointer = checkpoint.Checkpointer(tmp_path / "ckpt", every_steps=5, keep=2, config=config)
    for step in (5, 10, 15):
        checkpointer.save(step, state.params, state.opt_state)
    checkpointer.wait()
    # What a SIGKILL during an async save leaves behind: a temporary directory, never renamed.
    (tmp_path / "ckpt" / "20.orbax-checkpoint-tmp" / "params").mkdir(parents=True)
    restoring = checkpoint.Checkpointer(tmp_path / "ckpt", every_steps=5, keep=2)
    assert restoring.all_steps() == [10, 15] and restoring.latest_step() == 15

    config.mesh.update(data=2, fsdp=2, model=2)
    other = trainer.setup(config, VOCAB).abstract_state
    step, params, opt_state = restoring.restore(other.params, other.opt_state)
    assert step == 15
    for saved, restored, target in zip(
        jax.tree.leaves((state.params, state.opt_state)),
        jax.tree.leaves((params, opt_state)),
        jax.tree.leaves((other.params, other.opt_state)),
    ):
        np.testing.assert_array_equal(np.asarray(saved), np.asarray(restored))
        assert restored.sharding == target.sharding
    params_only = checkpoint.restore_params(tmp_path / "ckpt", other.params, step=10)
    assert jax.tree.structure(params_only) == jax.tree.structure(state.params)
    assert (
        json.loads((tmp_path / "ckpt" / "config.json").read_text())["train"]["seq_len"] == SEQ_LEN
    )


@functools.lru_cache  # shared with test_sharding, whose 1-device baseline is this same run
def reference_run() -> list[dict]:
    """metrics.jsonl records of an uninterrupted `tiny_config()` run on one device."""
    config = tiny_config()
    config.mesh.data = 1
    with tempfile.TemporaryDirectory() as workdir:
        trainer.train_and_evaluate(
            config, workdir, data=synthetic_data(), devices=jax.devices()[:1]
        )
        with open(os.path.join(workdir, "metrics.jsonl"), encoding="utf-8") as f:
            return [json.loads(line) for line in f]


_CHILD = """
import sys
sys.path.insert(0, {tests!r})
from test_trainer import synthetic_data, tiny_config
from codex_jax.training import trainer
config = tiny_config()
config.mesh.data = 1
config.train.eval_batches = 0  # validation never changes the training losses
trainer.train_and_evaluate(config, {workdir!r}, data=synthetic_data(seconds_per_batch={pause}))
"""


def _train_in_subprocess(workdir, pause: float) -> subprocess.Popen:
    code = _CHILD.format(tests=os.path.dirname(__file__), workdir=str(workdir), pause=pause)
    repo = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]),
        "XLA_FLAGS": "",  # one device: compiles fastest
        # The restarted child reuses what the first compiled.
        "JAX_COMPILATION_CACHE_DIR": str(os.path.join(os.path.dirname(workdir), "jax_cache")),
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
    }
    return subprocess.Popen(
        [sys.executable, "-c", code],
        env=env,
        cwd=repo,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )


def test_run_killed_with_sigkill_then_restarted_matches_an_uninterrupted_run(tmp_path):
    records = reference_run()
    reference = {r["step"]: r["loss"] for r in records}
    assert sorted(reference) == list(range(1, 21))
    assert all(r["tokens_per_s"] > 0 and r["mfu"] > 0 for r in records[1:])
    for r in records:
        if "val_loss" in r:  # bits per byte from nats per token and bytes per token
            assert r["val_bits_per_byte"] == pytest.approx(
                r["val_loss"] / math.log(2) / BYTES_PER_TOKEN
            )

    workdir = tmp_path / "killed"
    child = _train_in_subprocess(workdir, pause=0.3)  # slow batches: the kill lands mid-run
    first_checkpoint = workdir / "ckpt" / "pretrain" / "10"
    deadline = time.time() + 120
    while not first_checkpoint.exists() and child.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    child.send_signal(signal.SIGKILL)
    _, stderr = child.communicate()
    assert first_checkpoint.exists(), stderr.decode()[-2000:]
    assert not (workdir / "ckpt" / "pretrain" / "20").exists()  # killed before the end

    restarted = _train_in_subprocess(workdir, pause=0.0)
    _, stderr = restarted.communicate(timeout=300)
    assert restarted.returncode == 0, stderr.decode()[-2000:]
    resumed = _losses(workdir / "metrics.jsonl")
    assert sorted(resumed) == list(range(1, 21))  # each step logged once despite the rerun
    with open(workdir / "metrics.jsonl", encoding="utf-8") as f:
        seconds = [json.loads(line)["train_seconds"] for line in f]
    # Training seconds go on from the killed run's (10 batches of >= 0.3 s), never restart at 0.
    assert seconds[9] >= 3.0 and all(b >= a for a, b in zip(seconds, seconds[1:]))
    assert seconds[10] > seconds[9]
    np.testing.assert_allclose(
        [resumed[s] for s in range(1, 21)],
        [reference[s] for s in range(1, 21)],
        rtol=1e-6,
        atol=1e-6,
    )


@pytest.mark.parametrize(
    "section, field, value",
    [
        ("model", "d_model", 30),  # not a multiple of n_heads=4
        ("model", "positional", "alibi"),
        ("model", "dtype", "float64"),
        ("model", "attention", "flash"),
        ("model", "gelu", "relu"),
        ("model", "n_kv_heads", 3),  # does not divide n_heads=4
        ("train", "seq_len", 64),  # longer than model.max_len=16
        ("train", "batch_size", 6),  # not divisible by the 8 data shards
        ("train", "grad_accum", 3),  # does not divide batch_size
        ("train", "warmup_steps", 50),  # more than steps
        ("train", "warmup_steps", 20),  # = steps: no step left to decay over
        ("train", "lr", 0.0),
        ("mesh", "model", 3),  # 8 devices do not divide by 3
        ("checkpoint", "keep", 0),
    ],
)
def test_bad_config_values_fail_before_anything_is_built(tmp_path, section, field, value):
    config = tiny_config()
    config[section][field] = value
    with pytest.raises(
        ValueError, match=f"{section}.{field}" if section != "mesh" else "config.mesh"
    ):
        trainer.train_and_evaluate(config, tmp_path)  # no data given: validation must come first
    assert not os.listdir(tmp_path)


def test_a_wall_clock_budget_sizes_the_schedule_and_a_rerun_ends_at_the_same_step(tmp_path):
    config = tiny_config(steps=10_000, budget_s=15.0, warmup_steps=2, eval_batches=0)
    config.mesh.data = 1
    data = synthetic_data(seconds_per_batch=0.1)  # >= 0.1 s a step: < 150 in the budget
    trainer.train_and_evaluate(config, tmp_path, data=data, devices=jax.devices()[:1])
    with open(tmp_path / "metrics.jsonl", encoding="utf-8") as f:
        records = [json.loads(line) for line in f]
    last = records[-1]
    with open(tmp_path / "ckpt" / "pretrain" / "budget.json", encoding="utf-8") as f:
        decided = json.load(f)["steps"]
    # Not train.steps' 10,000; at least the 10 calibration steps and one more.
    assert last["step"] == decided and trainer.Budget.CALIBRATION_STEPS + 5 < decided <= 150
    assert 10.0 <= last["train_seconds"] <= 25.0  # near the budget (a loaded machine strays)
    # The cosine is at its end (lr / 10, reached one step later) at the decided step, not
    # 10,000 steps away.
    assert config.train.lr * 0.1 <= last["lr"] <= config.train.lr * 0.11
    trainer.train_and_evaluate(config, tmp_path, data=data, devices=jax.devices()[:1])
    with open(tmp_path / "metrics.jsonl", encoding="utf-8") as f:
        assert len(f.readlines()) == len(records)  # a rerun resumes at the end: nothing to do
