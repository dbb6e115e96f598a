"""Codex-S supervised fine-tuning: the pretraining trainer on (prompt, completion) pairs.

Each pair of `W/sft/{train,val}.jsonl` (see `codex_jax.data.sft_pairs`), and with
`config.finetune.synthetic_pairs` > 0 that many of the decomposition probe's training chains
(`codex_jax.tasks.chained.training_problems`), becomes one row: end-of-document (as before every
pretraining document and every sampled prompt), prompt tokens, completion tokens and
end-of-document, padded to `train.seq_len + 1`. Only the
completion and its closing end-of-document are scored (`loss_mask`), so the model learns to
write bodies for docstrings, not docstrings. Pairs longer than the window are left out and
counted. Batches are pure functions of (seed, step), as in pretraining, so a killed run
resumes exactly. Training starts from the latest pretraining checkpoint, with
`config.finetune` overriding `config.train` (Codex-S: same model, a tenth of the learning
rate), and uses `train.train_and_evaluate`: there is no second training loop.

Artifacts: `W/ckpt/finetune/` and `W/finetune_metrics.jsonl`.
"""

import dataclasses
import os
from collections.abc import Iterable
from typing import Any

import jax
import ml_collections
import numpy as np
from absl import logging

from codex_jax import jsonl
from codex_jax.data import token_files
from codex_jax.data import tokenizer as tokenizer_lib
from codex_jax.tasks import chained
from codex_jax.training import checkpoint, config_checks, trainer
from codex_jax.workdir import Workdir, require

DATA_KEYS = ("synthetic_pairs",)  # config.finetune keys about the data, not config.train's


