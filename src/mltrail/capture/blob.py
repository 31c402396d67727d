"""``Blob``: bytes a collector found too large to inline; the recorder stores them.

A collector puts a ``Blob`` where a body needs a blob reference; the recorder swaps it
for ``{"blob": "sha256:<hex>", "size": n}`` after storing the bytes, so collectors
never touch storage.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["MAX_INLINE_TEXT", "Blob", "spill_text"]

MAX_INLINE_TEXT = 200
"""Text longer than this (in characters), or of several lines, is content, not a value."""


@dataclass(frozen=True, slots=True)
class Blob:
    """Bytes to store content-addressed, with an optional media type."""

    data: bytes
    media_type: str | None = None


def spill_text(value: Any, limit: int = MAX_INLINE_TEXT) -> Any:
    """``value`` with every string of more than ``limit`` characters, or of several
    lines, replaced by a ``Blob`` of its UTF-8 text.

    Parameter values are kept inline so that runs can be queried by them, but a
    prompt or a free-form note in a config file is content: a value inline in a
    body can never be erased, a blob can (``mltrail purge``).
    """
    if isinstance(value, str):
        if len(value) > limit or "\n" in value:
            return Blob(value.encode("utf-8"), "text/plain")
        return value
    if isinstance(value, dict):
        return {k: spill_text(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [spill_text(v, limit) for v in value]
    return value
