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
