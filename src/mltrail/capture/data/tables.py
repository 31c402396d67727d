"""Streaming readers for tabular and text data: CSV, TSV, JSONL and Parquet.

``open_table(path)`` yields a :class:`Table` whose ``rows`` are dicts of column name
to a parsed value; a missing name or ``None`` means null. Rows are read one at a
time (Parquet in batches of ``PARQUET_BATCH_ROWS``), so memory is bounded by the
longest row, never by the file. A path is a file or a folder of files of one format,
read one after another as one table.

Formats come from the file name (``.csv``, ``.tsv``/``.tab``, ``.jsonl``/``.ndjson``,
``.parquet``/``.pq``; text formats may end in ``.gz``) or are given. Gzip is
recognised by its magic bytes. Text is UTF-8 (a BOM is dropped).

CSV and TSV (the ``excel`` and ``excel-tab`` dialects: ``"`` quotes, quoted fields may
hold delimiters and newlines): the first record is the header (names stripped,
duplicates refused); blank lines are skipped; a short row leaves its last columns
null; a row longer than the header is an error. Each cell, stripped of surrounding
whitespace, is parsed by :func:`parse_cell` (the first rule that matches wins):

==================================  ==========  ==============================
cell                                value       kind
==================================  ==========  ==============================
``""``, ``NA``, ``N/A``, ``n/a``,   ``None``    null (case as listed)
``NaN``, ``nan``, ``null``,
``NULL``, ``None``
``true``/``false``, any case        ``bool``    boolean
``[+-]?[0-9]+``, <= 300 characters  ``int``     integer (``007`` is 7)
decimal or exponent notation        ``float``   number, if finite
anything else (``inf``, ``1_000``)  ``str``     string
==================================  ==========  ==============================

JSONL: one JSON object per line; blank lines are skipped; ``NaN``/``Infinity`` and
anything that is not an object are errors naming the file and line. JSON values keep
their JSON types (a JSON string ``"12"`` stays a string).

Parquet (optional extra ``mltrail[parquet]``, pyarrow imported lazily): columns and
types come from the schema; values are pyarrow's Python values.

Everywhere, a non-finite float (NaN, +-inf) is null and a ``Decimal`` is a float.
"""

from __future__ import annotations

import csv
import gzip
import json
import math
import re
import zlib
from contextlib import contextmanager
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from mltrail.errors import CaptureError, InputError, MltrailError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path
    from typing import IO

__all__ = [
    "FORMATS",
    "NULL_TOKENS",
    "PARQUET_BATCH_ROWS",
    "PARQUET_EXTRA",
    "Position",
    "Table",
    "detect_format",
    "normalize",
    "open_table",
    "parse_cell",
    "table_files",
]

FORMATS = ("csv", "tsv", "jsonl", "parquet")
NULL_TOKENS = frozenset({"", "NA", "N/A", "n/a", "NaN", "nan", "null", "NULL", "None"})
PARQUET_BATCH_ROWS = 4096
PARQUET_EXTRA = "pip install 'mltrail[parquet]'"

