"""What runs in a sample's forked child, and the layers every child inherits from its worker.

`confine_worker` (once per worker, before its first fork: scrubbed environment, no Python-level
signal handler, the audit hook from `make_audit_hook`) and `confine_child` (per sample: session,
fds, rlimits, uid) set the layers; `run_program` runs the sample and leaves its verdict in
memory it shares with the worker (`codex_jax.sandbox.worker`). This module never imports ctypes
(see the threat model in `codex_jax.sandbox`).
"""

import _queue
import _thread
import collections
import marshal
import mmap
import os
import resource
import signal
import sys
import types
from collections.abc import Callable
from typing import Any

FILE_SIZE_LIMIT_BYTES = 16 * 2**20  # RLIMIT_FSIZE: largest file a sample may write
OPEN_FILES_LIMIT = 64  # RLIMIT_NOFILE
PROCESS_LIMIT = 64  # RLIMIT_NPROC, per sample uid
MESSAGE_LIMIT_BYTES = 512  # longest failure text a child may report
NONCE_BYTES = 16
# The verdict a child leaves in memory it shares with its worker: b"P", or b"F" + 2-byte length
# + text, at offset 0; the nonce, written after it, at NONCE_OFFSET.
NONCE_OFFSET = 3 + MESSAGE_LIMIT_BYTES
VERDICT_BYTES = NONCE_OFFSET + NONCE_BYTES
# The file name tests are compiled under: their functions' code cannot be replaced.
TEST_FILENAME = "<test>"
_WORKER_FILE = os.path.join(os.path.dirname(__file__), "worker.py")  # protected too
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
        frozenset({TEST_FILENAME, __file__, _WORKER_FILE}),
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
        Python 3.12: from 3.13 f_locals writes through, see `codex_jax.sandbox`).
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
            # The sample's __str__ and class may return anything: only a real str is used. An
            # exception without a message (a bare assert) is named by its class instead.
            text = text_type(error)
            if type_of(text) is text_type and not text:
                text = type_of(error).__name__
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
