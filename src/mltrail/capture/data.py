"""Files on disk to manifest entries: path, size and SHA-256 of every file.

This is the plain, single-threaded walk: correct and bounded in memory (files are
streamed), without the parallel hashing and stat cache that large datasets need.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from mltrail.core.manifest import FileEntry
from mltrail.errors import CaptureError

__all__ = ["capture_file_entries", "hash_file"]


def hash_file(path: Path) -> tuple[int, str]:
    """Size and SHA-256 hex of one file, streamed.

    Raises:
        CaptureError: the file cannot be read.
    """
    try:
        with path.open("rb") as f:
            digest = hashlib.file_digest(f, "sha256")
            size = f.tell()
    except OSError as e:
        raise CaptureError(
            f"cannot read {path}: {e.strerror or e}",
            hint="check the path and its permissions; nothing was recorded",
        ) from e
    return size, digest.hexdigest()


def _relative(path: Path, root: Path) -> str:
    rel = path.relative_to(root).as_posix()
    try:
        rel.encode("utf-8")
    except UnicodeEncodeError as e:
        raise CaptureError(
            f"file name is not valid UTF-8: {os.fsencode(path)!r}",
            hint="rename the file; manifests record names as UTF-8 text",
        ) from e
    return rel


def _walk(root: Path) -> list[Path]:
    found: list[Path] = []

    def fail(error: OSError) -> None:
        raise CaptureError(f"cannot list {error.filename}: {error.strerror}")

    for folder, dirs, files in os.walk(root, onerror=fail, followlinks=False):
        dirs.sort()
        found.extend(Path(folder, name) for name in sorted(files))
    return found


def capture_file_entries(path: Path) -> list[FileEntry]:
    """Every file under ``path`` (or ``path`` itself) as manifest entries.

    A single file is listed under its own name; a folder's files under their paths
    relative to it. Symbolic links to files are followed; links to folders are not.

    Raises:
        CaptureError: ``path`` does not exist, or a file cannot be read or named.
    """
    if not path.exists():
        raise CaptureError(f"no such file or folder: {path}")
    if path.is_file():
        return [FileEntry(path.name, *hash_file(path))]
    entries = []
    for file in _walk(path):
        if file.is_file():
            entries.append(FileEntry(_relative(file, path), *hash_file(file)))
    return entries
