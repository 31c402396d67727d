"""Row digests kept at describe time, and the rows they name as differing.

Real CSV, TSV, JSONL (and Parquet) files are described, the old files are then
changed or deleted, and the differing rows are named by file and line from the
two row-digest blobs alone.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib

import pytest

from mltrail.capture.data.splits import describe_table, describe_table_rows
from mltrail.core.rows import (
    ROWS_MAGIC,
    RowFile,
    decode_row_digests,
    diff_rows,
    encode_row_digests,
)
from mltrail.errors import SchemaError

CSV = (
    "id,text,label\n"
    "1,good loan,0\n"
    '2,"a note\nover two lines",1\n'
    "\n"
    "3,late payment,1\n"
    "4,paid early,0\n"
)


def _rows(path, **kw):
    return describe_table_rows(path, **kw)[1]


def test_csv_lines_count_quoted_newlines_and_blank_lines(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(CSV)
    table, blob = describe_table_rows(path, label="label")
    assert table == describe_table(path, label="label")
    (only,) = decode_row_digests(blob)
    assert only.path == "train.csv"
    assert only.unit == "line"
    assert [line for line, _ in only.rows] == [2, 3, 6, 7]


def test_a_contaminated_csv_row_is_named_by_line(tmp_path):
    path = tmp_path / "train.csv"
    path.write_text(CSV)
    old = _rows(path)
    path.write_text(CSV.replace("late payment", "late payment (test row!)"))
    new = _rows(path)
    diff = diff_rows(old, new)
    assert [(c.kind, c.where()) for c in diff.changes] == [("changed", "train.csv:6")]
    assert diff.unchanged == 3


def test_inserted_and_removed_jsonl_rows(tmp_path):
    path = tmp_path / "eval.jsonl"
    rows = [{"q": f"question {i}", "a": i} for i in range(6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    old = _rows(path)
    leaked = [*rows[:2], {"q": "leaked test item", "a": 99}, *rows[2:4], *rows[5:]]
    # key order and 1.0-for-1 do not make a row differ
    text = [json.dumps(dict(reversed(list(r.items())))) for r in leaked]
    text[0] = '{"a": 0.0, "q": "question 0"}'
    path.write_text("\n".join(text) + "\n")
    diff = diff_rows(old, _rows(path))
    found = [(c.kind, c.old_line, c.new_line) for c in diff.changes]
    assert found == [("added", None, 3), ("removed", 5, None)]
    assert diff.to_dict()["added"] == 1
    assert diff.unchanged == 5


def test_a_folder_names_files_relative_to_it(tmp_path):
    folder = tmp_path / "data"
    (folder / "part").mkdir(parents=True)
    (folder / "part" / "a.tsv").write_text("x\ty\n1\t2\n3\t4\n")
    (folder / "part" / "b.tsv").write_text("x\ty\n5\t6\n")
    old = _rows(folder)
    assert [f.path for f in decode_row_digests(old)] == ["part/a.tsv", "part/b.tsv"]
    (folder / "part" / "b.tsv").write_text("x\ty\n5\t6\n7\t8\n")
    diff = diff_rows(old, _rows(folder))
    assert [c.where() for c in diff.changes] == ["part/b.tsv:3"]


def test_parquet_rows_are_numbered(tmp_path):
    pa, pq = pytest.importorskip("pyarrow"), pytest.importorskip("pyarrow.parquet")
    path = tmp_path / "t.parquet"
    pq.write_table(pa.table({"x": [1, 2, 3]}), path)
    old = _rows(path)
    pq.write_table(pa.table({"x": [1, 20, 3]}), path)
    (change,) = diff_rows(old, _rows(path)).changes
    assert change.where() == "t.parquet row 2"


def test_bad_blobs_are_schema_errors():
    good = encode_row_digests([RowFile("a.csv", "line", [(2, 7)])])
    raw = zlib.decompress(good)
    for bad in (
        b"not zlib",
        zlib.compress(b"other\n{}\n"),
        zlib.compress(raw[:-1]),
        zlib.compress(raw + b"x"),
        zlib.compress(
            ROWS_MAGIC + b'{"files":[{"path":"a","unit":"page","rows":0}]}\n'
        ),
        good[:-3],
    ):
        with pytest.raises(SchemaError):
            decode_row_digests(bad)


def _mltrail(home, cwd, *args):
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    for name in ("MLTRAIL_RUN_ID", "MLTRAIL_WITNESS"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_mltrail_diff_names_the_rows_without_the_old_file(tmp_path):
    home, data = tmp_path / "home", tmp_path / "train.csv"
    data.write_text(CSV)
    first = _mltrail(home, tmp_path, "run", "--name", "v1", "--data",
                     f"train={data}", "--label", "label", "--", "true")  # fmt: skip
    assert first.returncode == 0, first.stderr
    data.write_text(CSV.replace("paid early", "paid early; test answer") + "5,new,1\n")
    second = _mltrail(home, tmp_path, "run", "--name", "v2", "--data",
                      f"train={data}", "--describe", "--", "true")  # fmt: skip
    assert second.returncode == 0, second.stderr
    data.unlink()
    shown = _mltrail(home, tmp_path, "diff", "v1", "v2")
    assert shown.returncode == 0, shown.stderr
    assert "by row: 1 changed, 1 added, 0 removed, 3 unchanged" in shown.stdout
    assert "~    train.csv:7  changed" in shown.stdout
    assert "+    train.csv:8  added" in shown.stdout
    out = json.loads(_mltrail(home, tmp_path, "diff", "v1", "v2", "--json").stdout)
    (dataset,) = out["sections"]["data"]
    assert [
        (r["change"], r["file"], r["new_line"]) for r in dataset["rows"]["rows"]
    ] == [
        ("changed", "train.csv", 7),
        ("added", "train.csv", 8),
    ]
    assert not any(f["key"] == "row_digests.blob" for f in dataset["fields"])
    assert _mltrail(home, tmp_path, "verify").returncode == 0
