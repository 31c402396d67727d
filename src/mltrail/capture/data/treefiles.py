"""Whole-folder results of the hash cache, a file each (ADR 0035, third amendment).

:mod:`mltrail.capture.data.treecache` keeps, for each folder hashed, the digest of
its walk with the result (manifest, dataset id, counts, the caller's rendering).
They live in a folder beside the SQLite cache of per-file hashes
(``cache/hashes.db`` -> ``cache/hashes.trees/``), one file per folder named by a
BLAKE2b of the resolved folder, so that an unchanged folder is answered with one
``open`` and two ``pread`` calls: no :mod:`sqlite3` (~3 ms to import with
:mod:`datetime`), no connection, no query. A changed folder still looks its files
up in SQLite.

A file is::

    magic (16) | header (struct _HEAD) | dataset id | view key | view | manifest

The header holds the walk's digest, the counts, each part's length and a BLAKE2b
of each part; a BLAKE2b of the magic and header ends it. A part is used only when
its length and digest match, so a file torn by a crash (it is written aside and
renamed into place, without ``fsync``: losing a cache entry only costs hashing
again) or damaged otherwise is a miss, and is replaced after hashing.

Nothing here may fail a capture: errors reading are misses, errors writing are
logged as warnings on ``mltrail.capture`` and the result is simply not stored.
"""

from __future__ import annotations

import os
import struct
import time

try:  # what hashlib.blake2b is, without loading OpenSSL (milliseconds at start-up)
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - another Python implementation
    from hashlib import blake2b

from mltrail.capture.data.cache_owner import foreign_file

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

    from mltrail.capture.data.hashcache import StoredTree

__all__ = ["TreeFiles", "trees_folder"]

MAGIC = b"mltrail-tree/v1\n"
_HEAD = struct.Struct("<32sQQ4Q16s16s16s16s")
"""digest, files, bytes; lengths of dataset id, view key, view, manifest;
BLAKE2b-128 of dataset id, view key, view, manifest."""
_SEAL = 16  # BLAKE2b-128 of magic and header, after them
_FIXED = len(MAGIC) + _HEAD.size + _SEAL
_PERSON = b"mltrail-treefile"
_NAME_PERSON = b"mltrail-treeroot"


def trees_folder(cache_file: str) -> str:
    """Where the tree files of the SQLite cache ``cache_file`` live."""
    stem, _ = os.path.splitext(cache_file)
    return stem + ".trees"


def _digest(data: bytes) -> bytes:
    return blake2b(data, digest_size=16, person=_PERSON).digest()


class TreeFiles:
    """The stored tree results in ``folder`` (made when the first is saved).

    Args:
        folder: the folder of tree files (:func:`trees_folder`).
        warn: called with a message and its arguments when a result cannot be
            stored.
    """

    def __init__(self, folder: str, warn: Callable[..., None]) -> None:
        self.folder = folder
        self._warn = warn

    def file_of(self, root: bytes) -> str:
        """The file of the folder ``root`` (resolved, with how links were treated)."""
        name = blake2b(root, digest_size=20, person=_NAME_PERSON).hexdigest()
        return os.path.join(self.folder, name)

    # -- reading -----------------------------------------------------------------
    def digest(self, root: bytes) -> tuple[bytes, int] | None:
        """The walk digest and file count stored for ``root``, if any."""
        found = self._head(root)
        return None if found is None else (found[1][0], found[1][1])

    def load(
        self, root: bytes, digest: bytes, *, manifest: bool, view_key: bytes
    ) -> StoredTree | None:
        """The result stored for ``root`` if its walk digest is ``digest``.

        The view comes back if it was stored under ``view_key``; the manifest if
        ``manifest`` is true or the view does not (else None, not read).
        """
        found = self._head(root)
        if found is None or found[1][0] != digest:
            return None
        try:
            return _parts(*found, manifest=manifest, view_key=view_key)
        except (OSError, ValueError):  # damaged: a miss, replaced after hashing
            return None

    def _head(self, root: bytes) -> tuple[str, tuple[Any, ...]] | None:
        """The file of ``root`` and its header's fields, if it has a sound one."""
        path = self.file_of(root)
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if foreign_file(path, st) is not None:  # another account could write it
                return None
            size = st.st_size
            head = _read(fd, _FIXED, 0)
        except (OSError, ValueError):
            return None
        finally:
            os.close(fd)
        body, seal = head[:-_SEAL], head[-_SEAL:]
        if not body.startswith(MAGIC) or _digest(body) != seal:
            return None
        fields = _HEAD.unpack_from(body, len(MAGIC))
        if _FIXED + sum(fields[3:7]) != size:  # torn, or grown since
            return None
        return path, fields

    # -- writing -----------------------------------------------------------------
    def save(self, root: bytes, tree: StoredTree) -> None:
        """Store (replacing) the result of the folder ``root``: written aside, then
        renamed into place, so a reader sees the old file or the new one."""
        manifest = tree.manifest or b""
        view = tree.view or b""
        dataset_id = tree.dataset_id.encode("ascii")
        head = MAGIC + _HEAD.pack(
            tree.digest,
            tree.files,
            tree.bytes,
            len(dataset_id),
            len(tree.view_key),
            len(view),
            len(manifest),
            _digest(dataset_id),
            _digest(tree.view_key),
            _digest(view),
            _digest(manifest),
        )
        path = self.file_of(root)
        aside = f"{path}.new-{os.getpid()}-{time.time_ns()}"
        try:
            os.makedirs(self.folder, mode=0o700, exist_ok=True)
            remove_abandoned(self.folder)
            fd = os.open(
                aside,
                os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0),
                0o600,
            )
            try:
                with os.fdopen(fd, "wb", closefd=False) as out:
                    for part in (head, _digest(head), dataset_id, tree.view_key):
                        out.write(part)
                    out.write(view)
                    out.write(manifest)
            finally:
                os.close(fd)
            os.replace(aside, path)
        except OSError as e:
            _unlink_quietly(aside)
            self._warn("hash cache: a folder's result was not stored: %s", e)

    # -- purge -------------------------------------------------------------------
    def erase(self, matches: Callable[[bytes], bool]) -> int:
        """Delete every stored result whose manifest ``matches``; return how many.

        Raises:
            OSError: a matching file could not be deleted.
        """
        try:
            names = os.listdir(self.folder)
        except FileNotFoundError:
            return 0
        erased = 0
        for name in names:
            path = os.path.join(self.folder, name)
            if ".new-" in name and _abandoned(name):  # left by a crash
                _unlink_quietly(path)
                continue
            # (a live writer's file may hold a purged manifest too: read it)
            manifest = _manifest_of(path)
            if manifest is None:
                if not os.path.exists(path):
                    continue
                os.unlink(path)  # unreadable or damaged: nothing to keep
                continue
            if matches(manifest):
                os.unlink(path)
                erased += 1
        return erased


