"""Property tests for split descriptions and overlaps (mltrail.capture.data.splits).

Small tables are generated, written as CSV (with a random quoting style) or JSONL,
and read back: the row count, label counts and numeric summaries must agree with
what was generated.
"""

import csv
import json
import math
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mltrail.capture.data.splits import describe_table, find_overlaps
from mltrail.capture.data.tables import NULL_TOKENS, parse_cell

SETTINGS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)
MAX_SAFE_INT = 2**53 - 1

TEXT = st.text(
    st.characters(codec="utf-8", exclude_characters="\x00"), min_size=0, max_size=8
)
LABELS = st.one_of(st.none(), st.sampled_from(["cat", "dog", "7", "true"]), TEXT)
NUMBERS = st.one_of(
    st.none(),
    st.integers(min_value=-(2**64), max_value=2**64),
    st.floats(min_value=-1e300, max_value=1e300, allow_nan=False),
)
ROWS = st.lists(st.tuples(LABELS, NUMBERS, TEXT), min_size=0, max_size=40)
QUOTING = st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC])


def cell(value):
    if value is None:
        return ""
    return repr(value) if isinstance(value, float) else value


def write_csv(path, rows, quoting):
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f, quoting=quoting)
        writer.writerow(["label", "x", "text"])
        writer.writerows([cell(v) for v in row] for row in rows)


def write_jsonl(path, rows):
    with path.open("w", encoding="utf-8") as f:
        for label, x, text in rows:
            f.write(json.dumps({"label": label, "x": x, "text": text}) + "\n")


def check_invariants(result, rows):
    assert result["rows"] == len(rows)
    label = result["label"]
    assert sum(label["counts"].values()) + label["other"] + label["nulls"] == len(rows)
    for summary in result["numeric"].values():
        assert summary["count"] + summary["nulls"] == len(rows)
        if summary["count"]:
            assert summary["min"] <= summary["mean"] <= summary["max"]
        assert summary["std"] is None or summary["std"] >= 0
    json.dumps(result, allow_nan=False)
    for summary in result["numeric"].values():
        for key in ("min", "max"):
            value = summary[key]
            assert not isinstance(value, int) or abs(value) <= MAX_SAFE_INT


@SETTINGS
@given(rows=ROWS, quoting=QUOTING)
def test_csv_description_matches_the_generated_rows(rows, quoting):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.csv"
        write_csv(path, rows, quoting)
        result = describe_table(path, label="label")
    check_invariants(result, rows)
    numbers = [x for _, x, _ in rows if x is not None]
    if numbers:
        assert result["numeric"]["x"]["count"] == len(numbers)


@SETTINGS
@given(rows=ROWS)
def test_jsonl_description_matches_the_generated_rows(rows):
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "t.jsonl"
        write_jsonl(path, rows)
        result = describe_table(path, label="label")
    check_invariants(result, rows)
    numbers = [x for _, x, _ in rows if x is not None]
    if numbers:
        assert result["numeric"]["x"]["count"] == len(numbers)
        assert result["label"]["nulls"] == sum(r[0] is None for r in rows)


@SETTINGS
@given(rows=ROWS, quoting=st.tuples(QUOTING, QUOTING))
def test_the_same_rows_overlap_whatever_the_quoting(rows, quoting):
    with tempfile.TemporaryDirectory() as folder:
        first, second = Path(folder) / "a.csv", Path(folder) / "b.csv"
        write_csv(first, rows, quoting[0])
        write_csv(second, list(reversed(rows)), quoting[1])
        overlap = find_overlaps({"a": first, "b": second})
    assert overlap["rows_hashed"] == {"a": len(rows), "b": len(rows)}
    repeated = overlap["duplicates_within"]["a"]
    assert repeated == overlap["duplicates_within"]["b"]
    distinct = len(rows) - repeated
    expected = [{"splits": ["a", "b"], "rows": distinct}] if distinct else []
    assert overlap["pairs"] == expected


@SETTINGS
@given(st.integers())
def test_integer_cells_parse_to_the_integer(number):
    text = str(number)
    if len(text.lstrip("-")) <= 300:
        assert parse_cell(text) == number


@SETTINGS
@given(st.floats(allow_nan=False, allow_infinity=False))
def test_float_cells_round_trip(number):
    assert parse_cell(repr(number)) == number


@SETTINGS
@given(TEXT)
def test_parsed_cells_are_json_values(text):
    value = parse_cell(text)
    if text.strip() in NULL_TOKENS:
        assert value is None
    assert value is None or isinstance(value, (bool, int, float, str))
    assert not isinstance(value, float) or math.isfinite(value)
