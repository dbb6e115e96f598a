"""One attack per containment property of the sandboxed executor, then a check that nothing escaped.

The attacks run in a child process that this file re-executes inside its own PID namespace
(`unshare --pid --fork --kill-child --mount-proc`), so a regression that lets a sample kill
everything it can reach, or fork without bound, fails a test instead of harming the machine.
Every attack is bounded (counts, sizes, time) and aims only at files the runner made. The
same attacks run as root with full isolation, as root with isolation="minimal" (the fallback
floor), and as uid 65534 (the unprivileged, user-namespace path).

The forgery attacks (`forge_*`) are what five rounds of adversarial review of the executor
found: 15 ways to report "passed" without passing (a replaced `builtins.compile`, a signal
handler's frame, a subinterpreter, an exception whose `str` hijacks the failure text,
`sys._getframe` leaked through callers the audit hook trusted, frames from `gc.garbage`, a pipe
`dup2`ed over the result fd, a gc callback run in the harness's thread, ...); a sixth round
found none. The comment above each says how it worked and what now stops it. The threat model
they pin is `codex_jax/sandbox/__init__.py`.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time

try:
    import pytest
except ImportError:  # the attack runner also runs under a bare system interpreter
    pytest = None

SECRET = "codex-jax-test-secret-7f3a9c"
# Sample code that, given any frame, walks down its stack and reports "passed" the ways this
# harness and its earlier versions could be made to: the nonce and result fd, or a verdict slot.
REPORT_FROM_FRAME = (
    "import os, sys, time\n"
    "def report(frame):\n"
    "    while frame is not None:\n"
    "        found = frame.f_locals\n"
    "        if 'nonce' in found and 'result_fd' in found:\n"
    "            for fd in [found['result_fd']] + globals().get('copies', []):\n"
    "                try:\n                    os.write(fd, found['nonce'] + b'P')\n"
    "                except OSError:\n                    pass\n"
    "            os._exit(0)\n"
    "        if 'nonce' in found and hasattr(found.get('verdict'), 'seek'):\n"
    "            found['verdict'].seek(0)\n            found['verdict'].write(b'P')\n"
    "            found['verdict'].seek(sys.modules['codex_jax.sandbox.harness'].NONCE_OFFSET)\n"
    "            found['verdict'].write(found['nonce'])\n            os._exit(0)\n"
    "        if 'verdict' in found and 'done' in found:\n"
    "            found['verdict'][0] = b'P'\n            found['done'].release()\n            time.sleep(5)\n"
    "        frame = frame.f_back\n"
)  # put in the runner's environment and a private file
PROTECTED_TEXT = "original contents"


def attacks(directory: str, port: int, runner_pid: int) -> dict[str, tuple[str, float]]:
    """name -> (completion, timeout_s). Each defines f; f() == 1 passes the test."""
    protected = os.path.join(directory, "protected.txt")
    secret_file = os.path.join(directory, "secret.txt")
    good, wrong = "def f():\n    return 1\n", "def f():\n    return 2\n"
    return {
        "benign": (good, 3.0),
        "sleep_ignoring_signals": (  # (signal.signal fails outside the main thread: carry on)
            "import signal, time\n"
            "for s in (signal.SIGALRM, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):\n"
            "    try:\n        signal.signal(s, signal.SIG_IGN)\n    except ValueError:\n        pass\n"
            "signal.pthread_sigmask(signal.SIG_BLOCK, range(1, 32))\n"
            "signal.setitimer(signal.ITIMER_REAL, 0)\n"
            "while True:\n    time.sleep(0.05)\n" + good,
            1.0,
        ),
        "busy_loop": ("while True:\n    pass\n" + good, 1.0),
        "memory": ("x = bytearray(3 * 2**30)\n" + good, 3.0),
        "raise_limits": (
            "import resource\n"
            "resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY,) * 2)\n" + good,
            3.0,
        ),
        "big_file": (
            "with open('big', 'wb') as out:\n    out.write(bytes(64 * 2**20))\n" + good,
            3.0,
        ),
        "daemon": (
            "import os, time\n"
            "if os.fork() == 0:\n    os.setsid()\n    if os.fork() == 0:\n        time.sleep(60)\n"
            "    os._exit(0)\n" + good,
            3.0,
        ),
        "fork_bomb": (
            "import os, time\n"
            "for _ in range(300):\n"
            "    try:\n        pid = os.fork()\n    except OSError:\n        break\n"
            "    if pid == 0:\n        time.sleep(60)\n        os._exit(0)\n" + good,
            3.0,
        ),
        "write_outside": (
            "import os, shutil\n"
            f"attempts = [lambda: open({protected!r}, 'w').write('changed'), lambda: os.remove({protected!r}),\n"
            f"    lambda: os.chmod({protected!r}, 0), lambda: os.rename({protected!r}, {protected!r} + '.moved'),\n"
            f"    lambda: open({os.path.join(directory, 'created.txt')!r}, 'w').write('x'),\n"
            f"    lambda: os.system('echo x > {os.path.join(directory, 'shell.txt')}'),\n"
            f"    lambda: open('/tmp/codex-jax-marker-{runner_pid}', 'w').write('x'),\n"
            f"    lambda: open('/dev/shm/codex-jax-marker-{runner_pid}', 'w').write('x'),\n"
            f"    lambda: open('/var/tmp/codex-jax-marker-{runner_pid}', 'w').write('x'),\n"
            "    lambda: __import__('ctypes')]\n"
            "for attempt in attempts:\n    try:\n        attempt()\n    except BaseException:\n        pass\n"
            + wrong,
            3.0,
        ),
        "network": (
            "import socket\n"
            "for family, address in ((socket.AF_INET, ('127.0.0.1', %d)), (socket.AF_INET6, ('::1', %d))):\n"
            "    try:\n        socket.create_connection(address, timeout=0.5)\n    except BaseException:\n        pass\n"
            % (port, port)
            + good,
            3.0,
        ),
        "secrets": (
            "import os\nparts = [repr(dict(os.environ))]\n"
            f"for path in ({secret_file!r}, '/proc/{runner_pid}/environ', '/proc/self/environ', '/proc/1/environ'):\n"
            "    try:\n        parts.append(open(path, errors='replace').read())\n"
            "    except BaseException as e:\n        parts.append(repr(e))\n"
            "raise Exception(' '.join(parts))\n" + good,
            3.0,
        ),
        "kill_everything": (
            "import os, signal\n"
            f"for target in (-1, {runner_pid}, os.getppid(), 1):\n"
            "    try:\n        os.kill(target, signal.SIGKILL)\n    except BaseException:\n        pass\n"
            "os.system('pkill -9 python; kill -9 -1')\n" + good,
            3.0,
        ),
        "output_flood": (
            "import os, sys\nfor _ in range(300):\n    sys.stdout.write('x' * 100000)\n"
            "os.write(2, b'y' * 2**20)\n" + good,
            3.0,
        ),
        "prints_passed": ("print('passed')\nimport os\nos.write(1, b'passed')\n" + wrong, 3.0),
        "closes_fds": ("import os\nos.closerange(0, 4096)\n" + good, 3.0),
        "segfault": ("import os, signal\nos.kill(os.getpid(), signal.SIGSEGV)\n" + good, 3.0),
        "stack_overflow": (
            "import sys\nsys.setrecursionlimit(10**8)\nnested = []\n"
            "for _ in range(10**6):\n    nested = [nested]\nrepr(nested)\n" + good,
            3.0,
        ),
        "forge_os_exit": ("import os\nos._exit(0)\n" + wrong, 3.0),
        "forge_sys_exit": ("import sys\nsys.exit(0)\n" + wrong, 3.0),
        "forge_exit_in_check": ("def f():\n    raise SystemExit(0)\n", 3.0),
        "forge_keyboard_interrupt": ("def f():\n    raise KeyboardInterrupt\n", 3.0),
        "forge_atexit": ("import atexit, os\natexit.register(os._exit, 0)\n" + wrong, 3.0),
        "forge_write_every_fd": (
            "import os\nfor fd in range(64):\n    try:\n"
            "        os.write(fd, b'P' * 17 + b'passed')\n    except OSError:\n        pass\n"
            + wrong,
            3.0,
        ),
        "forge_frame_walk": ("import sys\nframe = sys._getframe(0)\n" + wrong, 3.0),
        "forge_traceback_walk": (
            "try:\n    raise ValueError\nexcept ValueError as e:\n"
            "    frame = e.__traceback__.tb_frame.f_back\n" + wrong,
            3.0,
        ),
        "forge_gc_scan": (
            "import gc\nnonces = [o for o in gc.get_objects() if isinstance(o, dict)]\n" + wrong,
            3.0,
        ),
        "forge_patch_harness": (
            "import os, sys\nharness = sys.modules['codex_jax.sandbox.harness']\n"
            "harness.run_program = lambda *a: None\nos.write = lambda fd, data: len(data)\n"
            "os._exit = lambda code: None\n" + wrong,
            3.0,
        ),
        "forge_swallow_test": ("def f():\n    return 2\ndef check(c):\n    pass\n'''\n", 3.0),
        "forge_replace_test_loader": (  # builtins and modules the harness uses once the sample started
            "import builtins, marshal\n"
            "fake = compile('def check(c):\\n    pass\\n', '<test>', 'exec')\n"
            "builtins.compile = lambda *a, **k: fake\nmarshal.loads = lambda *a: fake\n" + wrong,
            3.0,
        ),
        "forge_replace_check_guard": (
            "import builtins\nbuiltins.exec = lambda *a, **k: None\nbuiltins.any = lambda *a: True\n"
            "def check(c):\n    pass\n" + wrong,
            3.0,
        ),
        # A signal handler is handed the frame it interrupts, and the harness's frames below it.
        "forge_signal_handler_frame": (
            "import signal\n"
            + REPORT_FROM_FRAME
            + "try:\n    signal.signal(signal.SIGUSR1, lambda number, frame: report(frame))\n"
            "    signal.raise_signal(signal.SIGUSR1)\nexcept BaseException:\n    pass\n" + wrong,
            3.0,
        ),
        # A subinterpreter runs without the audit hook and sees every thread's frames.
        "forge_subinterpreter": (
            "steal = '''import os, sys\n"
            "for frame in sys._current_frames().values():\n"
            "    while frame is not None and 'nonce' not in frame.f_locals:\n        frame = frame.f_back\n"
            "    if frame is not None:\n        found = frame.f_locals\n"
            "        os.write(found['result_fd'], found['nonce'] + b'P')\n        os._exit(0)\n'''\n"
            "try:\n    import _xxsubinterpreters as interpreters\n"
            "    interpreters.run_string(interpreters.create(), steal)\nexcept BaseException:\n    pass\n"
            + wrong,
            3.0,
        ),
        # The failure text is built from the sample's exception: its str, encode, slicing, len.
        "forge_failure_text": (
            "class Tail:\n    def __len__(self):\n        return 0\n"
            "    def __radd__(self, other):\n        return b'P'\n"
            "class Text(str):\n    def encode(self, *args):\n        return self\n"
            "    def __getitem__(self, index):\n        return Tail()\n"
            "class Failure(Exception):\n    def __str__(self):\n        return Text('x')\n"
            "raise Failure()\n",
            3.0,
        ),
        "forge_replace_len": (
            "import builtins\nplain_len = len\n"
            "class Tail:\n    def __radd__(self, other):\n        return b'P'\n"
            "class Length(int):\n    def to_bytes(self, *args, **kwargs):\n        return Tail()\n"
            "builtins.len = lambda x: Length(plain_len(x)) if type(x) is bytes else plain_len(x)\n"
            + wrong,
            3.0,
        ),
        # gc.garbage hands out the frames of collected cycles, with no audit event.
        "forge_gc_garbage_frame": (
            "import gc\n"
            + REPORT_FROM_FRAME
            + "def keep_exception():\n    try:\n        raise ValueError\n    except ValueError as error:\n"
            "        kept = error\n"
            "gc.set_debug(gc.DEBUG_SAVEALL)\nkeep_exception()\ngc.collect()\n"
            "for thing in list(gc.garbage):\n    if type(thing).__name__ == 'frame':\n        report(thing)\n"
            "gc.set_debug(0)\n" + wrong,
            3.0,
        ),
        # The harness writes nonce + verdict to its fd number: a sample that put its own pipe
        # there would read the nonce (and a forked helper would report with it).
        "forge_redirect_result_fd": (
            "import os, stat\n"
            "for fd in range(3, 1024):\n"
            "    try:\n"
            "        if not stat.S_ISFIFO(os.fstat(fd).st_mode):\n            continue\n"
            "        real = os.dup(fd)\n        mine, theirs = os.pipe()\n        os.dup2(theirs, fd)\n"
            "    except OSError:\n        continue\n"
            "    if os.fork() == 0:\n"
            "        os.close(theirs)\n        os.close(fd)\n        data = b''\n"
            "        while len(data) < 17:\n            chunk = os.read(mine, 4096)\n"
            "            if not chunk:\n                break\n            data += chunk\n"
            "        os.write(real, data[:16] + b'P')\n        os._exit(0)\n"
            "    os.close(mine)\n    os.close(real)\n    break\n" + wrong,
            3.0,
        ),
        # A frame from gc.garbage shows the harness's locals: extend its list of the test's check
        # codes, then swap check through a namespace key whose __eq__ runs at the lookup.
        "forge_extend_check_guard": (
            "import gc\n"
            "def keep_exception():\n    try:\n        raise ValueError\n    except ValueError as error:\n"
            "        kept = error\n"
            "gc.set_debug(gc.DEBUG_SAVEALL)\nkeep_exception()\ngc.collect()\ngc.set_debug(0)\n"
            "def fake(candidate):\n    return None\n"
            "for frame in [thing for thing in gc.garbage if type(thing).__name__ == 'frame']:\n"
            "    while frame is not None:\n"
            "        try:\n            frame.f_locals['test_checks'].append(fake.__code__)\n"
            "        except BaseException:\n            pass\n"
            "        frame = frame.f_back\n"
            "namespace = globals()\n"
            "class Check:\n    def __hash__(self):\n        return hash('check')\n"
            "    def __eq__(self, other):\n        if other == 'check':\n"
            "            dict.__setitem__(namespace, self, fake)\n            return True\n"
            "        return NotImplemented\n"
            "namespace[Check()] = None\n" + wrong,
            3.0,
        ),
        # Make the harness's own report fail (close its pipe, if it has one), so that the main
        # thread allocates an exception and collects: a gc callback then runs there, where a
        # frame from gc.garbage leads to the nonce.
        "forge_gc_callback_in_main_thread": (
            "import gc, stat, _thread\n" + REPORT_FROM_FRAME + "copies = []\n"
            "for fd in range(3, 1024):\n    try:\n"
            "        if stat.S_ISFIFO(os.fstat(fd).st_mode):\n            copies.append(os.dup(fd))\n"
            "            os.close(fd)\n    except OSError:\n        pass\n"
            "sample_thread = _thread.get_ident()\n"
            "def keep_exception():\n    try:\n        raise ValueError\n    except ValueError as error:\n"
            "        kept = error\n"
            "def callback(phase, info):\n    if _thread.get_ident() == sample_thread:\n        return\n"
            "    if phase == 'start':\n        keep_exception()\n        return\n"
            "    for thing in list(gc.garbage):\n        if type(thing).__name__ == 'frame':\n"
            "            report(thing)\n"
            "gc.callbacks.append(callback)\ngc.set_debug(gc.DEBUG_SAVEALL)\ngc.set_threshold(1)\n"
            + wrong,
            3.0,
        ),
        # logging's findCaller hands the frames it walks to names a sample can replace.
        "forge_logging_internal_frame": (
            "import logging\n"
            + REPORT_FROM_FRAME
            + "logging._is_internal_frame = lambda frame: bool(report(frame))\n"
            "logging.getLogger('x').warning('hi')\n" + wrong,
            3.0,
        ),
        "forge_logging_print_stack": (
            "import logging\n"
            + REPORT_FROM_FRAME
            + "logging.traceback = type('T', (), {'print_stack': staticmethod(lambda frame, file: report(frame))})\n"
            "logging.getLogger('x').warning('hi', stack_info=True)\n" + wrong,
            3.0,
        ),
        # A frame reader the hook once trusted (by its code object), fed a sys._getframe that leaks.
        "forge_trusted_frame_reader": (
            "import collections, functools, sys, types, typing\n"
            + REPORT_FROM_FRAME
            + "frames = []\ngrab = functools.partial(collections.deque, map(frames.append, map(sys._getframe, [0])))\n"
            "typing.sys = types.SimpleNamespace(_getframe=grab)\n"
            "try:\n    typing.TypeVar('T')\nexcept BaseException:\n    pass\n"
            "for frame in frames:\n    report(frame)\n" + wrong,
            3.0,
        ),
    }


def run_attacks(spec: dict) -> dict:
    """Runner side (inside its own PID namespace): runs every attack, then inspects the damage."""
    import logging
    import socket

    sys.path.insert(0, spec["package_root"])
    from codex_jax.sandbox import executor

    logging.basicConfig(level=logging.WARNING)
    directory = spec["directory"]
    with open(os.path.join(directory, "protected.txt"), "w") as f:
        f.write(PROTECTED_TEXT)
    os.chmod(os.path.join(directory, "protected.txt"), 0o666)  # only the sandbox stands in the way
    with open(os.path.join(directory, "secret.txt"), "w") as f:
        f.write(SECRET)
    os.chmod(os.path.join(directory, "secret.txt"), 0o600)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    listener.setblocking(False)
    problem = {
        "task_id": "attack",
        "prompt": "",
        "entry_point": "f",
        "test": "def check(c):\n    assert c() == 1\n",
    }
    report: dict = {"results": {}}
    with executor.ExecutorPool(2, isolation=spec["isolation"]) as pool:
        jobs = [
            executor.Job(name, problem, completion, timeout)
            for name, (completion, timeout) in attacks(
                directory, listener.getsockname()[1], os.getpid()
            ).items()
        ]
        started = time.monotonic()
        for job, result in pool.run(jobs):
            report["results"][job.key] = dict(result, elapsed_s=time.monotonic() - started)
        workers = {w.process.pid for w in pool.workers}
        time.sleep(0.2)
        report["survivors"] = []
        for entry in os.listdir("/proc"):
            if entry.isdigit() and int(entry) != os.getpid() and int(entry) not in workers:
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        parent = int(f.read().rsplit(")", 1)[1].split()[1])
                except OSError:
                    continue
                if parent not in workers:
                    report["survivors"].append(int(entry))
        [(_, report["after"])] = list(
            pool.run([executor.Job("after", problem, "def f():\n    return 1\n", 3.0)])
        )
    try:
        listener.accept()
        report["connections"] = 1
    except BlockingIOError:
        report["connections"] = 0
    report["protected"] = open(os.path.join(directory, "protected.txt")).read()
    report["protected_mode"] = os.stat(os.path.join(directory, "protected.txt")).st_mode & 0o777
    report["created"] = sorted(set(os.listdir(directory)) - {"protected.txt", "secret.txt"})
    report["markers"] = [
        p
        for p in (
            f"/tmp/codex-jax-marker-{os.getpid()}",
            f"/dev/shm/codex-jax-marker-{os.getpid()}",
            f"/var/tmp/codex-jax-marker-{os.getpid()}",
        )
        if os.path.exists(p)
    ]
    return report


def _run_isolated(isolation: str, unprivileged: bool) -> dict:
    directory = tempfile.mkdtemp(prefix="codex_jax_attack_")
    os.chmod(directory, 0o777)  # the unprivileged runner writes its files here
    spec = {
        "directory": directory,
        "isolation": isolation,
        "package_root": os.path.dirname(
            os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
        ),
    }
    command = ["unshare", "--pid", "--fork", "--kill-child", "--mount-proc"]
    runner = os.path.abspath(__file__)
    code_copy = tempfile.mkdtemp(prefix="codex_jax_code_")
    if (
        unprivileged
    ):  # uid 65534 may not read the checkout (e.g. a clone in a 0700 folder): give it a copy
        os.chmod(code_copy, 0o755)
        shutil.copytree(
            os.path.join(spec["package_root"], "codex_jax"),
            os.path.join(code_copy, "codex_jax"),
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        runner = shutil.copy(runner, code_copy)
        spec["package_root"] = code_copy
        command += [
            "setpriv",
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            "/usr/bin/python3",
        ]
    else:
        command += [sys.executable]
    environment = dict(os.environ, CODEX_JAX_TEST_SECRET=SECRET)
    try:
        done = subprocess.run(
            command + [runner, json.dumps(spec)],
            capture_output=True,
            text=True,
            timeout=240,
            env=environment,
            cwd="/",
        )
        assert done.returncode == 0, done.stderr[-3000:]
        report = json.loads(done.stdout.strip().splitlines()[-1])
        report["stderr"] = done.stderr
        return report
    finally:
        shutil.rmtree(directory, ignore_errors=True)
        shutil.rmtree(code_copy, ignore_errors=True)


if pytest is not None:
    MODES = ["root-full", "root-minimal", "unprivileged"]

    @pytest.fixture(scope="module", params=MODES)
    def report(request):
        if os.geteuid() != 0 or shutil.which("unshare") is None:
            pytest.skip("the attack runner needs root and unshare(1) to isolate itself")
        if request.param == "unprivileged" and not os.access("/usr/bin/python3", os.X_OK):
            pytest.skip("the unprivileged run needs /usr/bin/python3 (readable by uid 65534)")
        isolation = "minimal" if request.param == "root-minimal" else "full"
        report = _run_isolated(isolation, unprivileged=request.param == "unprivileged")
        report["mode"] = request.param
        return report

    def result(report, name):
        return report["results"][name]

    def test_layers_are_recorded_and_fallback_is_loud(report):
        layers = set(result(report, "benign")["sandbox"].split(","))
        assert result(report, "benign")["passed"]
        assert {"rlimits", "audit-hook", "landlock-v7", "seccomp", "nnp"} <= layers
        if report["mode"] == "root-minimal":
            assert "netns" not in layers and "weaker isolation" in report["stderr"]
        else:
            assert {"mntns", "netns", "pidns", "ro-root", "masked"} <= layers
            assert ("uid" in layers) == (report["mode"] == "root-full")
            assert "weaker isolation" not in report["stderr"]

    def test_time_limit_kills_sleepers_and_spinners(report):
        for name in ("sleep_ignoring_signals", "busy_loop"):
            assert result(report, name)["result"] == "timed out"
        assert (
            result(report, "sleep_ignoring_signals")["elapsed_s"] < 20
        )  # not the backstop's restart

    def test_memory_file_size_and_limits_cannot_be_exceeded(report):
        for name in ("memory", "raise_limits", "big_file"):
            assert result(report, name)["result"].startswith("failed"), name
        assert (
            "raise" in result(report, "raise_limits")["result"]
            or "not" in result(report, "raise_limits")["result"]
        )

    def test_no_process_outlives_its_sample(report):
        assert result(report, "daemon")["passed"]
        assert report["survivors"] == []
        assert report["after"]["passed"]

    def test_fork_bomb_is_bounded_and_cleaned_up(report):
        assert result(report, "fork_bomb")[
            "passed"
        ]  # RLIMIT_NPROC stops the loop early, not the machine
        assert report["survivors"] == []

    def test_filesystem_outside_scratch_is_untouched(report):
        assert not result(report, "write_outside")["passed"]
        assert report["protected"] == PROTECTED_TEXT and report["protected_mode"] == 0o666
        assert report["created"] == [] and report["markers"] == []

    def test_no_network_even_loopback(report):
        assert report["connections"] == 0

    def test_secrets_do_not_reach_results(report):
        text = result(report, "secrets")["result"]
        assert text.startswith("failed") and SECRET not in text

    def test_killing_everything_harms_only_the_sample(report):
        assert (
            result(report, "kill_everything")["result"] == "failed: killed by SIGKILL"
        )  # only itself
        assert report["after"]["passed"]  # the runner, its pool and the other worker survived

    def test_output_floods_and_crashes_give_bounded_results(report):
        assert result(report, "output_flood")["passed"]
        assert result(report, "closes_fds")["passed"]  # the verdict needs no file descriptor
        assert result(report, "segfault")["result"] == "failed: killed by SIGSEGV"
        assert not result(report, "stack_overflow")["passed"]  # a crash or a timeout, both bounded
        assert report["after"]["passed"]
        assert all(len(r["result"]) <= 400 for r in report["results"].values())

    @pytest.mark.parametrize(
        "name",
        [
            "prints_passed",
            "forge_os_exit",
            "forge_sys_exit",
            "forge_exit_in_check",
            "forge_keyboard_interrupt",
            "forge_atexit",
            "forge_write_every_fd",
            "forge_frame_walk",
            "forge_traceback_walk",
            "forge_gc_scan",
            "forge_patch_harness",
            "forge_swallow_test",
            "forge_replace_test_loader",
            "forge_replace_check_guard",
            "forge_signal_handler_frame",
            "forge_subinterpreter",
            "forge_failure_text",
            "forge_replace_len",
            "forge_gc_garbage_frame",
            "forge_trusted_frame_reader",
            "forge_redirect_result_fd",
            "forge_extend_check_guard",
            "forge_gc_callback_in_main_thread",
            "forge_logging_internal_frame",
            "forge_logging_print_stack",
        ],
    )
    def test_verdict_cannot_be_forged(report, name):
        assert not result(report, name)["passed"], result(report, name)


if __name__ == "__main__":
    print(json.dumps(run_attacks(json.loads(sys.argv[1]))))
