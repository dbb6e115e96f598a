"""The training loop: `setup` (model, optimizer, mesh, jitted steps) and `train_and_evaluate`.

`train_and_evaluate(config, workdir)` resumes from the latest complete checkpoint, so rerunning a
killed command continues it; batches are a pure function of the step, so the resumed run's
losses equal an uninterrupted run's. Fine-tuning reuses it with its own `DataSource`,
`init_checkpoint`, `checkpoint_dir` and `metrics_path`. The steps themselves (optimizer, loss,
`train_step`, `eval_step`) are `codex_jax.training.steps`; config checks `config_checks`.
"""

import dataclasses
import itertools
import math
import os
import time
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

from codex_jax import jsonl
from codex_jax.model import hf, transformer
from codex_jax.training import checkpoint, metrics, sharding
from codex_jax.training.config_checks import validate_config
from codex_jax.training.steps import Batch, TrainState, eval_step, make_optimizer, train_step
from codex_jax.workdir import Workdir, require


@dataclasses.dataclass
class DataSource:
    """Where batches come from; pure functions of their index, so resuming needs no state.

    train_batch(step) / eval_batch(index) return this process's rows of a batch dict (see the
    module docstring) as numpy arrays; eval_batch None skips validation. token_byte_lengths
    int[V] (UTF-8 bytes per token id) enables val_bits_per_byte.
    """

    vocab_size: int
    train_batch: Callable[[int], Batch]
    eval_batch: Callable[[int], Batch] | None = None
    token_byte_lengths: np.ndarray | None = None
    tokenizer_path: str | None = None


@dataclasses.dataclass
class Setup:
    """A model, its optimizer and mesh, and the jitted steps with their shardings."""

    gpt: transformer.GPT
    mesh: jax.sharding.Mesh
    rules: sharding.Rules
    state_shardings: Any
    abstract_state: TrainState  # jax.ShapeDtypeStruct leaves carrying the shardings
    init: Callable[[], TrainState]
    train_step: Callable[[TrainState, Batch], tuple[TrainState, dict]]
    eval_step: Callable[[Any, Batch], dict]

    def shard_batch(self, batch: Batch) -> dict[str, jax.Array]:
        return sharding.shard_batch(batch, self.mesh, self.rules)


def setup(
    config: ml_collections.ConfigDict, vocab_size: int, devices: list[jax.Device] | None = None
) -> Setup:
    """Builds model, optimizer, mesh and the jitted init/train/eval functions (nothing compiled yet)."""
    validate_config(config, len(devices) if devices is not None else None)
    gpt = transformer.GPT(transformer.GPTConfig.from_config(config.model, vocab_size))
    tx, schedule = make_optimizer(config.train)
    mesh = sharding.make_mesh(config.mesh, devices)
    rules = sharding.rules_from_config(config.mesh)

    def init_boxed(rng):  # parameters (and Adam moments) still carry their logical axis names
        tokens = jnp.zeros((1, config.train.seq_len), jnp.int32)
        params = gpt.init(rng, tokens)["params"]
        return TrainState(step=jnp.int32(0), params=params, opt_state=tx.init(params))

    rng = jax.random.key(config.seed)
    abstract_state, state_shardings = sharding.abstract_tree(lambda: init_boxed(rng), mesh, rules)
    init_jitted = jax.jit(lambda: nn.unbox(init_boxed(rng)), out_shardings=state_shardings)

    def init():
        # Partitionable threefry makes XLA:CPU compile the init ~5x slower (10 s for a toy
        # model); the values never depend on the mesh either way, only on this flag.
        with jax.threefry_partitionable(False):
            return init_jitted()

    step_fn = _jit_in_context(
        lambda state, batch: train_step(
            state, batch, gpt=gpt, tx=tx, schedule=schedule, grad_accum=config.train.grad_accum
        ),
        mesh,
        rules,
        in_shardings=(state_shardings, sharding.batch_sharding(mesh, rules)),
        out_shardings=(state_shardings, sharding.replicated(mesh)),
        donate_argnums=0,
    )
    return Setup(
        gpt=gpt,
        mesh=mesh,
        rules=rules,
        state_shardings=state_shardings,
        abstract_state=abstract_state,
        init=init,
        train_step=step_fn,
        eval_step=make_eval_step(gpt, mesh, rules, state_shardings.params),
    )


def _jit_in_context(
    fn: Callable, mesh: jax.sharding.Mesh, rules: sharding.Rules, **jit_kwargs
) -> Callable:
    """jit, traced and run under the mesh and its logical axis rules (the model's constraints)."""
    jitted = jax.jit(fn, **jit_kwargs)

    def call(*args):
        with sharding.context(mesh, rules):
            return jitted(*args)

    return call


