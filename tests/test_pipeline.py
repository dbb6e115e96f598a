"""The pipeline's own logic: the stage table, stage selection and resumable sampling (no model needed)."""

import json

import pytest

from codex_jax import jsonl, pipeline, workdir
from codex_jax.sampling import completions, samples
from configs import tiny


def test_parse_stages_keeps_pipeline_order_and_rejects_unknown_names():
    assert pipeline.parse_stages("all") == pipeline.NAMES
    assert pipeline.parse_stages("report, sample") == ("sample", "report")
    with pytest.raises(ValueError, match=r"--stages: unknown stage\(s\) \['sampel'\]"):
        pipeline.parse_stages("sampel,report")
    with pytest.raises(ValueError, match="--stages"):
        pipeline.parse_stages("")


def test_a_stage_runs_after_everything_it_needs_and_only_that():
    assert pipeline.with_needs(["tokenizer"]) == ("corpus", "tokenizer")
    assert pipeline.with_needs(["functions"]) == ("corpus", "functions")
    assert pipeline.with_needs(["finetune"]) == (
        "corpus",
        "tokenizer",
        "data",
        "pretrain",
        "functions",
        "finetune",
    )
    assert pipeline.with_needs(["report"]) == pipeline.NAMES
    for index, stage in enumerate(pipeline.STAGES):  # the table lists every stage after its needs
        assert all(pipeline.NAMES.index(need) < index for need in stage.needs), stage.name


def test_run_builds_the_stages_needs_first_and_skips_the_rest(tmp_path, monkeypatch):
    built = []
    table = tuple(
        pipeline.Stage(
            s.name,
            s.needs,
            s.writes,
            lambda config, w, name=s.name: built.append(name),
            s.main_process_only,
        )
        for s in pipeline.STAGES
    )
    monkeypatch.setattr(pipeline, "BY_NAME", {s.name: s for s in table})
    pipeline.run(tiny.get_config(), tmp_path, ["data"])
    assert built == ["corpus", "tokenizer", "data"]
    assert set(jsonl.read_json(workdir.Workdir(tmp_path).timings)) == {
        "corpus",
        "tokenizer",
        "data",
    }


def test_a_stage_run_alone_names_the_missing_artifact_and_the_stage_that_makes_it(tmp_path):
    from codex_jax.data import token_files

    with pytest.raises(
        FileNotFoundError, match=r"tokenizer.model: not found; the 'tokenizer' stage makes it"
    ):
        token_files.ensure_data(tiny.get_config(), tmp_path)


class Interrupted(Exception):
    pass


class FakeSampler:
    """Completes prompt p with sample j as f"{p}|{seed}|{j}"; raises on call number `fail_on`."""

    def __init__(self, calls: list, fail_on: int | None = None):
        self.calls, self.fail_on = calls, fail_on

    def complete(self, prompts, n, seed, progress=True):
        if self.fail_on is not None and len(self.calls) == self.fail_on:
            raise Interrupted()
        self.calls.append(list(prompts))
        return [
            [completions.Completion(f"{p}|{seed}|{j}", -0.5, 3, "stop") for j in range(n)]
            for p in prompts
        ]


@pytest.fixture
def sampling_setup(tmp_path, monkeypatch):
    """A 10-problem file, a config that samples it in chunks of 4 problems, a fake checkpoint."""
    problem_file = tmp_path / "problems.jsonl"
    jsonl.write_jsonl(
        problem_file,
        [
            {
                "task_id": f"t/{i}",
                "prompt": f"p{i}",
                "entry_point": "f",
                "test": "",
                "canonical_solution": "",
            }
            for i in range(10)
        ],
    )
    config = tiny.get_config()
    config.eval.problem_file = str(problem_file)
    config.sample.n, config.sample.batch_size = 2, 2  # 1 prompt per batch, 4 batches per chunk
    monkeypatch.setattr(samples.checkpoint, "latest_step", lambda directory: 7)
    return config, tmp_path


def run_sampling(config, workdir, monkeypatch, fail_on=None):
    calls = []
    monkeypatch.setattr(
        completions, "load_sampler", lambda *args, **kwargs: FakeSampler(calls, fail_on)
    )
    path = samples.ensure_samples(
        config,
        workdir,
        checkpoint_dir=str(workdir / "ckpt"),
        path=str(workdir / "samples" / "m.jsonl"),
    )
    return path, calls


def test_killed_sampling_resumes_after_its_last_chunk_and_matches_an_uninterrupted_run(
    sampling_setup, monkeypatch
):
    config, tmp_path = sampling_setup
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    whole, calls = run_sampling(config, tmp_path / "a", monkeypatch)
    assert [len(c) for c in calls] == [4, 4, 2]

    with pytest.raises(Interrupted):  # killed while sampling the second chunk
        run_sampling(config, tmp_path / "b", monkeypatch, fail_on=1)
    partial = tmp_path / "b" / "samples" / "m.jsonl.partial"
    assert [r["task_id"] for r in jsonl.read_jsonl(partial)] == [
        f"t/{i}" for i in range(4) for _ in range(2)
    ]
    with open(partial, "a", encoding="utf-8") as f:
        f.write('{"task_id": "t/4", "compl')  # a line the kill cut short

    resumed, calls = run_sampling(config, tmp_path / "b", monkeypatch)
    assert calls == [["p4", "p5", "p6", "p7"], ["p8", "p9"]]
    assert open(resumed).read() == open(whole).read()
    assert not partial.exists()
    records = list(jsonl.read_jsonl(whole))
    assert (
        len(records) == 20 and len({r["completion"].split("|")[1] for r in records}) == 3
    )  # a seed per chunk

    _, calls = run_sampling(config, tmp_path / "b", monkeypatch)  # complete: nothing to do
    assert calls == []
    with open(workdir.samples_meta_path(resumed), encoding="utf-8") as f:
        meta = json.load(f)
    assert meta["complete"] and meta["samples"] == 20 and meta["step"] == 7


def test_changed_settings_start_sampling_over(sampling_setup, monkeypatch):
    config, tmp_path = sampling_setup
    run_sampling(config, tmp_path, monkeypatch)
    config.sample.temperature = 0.2
    _, calls = run_sampling(config, tmp_path, monkeypatch)
    assert sum(len(c) for c in calls) == 10


def test_samples_path_must_be_jsonl():
    with pytest.raises(ValueError, match="ending in .jsonl"):
        workdir.samples_meta_path("samples.json")


def test_an_unknown_task_fails_before_any_stage_runs(tmp_path, monkeypatch):
    built = []
    table = {
        s.name: pipeline.Stage(s.name, s.needs, s.writes, lambda c, w: built.append(1))
        for s in pipeline.STAGES
    }
    monkeypatch.setattr(pipeline, "BY_NAME", table)
    config = tiny.get_config()
    config.eval.tasks = ("humaneval", "mbbp")
    with pytest.raises(ValueError, match="config.eval.tasks: unknown task 'mbbp'"):
        pipeline.run(config, tmp_path, ["sample"])
    assert built == []
