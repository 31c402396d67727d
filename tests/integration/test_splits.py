"""Split distributions and overlaps (mltrail.capture.data.splits) on real files in tmp_path."""

from __future__ import annotations

import csv
import datetime as dt
import gzip
import json
import math
import random
import statistics
import sys
import tracemalloc
from decimal import Decimal

import pytest

from mltrail.capture.data import columns
from mltrail.capture.data import splits as splits_module
from mltrail.capture.data.splits import (
    TOP_LABELS,
    describe_splits,
    describe_table,
    find_overlaps,
    row_digest,
)
from mltrail.capture.data.tables import detect_format, open_table, parse_cell
from mltrail.errors import ConfigError, InputError
from optional_extras import require_extra

MAX_SAFE_INT = 2**53 - 1


def write(path, text, encoding="utf-8"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(text.encode(encoding))
    return path


def write_rows(path, rows, **writer_options):
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="", encoding="utf-8") as f:
        csv.writer(f, **writer_options).writerows(rows)
    return path


def write_jsonl(path, objects):
    return write(path, "".join(json.dumps(o) + "\n" for o in objects))


def assert_json_safe(value):
    """Plain JSON: no NaN or infinity, no integer beyond 2**53 - 1."""
    json.dumps(value, allow_nan=False)
    if isinstance(value, dict):
        for item in value.values():
            assert_json_safe(item)
    elif isinstance(value, list):
        for item in value:
            assert_json_safe(item)
    elif isinstance(value, int) and not isinstance(value, bool):
        assert abs(value) <= MAX_SAFE_INT


def column_types(description):
    return {c["name"]: c["type"] for c in description["columns"]}


def test_csv_description_has_rows_types_label_and_numbers(tmp_path):
    path = write(
        tmp_path / "train.csv",
        "id,text,label,score,flag\n"
        '1,"hello, world",pos,0.5,true\n'
        "2,plain,neg,1.5,False\n"
        "3,more,pos,NA,true\n",
    )
    result = describe_table(path, label="label")
    assert result["format"] == "csv"
    assert result["files"] == 1
    assert result["rows"] == 3
    assert result["columns"] == [
        {"name": "id", "type": "integer", "nulls": 0},
        {"name": "text", "type": "string", "nulls": 0},
        {"name": "label", "type": "string", "nulls": 0},
        {"name": "score", "type": "number", "nulls": 1},
        {"name": "flag", "type": "boolean", "nulls": 0},
    ]
    assert result["label"] == {
        "column": "label",
        "counts": {"pos": 2, "neg": 1},
        "distinct": 2,
        "other": 0,
        "nulls": 0,
        "exact": True,
    }
    assert result["numeric"]["id"] == {
        "count": 3,
        "nulls": 0,
        "min": 1,
        "max": 3,
        "mean": 2.0,
        "std": 1.0,
    }
    assert result["numeric"]["score"]["count"] == 2
    assert result["numeric"]["score"]["nulls"] == 1
    assert set(result["numeric"]) == {"id", "score"}
    assert_json_safe(result)


def test_csv_quoting_and_embedded_newlines(tmp_path):
    path = write(
        tmp_path / "q.csv",
        "text,label\r\n"
        '"line one\nline two",a\r\n'
        '"she said ""hi""",b\r\n'
        '"comma, inside",a\r\n'
        "\r\n"  # a blank line is skipped
        '"",c\r\n',
    )
    result = describe_table(path, label="text")
    assert result["rows"] == 4
    assert result["label"]["counts"] == {
        "comma, inside": 1,
        "line one\nline two": 1,
        'she said "hi"': 1,
    }
    assert result["label"]["nulls"] == 1