def make_eval_step(
    gpt: transformer.GPT, mesh: jax.sharding.Mesh, rules: sharding.Rules, param_shardings: Any
) -> Callable[[Any, Batch], dict]:
    """The jitted `eval_step` of params placed by `param_shardings` (no optimizer needed)."""
    return _jit_in_context(
        lambda params, batch: eval_step(params, batch, gpt=gpt),
        mesh,
        rules,
        in_shardings=(param_shardings, sharding.batch_sharding(mesh, rules)),
        out_shardings=sharding.replicated(mesh),
    )


@dataclasses.dataclass
class Scorer:
    """What `evaluate` needs to score params already placed on a mesh (a `Setup` has it too)."""

    eval_step: Callable[[Any, Batch], dict]
    mesh: jax.sharding.Mesh
    rules: sharding.Rules

    @classmethod
    def for_model(cls, model: checkpoint.Model) -> "Scorer":
        """A loaded model's scorer: no optimizer, no train state."""
        param_shardings = jax.tree.map(lambda x: x.sharding, model.params)
        return cls(
            make_eval_step(model.gpt, model.mesh, model.rules, param_shardings),
            model.mesh,
            model.rules,
        )

    def shard_batch(self, batch: Batch) -> dict[str, jax.Array]:
        return sharding.shard_batch(batch, self.mesh, self.rules)


def evaluate(
    run: Setup | Scorer, params: Any, data: DataSource, n_batches: int
) -> dict[str, float]:
    """val_loss (nats per scored target) and, given token byte lengths, val_bits_per_byte:
    summed cross-entropy in bits over the UTF-8 bytes of exactly the scored targets."""
    loss_sum = count = n_bytes = 0.0
    for index in range(n_batches):
        batch = data.eval_batch(index)
        sums = run.eval_step(params, run.shard_batch(batch))
        loss_sum += float(sums["loss_sum"])
        count += float(sums["count"])
        if data.token_byte_lengths is not None:
            targets = np.asarray(batch["tokens"])[:, 1:]
            mask = batch.get("loss_mask", np.ones(targets.shape))
            n_bytes += float(np.sum(data.token_byte_lengths[targets] * mask))
    if data.token_byte_lengths is not None and jax.process_count() > 1:
        n_bytes = float(np.sum(multihost_utils.process_allgather(np.float64(n_bytes))))
    result = {"val_loss": loss_sum / max(count, 1.0)}
    if data.token_byte_lengths is not None:
        result["val_bits_per_byte"] = loss_sum / math.log(2) / max(n_bytes, 1.0)
    return result


