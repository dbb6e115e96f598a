"""Codex-S fine-tuning data: standalone functions of the corpus, as HumanEval-shaped problems.

Codex-S (Chen et al. 2021, section 4) fine-tuned on functions whose docstring states the task:
the prompt is what HumanEval gives the model (the imports the function uses, its signature and
its docstring), the completion is the body. A function qualifies when it stands alone: a
top-level, undecorated, synchronous `def` with a docstring, no nested `def`/`class`, no
`global`/`nonlocal`, and no free name other than its parameters, its locals, builtins and
absolute imports of its module (so prompt + completion run on their own). Trivial bodies
(`pass`, `...`, `raise NotImplementedError`, a lone `return <constant>`) and functions outside
the length limits are dropped, exact duplicates are dropped, and functions sharing a long
n-gram with an evaluation problem are dropped. Where the docstring carries doctests, they
become the problem's `check` and are run in the project's sandboxed executor: Codex-S kept
only problems whose tests pass, and `verified` marks them.

Output: `W/sft/{train,val}.jsonl` (split follows the corpus file's split) with records
`{task_id, prompt, completion, entry_point, test, verified}` and `W/sft/stats.json` written
last (the completion marker).
"""

import ast
import builtins
import collections
import dataclasses
import functools
import hashlib
import os
import time
from typing import Any

import ml_collections
import tqdm
from absl import logging

from codex_jax import jsonl
from codex_jax.workdir import Workdir, require

BUILTIN_NAMES = frozenset(dir(builtins))

# `check` for a function whose docstring has doctests: every example must give its expected
# output (or exception), and there must be some (unparsable examples would pass vacuously).
# Examples run as doctest runs them (compiled in "single" mode, stdout captured, compared by
# doctest's OutputChecker), but without DocTestRunner, whose pdb and sys.settrace handling the
# sandbox refuses.
DOCTEST_CHECK = """

def check(candidate):
    import doctest, io, sys, traceback
    examples = doctest.DocTestParser().get_examples(candidate.__doc__ or "")
    assert examples, "no doctest examples"
    checker, flags, globs = doctest.OutputChecker(), doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE, dict(globals())
    for example in examples:
        stdout, sys.stdout = sys.stdout, io.StringIO()
        try:
            exec(compile(example.source, "<doctest>", "single"), globs)
            got, raised = sys.stdout.getvalue(), None
        except Exception as error:
            got, raised = sys.stdout.getvalue(), traceback.format_exception_only(type(error), error)[-1]
        finally:
            sys.stdout = stdout
        if example.exc_msg is None:
            assert raised is None, f"{example.source.strip()} raised {raised.strip()}"
            assert checker.check_output(example.want, got, flags), f"{example.source.strip()} gave {got!r}"
        else:
            assert raised is not None and checker.check_output(example.exc_msg, raised, flags), \\
                f"{example.source.strip()} did not raise {example.exc_msg.strip()}"
"""


@dataclasses.dataclass(frozen=True)
class Limits:
    """What a qualifying function may look like (lengths in characters / lines)."""

    min_docstring_chars: int = 16
    max_body_lines: int = 40
    max_chars: int = 2000  # prompt + completion; keeps a pair inside a short training window


def _import_lines(module: ast.Module) -> dict[str, str]:
    """Maps each name bound by a top-level absolute import to the one-name import line binding it."""
    bound: dict[str, str] = {}
    for node in module.body:
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.asname:
                    bound[alias.asname] = f"import {alias.name} as {alias.asname}"
                else:
                    bound[alias.name.split(".")[0]] = f"import {alias.name}"
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module != "__future__":
            for alias in node.names:
                if alias.name == "*":
                    continue
                suffix = f" as {alias.asname}" if alias.asname else ""
                bound[alias.asname or alias.name] = (
                    f"from {node.module} import {alias.name}{suffix}"
                )
    return bound