@pytest.mark.parametrize("name", ["data.tsv", "data.tab"])
def test_tsv(tmp_path, name):
    path = write(
        tmp_path / name,
        'word\tcount\tlabel\na,b\t3\tx\n"tab\tinside"\t4\ty\nc\t\tx\n',
    )
    result = describe_table(path, label="label")
    assert result["format"] == "tsv"
    assert result["rows"] == 3
    assert column_types(result) == {
        "word": "string",
        "count": "integer",
        "label": "string",
    }
    assert result["numeric"]["count"]["nulls"] == 1
    assert result["label"]["counts"] == {"x": 2, "y": 1}


def test_jsonl_types_nulls_and_missing_keys(tmp_path):
    path = write(
        tmp_path / "d.ndjson",
        '{"a": 1, "tags": ["x"], "meta": {"k": 1}, "s": "12"}\n'
        "\n"
        '{"a": 2.5, "tags": [], "meta": null, "extra": true}\n'
        '{"a": null, "s": "x"}\n',
    )
    result = describe_table(path)
    assert result["format"] == "jsonl"
    assert result["rows"] == 3
    assert result["columns"] == [
        {"name": "a", "type": "number", "nulls": 1},
        {"name": "tags", "type": "array", "nulls": 1},
        {"name": "meta", "type": "object", "nulls": 2},
        {"name": "s", "type": "string", "nulls": 1},
        {"name": "extra", "type": "boolean", "nulls": 2},
    ]
    assert result["numeric"] == {
        "a": {
            "count": 2,
            "nulls": 1,
            "min": 1,
            "max": 2.5,
            "mean": 1.75,
            "std": pytest.approx(statistics.stdev([1, 2.5])),
        }
    }


def test_jsonl_number_too_large_for_a_float_is_null(tmp_path):
    path = write(tmp_path / "d.jsonl", '{"x": 1e400}\n{"x": 2}\n')
    result = describe_table(path)
    assert result["numeric"]["x"]["count"] == 1
    assert result["numeric"]["x"]["nulls"] == 1
    assert_json_safe(result)


def test_parquet_types_from_the_schema(tmp_path):
    pa, pq = require_extra("parquet", "pyarrow", "pyarrow.parquet")
    table = pa.table(
        {
            "i": pa.array([1, 2, None, 4], pa.int64()),
            "f": pa.array([1.5, float("nan"), 2.5, None], pa.float64()),
            "s": pa.array(["a", "b", "a", None]),
            "b": pa.array([True, False, True, True]),
            "l": pa.array([[1], [], None, [2, 3]], pa.list_(pa.int32())),
            "st": pa.array([{"k": 1}] * 4),
            "t": pa.array([dt.datetime(2024, 1, 1)] * 4, pa.timestamp("us")),
            "d": pa.array([Decimal("1.25")] * 4, pa.decimal128(5, 2)),
            "c": pa.array(["x", "y", "x", "x"]).dictionary_encode(),
            "bin": pa.array([b"\x00", b"\x01", b"\x00", b"\x02"]),
        }
    )
    path = tmp_path / "t.parquet"
    pq.write_table(table, path, row_group_size=2)
    result = describe_table(path, label="c")
    assert result["format"] == "parquet"
    assert result["rows"] == 4
    assert column_types(result) == {
        "i": "integer",
        "f": "number",
        "s": "string",
        "b": "boolean",
        "l": "array",
        "st": "object",
        "t": "timestamp",
        "d": "number",
        "c": "string",
        "bin": "binary",
    }
    assert result["numeric"]["i"] == {
        "count": 3,
        "nulls": 1,
        "min": 1,
        "max": 4,
        "mean": pytest.approx(7 / 3),
        "std": pytest.approx(statistics.stdev([1, 2, 4])),
    }
    assert result["numeric"]["f"]["count"] == 2  # NaN counts as null
    assert result["numeric"]["f"]["nulls"] == 2
    assert result["numeric"]["d"]["mean"] == 1.25
    assert result["label"]["counts"] == {"x": 3, "y": 1}
    assert_json_safe(result)


