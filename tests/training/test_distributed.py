"""Multi-host on one machine: 2 processes x 4 CPU devices joined by jax.distributed (gloo).

The processes are this file run as a script (`_child`); the one-process runs they are compared
with happen in the pytest process on its 8 simulated devices.
"""

import json
import os
import re
import shutil
import socket
import subprocess
import sys

import jax
import numpy as np
import pytest
from helpers import DOCUMENTS
from jax.experimental import multihost_utils
from test_trainer import tiny_config

from codex_jax import jsonl, pipeline
from codex_jax.evaluation import correctness
from codex_jax.sampling import samples as samples_lib
from codex_jax.training import checkpoint, distributed, trainer

STEPS = 10
PROCESSES = 2
ARTIFACTS = ("corpus", "tokenizer.model", "data")  # what the stages before pretraining build


def multihost_config(root):
    """The toy model on mesh data=4 x model=2, validation and a checkpoint every 5 steps, and
    data built from DOCUMENTS in root/src with a 400-id tokenizer (stages without worker pools)."""
    config = tiny_config(steps=STEPS, eval_every=5, eval_batches=2)
    config.mesh.update(data=4, fsdp=1, model=2)
    config.checkpoint.update(every_steps=5, keep=2)
    config.corpus.update(sources=(os.path.join(root, "src"),), n_workers=1, val_fraction=0.1)
    config.tokenizer.vocab_size = 400
    config.data.n_workers = 1
    return config


def _train_child(workdir: str) -> None:
    """Builds the data (process 0) and trains; then restores the params as sampling will."""
    config = multihost_config(os.path.dirname(workdir))
    config.train.peak_flops = 0.0  # measured on a device of this process (devices()[0] is not)
    pipeline.run(config, workdir, ["data"])  # process 0 builds, the other waits
    state = trainer.train_and_evaluate(config, workdir)
    # Sampling: each process restores the params onto its own devices alone.
    params = checkpoint.load_model(
        os.path.join(workdir, "ckpt", "pretrain"), mesh_config=config.mesh, this_process_only=True
    ).params
    trained = multihost_utils.process_allgather(state.params, tiled=True)
    for restored, expected in zip(jax.tree.leaves(params), jax.tree.leaves(trained)):
        assert restored.is_fully_addressable
        np.testing.assert_array_equal(np.asarray(restored), expected)


def _evaluate_child(workdir: str) -> None:
    pass_at_k = correctness.evaluate_shared(
        os.path.join(workdir, "samples.jsonl"),
        k=(1, 2),
        n_workers=1,
        problem_file=os.path.join(workdir, "problems.jsonl"),
    )
    jsonl.write_json_atomically(
        os.path.join(workdir, f"pass_at_k.{jax.process_index()}.json"), pass_at_k
    )


def sampling_config(root):
    """multihost_config sampling PROBLEMS twice each, in chunks of 4 problems (1 per batch of 2 rows)."""
    config = multihost_config(root)
    config.mesh.update(data=-1, fsdp=1, model=2)  # what each process of a multi-host run samples on
    config.sample.update(n=2, batch_size=2, max_new_tokens=8, temperature=0.8)
    config.eval.update(k=(1, 2), n_workers=1, problem_file=os.path.join(root, "problems.jsonl"))
    return config


def _sample_child(workdir: str) -> None:
    """Samples PROBLEMS from the checkpoint the 2-process training wrote, then executes them."""
    root = os.path.dirname(os.path.dirname(workdir))
    config = sampling_config(root)
    path = samples_lib.ensure_samples(
        config,
        workdir,
        checkpoint_dir=os.path.join(root, "two", "ckpt", "pretrain"),
        path=os.path.join(workdir, "samples.jsonl"),
    )
    metrics = correctness.evaluate_with_config(config, path)
    jsonl.write_json_atomically(
        os.path.join(workdir, f"pass_at_k.{jax.process_index()}.json"), metrics
    )


def _child(mode: str, workdir: str, processes: str) -> None:
    if int(processes) > 1:
        distributed.initialize(multihost=True)
        assert (jax.process_count(), jax.device_count(), jax.local_device_count()) == (
            PROCESSES,
            8,
            4,
        )
    {"train": _train_child, "evaluate": _evaluate_child, "sample": _sample_child}[mode](workdir)


