"""The decomposition probe can move: a shrunk model fine-tuned on the synthetic pairs solves
held-out 2-block chains (never in its training data) that the same model untrained cannot.

The whole chain runs: corpus, tokenizer, pretraining, fine-tuning pairs, sampling with the task's
prompts and stops, and execution in the sandbox; a bug in tokenization, loss masking, sampling,
stop-cutting or execution shows up here as a pass rate of zero.
"""

import os

from codex_jax import jsonl, pipeline
from codex_jax.tasks import chained
from codex_jax.workdir import Workdir, results_path
from configs import tiny


def shrunk_config(tmp_path):
    """A 2 x 64 rotary model whose corpus is the fine-tuning chains' own reference solutions."""
    source = tmp_path / "src"
    source.mkdir()
    for index, problem in enumerate(chained.training_problems(90, seed=0, train_share=0.5)):
        text = problem["prompt"] + problem["canonical_solution"]
        (source / f"chain_{index:03d}.py").write_text(text, encoding="utf-8")
    config = tiny.get_config()
    config.update_from_flattened_dict(
        {
            "corpus.sources": (str(source),),
            "corpus.n_workers": 1,
            "corpus.val_fraction": 0.1,
            "tokenizer.vocab_size": 512,
            "data.n_workers": 1,
            "model.n_layers": 2,
            "model.d_model": 64,
            "model.n_heads": 4,
            "model.d_ff": 256,
            "model.max_len": 256,
            "train.steps": 20,
            "train.batch_size": 8,
            "train.seq_len": 192,
            "train.warmup_steps": 2,
            "train.log_every": 10,
            "train.eval_every": 20,
            "train.eval_batches": 1,
            "train.peak_flops": 1e12,
            "checkpoint.every_steps": 1000,
            "functions.n_workers": 1,
            "functions.verify_doctests": False,
            "finetune.steps": 300,
            "finetune.lr": 3e-3,
            "finetune.warmup_steps": 20,
            "finetune.eval_every": 300,
            "finetune.eval_batches": 1,
            "finetune.synthetic_pairs": 1000,
            "sample.n": 1,
            "sample.temperature": 0.0,
            "sample.max_new_tokens": 64,
            "sample.batch_size": 16,
            "eval.k": (1,),
            "eval.n_workers": 1,
            "eval.tasks": ("chained",),
            "tasks.chained.lengths": (2,),
            "tasks.chained.per_length": 16,
        }
    )
    return config


def held_out_pass_rate(workdir, model):
    rows = list(jsonl.read_jsonl(results_path(Workdir(workdir).samples(model, "chained"))))
    assert len(rows) == 16
    return sum(row["passed"] for row in rows) / len(rows)


def test_fine_tuning_on_synthetic_pairs_solves_held_out_chains(tmp_path):
    config = shrunk_config(tmp_path)
    workdir = str(tmp_path / "work")
    pipeline.run(config, workdir, ["execute"])
    problems = list(jsonl.read_jsonl(Workdir(workdir).problems("chained")))
    _, held_out = chained.two_block_split(seed=0, train_share=0.5)
    assert all(tuple(p["blocks"]) in held_out for p in problems)  # never trained on
    # The pretrained model saw these blocks only as files, never as prompts to complete.
    assert held_out_pass_rate(workdir, "pretrain") == 0.0
    rate = held_out_pass_rate(workdir, "finetune")
    print(f"held-out 2-block chains solved after fine-tuning: {rate:.2f}")
    assert rate >= 0.25
    assert os.path.exists(Workdir(workdir).checkpoint("finetune"))
