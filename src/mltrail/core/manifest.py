"""Dataset manifests: every file's path, size and SHA-256, and the dataset id over them.

A manifest is one line per file, sorted by path (code-point order, the order of the
UTF-8 bytes), each line the RFC 8785 canonical JSON object
``{"path": "train/a.csv", "sha256": "<hex>", "size": 1234}`` followed by ``\\n``.
The dataset id is the RFC 9162 Merkle root over those lines (leaf i hashes line i
without its newline), so two copies of the same files get the same id wherever they
live, and one file's inclusion in a dataset can be proved with a short proof::

    >>> entries = [FileEntry("b.csv", 3, "ab" * 32), FileEntry("a.csv", 0, "cd" * 32)]
    >>> manifest = compute_manifest(entries)
    >>> manifest.entries[0].path, manifest.file_count, manifest.total_bytes
    ('a.csv', 2, 3)
    >>> parse_manifest(manifest.data) == manifest
    True
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from itertools import pairwise
from typing import TYPE_CHECKING

from mltrail.core.canonical import canonical_bytes
from mltrail.core.codec import parse_json
from mltrail.core.merkle import compute_root, hash_leaf
from mltrail.errors import SchemaError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "MANIFEST_MEDIA_TYPE",
    "DatasetManifest",
    "FileEntry",
    "compute_manifest",
    "parse_manifest",
]

MANIFEST_MEDIA_TYPE = "application/x-mltrail-manifest+jsonl"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_SIZE = 2**53 - 1


@dataclass(frozen=True, slots=True)
class FileEntry:
    """One file of a dataset: path relative to the dataset root (``/``-separated)."""

    path: str
    size: int
    sha256: str

    def __post_init__(self) -> None:
        if not self.path or self.path.startswith("/") or "\\" in self.path:
            raise SchemaError(f"manifest path must be relative with '/': {self.path!r}")
        if ".." in self.path.split("/") or "" in self.path.split("/"):
            raise SchemaError(f"manifest path is not normalised: {self.path!r}")
        if not 0 <= self.size <= _MAX_SIZE or isinstance(self.size, bool):
            raise SchemaError(f"bad size for {self.path!r}: {self.size!r}")
        if not _HEX64.fullmatch(self.sha256):
            raise SchemaError(f"bad sha256 for {self.path!r}: {self.sha256!r}")

    def to_line(self) -> bytes:
        """The canonical JSON line (without newline) hashed as this file's leaf."""
        return canonical_bytes(
            {"path": self.path, "sha256": self.sha256, "size": self.size}
        )


@dataclass(frozen=True, slots=True)
class DatasetManifest:
    """A sorted manifest, its bytes (stored as a blob) and its id (the Merkle root)."""

    entries: tuple[FileEntry, ...]
    data: bytes
    dataset_id: str

    @property
    def file_count(self) -> int:
        """How many files the dataset holds."""
        return len(self.entries)

    @property
    def total_bytes(self) -> int:
        """The sum of the files' sizes."""
        return sum(e.size for e in self.entries)


def _sort_key(entry: FileEntry) -> bytes:
    return entry.path.encode("utf-8", "surrogatepass")


def compute_manifest(entries: Iterable[FileEntry]) -> DatasetManifest:
    """Sort ``entries`` by path and compute the manifest bytes and dataset id.

    Raises:
        SchemaError: two entries share a path.
    """
    ordered = tuple(sorted(entries, key=_sort_key))
    for before, after in pairwise(ordered):
        if before.path == after.path:
            raise SchemaError(f"manifest lists {before.path!r} twice")
    lines = [e.to_line() for e in ordered]
    root = compute_root([hash_leaf(line) for line in lines])
    data = b"".join(line + b"\n" for line in lines)
    return DatasetManifest(ordered, data, root.hex())


def parse_manifest(data: bytes) -> DatasetManifest:
    """Parse manifest bytes strictly: canonical, sorted, unique lines.

    Raises:
        SchemaError: the bytes are not a manifest this function would have written.
    """
    if data and not data.endswith(b"\n"):
        raise SchemaError("manifest does not end with a newline")
    entries = [_parse_line(n, line) for n, line in enumerate(data.split(b"\n")[:-1])]
    manifest = compute_manifest(entries)
    if manifest.data != data:
        raise SchemaError("manifest is not sorted and canonical")
    return manifest


def _parse_line(n: int, line: bytes) -> FileEntry:
    value = parse_json(line)
    if not isinstance(value, dict) or set(value) != {"path", "sha256", "size"}:
        raise SchemaError(f"manifest line {n + 1}: expected path, sha256 and size")
    path, size, digest = value["path"], value["size"], value["sha256"]
    if (
        not isinstance(path, str)
        or not isinstance(size, int)
        or not isinstance(digest, str)
    ):
        raise SchemaError(f"manifest line {n + 1}: wrong types")
    return FileEntry(path, size, digest)
