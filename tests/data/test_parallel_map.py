"""parallel.ordered_map: input order, bounded read-ahead, errors that surface instead of hanging.

The functions below run in spawned workers, which import this module by name: keep them at
module level and keep this module's imports light.
"""

import concurrent.futures
import os
import time

import pytest

from codex_jax.data import parallel_map

_offset = 0  # set in each worker by _start
_started_dir = ""
_n_workers = 1


def _start(offset: int, started_dir: str, n_workers: int) -> None:
    """Sets the worker's state and registers the worker in `started_dir`."""
    global _offset, _started_dir, _n_workers
    _offset, _started_dir, _n_workers = offset, started_dir, n_workers
    open(os.path.join(started_dir, str(os.getpid())), "w").close()


def _shifted_with_pid(x: int) -> tuple[int, int]:
    """(x + offset, this process); item 0 waits until every worker has started, so the other
    worker completes later chunks before the first one."""
    if x == 0:
        deadline = time.monotonic() + 60
        while len(os.listdir(_started_dir)) < _n_workers and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.2)
    return x + _offset, os.getpid()


def _pid(_: int) -> int:
    return os.getpid()


def _fail_on_five(x: int) -> int:
    if x == 5:
        raise ValueError(f"item {x} is bad")
    return x


def _fail_to_start() -> None:
    raise RuntimeError("this worker cannot start")


@pytest.mark.parametrize("n_workers", [1, 2])
def test_results_come_in_input_order_with_the_initializer_applied(tmp_path, n_workers):
    results = list(
        parallel_map.ordered_map(
            _shifted_with_pid,
            range(100),
            n_workers=n_workers,
            chunk_size=7,
            initializer=_start,
            initargs=(1000, str(tmp_path), n_workers),
        )
    )
    assert [value for value, _ in results] == list(range(1000, 1100))
    pids = {pid for _, pid in results}
    if n_workers == 1:
        assert pids == {os.getpid()}  # one worker: no processes, the work runs here
    else:
        assert len(pids) == 2 and os.getpid() not in pids


def test_reads_a_bounded_number_of_chunks_ahead():
    consumed = []

    def items():
        for i in range(300):
            consumed.append(i)
            yield i

    chunk_size, n_workers, per_worker = 3, 2, 2
    ahead = chunk_size * n_workers * per_worker  # items submitted but not yet yielded, at most
    results = parallel_map.ordered_map(
        abs, items(), n_workers=n_workers, chunk_size=chunk_size, in_flight_per_worker=per_worker
    )
    for index, result in enumerate(results):
        assert result == index
        assert len(consumed) <= index + ahead, f"read {len(consumed)} items to yield item {index}"
        if index == 0:
            assert len(consumed) > chunk_size  # several chunks are in flight: the workers have work
    assert len(consumed) == 300


@pytest.mark.parametrize("n_workers", [1, 2])
def test_an_exception_in_a_worker_reaches_the_caller(n_workers):
    with pytest.raises(ValueError, match="item 5 is bad"):
        list(parallel_map.ordered_map(_fail_on_five, range(40), n_workers=n_workers, chunk_size=4))


def test_a_worker_that_fails_to_start_raises_instead_of_hanging():
    with pytest.raises(concurrent.futures.process.BrokenProcessPool):
        list(
            parallel_map.ordered_map(
                abs, range(40), n_workers=2, chunk_size=4, initializer=_fail_to_start
            )
        )


def test_zero_workers_means_every_available_core(monkeypatch):
    monkeypatch.setattr(parallel_map, "available_cores", lambda: 1)  # 1 core: runs in this process
    assert (
        list(parallel_map.ordered_map(_pid, [1, 2], n_workers=0, chunk_size=1)) == [os.getpid()] * 2
    )