def test_parquet_rows_hash_like_csv_rows(tmp_path):
    pa, pq = require_extra("parquet", "pyarrow", "pyarrow.parquet")
    pq.write_table(pa.table({"a": [1, 2], "b": ["x", "y"]}), tmp_path / "p.parquet")
    write(tmp_path / "c.csv", "b,a\nx,1.0\nz,3\n")
    overlap = find_overlaps({"p": tmp_path / "p.parquet", "c": tmp_path / "c.csv"})
    assert overlap["pairs"] == [{"splits": ["p", "c"], "rows": 1}]


def test_missing_pyarrow_is_a_config_error_naming_the_extra(tmp_path, monkeypatch):
    path = write(tmp_path / "t.parquet", "not parquet")
    monkeypatch.setitem(sys.modules, "pyarrow", None)
    monkeypatch.setitem(sys.modules, "pyarrow.parquet", None)
    with pytest.raises(ConfigError, match=r"pip install 'mltrail\[parquet\]'") as e:
        describe_table(path)
    assert e.value.hint == "pip install 'mltrail[parquet]'"


def test_corrupt_parquet_is_an_input_error(tmp_path):
    require_extra("parquet", "pyarrow")
    path = write(tmp_path / "t.parquet", "a,b\n1,2\n")
    with pytest.raises(InputError, match=r"t\.parquet"):
        describe_table(path)


@pytest.mark.parametrize("name", ["d.csv.gz", "d.CSV.GZ"])
def test_gzipped_csv(tmp_path, name):
    path = tmp_path / name
    path.write_bytes(gzip.compress(b"a,label\n1,x\n2,y\n"))
    result = describe_table(path, label="label")
    assert (result["format"], result["rows"]) == ("csv", 2)


def test_gzipped_jsonl_given_format_and_odd_name(tmp_path):
    path = tmp_path / "dump.bin"
    path.write_bytes(gzip.compress(b'{"a": 1}\n{"a": 2}\n'))
    assert describe_table(path, fmt="ndjson")["rows"] == 2


def test_truncated_gzip_is_an_input_error(tmp_path):
    path = tmp_path / "d.csv.gz"
    path.write_bytes(gzip.compress(b"a\n" + b"1\n" * 10_000)[:40])
    with pytest.raises(InputError, match="gzip"):
        describe_table(path)


CSV_TYPE_CASES = [
    (["1", "2", "-3", "+4"], "integer"),
    (["007", " 8 "], "integer"),
    (["1", "2.5"], "number"),
    (["1e3", ".5", "5."], "number"),
    (["true", "False", "TRUE"], "boolean"),
    (["a", "b"], "string"),
    (["inf", "1_000", "0x10", "1e999"], "string"),
    (["", "NA", "N/A", "null", "NULL", "None", "NaN", "nan", "n/a"], "empty"),
    (["1", "NA", "", "null"], "integer"),
    (["1", "x"], "mixed"),
    (["true", "1"], "mixed"),
    (["2.5", "yes"], "mixed"),
]


@pytest.mark.parametrize(("cells", "expected"), CSV_TYPE_CASES)
def test_csv_type_inference(tmp_path, cells, expected):
    path = write_rows(tmp_path / "t.csv", [["v", "pad"]] + [[c, "x"] for c in cells])
    result = describe_table(path)
    assert column_types(result)["v"] == expected
    assert result["rows"] == len(cells)


JSONL_TYPE_CASES = [
    ([1, 2], "integer"),
    ([1, 2.0], "number"),
    (["1", "x"], "string"),
    ([True, False], "boolean"),
    ([{"a": 1}], "object"),
    ([[1], []], "array"),
    ([None, None], "empty"),
    ([1, "a"], "mixed"),
    ([True, 1], "mixed"),
    ([{"a": 1}, [1]], "mixed"),
]


@pytest.mark.parametrize(("values", "expected"), JSONL_TYPE_CASES)
def test_jsonl_type_inference(tmp_path, values, expected):
    path = write_jsonl(tmp_path / "t.jsonl", [{"v": v} for v in values])
    assert column_types(describe_table(path)) == {"v": expected}