def _parts(
    path: str, fields: tuple[Any, ...], *, manifest: bool, view_key: bytes
) -> StoredTree:
    """The stored result in ``path`` (header ``fields``); raises ValueError if a
    part it reads does not match its digest."""
    from mltrail.capture.data.hashcache import StoredTree

    digest, files, size, n_id, n_key, n_view, n_manifest = fields[:7]
    id_sum, key_sum, view_sum, manifest_sum = fields[7:]
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    try:
        small = _checked(fd, n_id + n_key, _FIXED, None)
        dataset_id, key = small[:n_id], small[n_id:]
        if _digest(dataset_id) != id_sum or _digest(key) != key_sum:
            raise ValueError("damaged")
        at = _FIXED + n_id + n_key
        view = _checked(fd, n_view, at, view_sum) if key == view_key else None
        data = None
        if manifest or view is None:
            data = _checked(fd, n_manifest, at + n_view, manifest_sum)
    finally:
        os.close(fd)
    text_id = dataset_id.decode("ascii")  # UnicodeDecodeError is a ValueError
    if len(text_id) != 64 or text_id.strip("0123456789abcdef"):
        raise ValueError("not a dataset id")
    return StoredTree(digest, files, size, text_id, data, key, view)


def _checked(fd: int, size: int, at: int, expected: bytes | None) -> bytes:
    data = _read(fd, size, at)
    if expected is not None and _digest(data) != expected:
        raise ValueError("damaged")
    return data


def _read(fd: int, size: int, at: int) -> bytes:
    data = os.pread(fd, size, at)
    if len(data) != size:
        raise ValueError("short read")
    return data


def _manifest_of(path: str) -> bytes | None:
    """The manifest bytes stored in ``path`` (unchecked), or None if unreadable."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return None
    try:
        head = _read(fd, _FIXED, 0)
        if not head.startswith(MAGIC):
            return None
        fields = _HEAD.unpack_from(head, len(MAGIC))
        return _read(fd, fields[6], _FIXED + sum(fields[3:6]))
    except (OSError, ValueError, struct.error):
        return None
    finally:
        os.close(fd)


def _abandoned(name: str) -> bool:
    """Whether ``name`` (``<file>.new-<pid>-<ns>``) was left by a process now gone."""
    pid = name.rpartition(".new-")[2].partition("-")[0]
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except (ValueError, OSError):  # not ours, or alive under another user
        return False
    return False


def remove_abandoned(folder: str) -> None:
    """Delete the files that writers which died left half-written in ``folder``."""
    try:
        names = os.listdir(folder)
    except OSError:
        return
    for name in names:
        if ".new-" in name and _abandoned(name):
            _unlink_quietly(os.path.join(folder, name))


def _unlink_quietly(name: str) -> None:
    try:  # noqa: SIM105 (contextlib.suppress: a warm run need not import it)
        os.unlink(name)
    except OSError:
        pass
