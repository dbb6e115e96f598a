"""Codex-12B as in the paper (Chen et al. 2021, section 3.1) for a Cloud TPU pod (e.g. v4-256).

The GPT-3 13B shape (Brown et al. 2020, table 2.1): 40 layers, 40 heads of 128, d_ff = 4 d_model,
2,048-token context; d_model is 5,120 (= 40 x 128; the GPT-3 table's 5,140 does not divide into
40 heads). Codex's recipe: GPT-3's learning rate for the size (1e-4), 175-step linear warmup,
cosine decay, AdamW (0.9, 0.95, 1e-8, weight decay 0.1), 100B tokens at GPT-3's 2M-token batch
(1,024 x 2,048) = 48k steps. Parameters float32, compute bfloat16, every block rematerialised,
parameters and optimizer state fully sharded (FSDP) over every chip.

Run the same command on every host of the pod:
    python scripts/pretrain.py --multihost --config=configs/codex_12b.py --workdir=/mnt/shared/codex_12b \
        --config.corpus.sources="('/mnt/shared/python.parquet',)"
The workdir must be a folder every host sees (NFS, Filestore, GCS FUSE): paths are local paths.

Memory: 12.9B params x 16 bytes (f32 params, Adam moments, f32 gradients) = 206 GB, ~0.8 GB per
chip over 256 chips; the batch of 1,024 sequences splits 4 per chip on 256 chips. For more chips
than sequences per micro-batch, raise mesh.model (tensor parallel over heads and MLP) instead.
"""

import importlib.util
import os

import ml_collections


def get_config() -> ml_collections.ConfigDict:
    spec = importlib.util.spec_from_file_location(
        "tiny", os.path.join(os.path.dirname(__file__), "tiny.py")
    )
    tiny = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tiny)
    config = tiny.get_config()

    config.tokenizer.vocab_size = 50_304  # GPT-2/3's 50,257 rounded up to a multiple of 128
    config.tokenizer.max_train_bytes = 1_000_000_000
    config.model.update(
        positional="learned",  # as GPT-3 and Codex (the CPU default uses rotary)
        n_layers=40,
        d_model=5120,
        n_heads=40,
        d_ff=20_480,
        max_len=2048,
        dtype="bfloat16",
        remat=True,
    )
    config.mesh.update(data=1, fsdp=-1, model=1)
    config.train.update(
        steps=48_000,
        batch_size=1024,
        seq_len=2048,
        grad_accum=1,
        lr=1e-4,
        warmup_steps=175,
        log_every=10,
        eval_every=1000,
        eval_batches=32,
    )
    config.checkpoint.update(every_steps=500, keep=3)
    config.finetune.update(
        steps=2000, lr=1e-5, warmup_steps=100, eval_every=500
    )  # Codex-S: a tenth of the lr
    return config
