"""Orbax checkpoints of the train state: async, every N steps, the last K kept.

Layout of a checkpoint directory (e.g. workdir/ckpt/pretrain):
    <step>/params/, <step>/opt_state/   one orbax checkpoint per saved step (two items, so a
                                        sampler or a fine-tuning run restores params alone)
    config.json                         the ml_collections config of the run
    tokenizer.model                     the tokenizer the run was trained with (when given)

A checkpoint is written to a temporary directory and renamed (or marked committed, on object
stores) only once every array is on disk, and orbax lists only committed steps: a run killed
mid-save restarts from the previous complete checkpoint, never from a half-written one.
"""

import dataclasses
import json
import os
import shutil
from typing import Any

import jax
import jax.numpy as jnp
import ml_collections
import orbax.checkpoint as ocp

from codex_jax import jsonl
from codex_jax.data import tokenizer as tokenizer_lib
from codex_jax.model import transformer
from codex_jax.training import sharding

ITEMS = ("params", "opt_state")
CONFIG_FILENAME = "config.json"


class Checkpointer:
    """Saves and restores {"params", "opt_state"} pytrees of sharded jax.Arrays by step."""

    def __init__(
        self,
        directory: str | os.PathLike,
        *,
        every_steps: int = 1,
        keep: int | None = None,
        config: Any = None,
        tokenizer_path: str | os.PathLike | None = None,
        read_only: bool = False,
    ):
        """`read_only`: only restore (creates nothing); else config and tokenizer go beside."""
        self.directory = os.path.abspath(os.fspath(directory))
        self.every_steps = every_steps
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep,
            create=not read_only,
            read_only=read_only,
            enable_async_checkpointing=True,
        )
        self._manager = ocp.CheckpointManager(self.directory, options=options, item_names=ITEMS)
        if jax.process_index() == 0 and not read_only:
            if config is not None:
                jsonl.write_text_atomically(
                    os.path.join(self.directory, CONFIG_FILENAME),
                    config.to_json_best_effort(indent=2),
                )
            if tokenizer_path is not None and os.path.exists(tokenizer_path):
                shutil.copyfile(
                    tokenizer_path, os.path.join(self.directory, tokenizer_lib.MODEL_FILENAME)
                )

    def latest_step(self) -> int | None:
        """The newest completely written step, or None."""
        return self._manager.latest_step()

    def all_steps(self) -> list[int]:
        return list(self._manager.all_steps())

    def save(self, step: int, params: Any, opt_state: Any, force: bool = False) -> bool:
        """Starts an async save when `step` is a multiple of every_steps (or `force`); True if it did.

        The arrays are copied to host memory before this returns, so the caller may donate them.
        """
        if step % self.every_steps and not force:
            return False
        return self._manager.save(
            step,
            args=ocp.args.Composite(
                params=ocp.args.StandardSave(params), opt_state=ocp.args.StandardSave(opt_state)
            ),
            force=True,
        )

    def restore(
        self, abstract_params: Any, abstract_opt_state: Any | None = None, step: int | None = None
    ) -> tuple[int, Any, Any]:
        """Restores (step, params, opt_state) into the shardings of the abstract trees.

        `abstract_*` are trees of jax.ShapeDtypeStruct carrying the target shardings;
        `abstract_opt_state=None` restores params only (opt_state is returned as None).
        `step=None` means the latest complete step.

        Raises:
            FileNotFoundError: the directory holds no complete checkpoint.
        """
        step = self.latest_step() if step is None else step
        if step is None:
            raise FileNotFoundError(f"{self.directory}: no complete checkpoint to restore")
        items = {"params": ocp.args.StandardRestore(abstract_params)}
        if abstract_opt_state is not None:
            items["opt_state"] = ocp.args.StandardRestore(abstract_opt_state)
        restored = self._manager.restore(step, args=ocp.args.Composite(**items))
        opt_state = restored["opt_state"] if abstract_opt_state is not None else None
        return step, restored["params"], opt_state

    def wait(self) -> None:
        """Blocks until the pending async save is on disk."""
        self._manager.wait_until_finished()

    def close(self) -> None:
        self._manager.close()


def latest_step(directory: str | os.PathLike) -> int | None:
    """The newest completely written step in `directory`, or None (also when it does not exist)."""
    if not os.path.isdir(directory):
        return None
    checkpointer = Checkpointer(directory, read_only=True)
    try:
        return checkpointer.latest_step()
    finally:
        checkpointer.close()


def restore_params(
    directory: str | os.PathLike, abstract_params: Any, step: int | None = None
) -> Any:
    """Params alone from a checkpoint directory (the latest complete step by default)."""
    checkpointer = Checkpointer(directory, read_only=True)
    try:
        return checkpointer.restore(abstract_params, step=step)[1]
    finally:
        checkpointer.close()


@dataclasses.dataclass(frozen=True)
class Model:
    """A trained model ready to sample or score: what `load_model` returns."""

    config: ml_collections.ConfigDict  # the run's config, as saved beside the checkpoint
    gpt: transformer.GPT
    params: Any  # float32 tree of jax.Arrays placed on `mesh`
    tokenizer: tokenizer_lib.Tokenizer
    mesh: jax.sharding.Mesh
    rules: sharding.Rules
    step: int


def load_model(
    checkpoint_dir: str | os.PathLike,
    *,
    mesh_config: Any = None,
    step: int | None = None,
    this_process_only: bool = False,
) -> Model:
    """The params of `step` (default: the latest) in `checkpoint_dir`, with the model config and
    tokenizer saved beside them; no optimizer is built.

    Args:
        mesh_config: a `config.mesh` section to place the params by (default: the run's own).
        this_process_only: place them on this process's devices alone (`sharding.make_mesh`).

    Raises:
        FileNotFoundError: no complete checkpoint, or no config.json / tokenizer.model beside it.
    """
    directory = os.path.abspath(os.fspath(checkpoint_dir))
    step = latest_step(directory) if step is None else step
    if step is None:
        raise FileNotFoundError(
            f"{directory}: no complete checkpoint (train it first: scripts/pipeline.py)"
        )
    for name in (CONFIG_FILENAME, tokenizer_lib.MODEL_FILENAME):
        if not os.path.exists(os.path.join(directory, name)):
            raise FileNotFoundError(
                f"{os.path.join(directory, name)}: not found; a checkpoint folder holds "
                "the config and tokenizer it was trained with"
            )
    with open(os.path.join(directory, CONFIG_FILENAME), encoding="utf-8") as f:
        config = ml_collections.ConfigDict(json.load(f))
    tokenizer = tokenizer_lib.load_tokenizer(os.path.join(directory, tokenizer_lib.MODEL_FILENAME))
    gpt = transformer.GPT(transformer.GPTConfig.from_config(config.model, tokenizer.vocab_size))
    mesh_config = config.mesh if mesh_config is None else mesh_config
    mesh = sharding.make_mesh(mesh_config, this_process_only=this_process_only)
    rules = sharding.rules_from_config(mesh_config)
    abstract, _ = sharding.abstract_tree(
        lambda: gpt.init(jax.random.key(0), jnp.zeros((1, 1), jnp.int32))["params"], mesh, rules
    )
    return Model(
        config=config,
        gpt=gpt,
        params=restore_params(directory, abstract, step=step),
        tokenizer=tokenizer,
        mesh=mesh,
        rules=rules,
        step=step,
    )
