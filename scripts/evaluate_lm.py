"""Bits per byte (and nats per token) of a trained checkpoint on any code.

    python scripts/evaluate_lm.py --workdir=W --files=PATHS|GLOB|FOLDER|JSONL [--checkpoint=DIR]
        [--seq_len=N] [--stride=N] [--batch_size=N] [--max_bytes=N] [--output=PATH]
    python scripts/evaluate_lm.py --workdir=W --files='/usr/lib/python3*/json/*.py'

--files is a comma-separated list of files (any code), globs, folders (their .py files, sorted)
and .jsonl(.gz)/.parquet corpus files (each record's `content`); files that are not UTF-8 are
skipped with a warning and counted. --checkpoint defaults to W's fine-tuned model if it has a
complete checkpoint, else the pretrained one. Every byte is scored once, each file as a training
document (end-of-document, then its tokens), long files in sliding windows of --seq_len ids that
move --stride tokens (codex_jax/evaluation/lm_score.py states the scheme). Prints one line
(files, bytes, tokens, nats/token, bits/byte, seconds); --output also writes it as JSON.
--config.mesh.* places the params (default: data-parallel over every local device).
"""

import dataclasses
import time

from absl import flags, logging

from codex_jax import cli, jsonl

_CONFIG = cli.define_config_flag()
_WORKDIR = cli.define_workdir_flag()
_CHECKPOINT = flags.DEFINE_string(
    "checkpoint", None, "Checkpoint folder; default: the workdir's fine-tuned, else pretrained."
)
_FILES = flags.DEFINE_string(
    "files", None, "Comma-separated files, globs, folders (*.py) and .jsonl(.gz) corpus files."
)
_SEQ_LEN = flags.DEFINE_integer(
    "seq_len", None, "Ids per window; default: the run's train.seq_len."
)
_STRIDE = flags.DEFINE_integer(
    "stride", None, "Tokens each window moves on; default seq_len // 2 (= seq_len: no overlap)."
)
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 32, "Windows scored per step.")
_MAX_BYTES = flags.DEFINE_integer(
    "max_bytes", None, "Score only the files before the first that takes the total past this."
)
_OUTPUT = flags.DEFINE_string("output", None, "Also write the result to this JSON file.")


def main(argv: list[str]) -> None:
    del argv
    from codex_jax.evaluation import lm_score
    from codex_jax.sampling import samples
    from codex_jax.training import checkpoint

    cli.log_progress()
    start = time.perf_counter()
    if not _FILES.value:
        raise ValueError("--files: required (files, globs, folders or .jsonl corpus files)")
    texts, skipped = lm_score.read_texts(lm_score.resolve_files(_FILES.value), _MAX_BYTES.value)
    if skipped:
        logging.warning(
            "skipped %d files that are not UTF-8, the first %s", len(skipped), skipped[0]
        )
    if not texts:
        raise ValueError(f"--files={_FILES.value}: no UTF-8 file to score")
    checkpoint_dir = _CHECKPOINT.value or samples.latest_checkpoint(_WORKDIR.value)[1]
    model = checkpoint.load_model(checkpoint_dir, mesh_config=_CONFIG.value.mesh)
    seq_len = _SEQ_LEN.value or model.config.train.seq_len
    stride = _STRIDE.value or max(1, seq_len // 2)
    result = lm_score.score(model, texts, seq_len, stride, _BATCH_SIZE.value)
    seconds = time.perf_counter() - start
    print(
        f"{result.files} files, {result.bytes:,} bytes, {result.tokens:,} tokens: "
        f"{result.nats_per_token:.4f} nats/token, {result.bits_per_byte:.4f} bits/byte "
        f"({checkpoint_dir} step {model.step}, seq_len {seq_len}, stride {stride}; "
        f"{len(skipped)} not UTF-8 skipped) in {seconds:.1f} s"
    )
    if _OUTPUT.value:
        jsonl.write_json_atomically(
            _OUTPUT.value,
            {
                **dataclasses.asdict(result),
                "seconds": seconds,
                "skipped_not_utf8": len(skipped),
                "checkpoint": checkpoint_dir,
                "step": model.step,
                "seq_len": seq_len,
                "stride": stride,
            },
        )


if __name__ == "__main__":
    cli.run(main)
