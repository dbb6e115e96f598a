"""GPT-3 Small's shape (12 x 768: 85M non-embedding parameters, 110M in all with a 32k
vocabulary; GPT-3 counts 125M with its 50k one) for one GPU, in bfloat16.

    python scripts/pretrain.py --config=configs/small.py --workdir=workdir_small \
        --config.corpus.sources="('/path/to/python/code',)"

Every key not set here keeps configs/tiny.py's value and comment. The standard-library
corpus of tiny.py (~6M tokens) is far too small for this model: point corpus.sources at a
real code corpus (folders, .jsonl(.gz) or .parquet files) before a long run.
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

    config.tokenizer.vocab_size = 32_768
    config.model.update(
        positional="learned",  # as GPT-3 and Codex (the CPU default uses rotary)
        n_layers=12,
        d_model=768,
        n_heads=12,
        d_ff=3072,
        max_len=2048,
        dtype="bfloat16",
        attention="auto",
        remat=False,
    )
    # 64 x 2048 = 131k tokens per step in 4 micro-batches of 16 sequences; GPT-3 Small's lr.
    config.train.update(
        steps=20_000,
        batch_size=64,
        seq_len=2048,
        grad_accum=4,
        lr=6e-4,
        warmup_steps=500,
        log_every=50,
        eval_every=1000,
        eval_batches=16,
    )
    config.checkpoint.update(every_steps=1000, keep=3)
    config.finetune.update(
        steps=1000, lr=6e-5, warmup_steps=50, eval_every=250
    )  # Codex-S: a tenth of the lr
    return config
