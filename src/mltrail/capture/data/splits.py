"""Split distributions and leakage between splits, for tabular and text data.

``describe_table`` streams one table (formats, folders and cell parsing: see
:mod:`mltrail.capture.data.tables`) into its row count, column types, the distribution of
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
from array import array
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.capture.data.columns import (
    MAX_LABEL_CHARS,
    MAX_TRACKED_LABELS,
    NUMERIC,
    PLAIN,
    TOP_LABELS,
    Column,
    LabelCounter,
    canonical,
    column_type,
)
from mltrail.capture.data.tables import open_table
from mltrail.core.rows import MAX_ROWS, RowFile, encode_row_digests
from mltrail.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator, Mapping

    from mltrail.capture.data.tables import Table

__all__ = [
    "MAX_LABEL_CHARS",
    "MAX_SPLITS",
    "MAX_TRACKED_LABELS",
    "TOP_LABELS",
    "describe_splits",
    "describe_table",
    "describe_table_rows",
    "find_overlaps",
    "row_digest",
]

MAX_SPLITS = 64


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
        self.columns = {name: Column() for name in table.columns}
        self.label = None if label is None else LabelCounter(label)

    def add(self, row: dict[str, Any]) -> None:
        self.rows += 1
        columns = self.columns
        for name, value in row.items():
            column = columns.get(name)
            if column is None:
                column = columns[name] = Column()
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
            name: self.table.types.get(name) or column_type(column.kinds)
            for name, column in self.columns.items()
        }
        numeric = {}
        for name, column in self.columns.items():
            if types[name] in NUMERIC:
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
    plain = {
        str(k): c
        for k, v in row.items()
        if (c := v if type(v) in PLAIN else canonical(v)) is not None
    }
    data = _ENCODER.encode(plain).encode()
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
    return _describe(Path(path), label, fmt, keep_rows=False)[0]


def describe_table_rows(
    path: Path, *, label: str | None = None, fmt: str | None = None
) -> tuple[dict[str, Any], bytes | None]:
    """:func:`describe_table`, and the row-digest blob of the table
    (:mod:`mltrail.core.rows`: each row's digest with its file, relative to
    ``path`` when it is a folder, and line), or None beyond ``MAX_ROWS`` rows."""
    return _describe(Path(path), label, fmt, keep_rows=True)


def _describe(
    path: Path, label: str | None, fmt: str | None, *, keep_rows: bool
) -> tuple[dict[str, Any], bytes | None]:
    files: dict[Path | None, tuple[RowFile, _Positions]] = {}
    with open_table(path, fmt) as table:
        summary = _Summary(table, path, label)
        where = table.position
        for row in table.rows:
            summary.add(row)
            if keep_rows and summary.rows <= MAX_ROWS:
                found = files.get(where.file)
                if found is None:
                    name, kept = _relative(where.file or path, path), _Positions()
                    found = files[where.file] = (RowFile(name, where.unit, kept), kept)
                found[1].add(where.line, row_digest(row))
    result = summary.result()
    if not keep_rows or summary.rows > MAX_ROWS:
        return result, None
    return result, encode_row_digests([f for f, _ in files.values()])


class _Positions:
    """``(line, digest)`` pairs in two arrays: 12 bytes a row, not a tuple each."""

    def __init__(self) -> None:
        self.lines, self.digests = array("I"), array("Q")

    def add(self, line: int, digest: int) -> None:
        self.lines.append(line)
        self.digests.append(digest)

    def __len__(self) -> int:
        return len(self.lines)

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return zip(self.lines, self.digests, strict=True)

    def __contains__(self, item: object) -> bool:
        return item in set(self)


def _relative(file: Path, root: Path) -> str:
    if file == root or not root.is_dir():
        return file.name
    return file.relative_to(root).as_posix()


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