_SUFFIXES = {
    ".csv": "csv",
    ".tsv": "tsv",
    ".tab": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_ALIASES = {"ndjson": "jsonl", "tab": "tsv", "pq": "parquet"}
_GZIP_MAGIC = b"\x1f\x8b"
_MAX_INT_DIGITS = 300  # longer digit runs do not fit a float: parsed as numbers
_SCALAR = re.compile(
    r"(?P<integer>[+-]?[0-9]+)"
    r"|(?P<number>[+-]?(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?)"
    r"|(?P<boolean>(?i:true|false))"
)
_READ_ERRORS = (csv.Error, UnicodeDecodeError, EOFError, zlib.error, OSError)


@dataclass
class Position:
    """Where the row last read starts: its file and line (Parquet: row number)."""

    file: Path | None = None
    line: int = 0
    unit: str = "line"


@dataclass
class Table:
    """One table being read: its format, files, known columns and a row stream.

    ``columns`` is the header (CSV, TSV) or schema (Parquet) of the first file; JSONL
    has none up front, its columns are the keys met in ``rows``. ``types`` holds the
    types a schema declares (Parquet only).
    """

    format: str
    files: list[Path]
    columns: list[str]
    types: dict[str, str]
    rows: Iterator[dict[str, Any]]
    position: Position = field(default_factory=Position)


@dataclass
class _FileTable:
    columns: list[str]
    rows: Iterator[dict[str, Any]]
    types: dict[str, str] = field(default_factory=dict)


def normalize(value: Any) -> Any:
    """A value as the summaries and row hashes see it: non-finite floats are null."""
    if isinstance(value, Decimal):
        value = float(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def parse_cell(text: str) -> Any:
    """Parse one CSV/TSV cell by the rules in the module docstring."""
    cell = text.strip()
    if cell in NULL_TOKENS:
        return None
    match = _SCALAR.fullmatch(cell)
    if match is None:
        return cell
    if match.lastgroup == "boolean":
        return cell.lower() == "true"
    if match.lastgroup == "integer" and len(cell) <= _MAX_INT_DIGITS:
        return int(cell)
    number = float(cell)
    return number if math.isfinite(number) else cell


def _check_format(fmt: str) -> str:
    name = _ALIASES.get(fmt.lower(), fmt.lower())
    if name not in FORMATS:
        raise InputError(
            f"unknown table format {fmt!r}", hint=f"use one of: {', '.join(FORMATS)}"
        )
    return name


def detect_format(path: Path) -> str | None:
    """The format a file name implies (``None`` if it implies none)."""
    suffixes = [s.lower() for s in path.suffixes]
    gzipped = bool(suffixes) and suffixes[-1] == ".gz"
    if gzipped:
        suffixes.pop()
    fmt = _SUFFIXES.get(suffixes[-1]) if suffixes else None
    return None if gzipped and fmt == "parquet" else fmt


def _visible_files(folder: Path) -> list[Path]:
    """Files under ``folder``, sorted, skipping names starting with ``.`` or ``_``."""
    found = []
    for path in sorted(folder.rglob("*")):
        parts = path.relative_to(folder).parts
        if path.is_file() and not any(p.startswith((".", "_")) for p in parts):
            found.append(path)
    return found


def _format_of(path: Path, fmt: str | None) -> str:
    found = detect_format(path) if fmt is None else _check_format(fmt)
    if found is None:
        raise InputError(
            f"cannot tell the table format of {path} from its name",
            hint=f"name it .csv, .tsv, .jsonl or .parquet, or give the format "
            f"({', '.join(FORMATS)})",
        )
    return found


def table_files(path: Path, fmt: str | None = None) -> tuple[str, list[Path]]:
    """The format and files of a table: ``path`` itself, or a folder's files.

    A folder is one table made of its files (recursively, sorted by path, names
    starting with ``.`` or ``_`` skipped, as Spark's ``_SUCCESS``), which must all be
    of one format: ``fmt`` if given, else each implied by its name.

    Raises:
        InputError: no such path, an empty folder, an unknown or mixed format.
    """
    if path.is_file():
        return _format_of(path, fmt), [path]
    if not path.is_dir():
        raise InputError(f"no such file or folder: {path}")
    files = _visible_files(path)
    if not files:
        raise InputError(f"no table files in folder {path}")
    formats = {file: _format_of(file, fmt) for file in files}
    first = formats[files[0]]
    for file, found in formats.items():
        if found != first:
            raise InputError(
                f"{path} mixes table formats: {files[0].name} is {first}, "
                f"{file.relative_to(path)} is {found}",
                hint="a folder given as one split must hold files of one format",
            )
    return first, files


def _read_error(error: Exception, path: Path, line: int) -> MltrailError:
    where = f"{path}: line {line}"
    if isinstance(error, csv.Error):
        return InputError(f"{where}: {error}", hint="check the quoting of that row")
    if isinstance(error, UnicodeDecodeError):
        return InputError(f"{path}: not UTF-8 text", hint="re-encode it as UTF-8")
    if isinstance(error, (EOFError, zlib.error, gzip.BadGzipFile)):
        return InputError(f"{path}: truncated or corrupt gzip data: {error}")
    assert isinstance(error, OSError)
    return CaptureError(f"cannot read {path}: {error.strerror or error}")


@contextmanager
def _open_text(path: Path, newline: str | None) -> Iterator[IO[str]]:
    try:
        with path.open("rb") as probe:
            gzipped = probe.read(2) == _GZIP_MAGIC
        opener = gzip.open if gzipped else open
        stream = opener(path, "rt", encoding="utf-8-sig", newline=newline)
    except OSError as e:
        raise _read_error(e, path, 0) from e
    with stream:
        yield stream


def _guarded(
    items: Iterator[Any], path: Path, line: Callable[[], int]
) -> Iterator[Any]:
    """``items``, with read and decode failures turned into mltrail errors."""
    try:
        yield from items
    except _READ_ERRORS as e:
        raise _read_error(e, path, line()) from e


def _header(record: list[str] | None, path: Path) -> list[str]:
    columns = [] if record is None else [name.strip() for name in record]
    duplicates = sorted({name for name in columns if columns.count(name) > 1})
    if duplicates:
        raise InputError(f"{path}: duplicate column names in the header: {duplicates}")
    return columns


def _delimited_rows(
    records: Iterator[list[str]],
    columns: list[str],
    path: Path,
    line: Callable[[], int],
    position: Position,
) -> Iterator[dict[str, Any]]:
    width = len(columns)
    before = line()
    for record in records:
        start, before = before + 1, line()
        if not record:
            continue
        position.line = start
        if len(record) > width:
            raise InputError(
                f"{path}: line {line()}: {len(record)} fields, the header has {width}",
                hint="check the delimiter and the quoting of that row",
            )
        yield {
            name: parse_cell(cell) for name, cell in zip(columns, record, strict=False)
        }


@contextmanager
def _read_delimited(
    path: Path, dialect: str, position: Position
) -> Iterator[_FileTable]:
    position.file, position.unit = path, "line"
    with _open_text(path, newline="") as stream:
        reader = csv.reader(stream, dialect=dialect)
        records = _guarded(reader, path, lambda: reader.line_num)
        first = next(records, None)
        while first == []:
            first = next(records, None)
        columns = _header(first, path)
        yield _FileTable(
            columns,
            _delimited_rows(records, columns, path, lambda: reader.line_num, position),
        )


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _json_object(line: str, path: Path, number: int) -> dict[str, Any]:
    try:
        value = json.loads(line, parse_constant=_reject_constant)
    except ValueError as e:  # JSONDecodeError, too-long ints, NaN/Infinity
        raise InputError(f"{path}: line {number}: not valid JSON: {e}") from e
    if not isinstance(value, dict):
        raise InputError(
            f"{path}: line {number}: expected a JSON object, got {type(value).__name__}",
            hint="JSONL holds one object per line",
        )
    return {name: normalize(item) for name, item in value.items()}


def _jsonl_rows(
    stream: IO[str], path: Path, position: Position
) -> Iterator[dict[str, Any]]:
    number = 0
    try:
        for number, line in enumerate(stream, 1):
            if line.strip():
                position.line = number
                yield _json_object(line, path, number)
    except _READ_ERRORS as e:
        raise _read_error(e, path, number + 1) from e


@contextmanager
def _read_jsonl(path: Path, position: Position) -> Iterator[_FileTable]:
    position.file, position.unit = path, "line"
    with _open_text(path, newline=None) as stream:
        yield _FileTable([], _jsonl_rows(stream, path, position))


def _numbered(rows: Iterator[dict[str, Any]], position: Position) -> Iterator[Any]:
    for number, row in enumerate(rows, 1):
        position.line = number
        yield row


@contextmanager
def _read_parquet(path: Path, position: Position) -> Iterator[_FileTable]:
    from mltrail.capture.data.parquet import read_parquet  # pyarrow: only for Parquet

    position.file, position.unit = path, "row"
    with read_parquet(path) as (columns, rows, types):
        yield _FileTable(columns, _numbered(rows, position), types)


_READERS: dict[str, Callable[[Path, Position], Any]] = {
    "csv": lambda path, position: _read_delimited(path, "excel", position),
    "tsv": lambda path, position: _read_delimited(path, "excel-tab", position),
    "jsonl": _read_jsonl,
    "parquet": _read_parquet,
}


def _more_files(
    first: _FileTable, files: list[Path], fmt: str, position: Position
) -> Iterator[dict[str, Any]]:
    yield from first.rows
    for path in files:
        with _READERS[fmt](path, position) as part:
            if first.columns and part.columns and part.columns != first.columns:
                raise InputError(
                    f"{path}: columns {part.columns} differ from {first.columns}",
                    hint="the files of a folder split must share one header",
                )
            yield from part.rows


@contextmanager
def open_table(path: Path, fmt: str | None = None) -> Iterator[Table]:
    """Open a table file or folder for one streaming pass over its rows.

    Raises:
        InputError: see :func:`table_files`; a malformed file (the message names the
            file and, for text, the line).
        ConfigError: Parquet without pyarrow installed.
        CaptureError: a file cannot be read.
    """
    found, files = table_files(path, fmt)
    position = Position()
    with _READERS[found](files[0], position) as first:
        rows = _more_files(first, files[1:], found, position)
        try:
            yield Table(found, files, first.columns, first.types, rows, position)
        finally:
            rows.close()