def _free_names(function: ast.FunctionDef) -> set[str] | None:
    """Names the function reads but does not bind; None if it cannot stand alone."""
    loaded, bound = set(), {function.name}
    arguments = function.args
    for arg in arguments.posonlyargs + arguments.args + arguments.kwonlyargs:
        bound.add(arg.arg)
    for arg in (arguments.vararg, arguments.kwarg):
        if arg is not None:
            bound.add(arg.arg)
    for node in ast.walk(function):
        if node is not function and isinstance(
            node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Global, ast.Nonlocal)
        ):
            return None
        if isinstance(node, ast.Name):
            (loaded if isinstance(node.ctx, ast.Load) else bound).add(node.id)
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        elif isinstance(node, (ast.Import, ast.ImportFrom)):
            bound.update((a.asname or a.name).split(".")[0] for a in node.names)
        elif isinstance(node, ast.MatchAs | ast.MatchStar) and node.name:
            bound.add(node.name)
    return loaded - bound - BUILTIN_NAMES


def _is_trivial(statements: list[ast.stmt]) -> bool:
    """True for bodies that say nothing: pass, ..., raise NotImplementedError, return <constant>."""
    if len(statements) != 1:
        return False
    statement = statements[0]
    if isinstance(statement, ast.Pass):
        return True
    if isinstance(statement, ast.Expr) and isinstance(statement.value, ast.Constant):
        return True
    if isinstance(statement, ast.Return):
        return statement.value is None or isinstance(statement.value, ast.Constant)
    if isinstance(statement, ast.Raise) and statement.exc is not None:
        exc = statement.exc.func if isinstance(statement.exc, ast.Call) else statement.exc
        return isinstance(exc, ast.Name) and exc.id == "NotImplementedError"
    return False


def extract_functions(
    path: str, source: str, limits: Limits = Limits()
) -> tuple[list[dict[str, Any]], collections.Counter]:
    """Qualifying functions of one file as problems, and a count of why the others were dropped.

    Each problem: {task_id ("<path>:<name>"), prompt, completion, entry_point, test, has_doctest}.
    `test` is the doctest `check` when the docstring has `>>>` examples, else "".
    """
    dropped: collections.Counter = collections.Counter()
    try:
        module = ast.parse(source)
    except (SyntaxError, ValueError):
        dropped["unparsable_file"] += 1
        return [], dropped
    lines = source.splitlines(keepends=True)
    imports = _import_lines(module)
    problems = []
    for node in module.body:
        if not isinstance(node, ast.FunctionDef):
            continue
        docstring = ast.get_docstring(node, clean=False)
        if docstring is None:
            dropped["no_docstring"] += 1
            continue
        if node.decorator_list:
            dropped["decorated"] += 1
            continue
        if len(docstring.strip()) < limits.min_docstring_chars:
            dropped["short_docstring"] += 1
            continue
        body = node.body[1:]
        if not body or _is_trivial(body):
            dropped["trivial_body"] += 1
            continue
        docstring_end = node.body[0].end_lineno
        if body[0].lineno <= docstring_end:  # `"""doc"""; statement` on one line
            dropped["unusual_layout"] += 1
            continue
        free = _free_names(node)
        if free is None:
            dropped["nested_or_global"] += 1
            continue
        if not free <= imports.keys():
            dropped["not_standalone"] += 1
            continue
        completion = "".join(lines[docstring_end : node.end_lineno])
        if len(completion.splitlines()) > limits.max_body_lines:
            dropped["long_body"] += 1
            continue
        header = "".join(imports[name] + "\n" for name in sorted(free))
        prompt = (header + "\n\n" if header else "") + "".join(
            lines[node.lineno - 1 : docstring_end]
        )
        if len(prompt) + len(completion) > limits.max_chars:
            dropped["too_long"] += 1
            continue
        if not completion.endswith("\n"):
            completion += "\n"
        has_doctest = ">>>" in docstring
        problems.append(
            {
                "task_id": f"{path}:{node.name}",
                "prompt": prompt,
                "completion": completion,
                "entry_point": node.name,
                "test": DOCTEST_CHECK if has_doctest else "",
                "has_doctest": has_doctest,
            }
        )
    return problems, dropped


def _extract_record(
    record: dict[str, Any], limits: Limits
) -> tuple[list[dict[str, Any]], collections.Counter]:
    return extract_functions(record["path"], record["content"], limits)


