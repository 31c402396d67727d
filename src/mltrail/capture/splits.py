"""Split distributions and leakage between splits, for tabular and text data.

``describe_table`` streams one table (formats, folders and cell parsing: see
:mod:`mltrail.capture.tables`) into its row count, column types, the distribution of
a declared label column and numeric summaries. ``find_overlaps`` hashes every row of
every split and counts rows shared between splits or repeated within one;
``describe_splits`` does both in one pass per split and words the findings as
warnings. Results are plain JSON: no NaN or infinity, no integer beyond 2**53 - 1.

Column types: a column whose non-null values are all of one kind (``integer``,
``number``, ``boolean``, ``string``, ``object``, ``array``) has that type; integers
with numbers are ``number``; no values is ``empty``; anything else is ``mixed``.
Parquet columns keep their schema's type. Numeric columns get ``count``, ``nulls``,
``min``, ``max``, ``mean`` and sample ``std`` (n - 1), by Welford's stable update.

Labels are keyed by their text (``"1"``, ``"true"``, JSON for nested values; cut to
``MAX_LABEL_CHARS``) and counted exactly for up to ``MAX_TRACKED_LABELS`` distinct
values (later new values go to ``other``, ``exact`` turns false). The ``TOP_LABELS``
most frequent are listed, the rest summed into ``other``; nulls are counted apart:
``sum(counts) + other + nulls == rows``.

Row identity: a row is the JSON object of its non-null values, keys sorted, whole
floats up to 2**53 written as integers; so quoting, column order, ``1.0`` for ``1``
or a missing key for a null do not matter, column names do. Its digest is 8 bytes of
BLAKE2b (person ``mltrail.row.v1``): a false match among n rows has probability
about n**2 / 2**65 (3e-8 for a million). Digests sit in an open-addressing table of
16 bytes a slot, under 70 % full: 23 to 46 MB per million distinct rows (up to
69 MB for a moment while the table doubles).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
from array import array
from collections import Counter
from datetime import date, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.capture.tables import open_table
from mltrail.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from mltrail.capture.tables import Table

__all__ = [
    "MAX_LABEL_CHARS",
    "MAX_SPLITS",
    "MAX_TRACKED_LABELS",
    "TOP_LABELS",
    "describe_splits",
    "describe_table",
    "find_overlaps",
    "row_digest",
]

TOP_LABELS = 1000
MAX_TRACKED_LABELS = 100_000
MAX_LABEL_CHARS = 200
MAX_SPLITS = 64
_MAX_SAFE_INT = 2**53 - 1
_NUMERIC = frozenset({"integer", "number"})
_KINDS: dict[type, str] = {  # exact types first: a bool is an int too
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
    tuple: "array",
}
_PLAIN = frozenset({bool, int, str})  # types whose values are their own canonical form


def _kind(value: Any) -> str:
    kind = _KINDS.get(type(value))
    if kind is None:  # a subclass of one of them
        kind = next((k for t, k in _KINDS.items() if isinstance(value, t)), None)
    return kind or type(value).__name__


def _column_type(kinds: set[str]) -> str:
    if not kinds:
        return "empty"
    if len(kinds) == 1:
        return next(iter(kinds))
    return "number" if kinds == _NUMERIC else "mixed"


def _json_number(value: float | None) -> float | None:
    """``value`` as JSON allows: finite, integers beyond 2**53 - 1 as floats."""
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, int) and abs(value) > _MAX_SAFE_INT:
        try:
            value = float(value)
        except OverflowError:
            return None
    return value if math.isfinite(value) else None


class _Column:
    """One column so far: value kinds, non-null count, numeric moments (Welford)."""

    def __init__(self) -> None:
        self.kinds: set[str] = set()
        self.values = self.count = 0
        self.mean = self.m2 = 0.0
        self.low: float | None = None
        self.high: float | None = None

    def add(self, value: Any) -> None:
        kind = _kind(value)
        self.kinds.add(kind)
        self.values += 1
        if kind not in _NUMERIC:
            return
        if self.low is None or value < self.low:
            self.low = value
        if self.high is None or value > self.high:
            self.high = value
        try:
            x = float(value)
        except OverflowError:
            x = math.copysign(math.inf, value)
        self.count += 1
        delta = x - self.mean
        self.mean += delta / self.count
        self.m2 += delta * (x - self.mean)

    def numeric(self, nulls: int) -> dict[str, Any]:
        low, high = _json_number(self.low), _json_number(self.high)
        mean = _json_number(self.mean) if self.count else None
        if mean is not None and low is not None and high is not None:
            mean = min(max(mean, low), high)  # rounding never leaves [min, max]
        variance = max(self.m2, 0.0) / (self.count - 1) if self.count > 1 else None
        std = None if variance is None else _json_number(math.sqrt(variance))
        extremes = {"min": low, "max": high, "mean": mean, "std": std}
        return {"count": self.count, "nulls": nulls} | extremes


_SCALARS: tuple[tuple[type | tuple[type, ...], Any], ...] = (
    (bytes, bytes.hex),
    ((date, time), lambda v: v.isoformat()),
    (timedelta, timedelta.total_seconds),
)


def _canonical_float(value: float) -> float | int | None:
    if not math.isfinite(value):
        return None
    return int(value) if value.is_integer() and abs(value) <= _MAX_SAFE_INT else value


def _canonical(value: Any) -> Any:
    """A parsed value as plain JSON, equal for equal values (see module docstring)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return _canonical_float(value)
    if isinstance(value, dict):
        return {str(k): _canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_canonical(v) for v in value]
    return next((f(value) for t, f in _SCALARS if isinstance(value, t)), str(value))


