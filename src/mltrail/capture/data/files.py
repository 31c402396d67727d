"""Files on disk to manifest entries: path, size and SHA-256 of every file.

A thin front to :mod:`mltrail.capture.data.hashing` (parallel, streamed, with an optional
hash cache): symbolic links are recorded as links, empty folders as folders, names
that are not UTF-8 with their raw bytes.
"""

from __future__ import annotations

import os

from mltrail.capture.data.hashing import HashProgress, hash_file, hash_tree

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from mltrail.capture.data.hashcache import HashCache, StoredTree
    from mltrail.core.manifest import DatasetManifest, FileEntry

__all__ = ["HashedData", "capture_file_entries", "hash_dataset", "hash_file"]


def capture_file_entries(
    path: Path,
    *,
    cache: HashCache | None = None,
    progress: Callable[[HashProgress], None] | None = None,
    follow_links: bool = False,
) -> list[FileEntry]:
    """Every file, link and empty folder under ``path`` (or ``path`` itself) as entries.

    A single file is listed under its own name; a folder's contents under their paths
    relative to it. See :func:`mltrail.capture.data.hashing.hash_tree`.

    Raises:
        CaptureError: ``path`` does not exist, or something under it cannot be read.
    """
    return hash_tree(path, cache=cache, progress=progress, follow_links=follow_links)


class HashedData:
    """A file's or folder's manifest: computed now, or a whole-tree result the
    hash cache kept (``reused``) because nothing under the folder changed."""

    __slots__ = ("_data", "_manifest", "bytes", "dataset_id", "files", "reused", "view")

    def __init__(
        self,
        *,
        manifest: DatasetManifest | None = None,
        stored: StoredTree | None = None,
        view: bytes | None = None,
    ) -> None:
        self._manifest = manifest
        self.reused = stored is not None
        if manifest is not None:
            self.dataset_id = manifest.dataset_id
            self.files, self.bytes = manifest.file_count, manifest.total_bytes
            self._data: bytes | None = None
            self.view = view
        else:
            assert stored is not None
            self.dataset_id = stored.dataset_id
            self.files, self.bytes = stored.files, stored.bytes
            self._data, self.view = stored.manifest, stored.view

    @property
    def data(self) -> bytes:
        """The manifest bytes (``core.manifest``)."""
        if self._data is None:
            self._data = self.manifest.data
        return self._data

    @property
    def manifest(self) -> DatasetManifest:
        """The manifest, parsed from the stored bytes when reused."""
        if self._manifest is None:
            from mltrail.core.manifest import parse_manifest

            assert self._data is not None
            self._manifest = parse_manifest(self._data)
        return self._manifest


def hash_dataset(
    path: str | Path,
    *,
    cache: HashCache | None,
    progress: Callable[[HashProgress], None] | None = None,
    follow_links: bool = False,
    need_manifest: bool = True,
    view_key: bytes = b"",
    view: Callable[[DatasetManifest], bytes] | None = None,
) -> HashedData:
    """The manifest of ``path``, through the hash cache's whole-tree results: an
    unchanged folder costs one walk and no per-file lookups (``capture.treecache``).

    ``view`` renders a fresh manifest (e.g. ``sha256sum`` lines) to keep beside
    it under ``view_key``; a reused result gives it back as ``HashedData.view``.

    Raises:
        CaptureError: ``path`` does not exist, or something under it cannot be read.
    """
    from mltrail.capture.data.treecache import capture_tree

    found = capture_tree(
        path,
        cache=cache,
        progress=progress,
        follow_links=follow_links,
        manifest=need_manifest,
        view_key=view_key,
    )
    if found.stored is not None:
        return HashedData(stored=found.stored)
    assert found.entries is not None
    from mltrail.core.manifest import compute_manifest  # not for a stored result

    manifest = compute_manifest(found.entries)
    rendered = view(manifest) if view is not None else None
    if found.probe is not None and not os.path.isfile(path):
        found.probe.save(
            manifest.data,
            manifest.dataset_id,
            manifest.file_count,
            manifest.total_bytes,
            (view_key, rendered or b""),
        )
    return HashedData(manifest=manifest, view=rendered)
