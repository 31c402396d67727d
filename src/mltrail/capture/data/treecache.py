"""Whole-folder results: an unchanged folder's manifest without a lookup per file.

Re-hashing an unchanged dataset must still ``lstat`` every entry (that is how a
change is seen), but it need not look every file up in the hash cache, make an
entry object per file, sort them and compute the Merkle root again. After a folder
is hashed, the :class:`~mltrail.capture.data.hashcache.HashCache` keeps, for the
resolved folder (and whether links were followed), in a file of its own
(:mod:`mltrail.capture.data.treefiles`):

- a BLAKE2b **digest of the walk**: every folder listed, in walk order, with the
  names and stat keys ``(dev, ino, size, mtime_ns, ctime_ns)`` of its files, its
  links and their targets, and how many subfolders it has;
- the manifest bytes, the dataset id, the file count and total size, and the
  caller's rendering (``mltrail data hash`` keeps its ``sha256sum`` lines, with
  the path prefix they were printed under).

The next walk of the folder computes the same digest while it lists (one buffer
hashed per folder); if it equals the stored one, the stored result is the answer.
The output depends only on the names, the links' targets and the files' content,
and a file's content is trusted from its stat key as the per-file cache trusts it:
any write moves ctime to the present, so a changed, added, removed or renamed file,
a retargeted link or a new empty folder changes the digest. Trust has the same
limit too: a result is stored only when every file's mtime and ctime were at least
the cache's racy window older than the start of the run that hashed it (a file
changed within the file system's timestamp granularity of being hashed could
change again unseen), and is not used if any file is inside that window now.
Any difference simply means the folder is hashed as usual (from the per-file
cache) and its file replaced. The file is found by the resolved path, but only the
digest decides: another folder at that path would have to hold the same inodes.

Where a result is stored, the per-file lookups wait for the end of the walk (while
no more files were found than it holds), so a changed folder costs the listing's
memory (~100 bytes a file) a little longer; without one, they go as they always
did, a batch at a time while the walk goes on.
"""

from __future__ import annotations

import os
import struct
import time

from mltrail.capture.data.hashcache import StoredTree, remove_abandoned
from mltrail.capture.data.hashing import hash_tree_unless
from mltrail.capture.data.treefiles import TreeFiles, trees_folder

try:  # what hashlib.blake2b is, without loading OpenSSL (milliseconds at start-up)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - another Python implementation
    from hashlib import blake2b

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Collection
    from pathlib import Path

    from mltrail.capture.data.hashcache import HashCache
    from mltrail.capture.data.hashing import HashProgress
    from mltrail.capture.data.walk import Listing
    from mltrail.core.manifest import FileEntry

__all__ = ["TreeProbe", "TreeResult", "capture_tree", "erase_cached_trees"]

_COUNTS = struct.Struct("<QQQ")
FORMAT = b"mltrail-tree/1"
"""Personalises the digest: a new manifest format (or digest layout) must change it,
so that results stored by an older version are never reused."""
MAX_STORED = 512 << 20
"""Results larger than this (manifest and view together, ~4 million files) are not
stored: SQLite refuses values over 1 GB, and reading them back would cost more."""


class TreeProbe:
    """The digest of one walk, checked against what the cache stored for its root.

    :func:`~mltrail.capture.data.hashing.hash_tree_unless` hands it every listing.
    """

    def __init__(self, cache: HashCache, root: bytes, *, look: bool = True) -> None:
        self.cache = cache
        self.root = root
        self.started = time.time_ns()
        self.window = cache.racy_window_ns
        self.stored = cache.tree_digest(root) if look else None
        self.digest = blake2b(digest_size=32, person=FORMAT)
        self.newest = -(1 << 63)  # the latest mtime or ctime of a file listed
        self.listed = False

    def add(self, listing: Listing) -> None:
        """Fold one folder's listing into the digest."""
        self.listed = True
        names, entries = listing.names, listing.entries
        keys = b"".join(listing.keys)  # packed stat keys, 40 bytes each
        counts = _COUNTS.pack(len(names), len(entries), len(listing.dirs))
        parts = [listing.folder.rel, b"\0", counts, b"\0".join(names), b"\0", keys]
        for entry in entries:  # links, or the folder itself when empty
            parts += (_link_bytes(entry), b"\0", entry.sort_key, b"\0")
        self.digest.update(b"".join(parts))
        if keys:
            items = memoryview(keys).cast("q")  # mtime and ctime: 3 and 4 of each 5
            mtime, ctime = max(items[3::5]), max(items[4::5])
            self.newest = max(self.newest, mtime, ctime)

    def waits(self, found: int) -> bool:
        """Whether the cache lookups should wait for the end of the walk."""
        return self.stored is not None and found <= self.stored[1]

    def matches(self) -> bool:
        """Whether the walk found exactly what the stored result was made from."""
        return (
            self.listed
            and self.stored is not None
            and self.stored[0] == self.digest.digest()
            and time.time_ns() - self.newest >= self.window
        )

    def load(self, *, manifest: bool, view_key: bytes) -> StoredTree | None:
        """The stored result, if the walk matched it (see ``HashCache.load_tree``)."""
        if not self.matches():
            return None
        digest = self.digest.digest()
        return self.cache.load_tree(
            self.root, digest, manifest=manifest, view_key=view_key
        )

    def save(
        self,
        manifest: bytes,
        dataset_id: str,
        files: int,
        size: int,
        view: tuple[bytes, bytes],
    ) -> None:
        """Store the result of this walk, unless a file was too fresh to trust.

        ``view`` is the caller's rendering of the result and the key it depends on
        (``mltrail data hash``: its sha256sum lines and the path they name).
        """
        if not self.listed or self.started - self.newest < self.window:
            return
        if len(manifest) + len(view[1]) > MAX_STORED:
            return
        digest = self.digest.digest()
        tree = StoredTree(digest, files, size, dataset_id, manifest, *view)
        self.cache.save_tree(self.root, tree)


