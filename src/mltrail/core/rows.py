"""Row digests of a table and the rows that differ between two of them (pure).

When a dataset is described (``--describe`` / ``--label``), every row's 64-bit
digest (:func:`mltrail.capture.data.splits.row_digest`) is kept with where the row
starts: its file (relative to the dataset path) and line (CSV, TSV, JSONL; a
quoted CSV field may span lines, the first counts) or row number (Parquet). Two
such lists name the rows added, removed or changed between two versions of a
dataset without the old file: 12 bytes a row, stored as one blob.

Blob format ``mltrail-rows/1`` (zlib-compressed as a whole)::

    mltrail-rows/1\\n
    {"digest":"blake2b-64","files":[{"path":"train.csv","unit":"line","rows":3}]}\\n
    then, file after file, ``rows`` records of an 8-byte digest and a 4-byte
    line (both unsigned big-endian).

Rows compare as a multiset per file: a row whose content is in both versions (as
often) is unchanged wherever it moved; surplus rows of the old version are
removed, of the new added; a removed and an added row at the same file and line
are one changed row.

    >>> old = encode_row_digests([RowFile("a.csv", "line", [(2, 11), (3, 12)])])
    >>> new = encode_row_digests([RowFile("a.csv", "line", [(2, 11), (3, 99)])])
    >>> [(c.kind, c.file, c.old_line) for c in diff_rows(old, new).changes]
    [('changed', 'a.csv', 3)]
"""

from __future__ import annotations

import json
import struct
import zlib
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mltrail.core.codec import parse_json
from mltrail.errors import SchemaError

if TYPE_CHECKING:
    from collections.abc import Collection

__all__ = [
    "MAX_ROWS",
    "ROWS_MAGIC",
    "ROWS_MEDIA_TYPE",
    "RowChange",
    "RowFile",
    "RowsDiff",
    "decode_row_digests",
    "diff_rows",
    "encode_row_digests",
]

ROWS_MAGIC = b"mltrail-rows/1\n"
ROWS_MEDIA_TYPE = "application/vnd.mltrail.rows+zlib"
MAX_ROWS = 20_000_000
"""Tables with more rows keep no row digests (240 MB of them before compression)."""

_RECORD = struct.Struct(">QI")
_MAX_HEADER = 1 << 24
_UNITS = ("line", "row")


@dataclass(slots=True)
class RowFile:
    """One file of a table: its path, ``line`` or ``row`` numbering, and its rows
    as ``(line, digest)`` in file order (any sized iterable when encoding)."""

    path: str
    unit: str
    rows: Collection[tuple[int, int]] = field(default_factory=list)


def encode_row_digests(files: list[RowFile]) -> bytes:
    """The blob bytes of the row digests of a table's files."""
    header = {
        "digest": "blake2b-64",
        "files": [{"path": f.path, "unit": f.unit, "rows": len(f.rows)} for f in files],
    }
    parts = [ROWS_MAGIC, json.dumps(header, separators=(",", ":")).encode(), b"\n"]
    for f in files:
        parts.extend(_RECORD.pack(digest, line) for line, digest in f.rows)
    return zlib.compress(b"".join(parts), 6)


def decode_row_digests(data: bytes) -> list[RowFile]:
    """The files and rows of a row-digest blob.

    Raises:
        SchemaError: the bytes are not such a blob (or claim more rows than
            ``MAX_ROWS``).
    """
    raw = _inflate(data)
    if not raw.startswith(ROWS_MAGIC):
        raise SchemaError("not a row-digest blob (no mltrail-rows/1 line)")
    end = raw.find(b"\n", len(ROWS_MAGIC))
    if end < 0:
        raise SchemaError("row-digest blob: no header line")
    header = _header(parse_json(raw[len(ROWS_MAGIC) : end], what="row-digest header"))
    body = memoryview(raw)[end + 1 :]
    if len(body) != sum(count for _, _, count in header) * _RECORD.size:
        raise SchemaError("row-digest blob: its size does not match its header")
    files, offset = [], 0
    for path, unit, count in header:
        size = count * _RECORD.size
        part = body[offset : offset + size]
        files.append(
            RowFile(path, unit, [(n, d) for d, n in _RECORD.iter_unpack(part)])
        )
        offset += size
    return files


