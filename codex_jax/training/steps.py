"""The pure training math: the train state, the Codex optimizer, the loss, and the steps.

`train_step(state, batch) -> (state, metrics)` and `eval_step(params, batch) -> sums` are pure
functions; `codex_jax.training.trainer` jits them with the shardings of
`codex_jax.training.sharding` (the state is donated). A batch is a dict:
    tokens     int32[B, T + 1]   inputs are tokens[:, :-1], targets tokens[:, 1:]
    loss_mask  int/bool[B, T]    optional; 1 = this target is scored (fine-tuning scores only
                                 completions); absent = every target scored
The loss is the mean cross-entropy (nats) over scored targets of the whole batch, also under
gradient accumulation (micro-batch sums are divided by the batch's total count).

Optimizer (Codex / GPT-3): AdamW beta=(0.9, 0.95), eps=1e-8, decoupled weight decay on every
matmul weight and on the embeddings (as GPT-2/nanoGPT; with tied embeddings the token
embedding is also the output matmul) but not on LayerNorm parameters or biases; linear warmup
from 0 to `lr`, cosine decay to lr / 10 at `steps`; global-norm clipping before AdamW.
"""

from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax

from codex_jax.model import transformer

Batch = dict[str, Any]


@flax.struct.dataclass
class TrainState:
    step: jax.Array  # int32 scalar: optimizer steps taken
    params: Any  # float32 parameter tree
    opt_state: Any


def make_optimizer(train_config: Any) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """AdamW (0.9, 0.95, 1e-8) with masked weight decay, warmup + cosine, global-norm clipping."""
    schedule = optax.warmup_cosine_decay_schedule(
        init_value=0.0,
        peak_value=train_config.lr,
        warmup_steps=train_config.warmup_steps,
        decay_steps=max(train_config.steps, train_config.warmup_steps + 1),  # steps 0: imported
        end_value=train_config.lr * 0.1,
    )

    def decay_mask(params):  # matmul weights and embeddings; not norms, not biases
        def decays(path, _):  # the parameter's name is its last dict key (boxes add attributes)
            name = [entry.key for entry in path if isinstance(entry, jax.tree_util.DictKey)][-1]
            return name in ("kernel", "embedding")

        return jax.tree_util.tree_map_with_path(decays, params)

    adamw = optax.adamw(
        schedule, b1=0.9, b2=0.95, eps=1e-8, weight_decay=train_config.weight_decay, mask=decay_mask
    )
    if train_config.grad_clip > 0:
        return optax.chain(optax.clip_by_global_norm(train_config.grad_clip), adamw), schedule
    return adamw, schedule


def loss_sums(params: Any, gpt: transformer.GPT, batch: Batch) -> tuple[jax.Array, jax.Array]:
    """(summed cross-entropy in nats, number of scored targets) of a batch, both float32."""
    tokens = batch["tokens"]
    logits = gpt.apply({"params": params}, tokens[:, :-1])  # (B, T, V) float32
    targets = tokens[:, 1:]
    log_z = jax.nn.logsumexp(logits, axis=-1)  # (B, T)
    target_logit = jnp.take_along_axis(logits, targets[..., None], axis=-1)[..., 0]  # (B, T)
    cross_entropy = log_z - target_logit  # (B, T)
    mask = batch.get("loss_mask")
    mask = jnp.ones_like(cross_entropy) if mask is None else mask.astype(jnp.float32)
    return jnp.sum(cross_entropy * mask), jnp.sum(mask)


def train_step(
    state: TrainState,
    batch: Batch,
    *,
    gpt: transformer.GPT,
    tx: optax.GradientTransformation,
    schedule: optax.Schedule,
    grad_accum: int,
) -> tuple[TrainState, dict[str, jax.Array]]:
    """One optimizer step over `batch` split into `grad_accum` micro-batches."""
    total = jnp.maximum(
        batch["loss_mask"].astype(jnp.float32).sum()
        if "loss_mask" in batch
        else jnp.float32(np.prod(batch["tokens"][:, 1:].shape)),
        1.0,
    )

    def scaled_loss(params, micro_batch):  # summed over the micro-batch, over the batch's count
        return loss_sums(params, gpt, micro_batch)[0] / total

    micro_grads = jax.value_and_grad(scaled_loss)
    if grad_accum == 1:
        loss, grads = micro_grads(state.params, batch)
    else:
        # Row r goes to micro-batch r % grad_accum: each device keeps its own rows.
        micro = jax.tree.map(
            lambda x: jnp.swapaxes(
                x.reshape(x.shape[0] // grad_accum, grad_accum, *x.shape[1:]), 0, 1
            ),
            batch,
        )

        def accumulate(carry, micro_batch):
            loss, grads = micro_grads(state.params, micro_batch)
            return jax.tree.map(jnp.add, carry, (loss, grads)), None

        zeros = (jnp.float32(0), jax.tree.map(jnp.zeros_like, state.params))
        (loss, grads), _ = jax.lax.scan(accumulate, zeros, micro)
    grad_norm = optax.tree.norm(grads)
    updates, opt_state = tx.update(grads, state.opt_state, state.params)
    params = optax.apply_updates(state.params, updates)
    step_metrics = {"loss": loss, "grad_norm": grad_norm, "lr": schedule(state.step)}
    return TrainState(step=state.step + 1, params=params, opt_state=opt_state), step_metrics


def eval_step(params: Any, batch: Batch, *, gpt: transformer.GPT) -> dict[str, jax.Array]:
    """{"loss_sum": nats summed over scored targets, "count": their number}."""
    loss_sum, count = loss_sums(params, gpt, batch)
    return {"loss_sum": loss_sum, "count": count}