class TreeResult:
    """What :func:`capture_tree` found: a stored result, or fresh entries."""

    __slots__ = ("entries", "probe", "stored")

    def __init__(
        self,
        stored: StoredTree | None,
        entries: list[FileEntry] | None,
        probe: TreeProbe | None,
    ) -> None:
        self.stored = stored
        self.entries = entries
        self.probe = probe


def capture_tree(
    path: str | Path,
    *,
    cache: HashCache | None,
    progress: Callable[[HashProgress], None] | None = None,
    follow_links: bool = False,
    manifest: bool = True,
    view_key: bytes = b"",
) -> TreeResult:
    """The stored result for the folder ``path`` if nothing under it changed.

    Otherwise (or for a file, or without a cache) the entries of
    :func:`~mltrail.capture.data.hashing.hash_tree`; pass the manifest made from them to
    the probe's :meth:`TreeProbe.save` so that the next run can reuse it.

    Args:
        manifest: whether a stored result must come with its manifest bytes.
        view_key: which rendering the caller can reuse: the stored view comes
            back only if it was saved under this key (else the manifest does).

    Raises:
        CaptureError: as :func:`~mltrail.capture.data.hashing.hash_tree`.
    """
    probe = None
    if cache is not None and cache.enabled:
        root = os.path.realpath(os.fsencode(path)) + (b"\0L" if follow_links else b"\0")
        probe = TreeProbe(cache, root)
    entries = hash_tree_unless(
        path, probe, cache=cache, progress=progress, follow_links=follow_links
    )
    if entries is None:  # the walk matched the stored digest
        assert probe is not None  # only a probe stops it
        stored = probe.load(manifest=manifest, view_key=view_key)
        if stored is not None:
            return TreeResult(stored, None, probe)
        assert cache is not None  # a probe has one
        probe = TreeProbe(cache, probe.root, look=False)  # gone or damaged since
        entries = hash_tree_unless(
            path, probe, cache=cache, progress=progress, follow_links=follow_links
        )
        assert entries is not None  # a probe that looked nothing up never matches
    return TreeResult(None, entries, probe)


def _link_bytes(entry: FileEntry) -> bytes:
    """``L`` and a link's raw target, or ``D`` for an empty folder."""
    if entry.link is None:
        return b"D"
    return b"L" + (
        entry.raw_link if entry.raw_link is not None else entry.link.encode()
    )


def erase_cached_trees(path: Path, digests: Collection[str]) -> int:
    """Erase the stored results whose manifest is a purged blob; return how many.

    ``digests`` are blob digests (``sha256:<hex>``); a stored manifest holds the
    same bytes as the ``run.data`` manifest blob made from it. Matching tree files
    (:mod:`mltrail.capture.data.treefiles`) are deleted, and so are damaged ones
    and those a crashed writer left. A cache file of before the tree files may
    still hold results in its ``trees`` table: matching rows are deleted with
    ``secure_delete`` on, then the file is rebuilt (``VACUUM``: a replaced row may
    have left a stale copy in a page) and its WAL truncated, so no copy is left in
    the file. A missing cache is left missing; the folder is simply hashed again
    (from the per-file cache) next time. New cache files that a process which died
    left beside it (``HashCache._open_new``) are deleted.

    Raises:
        sqlite3.Error, OSError: the cache could not be cleaned (it is locked).
    """
    import hashlib  # not at import: a warm `data hash` needs no OpenSSL
    import sqlite3

    wanted = set(digests)

    def purged(manifest: object) -> bool:
        return (
            isinstance(manifest, bytes)
            and f"sha256:{hashlib.sha256(manifest).hexdigest()}" in wanted
        )

    erased = TreeFiles(trees_folder(os.fspath(path)), _no_warning).erase(purged)
    remove_abandoned(path)  # a new cache file left by a crash may hold one
    if not path.exists():
        return erased
    db = sqlite3.connect(path, timeout=60.0, isolation_level=None)
    try:
        db.execute("PRAGMA secure_delete = ON")
        if not db.execute(
            "SELECT 1 FROM sqlite_master WHERE name = 'trees'"
        ).fetchone():
            return erased
        doomed = [
            (root,)
            for root, manifest in db.execute("SELECT root, manifest FROM trees")
            if purged(manifest)
        ]
        db.execute("BEGIN IMMEDIATE")
        db.executemany("DELETE FROM trees WHERE root = ?", doomed)
        db.execute("COMMIT")
        db.execute("VACUUM")
        if db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]:
            raise sqlite3.OperationalError(f"the hash cache {path} is in use")
        return erased + len(doomed)
    finally:
        db.close()


def _no_warning(*_: object) -> None:
    """Erasing stores nothing, so it has nothing to warn about."""
