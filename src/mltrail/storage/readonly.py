"""Reading a SQLite ledger this process may not write, without writing anything.

Whether a file or folder may be written is decided by trying (:func:`can_write`),
not from permission bits alone: root passes every permission check, and a
read-only mount, an ACL or another account's folder say nothing in the bits.

A ledger is in WAL mode, and SQLite reads a WAL database through its ``-shm``
file (the wal-index), which every connection keeps while it is open. On a
database it may not write, SQLite (3.22 and later) reads only when the ``-wal``
and ``-shm`` files exist and are readable, when it may create them in the
folder, or when the database is opened ``immutable`` (see "Read-Only Databases"
in https://sqlite.org/wal.html). ``immutable`` means "nothing will change this
file while it is open": SQLite then takes no locks and ignores the ``-wal``, so a
writer checkpointing meanwhile would tear what is read. Hence, in that order:

1. the ``-wal`` and ``-shm`` exist and someone may write the database (a writer
   may be connected): open ``mode=ro`` with ``readonly_shm=1``, so SQLite shares
   the writer's wal-index without ever writing to it;
2. no log to read (no ``-wal``, or an empty one) and no one may write the
   database (no write bit on it or on its folder, as ``chmod -R a-w`` or
   read-only media leave them; mltrail refuses to write such a home): open
   ``immutable``;
3. otherwise read a snapshot: the database and its log copied into a private
   temporary folder outside the home, checked unchanged across the copy. That is
   for a home someone else may write with no writer connected (an auditor's
   account on a live home, a read-only mount of a folder written through
   another), and for a log left by a writer in a home no one may write (SQLite
   running as root would otherwise ``fchown`` the ``-wal`` and ``-shm``, which
   changes their ctime).
"""

from __future__ import annotations

import os
import stat

from mltrail.errors import StoreError

TYPE_CHECKING = False
if TYPE_CHECKING:
    import sqlite3
    import tempfile
    from pathlib import Path

__all__ = ["ReadOnlyConnection", "can_write", "connect_read_only"]

_NO_WRITE_BITS = stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH
_SNAPSHOT_TRIES = 3


def can_write(path: str | os.PathLike[str]) -> bool:
    """Whether this process may write ``path``: a folder, an existing file and the
    folder it is in, or a file still to be made (in its nearest existing folder).

    An existing file is opened for writing and closed unwritten (a read-only
    mount, missing permission or an ACL make that fail); a folder is asked of the
    kernel (``access(2)`` with the effective ids, which also sees read-only mounts
    and ACLs). Root passes permission checks, so a file or folder without any
    write bit (``chmod -R a-w``) counts as read-only for root too: someone made
    it so on purpose.

    Written with :mod:`os` alone: a warm ``mltrail data hash`` asks it of the hash
    cache without importing :mod:`pathlib` (ADR 0035).
    """
    path = os.fspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        folder = _nearest_folder(path)
        return folder is not None and _folder_writable(folder)
    except OSError:
        return False
    if stat.S_ISDIR(st.st_mode):
        return _folder_writable(path)
    if st.st_mode & _NO_WRITE_BITS == 0 or not _folder_writable(_parent(path)):
        return False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError:
        return False
    os.close(fd)
    return True


def _parent(path: str) -> str:
    """The folder ``path`` is in (the same folder as ``Path(path).parent``)."""
    head = os.path.dirname(path.rstrip("/"))
    return head or ("/" if path.startswith("/") else ".")


def _nearest_folder(path: str) -> str | None:
    """The nearest existing folder above ``path`` (None: one above is closed to us)."""
    parent, last = _parent(path), path
    while parent != last:
        try:
            os.stat(parent)
        except FileNotFoundError:
            parent, last = _parent(parent), parent
            continue
        except OSError:
            return None
        return parent
    return None


def _folder_writable(folder: str) -> bool:
    try:
        if os.stat(folder).st_mode & _NO_WRITE_BITS == 0:
            return False
    except OSError:
        return False
    effective = os.access in os.supports_effective_ids
    return os.access(folder, os.W_OK | os.X_OK, effective_ids=effective)


