"""A cache of files' SHA-256, so that re-hashing an unchanged dataset reads no content.

The cache lives at ``$MLTRAIL_HOME/cache/hashes.db`` (:func:`default_cache_path`), a
SQLite file (WAL, ``synchronous=NORMAL``: losing the last writes of a cache on a power
cut only costs re-hashing). A cache that does not exist yet is written in a file of
its own beside it, without journal or ``fsync``, and gets its name once synced
(:meth:`HashCache._open_new`): the first run into a new cache pays one ``fsync``
instead of SQLite's six, and a crash before then leaves no cache, never a torn one.
A file's hash is found by what ``stat`` says of it::

    (st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns) -> sha256

and a lookup hits only when all five match. ``ctime_ns`` is in the key because users
cannot set it: ``touch -d`` or ``os.utime`` can put back a file's old mtime after
changing it, but any change of content or metadata moves ctime to the present. What
the key cannot see is a change made within the file system's timestamp granularity of
the previous one (a few milliseconds on ext4, two seconds on FAT), so a hash is stored
only for a file whose mtime and ctime were at least ``racy_window_s`` (default 2 s)
older than the moment it was hashed (git calls such files "racily clean"): a fresh
file is simply hashed again next time. Clock steps backwards (NTP) and raw writes to
the block device are outside what a stat cache can see.

The keys are stored grouped by the folder the files were listed in (one row per
folder: its files' packed keys and their hashes), because one query and one
``struct.iter_unpack`` per folder is several times faster than a row per file, and
the warm path (nothing changed) is bound by that work. A file moved to another folder
is therefore hashed again; one whose folder is walked again is rewritten with it, so
rows do not fill up with deleted files.

Whole results (see :mod:`mltrail.capture.data.treecache`: for a folder, a digest of
every entry's stat key with the manifest and its dataset id, so that an unchanged
folder is answered without a lookup per file) are files beside it, in
``cache/hashes.trees/`` (:mod:`mltrail.capture.data.treefiles`): reading one needs no
SQLite, so the database is opened (and :mod:`sqlite3` imported) only when a file is
looked up or stored. Files of before kept them in a ``trees`` table, which is no
longer read or written (``erase_cached_trees`` still clears it). The model ids of
checkpoints resolved by path are kept there too, under a root no folder has
(:mod:`mltrail.capture.model.idcache`).

A cache must never fail a capture: a corrupt file is moved aside and recreated, and
any other SQLite trouble (a locked or read-only file) turns the cache off for the
rest of the run. Both log a warning on the ``mltrail.capture`` logger. So does a
cache that another account could have written (its folder, database or tree
folder not this user's or root's, or writable by group or others: see
:mod:`mltrail.capture.data.cache_owner`); a new folder and database are private.

What the cache answers is trusted as the content of unchanged files: by captures,
for speed. A command whose answer is a verdict (``reproduce --check``, ``sources
check``) opens it with ``read=False`` (it only stores) and reads every file,
unless told to trust it (``--trust-cache``): whoever can write the home, or put
back a file's ctime (root, a raw disk write), can make it lie (ADR 0035, amendment
"verdicts read every file").
"""

from __future__ import annotations

import os
import struct
import sys
import time

from mltrail.capture.data.cache_owner import foreign_writer
from mltrail.capture.data.treefiles import TreeFiles, trees_folder
from mltrail.tuples import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from pathlib import Path
    from sqlite3 import Connection
    from typing import TypeVar

    _T = TypeVar("_T")

__all__ = [
    "CacheWriter",
    "FolderKey",
    "HashCache",
    "StatKey",
    "StoredTree",
    "cache_file",
    "default_cache_path",
    "remove_abandoned",
    "stat_key",
]

StatKey = tuple[int, int, int, int, int]
"""``(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)`` of a file."""
FolderKey = tuple[int, int]
"""``(st_dev, st_ino)`` of the folder a file was listed in."""

SCHEMA_VERSION = 1
LOOKUP_CHUNK = 500
_KEY = struct.Struct("<QQQqq")
_HEX_DIGITS = "0123456789abcdef"
_CORRUPT = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}
_SCHEMA = """
CREATE TABLE IF NOT EXISTS folders (
    folder TEXT PRIMARY KEY,  -- "<dev hex>:<ino hex>"
    keys BLOB NOT NULL,       -- n packed StatKeys, little-endian <QQQqq
    hashes TEXT NOT NULL      -- n SHA-256 hex digests, concatenated
) WITHOUT ROWID
"""
_LOOKUP = (
    "SELECT folder, keys, hashes FROM folders"
    " WHERE folder IN (SELECT value FROM json_each(?))"
)
_SAVE = "INSERT OR REPLACE INTO folders (folder, keys, hashes) VALUES (?, ?, ?)"
_DELETE = "DELETE FROM folders WHERE folder = ?"
_MERGE = "INSERT OR REPLACE INTO main.folders SELECT * FROM new.folders"


