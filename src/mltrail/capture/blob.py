"""``Blob``: bytes a collector found too large to inline; the recorder stores them.

A collector puts a ``Blob`` where a body needs a blob reference; the recorder swaps it
for ``{"blob": "sha256:<hex>", "size": n}`` after storing the bytes, so collectors
never touch storage.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Blob"]


@dataclass(frozen=True, slots=True)
class Blob:
    """Bytes to store content-addressed, with an optional media type."""

    data: bytes
    media_type: str | None = None