class ReadOnlyConnection:
    """A read-only SQLite connection and, for a snapshot, its temporary folder."""

    def __init__(
        self,
        conn: sqlite3.Connection,
        snapshot: tempfile.TemporaryDirectory[str] | None,
    ) -> None:
        self.conn = conn
        self.snapshot = snapshot

    def close(self) -> None:
        """Close the connection and remove the snapshot, if any."""
        self.conn.close()
        if self.snapshot is not None:
            self.snapshot.cleanup()


def connect_read_only(db: Path) -> ReadOnlyConnection:
    """Open the SQLite database ``db`` for reading, writing nothing beside it.

    Raises:
        sqlite3.Error: SQLite cannot read it.
        StoreError: it, its ``-wal`` or its ``-shm`` is there but not a regular
            file (a named pipe), or a snapshot could not be taken (it kept
            changing, or a copy failed).
    """
    import sqlite3  # not at import: `can_write` is asked by a warm `data hash`

    wal, shm = _sidecar(db, "-wal"), _sidecar(db, "-shm")
    for path in (db, wal, shm):
        _refuse_special_file(path)
    frozen = _nobody_can_write(db)
    if wal.exists() and shm.exists() and not frozen:
        try:
            return ReadOnlyConnection(_open(db, readonly_shm=1), None)
        except sqlite3.OperationalError:
            pass  # the -shm is not readable by us: read a snapshot instead
    elif frozen and _size(wal) == 0:
        return ReadOnlyConnection(_open(db, immutable=1), None)
    return _snapshot(db)


def _refuse_special_file(path: Path) -> None:
    """Raise unless ``path`` is a regular file or absent: SQLite opens a named
    pipe there without ``O_NONBLOCK`` and waits for a writer for good (every
    command on a ``chmod -R a-w`` copy hung), and a copy of one fails."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return  # absent, or SQLite says why it cannot be read
    if not stat.S_ISREG(mode):
        raise StoreError(
            f"cannot read {path}: not a regular file",
            hint="a SQLite database, its -wal and its -shm are regular files; "
            "whoever could write the home put something else there",
        )


def _sidecar(db: Path, suffix: str) -> Path:
    return db.with_name(db.name + suffix)


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return 0


def _nobody_can_write(db: Path) -> bool:
    return any(p.stat().st_mode & _NO_WRITE_BITS == 0 for p in (db, db.parent))


def _open(db: Path, **params: int) -> sqlite3.Connection:
    import sqlite3

    query = "&".join(["mode=ro", *(f"{k}={v}" for k, v in params.items())])
    conn = sqlite3.connect(
        f"{db.absolute().as_uri()}?{query}",
        uri=True,
        isolation_level=None,
        timeout=60.0,
    )
    try:
        conn.execute("PRAGMA busy_timeout = 60000")
        conn.execute("PRAGMA query_only = 1")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except BaseException:
        conn.close()
        raise
    return conn


def _snapshot(db: Path) -> ReadOnlyConnection:
    """Copy ``db`` (and its ``-wal``) into a private folder and open the copy there."""
    import shutil  # only a snapshot needs these (start-up time of readers)
    import tempfile
    from pathlib import Path

    for _ in range(_SNAPSHOT_TRIES):
        before = _state(db)
        folder = tempfile.TemporaryDirectory(prefix="mltrail-snapshot-")
        copy = Path(folder.name) / db.name
        try:
            shutil.copyfile(db, copy)
            if _size(_sidecar(db, "-wal")):
                shutil.copyfile(_sidecar(db, "-wal"), _sidecar(copy, "-wal"))
        except OSError as e:
            folder.cleanup()
            raise StoreError(
                f"cannot copy {db} to read it: {e.strerror}",
                hint="check that it is readable",
            ) from e
        if _state(db) == before:
            try:
                return ReadOnlyConnection(_open(copy), folder)
            except BaseException:
                folder.cleanup()
                raise
        folder.cleanup()  # a writer changed it meanwhile: copy again
    raise StoreError(
        f"{db} kept changing while it was copied to be read",
        hint="run the command again when the writer is idle",
    )


def _state(db: Path) -> tuple[tuple[int, int, int, int] | None, ...]:
    return tuple(_stat_key(p) for p in (db, _sidecar(db, "-wal"), _sidecar(db, "-shm")))


def _stat_key(path: Path) -> tuple[int, int, int, int] | None:
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