def run_processes(mode: str, workdir, processes: int = PROCESSES) -> None:
    """Runs `_child(mode, workdir)` in `processes` processes on localhost (4 CPU devices each,
    joined by jax.distributed when there are several); fails with their stderr."""
    os.makedirs(workdir, exist_ok=True)
    with socket.socket() as s:
        s.bind(("localhost", 0))
        port = s.getsockname()[1]
    tests = os.path.dirname(os.path.abspath(__file__))
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=4",
        "JAX_PLATFORMS": "cpu",
        "PYTHONPATH": os.pathsep.join(
            [
                os.path.dirname(os.path.dirname(tests)),
                os.path.dirname(tests),
                os.environ.get("PYTHONPATH", ""),
            ]
        ),
        "JAX_COORDINATOR_ADDRESS": f"localhost:{port}",
        "JAX_NUM_PROCESSES": str(processes),
    }
    children = []
    for index in range(processes):
        stderr = open(os.path.join(workdir, f"stderr.{index}"), "w+b")
        children.append(
            (
                subprocess.Popen(
                    [sys.executable, __file__, mode, str(workdir), str(processes)],
                    cwd=tests,
                    env={**env, "JAX_PROCESS_ID": str(index)},
                    stdout=subprocess.DEVNULL,
                    stderr=stderr,
                ),
                stderr,
            )
        )
    try:
        for child, _ in children:
            child.wait(timeout=300)
    finally:
        for child, _ in children:
            child.kill()
    for index, (child, stderr) in enumerate(children):
        stderr.seek(0)
        assert child.returncode == 0, f"process {index}:\n" + stderr.read().decode()[-3000:]
        stderr.close()


def metrics_records(workdir) -> dict[int, dict]:
    return {
        record["step"]: record
        for record in jsonl.read_jsonl(os.path.join(workdir, "metrics.jsonl"))
    }


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    root = tmp_path_factory.mktemp("multihost")
    for i, document in enumerate(DOCUMENTS):
        path = root / "src" / "pkg" / f"m{i:03d}.py"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(document, encoding="utf-8")
    return root


@pytest.fixture(scope="module")
def two_process_workdir(root):
    """Where 2 processes built the data and trained."""
    run_processes("train", root / "two")
    return root / "two"


def copy_artifacts(source, workdir) -> None:
    for name in ARTIFACTS:
        (shutil.copytree if (source / name).is_dir() else shutil.copyfile)(
            source / name, workdir / name
        )


@pytest.fixture(scope="module")
def one_process_records(root, two_process_workdir) -> dict[int, dict]:
    """metrics.jsonl, by step, of the run on the pytest process's 8 devices (same data files)."""
    workdir = root / "one"
    workdir.mkdir()
    copy_artifacts(two_process_workdir, workdir)
    pipeline.run(multihost_config(root), workdir, ["pretrain"])
    return metrics_records(workdir)


def assert_same_run(records: dict[int, dict], reference: dict[int, dict], steps: list[int]) -> None:
    assert sorted(records) == steps
    for field in ("loss", "grad_norm", "val_loss", "val_bits_per_byte"):
        np.testing.assert_allclose(
            [records[s].get(field, 0.0) for s in steps],
            [reference[s].get(field, 0.0) for s in steps],
            rtol=0,
            atol=1e-5,
            err_msg=field,
        )


def test_two_processes_train_like_one_process_on_the_same_mesh(
    one_process_records, two_process_workdir
):
    steps = list(range(1, STEPS + 1))
    assert (
        one_process_records[STEPS]["loss"] < one_process_records[1]["loss"] - 0.05
    )  # steps that train
    assert (
        "val_bits_per_byte" in one_process_records[5]
        and "val_bits_per_byte" in one_process_records[10]
    )
    assert_same_run(metrics_records(two_process_workdir), one_process_records, steps)


