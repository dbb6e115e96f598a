"""Multi-host runs: joining JAX's multi-controller runtime, and sharing work between processes.

On a Cloud TPU pod slice or a GPU cluster the same command runs once per host (one process
each). Every process builds the same mesh over all devices and runs the same jitted steps; each
feeds and reads only its own devices' shards. `initialize(multihost=True)` joins the processes
through `jax.distributed.initialize()`:
    TPU pod slices, SLURM, Open MPI, Kubernetes: JAX detects coordinator, count and index.
    Anywhere else (a GPU cluster without a scheduler, the CPU tests), set on every process:
        JAX_COORDINATOR_ADDRESS=<host of process 0>:<port>  JAX_NUM_PROCESSES=P  JAX_PROCESS_ID=p
On CPU, collectives between processes go through gloo (JAX's default
`jax_cpu_collectives_implementation`).

Work that is not one SPMD program (executing samples, sampling problems one by one) is shared
out by `process_share`; `gather_in_order` brings the per-process records back through JAX's own
collectives, so the gather needs no disk that all hosts share (orbax checkpoints do: the workdir
must be a path every host sees). Only the main process (index 0) writes logs, metrics and files.
"""

import json
import os
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import jax
import numpy as np
from absl import logging
from jax.experimental import multihost_utils

Item = TypeVar("Item")
Result = TypeVar("Result")
Record = dict[str, Any]


def _env_int(name: str) -> int | None:
    value = os.environ.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r}: expected an integer") from None


def initialize(multihost: bool) -> None:
    """Joins the other processes (see the module docstring) when `multihost` and not yet joined.

    Raises:
        ValueError: no cluster was detected and the environment variables are incomplete.
    """
    if not multihost or jax.distributed.is_initialized():
        return
    try:
        jax.distributed.initialize(
            num_processes=_env_int("JAX_NUM_PROCESSES"), process_id=_env_int("JAX_PROCESS_ID")
        )
    except ValueError as error:
        raise ValueError(
            f"--multihost: {error} No TPU pod, SLURM, Open MPI or Kubernetes job was detected: "
            "set JAX_COORDINATOR_ADDRESS=host:port, JAX_NUM_PROCESSES and JAX_PROCESS_ID "
            "on every process"
        ) from error
    logging.info(
        "process %d of %d: %d of %d devices are local",
        jax.process_index(),
        jax.process_count(),
        jax.local_device_count(),
        jax.device_count(),
    )


# Without jax.distributed these answer without starting a JAX backend, so a CPU-only stage
# (executing samples) never takes hold of an accelerator that a training run is using.
def process_index() -> int:
    return jax.process_index() if jax.distributed.is_initialized() else 0


def process_count() -> int:
    return jax.process_count() if jax.distributed.is_initialized() else 1


def is_main_process() -> bool:
    """True in process 0, the one that writes logs, metrics and files."""
    return process_index() == 0


def barrier(name: str) -> None:
    """Returns once every process has called it with this `name`."""
    if process_count() > 1:
        multihost_utils.sync_global_devices(name)


def main_process_first(ensure: Callable[[], Result], name: str) -> Result:
    """`ensure()` in process 0, then in the others: for a stage that builds a missing artifact in
    the workdir every process shares and returns at once when it is complete, one process builds
    it and the others only find it. `name` names the barrier between the two."""
    if is_main_process():
        result = ensure()
    barrier(name)
    if not is_main_process():
        result = ensure()
    return result


def process_share(items: Sequence[Item]) -> list[Item]:
    """The items this process owns: every P-th from its index (round robin, so a stretch of
    slow items spreads over the processes). All of them in a single-process run."""
    return list(items[process_index() :: process_count()])


def _all_gather_json(value: Any) -> list[Any]:
    """Each process's JSON-serialisable `value`, in process order, on every process."""
    payload = np.frombuffer(json.dumps(value, ensure_ascii=False).encode("utf-8"), np.uint8)
    sizes = multihost_utils.process_allgather(np.int32(len(payload)))  # (P,)
    padded = np.zeros(int(sizes.max()), np.uint8)
    padded[: len(payload)] = payload
    parts = multihost_utils.process_allgather(padded)  # (P, max size)
    return [json.loads(part[:size].tobytes().decode("utf-8")) for part, size in zip(parts, sizes)]


def broadcast_json(value: Any) -> Any:
    """Process 0's JSON-serialisable `value` on every process (the others pass anything)."""
    return (
        _all_gather_json(value if is_main_process() else None)[0] if process_count() > 1 else value
    )


def gather_in_order(records: list[Record], task_ids: Sequence[str]) -> list[Record]:
    """Every process's records on every process, ordered by their "task_id"'s position in
    `task_ids`; records of one task keep their order. With each process holding whole tasks
    (`process_share(task_ids)`), the result is what one process doing all tasks in order makes."""
    if process_count() > 1:
        records = [record for part in _all_gather_json(records) for record in part]
    position = {task_id: i for i, task_id in enumerate(task_ids)}
    return sorted(records, key=lambda record: position[record["task_id"]])
