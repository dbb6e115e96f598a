"""One way to run per-item work on a stream in worker processes: `ordered_map`.

The data stages (corpus filtering, token encoding, function extraction) each map a function over
a stream that may not fit in memory, and need the results in input order so their output does not
depend on the number of workers. `multiprocessing.Pool.imap` reads its whole input ahead (its
feeder thread does not wait for results) and hangs when a worker dies; `ordered_map` keeps a
bounded number of chunks in flight, so memory stays flat, and raises when a worker fails.
"""

import collections
import concurrent.futures
import multiprocessing
import os
import pickle
import tempfile
from collections.abc import Callable, Iterable, Iterator
from typing import TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")


def available_cores() -> int:
    """CPU cores this process may run on (the affinity mask where the OS has one, as on Linux)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def _chunks(items: Iterable[Item], size: int) -> Iterator[list[Item]]:
    chunk = []
    for item in items:
        chunk.append(item)
        if len(chunk) == size:
            yield chunk
            chunk = []
    if chunk:
        yield chunk


def _start_worker(initializer_path: str) -> None:
    """Runs the caller's initializer in a new worker, its arguments read from a file."""
    with open(initializer_path, "rb") as f:
        initializer, initargs = pickle.load(f)
    initializer(*initargs)


def _apply(function: Callable[[Item], Result], chunk: list[Item]) -> list[Result]:
    return [function(item) for item in chunk]


def ordered_map(
    function: Callable[[Item], Result],
    items: Iterable[Item],
    *,
    n_workers: int,
    chunk_size: int,
    initializer: Callable[..., None] | None = None,
    initargs: tuple = (),
    in_flight_per_worker: int = 4,
) -> Iterator[Result]:
    """`function(item)` for each of `items`, computed on `n_workers` processes, yielded in input order.

    Items travel to the workers in chunks of `chunk_size`; at most `in_flight_per_worker *
    n_workers` chunks are submitted and not yet yielded, so `items` is read only that far ahead of
    the consumer. `function` (a module-level function or a functools.partial of one) is pickled
    with every chunk: large shared state belongs in `initializer(*initargs)`, which runs once in
    each worker and typically sets a module global that `function` reads.

    Workers are started with "spawn", which is safe after JAX has started its threads and, like
    every spawn pool, needs the calling script's work under `if __name__ == "__main__":`. The
    initializer and its arguments reach the workers through a file: passed to the process as
    arguments, a worker that fails to start would block the parent forever on a full pipe
    (CPython's spawn writes them while it still holds the pipe's read end).

    Args:
        n_workers: processes; 0 = every available core; 1 = run in this process (no spawn cost;
            the initializer then runs here).

    Raises:
        Whatever `function` raised, for the first item whose chunk failed;
        concurrent.futures.process.BrokenProcessPool: a worker died or its initializer raised (the
            worker printed the traceback).
    """
    n_workers = n_workers or available_cores()
    if n_workers == 1:
        if initializer is not None:
            initializer(*initargs)
        yield from map(function, items)
        return
    max_in_flight = in_flight_per_worker * n_workers
    with tempfile.TemporaryDirectory(prefix="ordered_map_") as scratch:
        worker_initializer, worker_initargs = None, ()
        if initializer is not None:
            worker_initializer, worker_initargs = (
                _start_worker,
                (os.path.join(scratch, "initializer.pkl"),),
            )
            with open(worker_initargs[0], "wb") as f:
                pickle.dump((initializer, initargs), f)
        pool = concurrent.futures.ProcessPoolExecutor(
            n_workers,
            mp_context=multiprocessing.get_context("spawn"),
            initializer=worker_initializer,
            initargs=worker_initargs,
        )
        try:
            in_flight: collections.deque[concurrent.futures.Future] = collections.deque()
            for chunk in _chunks(items, chunk_size):
                in_flight.append(pool.submit(_apply, function, chunk))
                if len(in_flight) >= max_in_flight:
                    yield from in_flight.popleft().result()
            while in_flight:
                yield from in_flight.popleft().result()
        finally:  # also when the consumer stops early: queued chunks are dropped, not computed
            pool.shutdown(wait=True, cancel_futures=True)