PARSE_CASES = [
    ("", None),
    ("  NA ", None),
    ("None", None),
    ("none", "none"),
    ("12", 12),
    ("-0", 0),
    ("1.50", 1.5),
    ("1E2", 100.0),
    ("tRuE", True),
    ("false", False),
    ("yes", "yes"),
    (" a b ", "a b"),
    ("9" * 301, float("9" * 301)),
    ("9" * 400, "9" * 400),
    ("١٢", "١٢"),  # non-ASCII digits stay text
]


@pytest.mark.parametrize(("cell", "value"), PARSE_CASES)
def test_parse_cell(cell, value):
    parsed = parse_cell(cell)
    assert parsed == value
    assert type(parsed) is type(value)


def test_label_counts_keep_the_top_values_and_sum_the_rest(tmp_path):
    rows = [["label"]]
    distinct = TOP_LABELS + 500
    for i in range(distinct):
        rows.extend([[f"v{i:05d}"]] * (3 if i < 10 else 1))
    rows.extend([["NA"]] * 7)
    path = write_rows(tmp_path / "l.csv", rows)
    label = describe_table(path, label="label")["label"]
    assert len(label["counts"]) == TOP_LABELS
    assert list(label["counts"])[:10] == [f"v{i:05d}" for i in range(10)]
    assert set(label["counts"].values()) == {1, 3}
    assert label["distinct"] == distinct
    assert label["other"] == 500
    assert label["nulls"] == 7
    assert (
        sum(label["counts"].values()) + label["other"] + label["nulls"] == len(rows) - 1
    )
    assert label["exact"] is True


def test_label_values_beyond_the_tracking_cap_go_to_other(tmp_path, monkeypatch):
    monkeypatch.setattr(columns, "MAX_TRACKED_LABELS", 5)
    path = write_jsonl(tmp_path / "l.jsonl", [{"y": i % 8} for i in range(16)])
    label = describe_table(path, label="y")["label"]
    assert label["counts"] == {str(i): 2 for i in range(5)}
    assert label["other"] == 6
    assert label["exact"] is False


def test_label_keys_are_text_and_long_values_are_cut(tmp_path):
    long = "x" * 500
    path = write_jsonl(
        tmp_path / "l.jsonl",
        [{"y": 1}, {"y": 1.0}, {"y": True}, {"y": [1, 2]}, {"y": long}, {}],
    )
    label = describe_table(path, label="y")["label"]
    assert label["counts"] == {
        "1": 2,
        "[1, 2]": 1,
        "true": 1,
        "x" * splits_module.MAX_LABEL_CHARS + "…": 1,
    }
    assert label["nulls"] == 1


def test_numeric_summaries_match_the_statistics_module(tmp_path):
    rng = random.Random(7)
    floats = [rng.uniform(-1e3, 1e3) for _ in range(500)]
    ints = [rng.randint(-(10**6), 10**6) for _ in range(500)]
    path = write_rows(
        tmp_path / "n.csv", [["f", "i"], *zip(map(repr, floats), ints, strict=True)]
    )
    numeric = describe_table(path)["numeric"]
    for name, values in (("f", floats), ("i", ints)):
        summary = numeric[name]
        assert summary["count"] == len(values)
        assert summary["min"] == min(values)
        assert summary["max"] == max(values)
        assert summary["mean"] == pytest.approx(
            statistics.fmean(values), rel=1e-12, abs=1e-9
        )
        assert summary["std"] == pytest.approx(statistics.stdev(values), rel=1e-9)


def test_welford_is_stable_for_large_offsets(tmp_path):
    values = [1e9 + 4, 1e9 + 7, 1e9 + 13, 1e9 + 16]
    path = write_jsonl(tmp_path / "n.jsonl", [{"x": v} for v in values])
    summary = describe_table(path)["numeric"]["x"]
    assert summary["std"] == pytest.approx(statistics.stdev(values), rel=1e-9)
    assert summary["mean"] == 1e9 + 10


