"""Training metrics: model FLOPs, MFU against a device's peak, and the metrics.jsonl writer."""

import json
import os
import time
from typing import Any

import jax
import jax.numpy as jnp

from codex_jax import jsonl

# Dense bfloat16 peak FLOP/s per device, from the vendors' data sheets, matched by substring of
# `jax.Device.device_kind` (first match wins, so longer names come first).
PEAK_FLOPS = (
    ("TPU v6", 918e12),
    ("TPU v5p", 459e12),
    ("TPU v5 lite", 197e12),
    ("TPU v5e", 197e12),
    ("TPU v5", 459e12),
    ("TPU v4", 275e12),
    ("H200", 989e12),
    ("H100", 989e12),
    ("A100", 312e12),
    ("L4", 121e12),
)


def peak_flops(device: jax.Device, configured: float = 0.0) -> float:
    """FLOP/s of one device: `configured` when > 0, else the data-sheet value for its kind,
    else (CPUs, unknown chips) a measured float32 matmul rate on this device."""
    if configured > 0:
        return float(configured)
    for kind, flops in PEAK_FLOPS:
        if kind.lower() in device.device_kind.lower():
            return flops
    return measure_matmul_flops(device)


def measure_matmul_flops(
    device: jax.Device | None = None, size: int = 1024, dtype: Any = jnp.float32, repeats: int = 5
) -> float:
    """Best-of-`repeats` FLOP/s of a jitted [size, size] @ [size, size] matmul on `device`."""
    device = device or jax.local_devices()[0]
    a = jax.device_put(jnp.ones((size, size), dtype), device)
    matmul = jax.jit(lambda x: x @ x)
    matmul(a).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * size**3 / best


def flops_per_token(config: Any, seq_len: int) -> float:
    """Training FLOPs per token of a GPT (`model.GPTConfig`): 6 per matmul weight (forward,
    and backward for activations and weights) plus attention scores and values, 12 * L * T * D,
    counted for the full T x T square as in PaLM's MFU (Chowdhery et al. 2022, appendix B)."""
    d, layers = config.d_model, config.n_layers
    matmul_weights = layers * (4 * d * d + 2 * d * config.d_ff) + d * config.vocab_size
    return 6 * matmul_weights + 12 * layers * seq_len * d


class MetricsWriter:
    """Appends one JSON object per logged step to a metrics.jsonl file (process 0 only)."""

    def __init__(
        self, path: str | os.PathLike, resume_step: int, tensorboard_dir: str | None = None
    ):
        """Opens `path`; lines for steps after `resume_step` (logged by a run that died before
        its next checkpoint, and about to be logged again) are dropped so each step appears once.
        `tensorboard_dir`: also write every number as a TensorBoard scalar there (tensorboardX)."""
        self.path = os.fspath(path)
        self.enabled = jax.process_index() == 0
        self._tensorboard = None
        self.resumed_seconds = 0.0  # train_seconds of the last kept line: where a resume goes on
        if not self.enabled:
            return
        if tensorboard_dir is not None:
            from tensorboardX import (
                SummaryWriter,  # optional dependency, only when asked for
            )

            self._tensorboard = SummaryWriter(tensorboard_dir)
        os.makedirs(os.path.dirname(os.path.abspath(self.path)), exist_ok=True)
        if os.path.exists(self.path):
            with open(self.path, encoding="utf-8") as f:
                kept = [
                    line for line in f if line.strip() and json.loads(line)["step"] <= resume_step
                ]
            jsonl.write_text_atomically(self.path, "".join(kept))
            if kept:
                self.resumed_seconds = json.loads(kept[-1]).get("train_seconds") or 0.0

    def write(self, record: dict[str, Any]) -> None:
        """Appends `record` (which has an int "step") as one line, and to TensorBoard if enabled."""
        if not self.enabled:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
        if self._tensorboard is not None:
            for name, value in record.items():
                if name != "step" and value is not None:
                    self._tensorboard.add_scalar(name, value, record["step"])
            self._tensorboard.flush()