def verify_doctests(
    problems: list[dict[str, Any]], timeout: float, n_workers: int = 0
) -> list[bool]:
    """Runs each problem's doctest `check` on its own completion in the sandboxed executor."""
    from codex_jax.sandbox import (
        executor,  # starts no JAX; workers only when there is something to run
    )

    jobs = [
        executor.Job(i, p, p["completion"], timeout) for i, p in enumerate(problems) if p["test"]
    ]
    verified = [False] * len(problems)
    if jobs:
        with executor.ExecutorPool(n_workers=n_workers) as pool:
            for job, result in tqdm.tqdm(
                pool.run(jobs), total=len(jobs), desc="doctests", unit="fn"
            ):
                verified[job.key] = result["passed"]
    return verified


def build_functions(
    config: ml_collections.ConfigDict, workdir: str | os.PathLike
) -> dict[str, Any]:
    """Extracts, filters, deduplicates, decontaminates and verifies functions of the corpus.

    Writes W/sft/{train,val}.jsonl and, last, W/sft/stats.json; returns the stats.
    """
    from codex_jax.data import dedup, parallel_map
    from codex_jax.tasks import registry

    start = time.perf_counter()
    paths = Workdir(workdir)
    corpus_dir = require(os.path.join(paths.corpus, "stats.json"), "corpus") and paths.corpus
    settings = config.functions
    limits = Limits(settings.min_docstring_chars, settings.max_body_lines, settings.max_chars)
    evaluation = registry.decontamination_problems(config)
    index = dedup.ProblemIndex(evaluation, config.corpus.decontam_ngram)
    out_dir = paths.sft
    os.makedirs(out_dir, exist_ok=True)
    seen: set[bytes] = set()
    stats: dict[str, Any] = {
        "dropped": collections.Counter(),
        "splits": {},
        "decontaminated_by": collections.Counter(),
    }
    for split in ("train", "val"):
        kept = []
        records = jsonl.read_jsonl(os.path.join(corpus_dir, f"{split}.jsonl.gz"))
        extracted = parallel_map.ordered_map(
            functools.partial(_extract_record, limits=limits),
            records,
            n_workers=settings.n_workers,
            chunk_size=8,
        )
        extracted = tqdm.tqdm(extracted, desc=f"functions {split}", unit="file")
        for found, dropped in extracted:
            stats["dropped"].update(dropped)
            for problem in found:
                key = hashlib.blake2b(
                    (problem["prompt"] + problem["completion"]).encode(), digest_size=16
                ).digest()
                if key in seen:
                    stats["dropped"]["duplicate"] += 1
                    continue
                seen.add(key)
                shared = index.shared_problems(problem["prompt"] + problem["completion"])
                if shared:
                    stats["dropped"]["decontaminated"] += 1
                    stats["decontaminated_by"].update(shared)
                    continue
                kept.append(problem)
        verified = (
            verify_doctests(kept, config.eval.timeout, config.eval.n_workers)
            if settings.verify_doctests
            else [False] * len(kept)
        )
        for problem, ok in zip(kept, verified):
            problem["verified"] = ok
        jsonl.write_jsonl(os.path.join(out_dir, f"{split}.jsonl"), kept)
        with_doctest = sum(p["has_doctest"] for p in kept)
        stats["splits"][split] = {
            "functions": len(kept),
            "with_doctest": with_doctest,
            "doctest_verified": sum(verified),
            "doctest_failed": with_doctest - sum(verified),
        }
        logging.info(
            "functions %s: %d kept, %d with doctests, %d verified",
            split,
            len(kept),
            with_doctest,
            sum(verified),
        )
    stats["limits"] = dataclasses.asdict(limits)
    stats["elapsed_s"] = round(time.perf_counter() - start, 1)
    jsonl.write_json_atomically(os.path.join(out_dir, "stats.json"), stats)
    return stats


def ensure_functions(config: ml_collections.ConfigDict, workdir: str | os.PathLike) -> str:
    """W/sft, built first unless its stats.json (the completion marker) exists."""
    out_dir = Workdir(workdir).sft
    if not os.path.exists(os.path.join(out_dir, "stats.json")):
        build_functions(config, workdir)
    return out_dir