class StoredTree(NamedTuple):
    """A folder's whole result, as :meth:`HashCache.save_tree` stored it."""

    digest: bytes
    files: int
    bytes: int
    dataset_id: str
    manifest: bytes | None  # None: not read (see HashCache.load_tree)
    view_key: bytes
    view: bytes | None  # None: not read


def _warn(message: str, *args: object) -> None:
    """Log a warning on ``mltrail.capture`` (logging is loaded only when needed)."""
    import logging

    logging.getLogger("mltrail.capture").warning(message, *args)


def remove_abandoned(path: str | Path) -> None:
    """Delete the new cache files (``_open_new``) of processes that died first."""
    folder, name = os.path.split(os.fspath(path))  # no pathlib: a cold run's path
    prefix = f"{name}.new-"
    try:
        names = os.listdir(folder or ".")
    except OSError:
        return
    for aside in names:
        if not aside.startswith(prefix):
            continue
        pid = aside[len(prefix) :].partition("-")[0]
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            _unlink_quietly(os.path.join(folder, aside))
        except (ValueError, OSError):  # not ours, or alive under another user
            continue


def _unlink_quietly(name: str) -> None:
    try:  # noqa: SIM105 (contextlib.suppress: a cold run need not import it)
        os.unlink(name)
    except OSError:
        pass


class _StaleCacheError(Exception):
    """The file is a database, but not a hash cache this version can read."""


def default_cache_path(home: Path) -> Path:
    """Where the hash cache of the ledger home ``home`` lives."""
    from pathlib import Path

    return Path(cache_file(os.fspath(home)))


def cache_file(home: str) -> str:
    """:func:`default_cache_path` as a ``str`` (a warm ``data hash`` imports no
    :mod:`pathlib`, ADR 0035): the one place that names the file."""
    return os.path.join(home, "cache", "hashes.db")


def stat_key(st: os.stat_result) -> StatKey:
    """The cache key of a file's ``stat`` result."""
    return (st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)


def _name(folder: FolderKey) -> str:
    return f"{folder[0]:x}:{folder[1]:x}"


def _unpack(keys: bytes, hashes: str) -> dict[StatKey, str]:
    """A folder row's ``{key: sha256}``; raises if the row is damaged."""
    count = len(keys) // _KEY.size
    if (
        len(keys) != count * _KEY.size
        or len(hashes) != 64 * count
        or hashes.strip(_HEX_DIGITS)  # a character that is not a hex digit
    ):
        raise _StaleCacheError("a folder row is damaged")
    digests = [hashes[i : i + 64] for i in range(0, len(hashes), 64)]
    return dict(zip(_KEY.iter_unpack(keys), digests, strict=True))  # type: ignore[arg-type]


