"""Where corpus files come from: folders, installed packages, the standard library, code datasets.

A source is a folder (its .py files, in sorted path order, hidden folders and site-packages
skipped), a single .py file, the name of an installed package or module, or a JSONL(.gz)/parquet
file with a `content` field per row (the layout of code datasets such as The Stack), read in row
order. Every source yields `Document`s as a stream: nothing is read before it is needed.
"""

import importlib.util
import os
import sysconfig
from collections.abc import Iterator, Mapping
from typing import Any, NamedTuple

from codex_jax import jsonl

SKIPPED_DIRS = ("site-packages", "dist-packages", "__pycache__")  # plus hidden ".*" folders
PATH_FIELDS = (
    "path",
    "max_stars_repo_path",
    "max_issues_repo_path",
    "max_forks_repo_path",
    "file_path",
    "filepath",
    "filename",
)
REPO_FIELDS = ("repo_name", "max_stars_repo_name", "max_issues_repo_name", "max_forks_repo_name")


class Document(NamedTuple):
    """One candidate file: `file` to read from disk (folders, packages) or `content` (datasets)."""

    path: str  # the record's path in the corpus
    file: str | None
    content: str | None


def stdlib_dir() -> str:
    """The running interpreter's standard-library folder (its site-packages is skipped)."""
    return sysconfig.get_paths()["stdlib"]


def _walk_python_files(folder: str, names_relative_to: str) -> Iterator[Document]:
    """Yields the .py files under `folder` in sorted order, named relative to `names_relative_to`."""
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = sorted(d for d in dirnames if d not in SKIPPED_DIRS and not d.startswith("."))
        for name in sorted(filenames):
            if name.endswith(".py"):
                file = os.path.join(dirpath, name)
                yield Document(os.path.relpath(file, names_relative_to), file, None)


def _record_document(record: Mapping[str, Any], source: str, row: int) -> Document:
    """A dataset row as a Document; `row` is 1-based and names the row when it has no path."""
    content = record.get("content")
    if not isinstance(content, str):
        raise ValueError(
            f"corpus source {source}: row {row}: expected a string field 'content' "
            f"(the file's code), got {type(content).__name__}"
        )
    path = next(
        (record[f] for f in PATH_FIELDS if isinstance(record.get(f), str) and record[f]),
        f"{source}:{row}",
    )
    repo = next(
        (record[f] for f in REPO_FIELDS if isinstance(record.get(f), str) and record[f]), None
    )
    return Document(f"{repo}/{path}" if repo else path, None, content)


def _jsonl_documents(source: str) -> Iterator[Document]:
    for row, record in enumerate(jsonl.read_jsonl(source), start=1):
        yield _record_document(record, source, row)


def _parquet_documents(source: str) -> Iterator[Document]:
    try:
        import pyarrow.parquet
    except ImportError:
        raise ImportError(
            f"corpus source {source}: reading parquet needs pyarrow (pip install pyarrow)"
        ) from None
    parquet_file = pyarrow.parquet.ParquetFile(source)
    names = parquet_file.schema_arrow.names
    if "content" not in names:
        raise ValueError(f"corpus source {source}: expected a 'content' column, found {names}")
    columns = [n for n in ("content",) + PATH_FIELDS + REPO_FIELDS if n in names]
    row = 0
    for batch in parquet_file.iter_batches(batch_size=256, columns=columns):  # a batch at a time
        for record in batch.to_pylist():
            row += 1
            yield _record_document(record, source, row)


def _package_documents(name: str) -> Iterator[Document] | None:
    """The files of installed package or module `name`, or None when nothing is installed by it."""
    try:
        spec = importlib.util.find_spec(name)
    except (ImportError, ValueError):  # a parent package that is missing, or an invalid name
        return None
    if spec is None:
        return None
    if spec.submodule_search_locations:  # a package: walk its folder(s), names start with it
        folders = sorted(spec.submodule_search_locations)
        return (
            d for folder in folders for d in _walk_python_files(folder, os.path.dirname(folder))
        )
    if spec.origin and spec.origin.endswith(".py"):
        return iter([Document(os.path.basename(spec.origin), spec.origin, None)])
    raise ValueError(
        f"corpus source {name!r}: installed module has no Python source (origin {spec.origin!r})"
    )


def open_source(source: str) -> Iterator[Document]:
    """The documents of one source, validated now (a bad source fails before any work starts).

    Raises:
        ValueError: `source` is neither a folder, a .py/.jsonl/.jsonl.gz/.parquet file, nor the
            name of an installed package.
    """
    source = os.fspath(source)
    if os.path.isdir(source):
        return _walk_python_files(source, source)
    if os.path.isfile(source):
        if source.endswith((".jsonl", ".jsonl.gz")):
            return _jsonl_documents(source)
        if source.endswith(".parquet"):
            return _parquet_documents(source)
        if source.endswith(".py"):
            return iter([Document(os.path.basename(source), source, None)])
        raise ValueError(
            f"corpus source {source!r}: a file must be .py, .jsonl, .jsonl.gz or "
            ".parquet (with a 'content' field)"
        )
    documents = _package_documents(source)
    if documents is None:
        raise ValueError(
            f"corpus source {source!r}: expected a folder, a .py/.jsonl/.jsonl.gz/"
            ".parquet file, or the name of an installed package; found none of these"
        )
    return documents
