"""Dataset manifests: every file's path, size and SHA-256, and the dataset id over them.

A manifest is one line per entry, sorted by path (the order of the paths' bytes:
code-point order for UTF-8 names), each line the RFC 8785 canonical JSON object
``{"path": "train/a.csv", "sha256": "<hex>", "size": 1234}`` followed by ``\\n``
(a symbolic link is ``{"link": "<target>", "path": ...}``, an empty folder
``{"dir": true, "path": ...}``; a name that is not UTF-8 adds ``path_b64``).
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

import base64
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
    """One entry of a dataset, at a path relative to its root (``/``-separated).

    A regular file has ``size`` and ``sha256``. A symbolic link is recorded as a
    link (``link``: its target as ``readlink`` gives it), not followed. An empty
    folder is recorded with ``is_dir`` so that it is not silently lost. A name that
    is not valid UTF-8 keeps its raw bytes in ``raw_path`` (``path`` then shows it
    with backslash escapes).
    """

    path: str
    size: int = 0
    sha256: str | None = None
    link: str | None = None
    is_dir: bool = False
    raw_path: bytes | None = None

    def __post_init__(self) -> None:
        _check_path(self.path)
        if sum((self.sha256 is not None, self.link is not None, self.is_dir)) != 1:
            raise SchemaError(f"{self.path!r}: an entry is one of file, link or folder")
        if not 0 <= self.size <= _MAX_SIZE or isinstance(self.size, bool):
            raise SchemaError(f"bad size for {self.path!r}: {self.size!r}")
        if self.sha256 is not None and not _HEX64.fullmatch(self.sha256):
            raise SchemaError(f"bad sha256 for {self.path!r}: {self.sha256!r}")
        if self.sha256 is None and self.size:
            raise SchemaError(f"{self.path!r}: only files have a size")

    @property
    def is_file(self) -> bool:
        """Whether this is a regular file (not a link or a folder)."""
        return self.sha256 is not None

    @property
    def sort_key(self) -> bytes:
        """The raw path bytes entries are sorted by."""
        return self.raw_path if self.raw_path is not None else self.path.encode()

    def to_dict(self) -> dict[str, object]:
        """The JSON object of this entry's manifest line."""
        line: dict[str, object] = {"path": self.path}
        if self.sha256 is not None:
            line.update(sha256=self.sha256, size=self.size)
        elif self.link is not None:
            line["link"] = self.link
        else:
            line["dir"] = True
        if self.raw_path is not None:
            line["path_b64"] = base64.b64encode(self.raw_path).decode()
        return line

    def to_line(self) -> bytes:
        """The canonical JSON line (without newline) hashed as this entry's leaf."""
        return canonical_bytes(self.to_dict())


def _check_path(path: str) -> None:
    if not path or path.startswith("/"):
        raise SchemaError(f"manifest path must be relative: {path!r}")
    parts = path.split("/")
    if ".." in parts or "" in parts or "." in parts:
        raise SchemaError(f"manifest path is not normalised: {path!r}")


@dataclass(frozen=True, slots=True)
class DatasetManifest:
    """A sorted manifest, its bytes (stored as a blob) and its id (the Merkle root)."""

    entries: tuple[FileEntry, ...]
    data: bytes
    dataset_id: str

    @property
    def file_count(self) -> int:
        """How many regular files the dataset holds (links and folders not counted)."""
        return sum(e.is_file for e in self.entries)

    @property
    def total_bytes(self) -> int:
        """The sum of the files' sizes."""
        return sum(e.size for e in self.entries)


def compute_manifest(entries: Iterable[FileEntry]) -> DatasetManifest:
    """Sort ``entries`` by path and compute the manifest bytes and dataset id.

    Raises:
        SchemaError: two entries share a path.
    """
    ordered = tuple(sorted(entries, key=lambda e: e.sort_key))
    for before, after in pairwise(ordered):
        if before.sort_key == after.sort_key:
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


_LINE_SHAPES = (
    {"path", "sha256", "size"},
    {"path", "link"},
    {"path", "dir"},
)


def _parse_line(n: int, line: bytes) -> FileEntry:
    value = parse_json(line)
    if not isinstance(value, dict):
        raise SchemaError(f"manifest line {n + 1}: not an object")
    raw = value.pop("path_b64", None)
    if set(value) not in _LINE_SHAPES:
        raise SchemaError(f"manifest line {n + 1}: unexpected members {sorted(value)}")
    try:
        return FileEntry(
            value["path"],
            value.get("size", 0),
            value.get("sha256"),
            link=value.get("link"),
            is_dir=value.get("dir") is True,
            raw_path=None if raw is None else base64.b64decode(raw, validate=True),
        )
    except (TypeError, ValueError, AttributeError) as e:
        raise SchemaError(f"manifest line {n + 1}: {e}") from e