def test_single_value_has_no_std_and_huge_ints_stay_json_safe(tmp_path):
    path = write(tmp_path / "n.csv", f"a,b\n{2**60},5\n{-(2**62)},NA\n")
    numeric = describe_table(path)["numeric"]
    assert numeric["b"]["std"] is None
    assert numeric["b"]["mean"] == 5
    assert numeric["a"]["max"] == float(2**60)
    assert numeric["a"]["min"] <= numeric["a"]["mean"] <= numeric["a"]["max"]
    assert_json_safe(numeric)


def test_short_rows_are_null_padded_and_long_rows_rejected(tmp_path):
    path = write(tmp_path / "r.csv", "a,b,c\n1,2\n1,2,3\n")
    result = describe_table(path)
    assert [c["nulls"] for c in result["columns"]] == [0, 0, 1]
    bad = write(tmp_path / "bad.csv", "a,b\n1,2\n1,2,3\n")
    with pytest.raises(InputError, match=r"bad\.csv: line 3: 3 fields"):
        describe_table(bad)


def test_duplicate_header_names_are_rejected(tmp_path):
    path = write(tmp_path / "d.csv", "a,b,a\n1,2,3\n")
    with pytest.raises(InputError, match="duplicate column"):
        describe_table(path)


def test_empty_and_header_only_files(tmp_path):
    empty = describe_table(write(tmp_path / "e.csv", ""), label="y")
    assert (empty["rows"], empty["columns"], empty["numeric"]) == (0, [], {})
    assert empty["label"]["counts"] == {}
    header = describe_table(write(tmp_path / "h.csv", "x,y\n"), label="y")
    assert header["rows"] == 0
    assert header["columns"] == [
        {"name": "x", "type": "empty", "nulls": 0},
        {"name": "y", "type": "empty", "nulls": 0},
    ]
    assert header["label"]["distinct"] == 0
    assert describe_table(write(tmp_path / "e.jsonl", "\n"))["rows"] == 0
    with_bom = describe_table(write(tmp_path / "b.csv", "\ufeffx\n1\n"), label="x")
    assert with_bom["rows"] == 1


