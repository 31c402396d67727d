"""Files on disk to manifest entries: path, size and SHA-256 of every file.

A thin front to :mod:`mltrail.capture.hashing` (parallel, streamed, with an optional
hash cache): symbolic links are recorded as links, empty folders as folders, names
that are not UTF-8 with their raw bytes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mltrail.capture.hashing import HashProgress, hash_file, hash_tree

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from mltrail.capture.hashcache import HashCache
    from mltrail.core.manifest import FileEntry

__all__ = ["capture_file_entries", "hash_file"]


def capture_file_entries(
    path: Path,
    *,
    cache: HashCache | None = None,
    progress: Callable[[HashProgress], None] | None = None,
    follow_links: bool = False,
) -> list[FileEntry]:
    """Every file, link and empty folder under ``path`` (or ``path`` itself) as entries.

    A single file is listed under its own name; a folder's contents under their paths
    relative to it. See :func:`mltrail.capture.hashing.hash_tree`.

    Raises:
        CaptureError: ``path`` does not exist, or something under it cannot be read.
    """
    return hash_tree(path, cache=cache, progress=progress, follow_links=follow_links)
