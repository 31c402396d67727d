"""What a column holds, and how often each label appears, fed one value at a time.

Column types: a column whose non-null values are all of one kind (``integer``,
``number``, ``boolean``, ``string``, ``object``, ``array``) has that type; integers
with numbers are ``number``; no values is ``empty``; anything else is ``mixed``.
Numeric columns get ``count``, ``nulls``, ``min``, ``max``, ``mean`` and sample
``std`` (n - 1), by Welford's stable update. Labels are keyed by their text and
counted exactly for up to :data:`MAX_TRACKED_LABELS` distinct values (see
:mod:`mltrail.capture.data.splits`). :func:`canonical` gives the plain JSON form of a
parsed value that row digests are taken of.
"""

from __future__ import annotations

import json
import math
from datetime import date, time, timedelta
from typing import Any

__all__ = [
    "MAX_LABEL_CHARS",
    "MAX_TRACKED_LABELS",
    "NUMERIC",
    "PLAIN",
    "TOP_LABELS",
    "Column",
    "LabelCounter",
    "canonical",
    "column_type",
]

TOP_LABELS = 1000
MAX_TRACKED_LABELS = 100_000
MAX_LABEL_CHARS = 200
_MAX_SAFE_INT = 2**53 - 1
NUMERIC = frozenset({"integer", "number"})
_KINDS: dict[type, str] = {  # exact types first: a bool is an int too
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    dict: "object",
    list: "array",
    tuple: "array",
}
PLAIN = frozenset({bool, int, str})  # types whose values are their own canonical form


def _kind(value: Any) -> str:
    kind = _KINDS.get(type(value))
    if kind is None:  # a subclass of one of them
        kind = next((k for t, k in _KINDS.items() if isinstance(value, t)), None)
    return kind or type(value).__name__


def column_type(kinds: set[str]) -> str:
    if not kinds:
        return "empty"
    if len(kinds) == 1:
        return next(iter(kinds))
    return "number" if kinds == NUMERIC else "mixed"


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


class Column:
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
        if kind not in NUMERIC:
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


def canonical(value: Any) -> Any:
    """A parsed value as plain JSON, equal for equal values (see module docstring)."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        return _canonical_float(value)
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [canonical(v) for v in value]
    return next((f(value) for t, f in _SCALARS if isinstance(value, t)), str(value))


def _label_key(value: Any) -> str:
    if not isinstance(value, str):
        value = json.dumps(canonical(value), sort_keys=True)
    return value if len(value) <= MAX_LABEL_CHARS else value[:MAX_LABEL_CHARS] + "…"


class LabelCounter:
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