def _label_key(value: Any) -> str:
    if not isinstance(value, str):
        value = json.dumps(_canonical(value), sort_keys=True)
    return value if len(value) <= MAX_LABEL_CHARS else value[:MAX_LABEL_CHARS] + "…"


class _LabelCounter:
    """Exact counts of a label column's values, up to ``MAX_TRACKED_LABELS``."""

    def __init__(self, column: str) -> None:
        self.column = column
        self.counts: dict[str, int] = {}
        self.untracked = 0
        self.nulls = 0

    def add(self, value: Any) -> None:
        if value is None:
            self.nulls += 1
            return
        key = _label_key(value)
        if key in self.counts:
            self.counts[key] += 1
        elif len(self.counts) < MAX_TRACKED_LABELS:
            self.counts[key] = 1
        else:
            self.untracked += 1

    def result(self) -> dict[str, Any]:
        ranked = sorted(self.counts.items(), key=lambda item: (-item[1], item[0]))
        rest = sum(n for _, n in ranked[TOP_LABELS:])
        return {
            "column": self.column,
            "counts": dict(ranked[:TOP_LABELS]),
            "distinct": len(self.counts),
            "other": rest + self.untracked,
            "nulls": self.nulls,
            "exact": self.untracked == 0,
        }


def _unknown_label(label: str, path: Path, columns: Iterable[str]) -> InputError:
    names = list(columns)
    shown = ", ".join(repr(n) for n in names[:50]) + (" …" if len(names) > 50 else "")
    return InputError(
        f"no label column {label!r} in {path}; columns: {shown}",
        hint="pass --label with one of the columns listed",
    )


