"""JSON Lines files, plain or gzip-compressed (by the `.gz` suffix), read as a stream.

Errors name the file and the 1-based line so a user can find the bad record. Also the one
atomic writer (temporary file + rename) every stage uses for its completion marker.
"""

import contextlib
import gzip
import json
import os
from collections.abc import Iterable, Iterator
from typing import Any


def open_text(path: str | os.PathLike, mode: str = "rt"):
    """Opens `path` as UTF-8 text, through gzip when its name ends in `.gz`."""
    path = os.fspath(path)
    if path.endswith(".gz"):
        return gzip.open(path, mode, encoding="utf-8")
    return open(path, mode, encoding="utf-8")


def read_jsonl(
    path: str | os.PathLike, skip_cut_last_line: bool = False
) -> Iterator[dict[str, Any]]:
    """Yields one dict per non-blank line of `path`.

    Args:
        skip_cut_last_line: a file appended to line by line may end in a line an interruption
            cut short (no newline, not valid JSON); skip it instead of raising.

    Raises:
        ValueError: a line is not a JSON object; the message names file and line.
    """
    with open_text(path) as f:
        for line_number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                if skip_cut_last_line and not line.endswith("\n"):
                    return
                raise ValueError(
                    f"{os.fspath(path)}:{line_number}: not valid JSON ({e.msg})"
                ) from None
            if not isinstance(record, dict):
                raise ValueError(
                    f"{os.fspath(path)}:{line_number}: expected a JSON object, got {type(record).__name__}"
                )
            yield record


_REQUIRED = object()


def read_json(path: str | os.PathLike, default: Any = _REQUIRED) -> Any:
    """One JSON document; `default` when given and the file does not exist.

    Raises:
        FileNotFoundError: no such file and no default. ValueError: not valid JSON (names the file).
    """
    if default is not _REQUIRED and not os.path.exists(path):
        return default
    with open_text(path) as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise ValueError(f"{os.fspath(path)}:{e.lineno}: not valid JSON ({e.msg})") from None


def write_jsonl(
    path: str | os.PathLike, records: Iterable[dict[str, Any]], append: bool = False
) -> None:
    """Writes one JSON object per line; `append` adds to an existing file."""
    with open_text(path, "at" if append else "wt") as f:
        for record in records:
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[str]:
    """A temporary name beside `path` to write to; renamed over `path` when the block ends
    without an exception (and removed when it raises): readers never see half a file."""
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    temporary = f"{path}.tmp{os.getpid()}"
    try:
        yield temporary
        os.replace(temporary, path)
    finally:
        if os.path.exists(temporary):
            os.remove(temporary)


def write_text_atomically(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as temporary, open(temporary, "w", encoding="utf-8") as f:
        f.write(text)


def write_jsonl_atomically(path: str | os.PathLike, records: Iterable[dict[str, Any]]) -> None:
    with atomic_path(path) as temporary:
        write_jsonl(temporary, records)


def write_json_atomically(path: str | os.PathLike, value: Any) -> None:
    """One JSON document (indented), written atomically; used for stages' completion markers."""
    write_text_atomically(path, json.dumps(value, indent=2, ensure_ascii=False) + "\n")
