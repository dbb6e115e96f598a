"""The pipeline started from an imported model (config.init.hf_checkpoint): its tokenizer
replaces the trained one, its architecture config.model, its weights the random init; train.steps
= 0 keeps it as it is, more continue it; fine-tuning and sampling run on it as on our own."""

import json

import jax
import numpy as np

from codex_jax import pipeline
from codex_jax.data import token_files
from codex_jax.data import tokenizer as tokenizer_lib
from codex_jax.model import hf, hf_tokenizer
from codex_jax.training import checkpoint
from codex_jax.workdir import Workdir
from tests.model.test_hf import save_random_model
from tests.tasks.test_chained_learning import shrunk_config


def imported_config(tmp_path, steps: int):
    save_random_model("llama", str(tmp_path / "llama"), max_position_embeddings=256)
    config = shrunk_config(tmp_path)
    config.update_from_flattened_dict(
        {
            "init.hf_checkpoint": str(tmp_path / "llama"),
            "train.steps": steps,
            "train.warmup_steps": 0,
            "train.eval_every": 2,
            "finetune.steps": 2,
            "finetune.warmup_steps": 0,
            "finetune.eval_every": 2,
            "finetune.synthetic_pairs": 20,
            "sample.max_new_tokens": 8,
            "tasks.chained.per_length": 2,
        }
    )
    return config


def test_steps_0_keeps_the_imported_model_and_fine_tuning_starts_from_it(tmp_path):
    config = imported_config(tmp_path, steps=0)
    workdir = str(tmp_path / "work")
    pipeline.run(config, workdir, ["report"])
    paths = Workdir(workdir)
    ours = tokenizer_lib.load_tokenizer(paths.tokenizer)
    theirs = hf.load(tmp_path / "llama")
    assert isinstance(ours, hf_tokenizer.HFTokenizer)
    assert ours.encode("def f(x):\n") == theirs[2].encode("def f(x):\n")
    assert token_files.load_meta(paths.data)["vocab_size"] == theirs[0].vocab_size
    pretrained = checkpoint.load_model(paths.checkpoint("pretrain"))
    assert pretrained.step == 0 and pretrained.gpt.config == theirs[0]
    jax.tree.map(np.testing.assert_array_equal, pretrained.params, theirs[1])
    tuned = checkpoint.load_model(paths.checkpoint("finetune"))
    assert tuned.step == 2 and tuned.gpt.config == theirs[0]
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), tuned.params, theirs[1])
    assert all(jax.tree.leaves(changed))  # every parameter moved in fine-tuning
    with open(paths.samples("finetune", "chained")) as f:
        assert len(f.readlines()) == 2
    with open(paths.report) as f:
        assert f"Started from the imported model `{tmp_path / 'llama'}`" in f.read()


def test_steps_continue_pretraining_the_imported_model(tmp_path):
    config = imported_config(tmp_path, steps=2)
    workdir = str(tmp_path / "work")
    pipeline.run(config, workdir, ["pretrain"])
    paths = Workdir(workdir)
    pretrained = checkpoint.load_model(paths.checkpoint("pretrain"))
    _, params, _ = hf.load(tmp_path / "llama")
    assert pretrained.step == 2
    assert np.any(pretrained.params["wte"]["embedding"] != params["wte"]["embedding"])
    with open(paths.training_log("pretrain")) as f:
        first = json.loads(f.readline())
    # The imported model's loss, not a random init's (ln 320 = 5.77 nats for this vocabulary).
    assert first["step"] == 2 and abs(first["loss"] - np.log(320)) > 0.5