class _Summary:
    """Row count, columns and label distribution of one table, fed row by row."""

    def __init__(self, table: Table, path: Path, label: str | None) -> None:
        if label is not None and table.columns and label not in table.columns:
            raise _unknown_label(label, path, table.columns)
        self.table, self.path, self.rows = table, path, 0
        self.columns = {name: _Column() for name in table.columns}
        self.label = None if label is None else _LabelCounter(label)

    def add(self, row: dict[str, Any]) -> None:
        self.rows += 1
        columns = self.columns
        for name, value in row.items():
            column = columns.get(name)
            if column is None:
                column = columns[name] = _Column()
            if value is not None:
                column.add(value)
        if self.label is not None:
            self.label.add(row.get(self.label.column))

    def _label(self) -> dict[str, Any] | None:
        if self.label is None:
            return None
        if self.columns and self.label.column not in self.columns:
            raise _unknown_label(self.label.column, self.path, self.columns)
        return self.label.result()

    def result(self) -> dict[str, Any]:
        types = {
            name: self.table.types.get(name) or _column_type(column.kinds)
            for name, column in self.columns.items()
        }
        numeric = {}
        for name, column in self.columns.items():
            if types[name] in _NUMERIC:
                numeric[name] = column.numeric(self.rows - column.values)
        return {
            "format": self.table.format,
            "files": len(self.table.files),
            "rows": self.rows,
            "columns": [
                {"name": name, "type": types[name], "nulls": self.rows - column.values}
                for name, column in self.columns.items()
            ],
            "label": self._label(),
            "numeric": numeric,
        }


_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def row_digest(row: Mapping[str, Any]) -> int:
    """The 64-bit BLAKE2b digest of a row's canonical form (never 0)."""
    canonical = {
        str(k): c
        for k, v in row.items()
        if (c := v if type(v) in _PLAIN else _canonical(v)) is not None
    }
    data = _ENCODER.encode(canonical).encode()
    digest = hashlib.blake2b(data, digest_size=8, person=b"mltrail.row.v1")
    return int.from_bytes(digest.digest(), "big") or 1


class _DigestTable:
    """Open-addressing set of 64-bit row digests, each with a bit mask of splits."""

    def __init__(self) -> None:
        self._keys = array("Q", [0]) * 1024
        self._masks = array("Q", [0]) * 1024
        self._used = 0

    def add(self, key: int, bit: int) -> bool:
        """Record ``key`` in the split ``bit``; true if that split already had it."""
        keys, slots = self._keys, len(self._keys) - 1
        slot = key & slots
        while keys[slot] not in (0, key):
            slot = (slot + 1) & slots
        if keys[slot] == key:
            seen = self._masks[slot]
            self._masks[slot] = seen | bit
            return bool(seen & bit)
        keys[slot], self._masks[slot] = key, bit
        self._used += 1
        if self._used * 10 > len(keys) * 7:
            self._grow()
        return False

    def _grow(self) -> None:
        old = zip(self._keys, self._masks, strict=True)
        self._keys = array("Q", [0]) * (len(self._keys) * 2)
        self._masks = array("Q", [0]) * len(self._keys)
        self._used = 0
        for key, mask in old:
            if key:
                self.add(key, mask)

    def shared(self) -> Counter[tuple[int, int]]:
        """How many distinct digests each pair of splits (by bit index) shares."""
        pairs: Counter[tuple[int, int]] = Counter()
        for mask in self._masks:
            if mask & (mask - 1):
                bits = [i for i in range(mask.bit_length()) if mask >> i & 1]
                pairs.update(itertools.combinations(bits, 2))
        return pairs


def _split_names(splits: Mapping[str, Path]) -> list[str]:
    if not splits:
        raise InputError("no splits given", hint="name at least one split and its file")
    if len(splits) > MAX_SPLITS:
        raise InputError(f"{len(splits)} splits given, at most {MAX_SPLITS} supported")
    return list(splits)