def _inflate(data: bytes) -> bytes:
    inflater = zlib.decompressobj()
    limit = MAX_ROWS * _RECORD.size + _MAX_HEADER
    try:
        raw = inflater.decompress(data, limit)
    except zlib.error as e:
        raise SchemaError(f"row-digest blob: not zlib data: {e}") from e
    if inflater.unconsumed_tail or not inflater.eof:
        raise SchemaError("row-digest blob: truncated, or larger than any table kept")
    return raw


def _header(value: Any) -> list[tuple[str, str, int]]:
    files = value.get("files") if isinstance(value, dict) else None
    if not isinstance(files, list):
        raise SchemaError("row-digest header: no files list")
    found = []
    for item in files:
        if not (
            isinstance(item, dict)
            and isinstance(item.get("path"), str)
            and item.get("unit") in _UNITS
            and type(item.get("rows")) is int
            and item["rows"] >= 0
        ):
            raise SchemaError(f"row-digest header: bad file entry {str(item)[:200]}")
        found.append((item["path"], item["unit"], item["rows"]))
    if len({path for path, _, _ in found}) < len(found):
        raise SchemaError("row-digest header: a file is listed twice")
    return found


@dataclass(frozen=True, slots=True)
class RowChange:
    """A row ``added``, ``removed`` or ``changed``: its file and line in each version."""

    kind: str
    file: str
    unit: str
    old_line: int | None
    new_line: int | None

    def where(self) -> str:
        """``train.csv:17`` (the new line, or the old one for a removed row)."""
        line = self.new_line if self.new_line is not None else self.old_line
        return (
            f"{self.file}:{line}" if self.unit == "line" else f"{self.file} row {line}"
        )

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "change": self.kind,
            "file": self.file,
            "unit": self.unit,
            "old_line": self.old_line,
            "new_line": self.new_line,
        }


@dataclass(frozen=True, slots=True)
class RowsDiff:
    """The rows that differ (by file, then line) and how many rows match."""

    changes: tuple[RowChange, ...]
    unchanged: int

    def count(self, kind: str) -> int:
        """How many rows were ``added``, ``removed`` or ``changed``."""
        return sum(c.kind == kind for c in self.changes)

    def to_dict(self) -> dict[str, Any]:
        """Counts by kind, and every differing row."""
        return {
            "added": self.count("added"),
            "removed": self.count("removed"),
            "changed": self.count("changed"),
            "unchanged": self.unchanged,
            "rows": [c.to_dict() for c in self.changes],
        }


def diff_rows(old: bytes, new: bytes) -> RowsDiff:
    """The rows that differ between two row-digest blobs.

    Raises:
        SchemaError: either is not a row-digest blob.
    """
    before = {f.path: f for f in decode_row_digests(old)}
    after = {f.path: f for f in decode_row_digests(new)}
    changes: list[RowChange] = []
    unchanged = 0
    for path in sorted(before.keys() | after.keys()):
        a, b = before.get(path), after.get(path)
        unit = (b or a).unit  # type: ignore[union-attr]
        gone, came, same = _surplus(
            list(a.rows) if a else [], list(b.rows) if b else []
        )
        unchanged += same
        changes.extend(_pair(path, unit, gone, came))
    return RowsDiff(tuple(changes), unchanged)


def _surplus(
    old: list[tuple[int, int]], new: list[tuple[int, int]]
) -> tuple[list[int], list[int], int]:
    """Lines of the rows only ``old`` has, only ``new`` has, and the shared count."""
    have, want = Counter(d for _, d in old), Counter(d for _, d in new)
    shared = have & want
    left = dict(shared)
    gone = [line for line, d in old if not _take(left, d)]
    left = dict(shared)
    came = [line for line, d in new if not _take(left, d)]
    return gone, came, sum(shared.values())


def _take(left: dict[int, int], digest: int) -> bool:
    if left.get(digest, 0) > 0:
        left[digest] -= 1
        return True
    return False


def _pair(path: str, unit: str, gone: list[int], came: list[int]) -> list[RowChange]:
    at = defaultdict(list)
    for line in came:
        at[line].append(line)
    changes = []
    for line in gone:
        if at.get(line):
            at[line].pop()
            changes.append(RowChange("changed", path, unit, line, line))
        else:
            changes.append(RowChange("removed", path, unit, line, None))
    for line, left in at.items():
        changes.extend(RowChange("added", path, unit, None, line) for _ in left)
    changes.sort(key=lambda c: (c.new_line or c.old_line or 0, c.kind))
    return changes