class HashCache:
    """SHA-256 of files by :data:`StatKey`, in a SQLite file; use from one thread.

    The database is opened when first needed: a folder answered from its stored
    whole result (:mod:`mltrail.capture.data.treefiles`) never opens it.

    Args:
        path: the SQLite file (created with its folder if missing).
        racy_window_s: how much older than the moment it was hashed a file's mtime
            and ctime must be for its hash to be stored (see the module docstring).
        read: False for a cache that answers nothing and only stores: a command
            whose answer is a verdict (``reproduce --check``, ``sources check``)
            reads every file, since whoever can write the home can forge what the
            cache says (ADR 0035, amendment "verdicts read every file"), and
            leaves true hashes behind for the captures after it.
    """

    def __init__(
        self, path: str | Path, *, racy_window_s: float = 2.0, read: bool = True
    ) -> None:
        self._file = os.fspath(path)  # what the usual open needs: no pathlib
        self._window_ns = int(racy_window_s * 1e9)
        self._read = read
        self._db: Connection | None = None
        self._new: str | None = None  # a new file, made aside (see _open_new)
        self._off = False  # turned off by an error, or closed
        self._existed = False
        self._trees = TreeFiles(trees_folder(self._file), _warn)
        self._guard(self._prepare, None)

    @property
    def path(self) -> Path:
        """The SQLite file."""
        from pathlib import Path

        return Path(self._file)

    def _prepare(self) -> None:
        """Make the cache's folder (a path that cannot be one turns the cache off),
        private; one that another account could write turns it off too."""
        folder = os.path.dirname(self._file) or "."
        os.makedirs(folder, mode=0o700, exist_ok=True)
        for path in (folder, self._trees.folder):
            problem = foreign_writer(path)
            if problem is not None:
                raise PermissionError(f"{problem}: what it says cannot be trusted")
        self._existed = os.path.exists(self._file)

    def _connected(self) -> Connection:
        """The database, opened now if it is not yet (inside :meth:`_guard`)."""
        if self._db is None:
            if self._off:
                raise _StaleCacheError("the cache is closed")  # pragma: no cover
            self._open()
        assert self._db is not None  # _open sets it or raises
        return self._db

    def _open(self) -> None:
        os.makedirs(os.path.dirname(self._file) or ".", exist_ok=True)
        if not os.path.exists(self._file):
            self._open_new()
            return
        self._open_usual()

    def _open_usual(self) -> None:
        import sqlite3

        problem = foreign_writer(self._file)
        if problem is not None:
            raise PermissionError(f"{problem}: what it says cannot be trusted")
        db = sqlite3.connect(self._file, timeout=5.0, isolation_level=None)
        try:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            if version not in (0, SCHEMA_VERSION):
                raise _StaleCacheError(f"unknown cache schema version {version}")
            # a new file gets pages of 16 KiB: a folder row's large values then
            # read in a quarter of the page reads (a no-op for an existing file)
            db.execute("PRAGMA page_size=16384")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=NORMAL")
            db.execute(_SCHEMA)
            if version != SCHEMA_VERSION:  # not written on every open
                db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            db.close()
            raise
        self._db = db

    def _open_new(self) -> None:
        """Start a cache that does not exist yet in a file of its own beside it.

        SQLite makes a new WAL database with four ``fsync`` calls, and a checkpoint
        of two more when it is closed; this process is the only one to see the new
        file, so it is written without journal or ``fsync`` until :meth:`close`
        syncs it once and links it in under :attr:`path` (atomically, and only if
        no other process made one meanwhile). A crash leaves no cache, never a
        torn one: the file is complete on disk before it gets its name.
        """
        import sqlite3

        remove_abandoned(self._file)
        new = f"{self._file}.new-{os.getpid()}-{time.time_ns()}"
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0)
        os.close(os.open(new, flags, 0o600))  # private: SQLite would use the umask
        db = sqlite3.connect(new, isolation_level=None)
        try:
            db.execute("PRAGMA page_size=16384")
            db.execute("PRAGMA journal_mode=OFF")
            db.execute("PRAGMA synchronous=OFF")
            db.execute(_SCHEMA)
            db.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except BaseException:
            db.close()
            _unlink_quietly(new)
            raise
        self._db, self._new = db, new

    def _publish(self) -> None:
        """Give the new file made by :meth:`_open_new` its name; leave it closed.

        If another process made the cache meanwhile (or the file system has no
        hard links), the new file's rows are copied into that one instead.
        """
        assert self._db is not None
        assert self._new is not None
        new, db = self._new, self._db
        self._db = None
        try:
            db.execute("PRAGMA journal_mode=WAL")  # as _open leaves a file
            db.close()
            fd = os.open(new, os.O_RDONLY | os.O_CLOEXEC)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
            try:
                os.link(new, self._file)
            except OSError:  # there is one now, or no hard links here: merge
                self._open_usual()
                self._merge(new)
                self._close_quietly()
        finally:
            self._new = None
            for name in (new, f"{new}-wal", f"{new}-shm"):
                _unlink_quietly(name)

    def _merge(self, new: str) -> None:
        """Copy the rows of the cache file ``new`` into this one (one transaction)."""
        assert self._db is not None  # opened by the caller
        self._db.execute("ATTACH DATABASE ? AS new", (new,))
        try:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute(_MERGE)
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            self._db.execute("COMMIT")
        finally:
            self._db.execute("DETACH DATABASE new")

    @property
    def racy_window_ns(self) -> int:
        """How much older than its hashing a file must be for its hash to be kept."""
        return self._window_ns

    @property
    def is_new(self) -> bool:
        """Whether this is a new cache file not yet named (see :meth:`_open_new`),
        or none yet, or one not read (``read=False``): it answers only what this
        process stored in it, if anything."""
        return not self._read or self._made_here()

    def _made_here(self) -> bool:
        """Whether the file is new (see :meth:`_open_new`) or not made yet."""
        return self._new is not None or (self._db is None and not self._existed)

    @property
    def reads(self) -> bool:
        """Whether lookups answer (False: the cache only stores, ``read=False``)."""
        return self._read

    @property
    def enabled(self) -> bool:
        """False once an error turned the cache off for this run (or it is closed)."""
        return not self._off

    def load(self, folders: Iterable[FolderKey]) -> dict[FolderKey, dict[StatKey, str]]:
        """The known hashes of the files listed in each of ``folders`` (none when
        the cache is not read)."""
        return self._load(folders) if self._read else {}

    def _load(
        self, folders: Iterable[FolderKey]
    ) -> dict[FolderKey, dict[StatKey, str]]:
        import json  # not at import: a matched tree result looks nothing up

        wanted = {_name(f): f for f in folders}
        names = list(wanted)
        found: dict[FolderKey, dict[StatKey, str]] = {}
        for start in range(0, len(names) if self.enabled else 0, LOOKUP_CHUNK):
            chunk = json.dumps(names[start : start + LOOKUP_CHUNK])
            rows = self._guard(lambda c=chunk: self._fetch(c), [])
            found.update((wanted[name], table) for name, table in rows)
        return found

    def _fetch(self, names: str) -> list[tuple[str, dict[StatKey, str]]]:
        rows = self._connected().execute(_LOOKUP, (names,)).fetchall()
        return [(name, _unpack(keys, hashes)) for name, keys, hashes in rows]

    def save(
        self,
        hashed: Mapping[FolderKey, Sequence[tuple[StatKey, str, int]]],
        *,
        merge: bool = False,
    ) -> None:
        """Store the hashes of the files of each folder, in one transaction.

        Args:
            hashed: for each folder, ``(key, sha256 hex, when it was hashed in
                time.time_ns())`` of its files; files too fresh to trust are left out.
            merge: keep the folder's other stored files (when not all of its files
                were listed); otherwise the folder's row is replaced (deleted when
                none of its files may be kept: what it said is not left behind).
        """
        rows, emptied = [], []
        current = self._load(hashed) if merge else {}
        for folder, items in hashed.items():
            table = current.get(folder, {})
            table.update(
                (key, sha)
                for key, sha, hashed_at in items
                if hashed_at - max(key[3], key[4]) >= self._window_ns
            )
            if table:
                keys = b"".join(_KEY.pack(*key) for key in table)
                rows.append((_name(folder), keys, "".join(table.values())))
            elif not merge and not self._made_here():
                emptied.append((_name(folder),))
        if (rows or emptied) and self.enabled:
            self._guard(lambda: self._write(rows, emptied), None)

    def _write(
        self, rows: list[tuple[str, bytes, str]], emptied: list[tuple[str]]
    ) -> None:
        db = self._connected()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.executemany(_SAVE, rows)
            db.executemany(_DELETE, emptied)
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    def tree_digest(self, root: bytes) -> tuple[bytes, int] | None:
        """The digest and file count stored for the folder ``root``, if any (none
        when the cache is not read)."""
        return self._trees.digest(root) if self.enabled and self._read else None

    def load_tree(
        self, root: bytes, digest: bytes, *, manifest: bool, view_key: bytes
    ) -> StoredTree | None:
        """The result stored for ``root`` if its digest is ``digest``.

        Its large values are read only when wanted (else they are None): the view
        if it was stored under ``view_key``, the manifest if ``manifest`` or if not.
        A damaged result is a miss (replaced after hashing).
        """
        if not self.enabled or not self._read:
            return None
        return self._trees.load(root, digest, manifest=manifest, view_key=view_key)

    def save_tree(self, root: bytes, tree: StoredTree) -> None:
        """Store (replacing) the whole result of the folder ``root`` (at once: its
        file is where ``erase_cached_trees`` looks, whatever happens next)."""
        if self.enabled:
            self._trees.save(root, tree)

    def close(self) -> None:
        """Close the file (a new one gets its name now: see :meth:`_open_new`)."""
        if self._new is not None and self._db is not None:
            self._guard(self._publish, None)
        self._close_quietly()
        self._off = True

    def __enter__(self) -> HashCache:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _guard(self, action: Callable[[], _T], fallback: _T) -> _T:
        """Run ``action``; on SQLite trouble repair or turn off the cache, never raise."""
        try:
            return action()
        except Exception as e:
            sqlite3 = sys.modules.get("sqlite3")  # not imported by a warm run
            if not isinstance(e, (OSError, _StaleCacheError)) and not (
                sqlite3 is not None and isinstance(e, sqlite3.Error)
            ):
                raise
            self._close_quietly()
            corrupt = getattr(e, "sqlite_errorname", None) in _CORRUPT
            if corrupt or isinstance(e, _StaleCacheError):
                self._recreate(e)
            else:
                self._off = True
                _warn("hash cache %s turned off: %s", self.path, e)
            return fallback

    def _recreate(self, error: Exception) -> None:
        import sqlite3
        from pathlib import Path

        aside = self.path.with_name(f"{self.path.name}.corrupt-{time.time_ns()}")
        _warn("hash cache %s is corrupt (%s): moved to %s", self.path, error, aside)
        try:
            self.path.replace(aside)
            for suffix in ("-wal", "-shm"):
                Path(f"{self.path}{suffix}").unlink(missing_ok=True)
            self._open()
        except (sqlite3.Error, OSError) as e:
            self._close_quietly()
            self._off = True
            _warn("hash cache %s turned off: %s", self.path, e)

    def _close_quietly(self) -> None:
        if self._db is not None:
            import sqlite3  # loaded already: there is a connection

            try:  # noqa: SIM105 (contextlib.suppress: a warm run need not import it)
                self._db.close()
            except sqlite3.Error:
                pass
            self._db = None
        if self._new is not None:  # a new file that will not be published
            _unlink_quietly(self._new)
            self._new = None


