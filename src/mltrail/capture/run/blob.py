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
    """Bytes to store content-addressed, with an optional media type.

    ``text`` marks what a person or a program wrote (logs, diffs, scripts, config
    files): the recorder masks secrets in it (``capture.guard``); ``name`` (a file
    name) tells the secret detector what syntax to expect; ``scanned`` says the
    detector has already been through it (a log, masked as it streamed).
    Structural blobs mltrail writes itself (manifests, fingerprints, metric
    points) are stored as they are.
    """

    data: bytes
    media_type: str | None = None
    text: bool = False
    name: str = ""
    scanned: bool = False


def spill_text(value: Any, limit: int = MAX_INLINE_TEXT) -> Any:
    """``value`` with every string of more than ``limit`` characters, or of several
    lines, replaced by a ``Blob`` of its UTF-8 text.

    Parameter values are kept inline so that runs can be queried by them, but a
    prompt or a free-form note in a config file is content: a value inline in a
    body can never be erased, a blob can (``mltrail purge``).
    """
    if isinstance(value, str):
        if len(value) > limit or "\n" in value:
            return Blob(value.encode("utf-8"), "text/plain", text=True)
        return value
    if isinstance(value, dict):
        return {k: spill_text(v, limit) for k, v in value.items()}
    if isinstance(value, list):
        return [spill_text(v, limit) for v in value]
    return value