def test_checkpoint_of_two_processes_resumes_in_one(root, one_process_records, two_process_workdir):
    saved = two_process_workdir / "ckpt" / "pretrain"
    assert sorted(os.listdir(saved)) == ["10", "5", "config.json", "tokenizer.model"]
    workdir = root / "resumed"
    workdir.mkdir()
    copy_artifacts(two_process_workdir, workdir)
    shutil.copytree(saved, workdir / "ckpt" / "pretrain", ignore=shutil.ignore_patterns("10"))
    pipeline.run(multihost_config(root), workdir, ["pretrain"])
    assert_same_run(metrics_records(workdir), one_process_records, list(range(6, STEPS + 1)))


PROBLEMS = [
    {
        "task_id": f"t/{i}",
        "prompt": "def f(a):\n",
        "entry_point": "f",
        "test": f"def check(candidate):\n    assert candidate(3) == {3 * i}\n",
        "canonical_solution": f"    return a * {i}\n",
    }
    for i in range(5)
]


def test_two_processes_evaluate_into_the_one_process_results_file(tmp_path):
    # Task t/i has i + 1 samples, one of them (t/i's sample i % 2) right; tasks interleave in the file.
    samples = [
        {"task_id": f"t/{i}", "completion": f"    return a * {i if j == i % 2 else i + 1}\n"}
        for j in range(5)
        for i in range(5)
        if j <= i
    ]
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        jsonl.write_jsonl(tmp_path / name / "problems.jsonl", PROBLEMS)
        jsonl.write_jsonl(tmp_path / name / "samples.jsonl", samples)
    one = correctness.evaluate_functional_correctness(
        str(tmp_path / "one" / "samples.jsonl"),
        k=(1, 2),
        n_workers=1,
        problem_file=str(tmp_path / "one" / "problems.jsonl"),
    )
    assert one["pass@1"] == pytest.approx(np.mean([1 / (i + 1) for i in range(5)]))

    run_processes("evaluate", tmp_path / "two")
    for index in range(PROCESSES):
        assert json.loads((tmp_path / "two" / f"pass_at_k.{index}.json").read_text()) == one
    assert (tmp_path / "two" / "samples.jsonl_results.jsonl").read_text() == (
        tmp_path / "one" / "samples.jsonl_results.jsonl"
    ).read_text()
    assert not [
        name for name in os.listdir(tmp_path / "two") if ".process" in name
    ]  # parts removed
    # Each process executed only its share: t/0, t/2, t/4 (1 + 3 + 5 samples) and t/1, t/3 (2 + 4),
    # as the progress bars of their executor pools counted.
    executed = [
        re.findall(
            r"executing: 100%.* (\d+)/\1 ", (tmp_path / "two" / f"stderr.{index}").read_text()
        )
        for index in range(PROCESSES)
    ]
    assert executed == [["9"], ["6"]]


def test_two_processes_sample_and_evaluate_like_one_process(root, two_process_workdir):
    """Each process samples its chunks of problems on its own 4 devices; the one samples file,
    results file and pass@k equal one process's on 4 devices with the same seed."""
    jsonl.write_jsonl(root / "problems.jsonl", PROBLEMS)
    run_processes("sample", root / "sampled" / "two")
    run_processes("sample", root / "sampled" / "one", processes=1)
    one, two = root / "sampled" / "one", root / "sampled" / "two"
    samples = list(jsonl.read_jsonl(one / "samples.jsonl"))
    assert [s["task_id"] for s in samples] == [p["task_id"] for p in PROBLEMS for _ in range(2)]
    assert len({s["completion"] for s in samples}) > 1  # sampled, not one constant string
    for name in ("samples.jsonl", "samples.jsonl_results.jsonl"):
        assert (two / name).read_text() == (one / name).read_text(), name
    expected = json.loads((one / "pass_at_k.0.json").read_text())
    for index in range(PROCESSES):
        got = json.loads((two / f"pass_at_k.{index}.json").read_text())
        assert {k: v for k, v in got.items() if k.startswith("pass@")} == {
            k: v for k, v in expected.items() if k.startswith("pass@")
        }
    assert not [name for name in os.listdir(two) if "partial" in name or ".process" in name]


if __name__ == "__main__":
    _child(*sys.argv[1:])