def pretraining_data(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> DataSource:
    """Packed-token batches from workdir/data (the 'data' stage's token files)."""
    from codex_jax.data import (  # the data stages load only when pretraining needs them
        token_files,
        tokenizer,
    )

    paths = Workdir(workdir)
    data_dir, tokenizer_path = paths.data, require(paths.tokenizer, "tokenizer")
    meta = token_files.load_meta(data_dir)
    train_tokens, val_tokens = (
        token_files.load_tokens(data_dir, "train"),
        token_files.load_tokens(data_dir, "val"),
    )
    processes = {"process_index": jax.process_index(), "process_count": jax.process_count()}
    t = config.train
    return DataSource(
        vocab_size=int(meta["vocab_size"]),
        train_batch=lambda step: {
            "tokens": token_files.get_batch(
                train_tokens,
                batch_size=t.batch_size,
                seq_len=t.seq_len,
                seed=config.seed,
                step=step,
                **processes,
            )
        },
        eval_batch=lambda index: {
            "tokens": token_files.get_eval_batch(
                val_tokens,
                batch_size=t.batch_size // t.grad_accum,
                seq_len=t.seq_len,
                index=index,
                num_batches=t.eval_batches,
                **processes,
            )
        },
        token_byte_lengths=np.asarray(
            tokenizer.load_tokenizer(tokenizer_path).token_byte_lengths()
        ),
        tokenizer_path=tokenizer_path,
    )


def _duration(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m{seconds:02d}s"


def _log_line(record: dict[str, Any], steps: int, seconds_per_step: float | None) -> None:
    """One human-readable progress line: loss, validation, lr, rate, MFU and ETA."""
    rate = (
        (
            f"{record['tokens_per_s']:,.0f} tok/s, mfu {record['mfu']:.1%}, "
            f"eta {_duration(seconds_per_step * (steps - record['step']))}"
        )
        if seconds_per_step
        else "compiled"
    )
    validation = "".join(
        f" {k} {record[k]:.4f}" for k in ("val_loss", "val_bits_per_byte") if k in record
    )
    logging.info(
        "step %d/%d loss %.4f%s lr %.2e grad_norm %.3f | %s",
        record["step"],
        steps,
        record["loss"],
        validation,
        record["lr"],
        record["grad_norm"],
        rate,
    )


def final_step(config: ml_collections.ConfigDict, checkpoint_dir: str) -> int:
    """The step a run of `config` into `checkpoint_dir` ends at (a budget run: the one decided)."""
    return Budget(config, checkpoint_dir).config.train.steps


class Budget:
    """`config.train.budget_s`: train for that many seconds of training (compiles included,
    validation not) instead of a given number of steps, the schedule sized to it.

    The first `CALIBRATION_STEPS` timed steps run on the schedule of `train.steps` (the most a
    budget may take); their rate then fixes the run's step count, S = the steps done + the
    seconds left (less one more compile, timed as the first step) / seconds per step (at least
    warmup_steps + 1, at most train.steps), and the train step is rebuilt on a warmup-cosine
    schedule of S steps. S is kept in `<checkpoint dir>/budget.json`, so a resumed run ends at
    the same step.
    """

    CALIBRATION_STEPS = 10
    FILENAME = "budget.json"

    def __init__(self, config: ml_collections.ConfigDict, checkpoint_dir: str):
        self.config, self.seconds = config, float(config.train.get("budget_s", 0) or 0)
        self.path = os.path.join(checkpoint_dir, self.FILENAME)
        self.steps = None
        if self.seconds and os.path.exists(self.path):
            self.steps = jsonl.read_json(self.path)["steps"]
            self.config = self._with_steps(self.steps)

    def _with_steps(self, steps: int) -> ml_collections.ConfigDict:
        config = ml_collections.ConfigDict(self.config.to_dict())
        config.train.steps = steps
        return config

    def calibrating(self, timed_steps: int) -> bool:
        return bool(self.seconds) and self.steps is None and timed_steps == self.CALIBRATION_STEPS

    def decide(self, done: int, spent: float, seconds_per_step: float) -> int:
        t = self.config.train
        left = max(self.seconds - spent, 0.0)
        self.steps = int(min(max(done + left / seconds_per_step, t.warmup_steps + 1), t.steps))
        self.config = self._with_steps(self.steps)
        if jax.process_index() == 0:
            jsonl.write_json_atomically(
                self.path, {"budget_s": self.seconds, "steps": self.steps, "at_step": done}
            )
        logging.info(
            "budget: %.0f s at %.3f s/step after %.0f s -> %d steps",
            self.seconds,
            seconds_per_step,
            spent,
            self.steps,
        )
        return self.steps


def train_and_evaluate(
    config: ml_collections.ConfigDict,
    workdir: str | os.PathLike,
    *,
    data: DataSource | None = None,
    init_checkpoint: str | os.PathLike | None = None,
    checkpoint_dir: str | os.PathLike | None = None,
    metrics_path: str | os.PathLike | None = None,
    devices: list[jax.Device] | None = None,
) -> TrainState:
    """Trains `config.train.steps` steps, resuming from the latest checkpoint in `checkpoint_dir`.

    Args:
        data: batches; default `pretraining_data(config, workdir)`.
        init_checkpoint: a checkpoint directory whose latest params start a fresh run (e.g.
            fine-tuning from pretraining); ignored once `checkpoint_dir` has a checkpoint.
        checkpoint_dir: default workdir/ckpt/pretrain. metrics_path: default workdir/metrics.jsonl.
        devices: default all devices.
    Returns:
        The final train state (sharded jax.Arrays).
    """
    workdir = os.fspath(workdir)
    config = hf.configure(config)  # an imported model's architecture (config.init.hf_checkpoint)
    validate_config(config, len(devices) if devices is not None else None)
    checkpoint_dir = os.path.abspath(checkpoint_dir or Workdir(workdir).checkpoint("pretrain"))
    budget = Budget(config, checkpoint_dir)
    config = budget.config  # a resumed budget run: the step count it decided
    data = data or pretraining_data(config, workdir)
    run = setup(config, data.vocab_size, devices)
    t = config.train
    checkpointer = checkpoint.Checkpointer(
        checkpoint_dir,
        every_steps=config.checkpoint.every_steps,
        keep=config.checkpoint.keep,
        config=config,
        tokenizer_path=data.tokenizer_path,
    )
    if checkpointer.latest_step() is not None:
        step, params, opt_state = checkpointer.restore(
            run.abstract_state.params, run.abstract_state.opt_state
        )
        state = TrainState(
            step=jax.device_put(jnp.int32(step), run.state_shardings.step),
            params=params,
            opt_state=opt_state,
        )
        logging.info("resumed from %s at step %d", checkpointer.directory, step)
    else:
        state = run.init()
        if init_checkpoint is not None:
            params = checkpoint.restore_params(init_checkpoint, run.abstract_state.params)
            state = state.replace(params=params)
            logging.info("initial params from %s", init_checkpoint)
        elif config.get("init", {}).get("hf_checkpoint"):
            imported = config.init.hf_checkpoint
            params = jax.device_put(hf.load(imported)[1], run.state_shardings.params)
            state = state.replace(params=params)
            logging.info("initial params from %s (imported)", imported)
    start = int(state.step)
    metrics_path = metrics_path or Workdir(workdir).training_log("pretrain")
    tensorboard_dir = (
        os.path.splitext(metrics_path)[0] + "_tensorboard" if t.get("tensorboard") else None
    )
    writer = metrics.MetricsWriter(metrics_path, resume_step=start, tensorboard_dir=tensorboard_dir)
    tokens_per_step = t.batch_size * t.seq_len
    flops_per_step = metrics.flops_per_token(run.gpt.config, t.seq_len) * tokens_per_step
    peak = (
        metrics.peak_flops(jax.local_devices()[0], t.peak_flops) * run.mesh.size
    )  # devices()[0] may be another host's

    timer_start, timed_steps, recompiled = None, 0, False
    loop_start, eval_seconds = time.perf_counter(), 0.0
    steps = t.steps
    for step in itertools.count(start):
        if step >= steps:
            break
        state, step_metrics = run.train_step(state, run.shard_batch(data.train_batch(step)))
        done = step + 1
        if timer_start is None or recompiled:  # a step that compiles: time from its end
            jax.block_until_ready(step_metrics)
            if timer_start is None:
                first_step_seconds = time.perf_counter() - loop_start
            timer_start, timed_steps, recompiled = time.perf_counter(), 0, False
        else:
            timed_steps += 1
        if budget.calibrating(timed_steps):  # size the schedule to the wall-clock budget
            jax.block_until_ready(step_metrics)
            now = time.perf_counter()
            spent = writer.resumed_seconds + now - loop_start - eval_seconds
            recompile = first_step_seconds  # the rebuilt step compiles again: leave it room
            steps = budget.decide(done, spent + recompile, (now - timer_start) / timed_steps)
            config = budget.config
            run = setup(config, data.vocab_size, devices)  # the same state, a schedule of `steps`
            # Rates are timed again after the new step's compile.
            timer_start, timed_steps, recompiled = time.perf_counter(), 0, True
        is_eval = (
            data.eval_batch is not None
            and t.eval_batches > 0
            and (done % t.eval_every == 0 or done == steps)
        )
        if is_eval or done % t.log_every == 0 or done == steps:
            record = {"step": done, **{k: float(v) for k, v in step_metrics.items()}}
            seconds_per_step = (time.perf_counter() - timer_start) / max(timed_steps, 1)
            record["tokens_per_s"] = tokens_per_step / seconds_per_step if timed_steps else None
            record["mfu"] = flops_per_step / seconds_per_step / peak if timed_steps else None
            # Wall-clock seconds of training so far (compiles included, validation not), over
            # every run of this checkpoint directory.
            record["train_seconds"] = round(
                writer.resumed_seconds + time.perf_counter() - loop_start - eval_seconds, 3
            )
            if is_eval:
                eval_start = time.perf_counter()
                record.update(evaluate(run, state.params, data, t.eval_batches))
                timer_start += time.perf_counter() - eval_start  # rates count training time only
                eval_seconds += time.perf_counter() - eval_start
            writer.write(record)
            _log_line(record, steps, seconds_per_step if timed_steps else None)
        # After the metrics line, so a checkpoint at step N implies step N was logged.
        checkpointer.save(done, state.params, state.opt_state, force=done == steps)
    if t.steps == 0 and checkpointer.latest_step() is None:  # an imported model kept as it is
        record = {"step": 0}
        if data.eval_batch is not None and t.eval_batches > 0:
            record.update(evaluate(run, state.params, data, t.eval_batches))
        writer.write(record)
        checkpointer.save(0, state.params, state.opt_state, force=True)
    checkpointer.wait()
    checkpointer.close()
    return state
