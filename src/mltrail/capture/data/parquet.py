"""Parquet files as tables: columns and types from the schema, rows in batches.

Needs pyarrow (the ``mltrail[parquet]`` extra), imported on first use, so that
reading CSV or JSONL never loads it. Used by :func:`mltrail.capture.data.tables.open_table`.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from mltrail.capture.data.tables import PARQUET_BATCH_ROWS, PARQUET_EXTRA, normalize
from mltrail.errors import ConfigError, InputError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path
    from types import ModuleType

__all__ = ["read_parquet"]


def _import_parquet() -> tuple[ModuleType, ModuleType]:
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError as e:
        raise ConfigError(
            f"reading Parquet needs pyarrow: {PARQUET_EXTRA}", hint=PARQUET_EXTRA
        ) from e
    return pa, pq


_ARROW_TYPES = (  # pyarrow.types predicates, in the order they are tried
    ("boolean", ("is_boolean",)),
    ("integer", ("is_integer",)),
    ("number", ("is_floating", "is_decimal")),
    ("string", ("is_string", "is_large_string", "is_string_view")),
    ("binary", ("is_binary", "is_large_binary", "is_fixed_size_binary")),
    ("timestamp", ("is_timestamp",)),
    ("date", ("is_date",)),
    ("time", ("is_time",)),
    ("duration", ("is_duration",)),
    ("object", ("is_struct", "is_map")),
    ("array", ("is_list", "is_large_list", "is_fixed_size_list", "is_list_view")),
    ("empty", ("is_null",)),
)


def _arrow_type(pa: ModuleType, arrow: Any) -> str:
    """Our name for an Arrow type (the Arrow name where we have none)."""
    if pa.types.is_dictionary(arrow):
        return _arrow_type(pa, arrow.value_type)
    for name, predicates in _ARROW_TYPES:
        if any(getattr(pa.types, p, lambda _: False)(arrow) for p in predicates):
            return name
    return str(arrow)


def _parquet_rows(parquet: Any, path: Path) -> Iterator[dict[str, Any]]:
    try:
        for batch in parquet.iter_batches(batch_size=PARQUET_BATCH_ROWS):
            for row in batch.to_pylist():
                yield {name: normalize(value) for name, value in row.items()}
    except (OSError, ValueError) as e:  # pyarrow errors derive from both
        raise InputError(f"{path}: cannot read Parquet data: {e}") from e


@contextmanager
def read_parquet(
    path: Path,
) -> Iterator[tuple[list[str], Iterator[dict[str, Any]], dict[str, str]]]:
    """Columns, a stream of rows and the schema's column types of a Parquet file.

    Raises:
        ConfigError: pyarrow is not installed.
        InputError: the file is not Parquet, or its data cannot be read.
    """
    pa, pq = _import_parquet()
    try:
        parquet = pq.ParquetFile(path)
    except (OSError, ValueError) as e:
        raise InputError(f"{path}: not a readable Parquet file: {e}") from e
    try:
        schema = parquet.schema_arrow
        types = {f.name: _arrow_type(pa, f.type) for f in schema}
        yield list(schema.names), _parquet_rows(parquet, path), types
    finally:
        parquet.close()