def test_bad_jsonl_line_names_the_file_and_line(tmp_path):
    path = write(tmp_path / "bad.jsonl", '{"a": 1}\n\n{"a": 2,}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl: line 3: not valid JSON"):
        describe_table(path)


@pytest.mark.parametrize("line", ["[1, 2]", '"text"', '{"a": NaN}'])
def test_jsonl_lines_must_be_strict_json_objects(tmp_path, line):
    path = write(tmp_path / "bad.jsonl", f'{{"a": 1}}\n{line}\n')
    with pytest.raises(InputError, match=r"bad\.jsonl: line 2"):
        describe_table(path)


def test_non_utf8_text_is_an_input_error(tmp_path):
    path = write(tmp_path / "latin.csv", "a\ncaf\xe9\n", encoding="latin-1")
    with pytest.raises(InputError, match=r"latin\.csv: not UTF-8"):
        describe_table(path)


def test_unknown_label_lists_the_columns(tmp_path):
    path = write(tmp_path / "t.csv", "id,text\n1,a\n")
    with pytest.raises(InputError, match=r"'target'.*columns: 'id', 'text'") as e:
        describe_table(path, label="target")
    assert "--label" in e.value.hint
    jsonl = write_jsonl(tmp_path / "t.jsonl", [{"id": 1}, {"text": "a"}])
    with pytest.raises(InputError, match=r"columns: 'id', 'text'"):
        describe_table(jsonl, label="target")


def test_formats_and_paths_that_cannot_be_read(tmp_path):
    assert detect_format(tmp_path / "a.b.JSONL") == "jsonl"
    assert detect_format(tmp_path / "a.parquet.gz") is None
    odd = write(tmp_path / "data.txt", "a\n1\n")
    with pytest.raises(InputError, match="table format"):
        describe_table(odd)
    assert describe_table(odd, fmt="CSV")["rows"] == 1
    with pytest.raises(InputError, match="unknown table format 'xlsx'"):
        describe_table(odd, fmt="xlsx")
    with pytest.raises(InputError, match="no such file or folder"):
        describe_table(tmp_path / "missing.csv")


def test_a_folder_is_one_split(tmp_path):
    folder = tmp_path / "train"
    write(folder / "part-0.csv", "a,label\n1,x\n2,y\n")
    write(folder / "sub" / "part-1.csv", 'a,label\n3,"x"\n')
    write(folder / "_SUCCESS", "")
    write(folder / ".part-0.csv.crc", "junk")
    result = describe_table(folder, label="label")
    assert (result["files"], result["rows"]) == (2, 3)
    assert result["label"]["counts"] == {"x": 2, "y": 1}
    with open_table(folder) as table:
        assert [p.name for p in table.files] == ["part-0.csv", "part-1.csv"]


def test_folders_must_hold_one_format_and_one_header(tmp_path):
    write(tmp_path / "mixed" / "a.csv", "a\n1\n")
    write(tmp_path / "mixed" / "b.jsonl", '{"a": 1}\n')
    with pytest.raises(InputError, match="mixes table formats"):
        describe_table(tmp_path / "mixed")
    write(tmp_path / "headers" / "a.csv", "a,b\n1,2\n")
    write(tmp_path / "headers" / "b.csv", "b,a\n1,2\n")
    with pytest.raises(InputError, match="differ"):
        describe_table(tmp_path / "headers")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no table files"):
        describe_table(tmp_path / "empty")


def test_overlap_ignores_csv_quoting_and_column_order(tmp_path):
    rows = [["id", "text"], ["1", "a, b"], ["2", "plain"], ["3", 'q "x"']]
    train = write_rows(tmp_path / "train.csv", rows, quoting=csv.QUOTE_MINIMAL)
    test = write_rows(
        tmp_path / "test.csv",
        [[r[1], r[0]] for r in rows[:3]] + [["new", "4"]],
        quoting=csv.QUOTE_ALL,
    )
    overlap = find_overlaps({"train": train, "test": test})
    assert overlap == {
        "digest": "blake2b-64",
        "rows_hashed": {"train": 3, "test": 3},
        "pairs": [{"splits": ["train", "test"], "rows": 2}],
        "duplicates_within": {"train": 0, "test": 0},
    }


def test_overlap_across_formats_and_number_spellings(tmp_path):
    csv_path = write(tmp_path / "a.csv", "x,y,z\n1.0,true,\n2,false,q\n")
    jsonl_path = write_jsonl(
        tmp_path / "b.jsonl", [{"y": True, "x": 1}, {"x": 2, "y": False, "z": "r"}]
    )
    overlap = find_overlaps({"a": csv_path, "b": jsonl_path})
    assert overlap["pairs"] == [{"splits": ["a", "b"], "rows": 1}]


def test_duplicates_within_and_three_way_pairs(tmp_path):
    a = write(tmp_path / "a.csv", "v\n1\n1\n2\n3\n")
    b = write(tmp_path / "b.csv", "v\n1\n4\n")
    c = write(tmp_path / "c.csv", "v\n1\n2\n2\n2\n")
    overlap = find_overlaps({"a": a, "b": b, "c": c})
    assert overlap["rows_hashed"] == {"a": 4, "b": 2, "c": 4}
    assert overlap["duplicates_within"] == {"a": 1, "b": 0, "c": 2}
    assert overlap["pairs"] == [
        {"splits": ["a", "b"], "rows": 1},
        {"splits": ["a", "c"], "rows": 2},
        {"splits": ["b", "c"], "rows": 1},
    ]


def test_disjoint_splits_list_no_pairs(tmp_path):
    a = write(tmp_path / "a.csv", "v\n1\n")
    b = write(tmp_path / "b.csv", "v\n2\n")
    assert find_overlaps({"a": a, "b": b})["pairs"] == []


def test_describe_splits_warns_about_leakage(tmp_path):
    train = write(tmp_path / "train.csv", "x,y\n1,a\n2,b\n3,a\n4,b\n4,b\n")
    test = write(tmp_path / "test.csv", 'x,y\n"1",a\n2,"b"\n3,a\n9,b\n')
    val = write(tmp_path / "val.csv", "x,y\n9,b\n8,a\n")
    result = describe_splits({"train": train, "test": test, "val": val}, label="y")
    assert set(result["splits"]) == {"train", "test", "val"}
    assert result["splits"]["train"]["label"]["counts"] == {"b": 3, "a": 2}
    assert result["splits"]["test"]["rows"] == 4
    assert result["overlap"]["pairs"] == [
        {"splits": ["train", "test"], "rows": 3},
        {"splits": ["test", "val"], "rows": 1},
    ]
    assert result["warnings"] == [
        "3 rows of test also appear in train: possible leakage",
        "1 row of val also appears in test: possible leakage",
        "train has 1 duplicate row (same content as an earlier row)",
    ]
    assert_json_safe(result)


def test_describe_splits_without_findings_has_no_warnings(tmp_path):
    a = write(tmp_path / "a.jsonl", '{"x": 1}\n')
    b = write(tmp_path / "b.jsonl", '{"x": 2}\n')
    assert describe_splits({"a": a, "b": b})["warnings"] == []


def test_split_mapping_limits(tmp_path):
    with pytest.raises(InputError, match="no splits"):
        find_overlaps({})
    path = write(tmp_path / "a.csv", "v\n1\n")
    too_many = {f"s{i}": path for i in range(splits_module.MAX_SPLITS + 1)}
    with pytest.raises(InputError, match="at most 64"):
        describe_splits(too_many)


def test_row_digest_canonical_form():
    assert row_digest({"a": 1, "b": None}) == row_digest({"a": 1.0})
    assert row_digest({"a": 1, "b": "x"}) == row_digest({"b": "x", "a": 1})
    assert row_digest({"a": [1.0, {"k": 2}]}) == row_digest({"a": [1, {"k": 2.0}]})
    assert row_digest({"a": 1}) != row_digest({"a": "1"})
    assert row_digest({"a": 1}) != row_digest({"b": 1})
    assert row_digest({"a": 0.1}) != row_digest({"a": 0.2})
    assert row_digest({"a": math.nan}) == row_digest({})


def test_digest_table_grows_and_keeps_every_row(tmp_path):
    path = write(tmp_path / "n.csv", "v\n" + "".join(f"{i}\n" for i in range(5000)))
    overlap = find_overlaps({"a": path, "b": path})
    assert overlap["pairs"] == [{"splits": ["a", "b"], "rows": 5000}]
    assert overlap["duplicates_within"] == {"a": 0, "b": 0}


def write_numbered(path, rows):
    with path.open("w", encoding="utf-8") as f:
        f.write("id,label\n")
        f.writelines(f"{i},{'abc'[i % 3]}\n" for i in range(rows))
    return path


def traced_peak(function, *args, **kwargs):
    tracemalloc.start()
    try:
        result = function(*args, **kwargs)
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.slow
def test_big_file_is_described_in_bounded_memory(tmp_path):
    rows = 200_000
    path = write_numbered(tmp_path / "big.csv", rows)
    result, peak = traced_peak(describe_table, path, label="label")
    assert result["rows"] == rows
    assert result["label"]["counts"] == {"a": 66667, "b": 66667, "c": 66666}
    assert peak < 1_000_000 < path.stat().st_size  # streaming: far below the file


@pytest.mark.slow
def test_overlap_memory_is_a_few_dozen_bytes_a_row(tmp_path):
    rows = 50_000
    path = write_numbered(tmp_path / "big.csv", rows)
    overlap, peak = traced_peak(find_overlaps, {"big": path})
    assert overlap["rows_hashed"] == {"big": rows}
    assert peak < 70 * rows  # 16 bytes a slot, under 70 % full, 1.5x while doubling
