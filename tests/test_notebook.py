"""The Colab notebook, executed with nbclient on CPU: the whole pipeline on a toy corpus and config.

This is also the pipeline's end-to-end test: every stage runs for real (corpus, tokenizer, data,
pretraining, function extraction, fine-tuning, sampling both models, sandboxed execution,
report), then a rerun must skip every stage.
"""

import json
import os

import nbclient
import nbformat
import numpy as np
import pytest

from codex_jax import jsonl, pipeline
from codex_jax.evaluation import correctness
from codex_jax.workdir import MODELS, Workdir, results_path

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
NOTEBOOK = os.path.join(REPO, "colab", "codex_jax.ipynb")
N = 2


def write_corpus(folder) -> None:
    """60 modules of small documented functions: the corpus and the fine-tuning pairs."""
    rng = np.random.default_rng(0)
    for i in range(60):
        functions = [
            f'def scale_{i}_{j}(x):\n    """Return x times {k} plus {m}, as an integer."""\n'
            f"    return int(x * {k} + {m})\n"
            for j, (k, m) in enumerate(rng.integers(1, 9, (3, 2)))
        ]
        (folder / f"module_{i:02d}.py").write_text("\n\n".join(functions), encoding="utf-8")


def toy_overrides(tmp_path) -> dict:
    source = tmp_path / "src"
    source.mkdir()
    write_corpus(source)
    problem_file = tmp_path / "problems.jsonl"
    jsonl.write_jsonl(
        problem_file,
        [
            {
                "task_id": "toy/0",
                "entry_point": "double",
                "canonical_solution": "    return 2 * x\n",
                "prompt": 'def double(x):\n    """Return x times 2."""\n',
                "test": "def check(f):\n    assert f(3) == 6\n",
            },
            {
                "task_id": "toy/1",
                "entry_point": "inc",
                "canonical_solution": "    return x + 1\n",
                "prompt": 'def inc(x):\n    """Return x plus 1."""\n',
                "test": "def check(f):\n    assert f(3) == 4\n",
            },
        ],
    )
    return {
        "corpus.sources": (str(source),),
        "corpus.n_workers": 1,
        "corpus.val_fraction": 0.2,
        "tokenizer.vocab_size": 400,
        "data.n_workers": 1,
        "model.n_layers": 1,
        "model.d_model": 32,
        "model.n_heads": 2,
        "model.d_ff": 64,
        "model.max_len": 128,
        # batch 8: the rerun below happens in this process, on 8 devices
        "train.steps": 8,
        "train.batch_size": 8,
        "train.seq_len": 64,
        "train.lr": 1e-2,
        "train.warmup_steps": 2,
        "train.log_every": 2,
        "train.eval_every": 4,
        "train.eval_batches": 1,
        "train.peak_flops": 1e12,
        "checkpoint.every_steps": 4,
        "functions.n_workers": 1,
        "finetune.steps": 8,
        "finetune.lr": 1e-2,
        "finetune.warmup_steps": 2,
        "finetune.eval_every": 4,
        "finetune.eval_batches": 1,
        "sample.n": N,
        "sample.max_new_tokens": 16,
        "sample.batch_size": 4,
        "eval.k": (1, 2),
        "eval.n_workers": 1,
        "eval.problem_file": str(problem_file),
        # Every task, a few problems each; the synthetic pairs mostly exceed this toy's window.
        "eval.tasks": ("humaneval", "mbpp", "chained"),
        "tasks.mbpp.limit": 2,
        "tasks.chained.lengths": (1, 2),
        "tasks.chained.per_length": 1,
        "finetune.synthetic_pairs": 20,
    }


def test_notebook_runs_the_pipeline_and_a_rerun_skips_every_stage(tmp_path, monkeypatch):
    workdir = tmp_path / "work"
    overrides = toy_overrides(tmp_path)
    notebook = nbformat.read(NOTEBOOK, as_version=4)
    parameters = [cell for cell in notebook.cells if "parameters" in cell.metadata.get("tags", [])]
    assert len(parameters) == 1
    parameters[0].source = f"WORKDIR = {str(workdir)!r}\nREPO_URL = ''\nOVERRIDES = {overrides!r}"
    with monkeypatch.context() as patch:  # one CPU device in the kernel; this process keeps its 8
        patch.setenv("XLA_FLAGS", "")
        nbclient.NotebookClient(
            notebook, timeout=600, kernel_name="python3", resources={"metadata": {"path": REPO}}
        ).execute()

    shown = "".join(
        output.get("data", {}).get("text/markdown", "")
        for cell in notebook.cells
        for output in cell.get("outputs", [])
    )
    assert "## pass@k: pretrained vs fine-tuned (Codex-S), per task" in shown and "toy/0" in shown
    assert "## MBPP" in shown and "## Decomposition: chained string operations" in shown
    with open(workdir / "metrics.json", encoding="utf-8") as f:
        metrics = json.load(f)
    for model in MODELS:  # pass@k as recomputed here from the executor's verdicts
        rows = list(jsonl.read_jsonl(results_path(Workdir(workdir).samples(model))))
        assert sorted(r["task_id"] for r in rows) == ["toy/0"] * N + ["toy/1"] * N
        correct = [sum(r["passed"] for r in rows if r["task_id"] == t) for t in ("toy/0", "toy/1")]
        for k in (1, 2):
            expected = correctness.estimate_pass_at_k([N, N], correct, k).mean()
            evaluation = metrics["tasks"]["humaneval"]["evaluation"][model]
            assert evaluation["pass_at_k"][f"pass@{k}"] == pytest.approx(expected)
            low, high = evaluation["ci95"][f"pass@{k}"]
            assert low <= expected <= high
        for task, problems in (("mbpp", 2), ("chained", 2)):
            rows = list(jsonl.read_jsonl(results_path(Workdir(workdir).samples(model, task))))
            assert len(rows) == problems * N
    # Fine-tuning on function bodies lowers the held-out loss on function bodies.
    assert (
        metrics["body_loss"]["finetune"]["val_loss"] < metrics["body_loss"]["pretrain"]["val_loss"]
    )
    assert (
        metrics["training"]["pretrain"]["step"] == 8
        and metrics["training"]["finetune"]["step"] == 8
    )
    timings = jsonl.read_json(Workdir(workdir).timings)
    assert set(timings) == set(pipeline.NAMES)  # the report's table has its own stage too
    report = (workdir / "report.md").read_text()
    assert f"| total | {sum(timings.values()):.1f} |" in report
    for name in os.listdir(workdir / "plots"):
        assert (workdir / "plots" / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"

    # A rerun finds every artifact complete: nothing is trained, sampled or executed again.
    from configs import tiny

    config = tiny.get_config()
    config.update_from_flattened_dict(overrides)
    watched = [Workdir(workdir).samples(m, t) for m in MODELS for t in config.eval.tasks] + [
        str(workdir / "corpus" / "stats.json"),
        str(workdir / "tokenizer.model"),
        str(workdir / "data" / "meta.json"),
        str(workdir / "sft" / "stats.json"),
        str(workdir / "metrics.jsonl"),
        str(workdir / "finetune_metrics.jsonl"),
    ]
    before = {path: os.stat(path).st_mtime_ns for path in watched}
    pipeline.run(config, workdir, [stage for stage in pipeline.NAMES if stage != "report"])
    assert {path: os.stat(path).st_mtime_ns for path in watched} == before
