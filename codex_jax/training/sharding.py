"""The one place logical axis names meet the device mesh.

The model names only logical axes (`batch`, `length`, `embed`, `mlp`, `heads`, `vocab`); the
config's `mesh.rules` map each onto mesh axes (`data`, `fsdp`, `model`), in priority order: a
mesh axis already taken by an earlier dimension of the same array is skipped (flax's rule
resolution), so activations [batch, length, embed] shard batch over (data, fsdp) while
parameters [embed, mlp] shard embed over fsdp (ZeRO-3 style) and mlp over model (Megatron).

The mesh uses Auto axis types: jit's in/out shardings and the model's logical constraints
say where arrays live and XLA's SPMD partitioner inserts the collectives.
"""

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import flax.linen as nn
import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

MESH_AXES = ("data", "fsdp", "model")
LOGICAL_AXES = ("batch", "length", "embed", "mlp", "heads", "vocab")
BATCH_AXES = ("batch", None)  # every batch array is [batch, time]

Rules = tuple[tuple[str, Any], ...]


def mesh_shape(mesh_config: Any, n_devices: int) -> tuple[int, int, int]:
    """Resolves `mesh.{data, fsdp, model}` (at most one -1 = the remaining devices).

    Raises:
        ValueError: sizes are not positive, more than one is -1, or the product differs from
            the number of devices; the message names the fields.
    """
    sizes = [int(mesh_config[axis]) for axis in MESH_AXES]
    fill = [axis for axis, size in zip(MESH_AXES, sizes) if size == -1]
    if len(fill) > 1 or any(size == 0 or size < -1 for size in sizes):
        raise ValueError(
            f"config.mesh: sizes must be positive with at most one -1 (fill), got "
            f"{dict(zip(MESH_AXES, sizes))}"
        )
    known = math.prod(size for size in sizes if size != -1)
    if fill:
        if n_devices % known:
            raise ValueError(
                f"config.mesh: {n_devices} devices do not divide by the fixed axes "
                f"{dict(zip(MESH_AXES, sizes))} (product {known})"
            )
        sizes[MESH_AXES.index(fill[0])] = n_devices // known
    if math.prod(sizes) != n_devices:
        raise ValueError(
            f"config.mesh: data*fsdp*model = {math.prod(sizes)} but there are "
            f"{n_devices} devices; set one axis to -1 to fill"
        )
    return tuple(sizes)


def make_mesh(
    mesh_config: Any,
    devices: Sequence[jax.Device] | None = None,
    *,
    this_process_only: bool = False,
) -> Mesh:
    """A ('data', 'fsdp', 'model') mesh with Auto axis types over `devices` (default: all).

    this_process_only: over this process's devices alone, `fsdp` folded into `data` (work that
    each process does on its own, e.g. sampling its share of the problems).
    """
    if this_process_only:
        devices = jax.local_devices()
        mesh_config = {**{axis: mesh_config[axis] for axis in MESH_AXES}, "data": -1, "fsdp": 1}
    devices = list(jax.devices() if devices is None else devices)
    shape = mesh_shape(mesh_config, len(devices))
    return jax.make_mesh(
        shape, MESH_AXES, axis_types=(jax.sharding.AxisType.Auto,) * len(MESH_AXES), devices=devices
    )


def rules_from_config(mesh_config: Any) -> Rules:
    """`mesh.rules` as a tuple of (logical axis, mesh axis | tuple of mesh axes | None).

    Raises:
        ValueError: a rule names an unknown logical or mesh axis.
    """
    rules = []
    for logical, physical in mesh_config.rules:
        physical = tuple(physical) if isinstance(physical, (list, tuple)) else physical
        names = physical if isinstance(physical, tuple) else (physical,)
        if logical not in LOGICAL_AXES or any(n is not None and n not in MESH_AXES for n in names):
            raise ValueError(
                f"config.mesh.rules: ({logical!r}, {physical!r}) must map one of "
                f"{LOGICAL_AXES} onto axes of {MESH_AXES} or None"
            )
        rules.append((logical, physical))
    return tuple(rules)


def logical_to_sharding(logical_specs: Any, mesh: Mesh, rules: Rules) -> Any:
    """Tree of logical PartitionSpecs (flax `nn.get_partition_spec`) -> tree of NamedShardings."""
    return nn.logical_to_mesh_sharding(logical_specs, mesh, rules)


def batch_sharding(mesh: Mesh, rules: Rules) -> NamedSharding:
    """Sharding of every batch array: [batch, time] with batch split over the data axes."""
    return NamedSharding(mesh, nn.logical_to_mesh_axes(BATCH_AXES, rules))


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, PartitionSpec())


def batch_shards(mesh_sizes: Mapping[str, int], rules: Rules) -> int:
    """How many ways the batch dimension is split over a mesh of these axis sizes (`mesh.shape`,
    or `dict(zip(MESH_AXES, mesh_shape(...)))` before there is a mesh): the global batch must
    divide by it."""
    spec = nn.logical_to_mesh_axes(BATCH_AXES, rules)[0]
    names = spec if isinstance(spec, tuple) else (spec,)
    return math.prod(mesh_sizes[n] for n in names if n is not None)


@contextlib.contextmanager
def context(mesh: Mesh | None, rules: Rules) -> Iterator[None]:
    """The mesh and the logical axis rules, for tracing and running sharded code (no-op
    without a mesh). Training, sampling and scoring all enter it this one way."""
    if mesh is None:
        yield
        return
    with jax.set_mesh(mesh), nn.logical_axis_rules(rules):
        yield


def abstract_tree(boxed_init: Callable[[], Any], mesh: Mesh, rules: Rules) -> tuple[Any, Any]:
    """(abstract tree, shardings) of what `boxed_init()` would make, without making it.

    `boxed_init` returns flax-boxed arrays (carrying logical axis names); the abstract tree's
    jax.ShapeDtypeStruct leaves carry their NamedShardings, so orbax restores straight into them.
    """
    boxed = jax.eval_shape(boxed_init)
    shardings = logical_to_sharding(nn.get_partition_spec(boxed), mesh, rules)
    abstract = jax.tree.map(
        lambda x, s: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=s), nn.unbox(boxed), shardings
    )
    return abstract, shardings


def shard_batch(batch: dict[str, np.ndarray], mesh: Mesh, rules: Rules) -> dict[str, jax.Array]:
    """This process's rows of a batch -> global jax.Arrays sharded by `batch_sharding`.

    Each process passes its own rows (`process_index`-th slice of the global batch, as
    `codex_jax.data.token_files.get_batch` returns them); on one host that is the whole batch.
    """
    sharding = batch_sharding(mesh, rules)
    return {
        name: jax.make_array_from_process_local_data(sharding, np.asarray(value))
        for name, value in batch.items()
    }