_Row = tuple[StatKey, str, int]  # key, sha256 hex, when it was hashed (time.time_ns)


class CacheWriter:
    """Hashes on their way into a :class:`HashCache`, a folder row at a time.

    A folder's row is written (replacing the old one) once the hashes of all the
    files listed in it are known, in transactions of at least ``save_every`` files:
    memory holds only the folders still being hashed, and a run cut short keeps most
    of its work. What :meth:`flush` finds unfinished (after a failure) is merged
    into the rows the cache had.

    Args:
        cache: where the rows go; its :meth:`~HashCache.load` is offered here too.
        save_every: files per transaction, at least.
    """

    def __init__(self, cache: HashCache, *, save_every: int) -> None:
        self.cache = cache
        self.load = cache.load
        self.save_every = save_every
        self.merge = False  # set when not all of a folder's files are listed
        self._open: dict[FolderKey, list[_Row]] = {}
        self._waiting: dict[FolderKey, int] = {}
        self._whole: dict[FolderKey, list[_Row]] = {}
        self._whole_count = 0

    def expect(
        self,
        folder: FolderKey,
        table: Mapping[StatKey, str],
        keys: Sequence[StatKey],
        misses: int,
    ) -> None:
        """Announce a folder whose row will be rewritten.

        Its files are ``keys``: those found in ``table`` are known now, ``misses``
        more hashes will come through :meth:`add`.
        """
        now = time.time_ns()  # hits were old enough when stored: they still are
        rows = self._open.setdefault(folder, [])  # twice if links lead to it twice
        rows.extend((k, table[k], now) for k in keys if k in table)
        self._waiting[folder] = self._waiting.get(folder, 0) + misses
        if not misses:
            self._close(folder)

    def add(self, folder: FolderKey, key: StatKey, sha256: str, hashed_at: int) -> None:
        """One of the hashes :meth:`expect` announced."""
        self._open[folder].append((key, sha256, hashed_at))
        self._waiting[folder] -= 1
        if not self._waiting[folder]:
            self._close(folder)

    def _close(self, folder: FolderKey) -> None:
        del self._waiting[folder]
        rows = self._whole[folder] = self._open.pop(folder)
        self._whole_count += len(rows)
        if self._whole_count >= self.save_every:
            self.cache.save(self._whole, merge=self.merge)
            self._whole, self._whole_count = {}, 0

    def flush(self) -> None:
        """Save the whole folders; merge the unfinished ones (after a failure)."""
        if self._whole:
            self.cache.save(self._whole, merge=self.merge)
        if self._open:
            self.cache.save(self._open, merge=True)
        self._whole, self._whole_count, self._open = {}, 0, {}
