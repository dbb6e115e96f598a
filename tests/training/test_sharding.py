"""Meshes from config, and the same training on 1 device and on 8 simulated devices."""

import jax
import numpy as np
import pytest
from jax.sharding import PartitionSpec as P
from test_trainer import VOCAB, reference_run, synthetic_data, tiny_config

from codex_jax.training import sharding, trainer


def test_minus_one_fills_the_remaining_devices_and_bad_shapes_are_refused():
    config = tiny_config()
    config.mesh.update(data=-1, fsdp=2, model=2)
    assert sharding.mesh_shape(config.mesh, 8) == (2, 2, 2)
    config.mesh.update(data=2, fsdp=2, model=1)
    with pytest.raises(ValueError, match="4 but there are 8 devices"):
        sharding.mesh_shape(config.mesh, 8)
    config.mesh.update(data=-1, fsdp=-1)
    with pytest.raises(ValueError, match="at most one -1"):
        sharding.mesh_shape(config.mesh, 8)


def test_rules_put_parameters_and_batches_on_the_intended_mesh_axes():
    config = tiny_config()
    config.mesh.update(data=2, fsdp=2, model=2)
    run = trainer.setup(config, VOCAB)
    assert run.mesh.axis_types == (jax.sharding.AxisType.Auto,) * 3
    params = run.state_shardings.params
    assert params["block_0"]["mlp"]["fc"]["kernel"].spec == P("fsdp", "model")
    assert params["block_0"]["attn"]["qkv"]["kernel"].spec == P("fsdp", None, "model", None)
    assert params["wte"]["embedding"].spec == P("model", "fsdp")
    assert run.state_shardings.opt_state[1][0].mu["block_0"]["mlp"]["fc"]["kernel"].spec == P(
        "fsdp", "model"
    )
    batch = run.shard_batch(synthetic_data().train_batch(0))
    assert batch["tokens"].sharding.spec == P(("data", "fsdp"), None)
    with pytest.raises(ValueError, match="mesh.rules"):
        config.mesh.rules = (("batch", "pipeline"),)
        sharding.rules_from_config(config.mesh)


def _losses(config, devices, steps: int = 20) -> np.ndarray:
    run = trainer.setup(config, VOCAB, devices)
    data = synthetic_data()
    state, losses = run.init(), []
    for step in range(steps):
        state, step_metrics = run.train_step(state, run.shard_batch(data.train_batch(step)))
        losses.append(float(step_metrics["loss"]))
    return np.array(losses)


def test_one_device_and_8_device_meshes_give_the_same_losses_also_with_grad_accumulation():
    single = np.array([r["loss"] for r in reference_run()])
    assert len(single) == 20 and single[-1] < single[0] - 0.05  # 20 steps that train
    config = tiny_config()
    for data, fsdp, model in ((4, 1, 2), (2, 2, 2)):
        config.mesh.update(data=data, fsdp=fsdp, model=model)
        config.train.grad_accum = 2  # micro-batches of 4 rows, still one per data shard
        np.testing.assert_allclose(_losses(config, jax.devices()), single, atol=1e-4)