def finetune_config(config: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """`config` with `config.finetune`'s keys written over `config.train`."""
    tuned = ml_collections.ConfigDict(config.to_dict())
    for key, value in config.finetune.items():
        if key in DATA_KEYS:
            continue
        if key not in tuned.train:
            raise ValueError(
                f"config.finetune.{key}: not a config.train key; expected one of {sorted(tuned.train)}"
            )
        tuned.train[key] = value
    try:
        config_checks.validate_config(tuned)
    except ValueError as error:
        raise ValueError(
            f"{error} (fine-tuning: config.finetune's keys replace config.train's)"
        ) from None
    return tuned


def encode_pairs(
    pairs: Iterable[dict[str, Any]], tokenizer: tokenizer_lib.Tokenizer, seq_len: int, name: str
) -> tuple[np.ndarray, np.ndarray, int]:
    """Rows of {prompt, completion} pairs: (tokens int32[N, seq_len + 1], loss_mask int32[N,
    seq_len], n_too_long); `name` (e.g. the pairs' file) is what messages call them.

    Target t of a row is tokens[t + 1]; it is scored when that token belongs to the completion
    or is the closing end-of-document.
    """
    rows, masks, too_long = [], [], 0
    for pair in pairs:
        # The prompt as the sampler gives it to the model (`encode_prompt`: the project's own
        # tokenizer puts an end-of-document first, as every pretraining document follows one):
        # otherwise the fine-tuned model is asked, when sampled, to continue a context one
        # position off from the one it was trained on.
        prompt = tokenizer.encode_prompt(pair["prompt"])
        ids = prompt + tokenizer.encode(pair["completion"]) + [tokenizer.eod_id]
        if len(ids) > seq_len + 1:
            too_long += 1
            continue
        row = np.full(seq_len + 1, tokenizer.pad_id, np.int32)
        row[: len(ids)] = ids
        mask = np.zeros(seq_len, np.int32)
        mask[len(prompt) - 1 : len(ids) - 1] = 1  # targets after the prompt: completion, eod
        rows.append(row)
        masks.append(mask)
    if not rows:
        raise ValueError(
            f"{name}: no (prompt, completion) pair fits in seq_len + 1 = {seq_len + 1} tokens"
        )
    logging.info(
        "fine-tuning %s: %d pairs, %d longer than %d tokens left out",
        name,
        len(rows),
        too_long,
        seq_len + 1,
    )
    return np.stack(rows), np.stack(masks), too_long


@dataclasses.dataclass
class PairData(trainer.DataSource):
    """Fine-tuning batches, and how many validation pairs there are (eval batches past them are empty)."""

    n_val_pairs: int = 0


def sft_data(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    tokenizer: tokenizer_lib.Tokenizer | None = None,
) -> PairData:
    """Fine-tuning batches from W/sft (the 'functions' stage's pairs), encoded with `tokenizer`
    (default: the workdir's)."""
    paths = Workdir(workdir)
    sft_dir = os.path.dirname(require(os.path.join(paths.sft, "stats.json"), "functions"))
    tokenizer_path = require(paths.tokenizer, "tokenizer")
    tokenizer = tokenizer or tokenizer_lib.load_tokenizer(tokenizer_path)
    t = config.train
    train_pairs = list(jsonl.read_jsonl(os.path.join(sft_dir, "train.jsonl")))
    synthetic = config.finetune.get("synthetic_pairs", 0)
    if synthetic:  # Codex's decomposition blocks, so that the chained task can be learned
        c = config.tasks.chained
        train_pairs += [
            {"prompt": p["prompt"], "completion": p["canonical_solution"]}
            for p in chained.training_problems(synthetic, c.seed, c.train_share)
        ]
    val_file = os.path.join(sft_dir, "val.jsonl")
    train_rows, train_masks, _ = encode_pairs(
        train_pairs, tokenizer, t.seq_len, f"{sft_dir}/train.jsonl (+ {synthetic} synthetic)"
    )
    val_rows, val_masks, _ = encode_pairs(
        jsonl.read_jsonl(val_file), tokenizer, t.seq_len, val_file
    )
    processes = {"process_index": jax.process_index(), "process_count": jax.process_count()}

    def train_batch(step: int) -> dict[str, np.ndarray]:
        index = token_files.shuffled_indices(
            len(train_rows), batch_size=t.batch_size, seed=config.seed, step=step, **processes
        )
        return {"tokens": train_rows[index], "loss_mask": train_masks[index]}

    def eval_batch(index: int) -> dict[str, np.ndarray]:
        """Val pairs index*B .. (index+1)*B - 1 in file order; rows past the last pair score nothing."""
        eval_size = t.batch_size // t.grad_accum
        rows_per_process = eval_size // processes["process_count"]
        start = index * eval_size + processes["process_index"] * rows_per_process
        picked = np.arange(start, start + rows_per_process)
        in_range = picked < len(val_rows)
        picked = picked % len(val_rows)
        return {"tokens": val_rows[picked], "loss_mask": val_masks[picked] * in_range[:, None]}

    return PairData(
        vocab_size=tokenizer.vocab_size,
        train_batch=train_batch,
        eval_batch=eval_batch,
        token_byte_lengths=np.asarray(tokenizer.token_byte_lengths()),
        tokenizer_path=tokenizer_path,
        n_val_pairs=len(val_rows),
    )


def is_complete(checkpoint_dir: str, config: ml_collections.ConfigDict) -> bool:
    """True when `checkpoint_dir` holds a complete checkpoint of the step a run of `config`
    ends at (`train.steps`, or what a `train.budget_s` run decided)."""
    return checkpoint.latest_step(checkpoint_dir) == trainer.final_step(config, checkpoint_dir)


def ensure_pretrained(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> str:
    """W/ckpt/pretrain at its final step, training (or resuming) first when it is not."""
    directory = Workdir(workdir).checkpoint("pretrain")
    if not is_complete(directory, config):
        trainer.train_and_evaluate(config, workdir)
    return directory


def ensure_finetuned(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> str:
    """W/ckpt/finetune at its final step, fine-tuning (or resuming) from the final pretraining
    checkpoint when it is not."""
    paths = Workdir(workdir)
    tuned = finetune_config(config)
    directory = paths.checkpoint("finetune")
    if not is_complete(directory, tuned):
        pretrained = paths.checkpoint("pretrain")
        if not is_complete(pretrained, config):
            raise FileNotFoundError(
                f"{pretrained}: no checkpoint of step {config.train.steps}; the 'pretrain' "
                "stage makes it (scripts/pipeline.py --stages=finetune builds what it needs)"
            )
        trainer.train_and_evaluate(
            tuned,
            workdir,
            data=sft_data(tuned, workdir),
            init_checkpoint=pretrained,
            checkpoint_dir=directory,
            metrics_path=paths.training_log("finetune"),
        )
    return directory


def body_loss(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike, checkpoint_dir: str
) -> dict[str, Any]:
    """Held-out loss on function bodies (the val pairs) of the latest params in `checkpoint_dir`.

    The Codex-S comparison: the same val pairs scored by the pretrained and the fine-tuned model.
    Returns {"val_loss", "val_bits_per_byte"} over every val pair once.
    """
    tuned = finetune_config(config)
    model = checkpoint.load_model(checkpoint_dir, mesh_config=config.mesh)
    source = sft_data(tuned, workdir, model.tokenizer)
    eval_size = tuned.train.batch_size // tuned.train.grad_accum
    return trainer.evaluate(
        trainer.Scorer.for_model(model), model.params, source, -(-source.n_val_pairs // eval_size)
    )