def _scan(
    splits: Mapping[str, Path], fmt: str | None, label: str | None, *, describe: bool
) -> tuple[dict[str, Any], dict[str, Any]]:
    """One pass over every split: descriptions (if asked) and the overlap report."""
    names, digests = _split_names(splits), _DigestTable()
    described, hashed, repeated = {}, dict.fromkeys(names, 0), dict.fromkeys(names, 0)
    for index, name in enumerate(names):
        path = Path(splits[name])
        with open_table(path, fmt) as table:
            summary = _Summary(table, path, label) if describe else None
            for row in table.rows:
                hashed[name] += 1
                repeated[name] += digests.add(row_digest(row), 1 << index)
                if summary is not None:
                    summary.add(row)
        if summary is not None:
            described[name] = summary.result()
    pairs = digests.shared()
    overlap = {
        "digest": "blake2b-64",
        "rows_hashed": hashed,
        "pairs": [
            {"splits": [names[i], names[j]], "rows": pairs[i, j]}
            for i, j in itertools.combinations(range(len(names)), 2)
            if pairs[i, j]
        ],
        "duplicates_within": repeated,
    }
    return described, overlap


def describe_table(
    path: Path, *, label: str | None = None, fmt: str | None = None
) -> dict[str, Any]:
    """Rows, column types, label distribution and numeric summaries of one table.

    Args:
        path: a table file, or a folder of table files of one format.
        label: the label column whose value distribution to report.
        fmt: ``csv``, ``tsv``, ``jsonl`` or ``parquet``; by default from file names.

    Returns:
        ``{"format", "files", "rows", "columns": [{"name", "type", "nulls"}],
        "label": {"column", "counts", "distinct", "other", "nulls", "exact"} | None,
        "numeric": {column: {"count", "nulls", "min", "max", "mean", "std"}}}``.

    Raises:
        InputError: a missing, malformed or unknown-format table; a label column the
            table lacks (the message lists the columns).
        ConfigError: Parquet without pyarrow (``pip install 'mltrail[parquet]'``).
        CaptureError: a file cannot be read.
    """
    path = Path(path)
    with open_table(path, fmt) as table:
        summary = _Summary(table, path, label)
        for row in table.rows:
            summary.add(row)
    return summary.result()


def find_overlaps(
    splits: Mapping[str, Path], *, fmt: str | None = None
) -> dict[str, Any]:
    """Rows shared between splits and repeated within them, by row digest.

    Returns:
        ``{"digest", "rows_hashed": {split: n}, "pairs": [{"splits": [a, b],
        "rows": n}], "duplicates_within": {split: n}}``; a pair (in the order the
        splits are given) is listed only when it shares at least one distinct row.

    Raises:
        InputError: no splits, more than ``MAX_SPLITS``, or a bad table.
    """
    return _scan(splits, fmt, None, describe=False)[1]


def _plural(n: int, one: str, many: str) -> str:
    return f"{n} {one if n == 1 else many}"


def _warnings(overlap: dict[str, Any]) -> list[str]:
    warnings = []
    for pair in overlap["pairs"]:
        first, second = pair["splits"]
        rows = _plural(pair["rows"], "row", "rows")
        verb = "appears" if pair["rows"] == 1 else "appear"
        warnings.append(f"{rows} of {second} also {verb} in {first}: possible leakage")
    for name, count in overlap["duplicates_within"].items():
        if count:
            rows = _plural(count, "duplicate row", "duplicate rows")
            warnings.append(f"{name} has {rows} (same content as an earlier row)")
    return warnings


def describe_splits(
    splits: Mapping[str, Path], *, label: str | None = None, fmt: str | None = None
) -> dict[str, Any]:
    """``describe_table`` for every split plus ``find_overlaps``, in one pass each.

    Returns:
        ``{"splits": {name: description}, "overlap": find_overlaps result,
        "warnings": [...]}``, e.g. ``"3 rows of test also appear in train: possible
        leakage"`` and ``"train has 2 duplicate rows (same content as an earlier row)"``.

    Raises:
        InputError: as :func:`describe_table` and :func:`find_overlaps`.
    """
    described, overlap = _scan(splits, fmt, label, describe=True)
    return {"splits": described, "overlap": overlap, "warnings": _warnings(overlap)}
