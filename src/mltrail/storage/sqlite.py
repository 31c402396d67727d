"""The default store: one SQLite file, WAL, ``synchronous=FULL``, append-only by triggers.

A store opened ``read_only`` (a home this process may not write) writes nothing,
not even SQLite's ``-wal`` and ``-shm`` files: see :mod:`mltrail.storage.readonly`.

Appends run in ``BEGIN IMMEDIATE`` transactions, so several processes appending
to one file are serialised by SQLite's write lock: seq and prev never fork, and
an append either lands whole or not at all. Triggers abort every UPDATE and
DELETE on the ledger tables, whoever issues them through SQLite.

The one deletion allowed is a purged blob's. Storing a purge record (of the kind
``KindRoles.purge_kind`` names) adds a row to ``purges`` in the same transaction
(a trigger on ``records``); the trigger on ``blobs`` lets a blob be deleted only
when such a row names it, and ``purges`` rows can never be changed, deleted or
added without their record.
Erasing then deletes the bytes with ``secure_delete`` on, rebuilds the file
(``VACUUM``: b-tree rebalancing can leave stale copies of cells in pages that
``secure_delete`` never frees) and truncates the WAL, before marking the purge
done in ``erasures``. Someone able to write the file can still drop the triggers;
verification, not the store, decides whether a missing blob was purged.
"""

from __future__ import annotations

import sqlite3
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from mltrail.errors import ConfigError, StoreError
from mltrail.storage.base import (
    TIME_ORDER_SQL,
    CheckpointRow,
    ColumnRow,
    KindRoles,
    NewBatch,
    Prepare,
    Store,
    StoredEvidence,
    StoredPurge,
    StoredRow,
    StoreHead,
    build_head,
    head_after,
)
from mltrail.storage.readonly import ReadOnlyConnection, connect_read_only
from mltrail.storage.sqlite_schema import (
    EVIDENCE_SCHEMA,
    MIGRATIONS,
    PURGES_QUERY,
    SCHEMA,
    TABLES,
    TRIGGER,
    purge_schema,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from contextlib import AbstractContextManager

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

T = TypeVar("T")

SCHEMA_VERSION = "1"

# SQLite keeps a value of any type in any column: someone editing the file can
# store a record or a hash as TEXT or a number. Blob columns are read through
# CAST(... AS BLOB), the value's bytes whatever its type, so verification
# compares them and names the altered seq instead of the read failing on a type.


class SQLiteStore(Store):
    """A ledger in one SQLite file.

    Args:
        path: the database file.
        roles: the kinds of records that set the key epoch, reset the time
            floor and purge a blob (the ledger's, see ``KindRoles``).
        create: create the file and schema if missing (else a missing file is an error).
        busy_timeout: seconds to wait for another process's lock before failing.
        read_only: only read, writing nothing into the file's folder (for a
            ledger this process may not write; appends then fail).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        roles: KindRoles,
        create: bool = False,
        busy_timeout: float = 60.0,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.roles = roles
        self._epoch_marks = ",".join("?" * len(roles.epoch_kinds))
        self.read_only = read_only
        if not create and not self.path.exists():
            raise ConfigError(
                f"no ledger at {self.path}", hint="run `mltrail init` to create one"
            )
        self._busy_timeout = busy_timeout
        self._reader: ReadOnlyConnection | None = None
        self._conn = self._connect_read_only() if read_only else self._connect(create)
        self._cached: StoreHead | None = None
        self._purge_schema = self._has_purges()
        self._migrated = False

    def _connect(self, create: bool) -> sqlite3.Connection:
        try:
            timeout = self._busy_timeout
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=timeout)
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = FULL")
            conn.execute("PRAGMA secure_delete = ON")
            if create:
                self._create_schema(conn)
            conn.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.DatabaseError as e:
            raise StoreError(
                f"cannot open ledger {self.path}: {e}",
                hint="the file is not an mltrail ledger, is corrupt, or is not readable",
            ) from e
        if mode.lower() != "wal":
            raise StoreError(
                f"ledger {self.path} could not be put in WAL mode ({mode})"
            )
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        try:
            self._reader = connect_read_only(self.path)
            self._reader.conn.execute("SELECT count(*) FROM meta").fetchone()
        except sqlite3.DatabaseError as e:
            if self._reader is not None:
                self._reader.close()
            raise StoreError(
                f"cannot open ledger {self.path}: {e}",
                hint="the file is not an mltrail ledger, is corrupt, or is not readable",
            ) from e
        return self._reader.conn

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        conn.executescript("BEGIN IMMEDIATE;" + SCHEMA + "COMMIT;")
        conn.execute("BEGIN IMMEDIATE")
        self._add_purge_schema(conn)
        self._add_evidence_schema(conn)
        conn.execute("COMMIT")

    @staticmethod
    def _add_evidence_schema(conn: sqlite3.Connection) -> None:
        """The checkpoint evidence table and its triggers (in a write transaction)."""
        for statement in EVIDENCE_SCHEMA:
            conn.execute(statement)

    def _has_table(self, name: str) -> bool:
        found = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return found is not None

    def _add_purge_schema(self, conn: sqlite3.Connection) -> None:
        """Purge tables and every append-only trigger (inside a write transaction)."""
        for statement in purge_schema(self.roles.purge_kind):
            conn.execute(statement)
        for table in TABLES:
            for op in ("UPDATE", "DELETE"):
                conn.execute(TRIGGER.format(table=table, op=op))

    def _has_purges(self) -> bool:
        found = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'trigger' AND name = 'records_purge'"
        ).fetchone()
        return found is not None

    def _migrate(self) -> None:
        """Bring an older file up to date (inside a write transaction)."""
        if not self._migrated:
            columns = self._conn.execute("PRAGMA table_info(checkpoints)").fetchall()
            if "floor" not in {c[1] for c in columns}:
                self._conn.execute(MIGRATIONS)
            if not self._has_purges():
                self._add_purge_schema(self._conn)
            self._migrated = self._purge_schema = True

    def _append(self, prepare: Prepare) -> NewBatch:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            self._migrate()
            before = self._head_in_txn(full=True)
            batch = prepare(before)
            conn.executemany(
                "INSERT INTO records (seq, hash, kind, run, time, record) VALUES (?,?,?,?,?,?)",
                [(r.seq, r.hash, r.kind, r.run, r.time, r.data) for r in batch.records],
            )
            conn.executemany(
                "INSERT INTO merkle_nodes (level, idx, hash) VALUES (?,?,?)",
                batch.nodes,
            )
            if batch.checkpoint is not None:
                conn.execute(
                    "INSERT INTO checkpoints (size, note, floor) VALUES (?, ?, ?)",
                    (batch.head.size, batch.checkpoint, batch.head.floor_time),
                )
            conn.execute("COMMIT")
        except BaseException as e:
            if conn.in_transaction:  # SQLite may have rolled back already (disk full)
                conn.execute("ROLLBACK")
            self._cached = None
            if getattr(e, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                raise StoreError(
                    f"the disk holding ledger {self.path} is full: nothing was written",
                    hint="free some space and run the command again",
                ) from e
            raise
        self._cached = head_after(before, batch, self.roles.epoch_kinds)
        return batch

    def _head_in_txn(self, *, full: bool = False) -> StoreHead:
        row = self._conn.execute("SELECT max(seq) FROM records").fetchone()
        size = 0 if row[0] is None else row[0] + 1
        cached = self._cached
        if (
            cached is not None
            and cached.size == size
            and (not full or cached.checkpoint is not None)
        ):
            return cached
        last = self._conn.execute(
            "SELECT CAST(hash AS BLOB), time FROM records WHERE seq = ?", (size - 1,)
        ).fetchone()
        epoch = self._conn.execute(
            f"SELECT max(seq) FROM records WHERE kind IN ({self._epoch_marks})",  # noqa: S608
            self.roles.epoch_kinds,
        ).fetchone()[0]
        key_epoch = 0 if epoch is None else epoch + 1
        floor, checkpoint = self._append_state(size) if full else (None, None)
        head = build_head(
            size,
            (bytes(last[0]), last[1]) if last else None,
            key_epoch,
            self._node,
            floor_time=floor,
            checkpoint=checkpoint,
        )
        self._cached = head
        return head

    def _append_state(self, size: int) -> tuple[str | None, str | None]:
        """(newest entry time since the last reset record, newest checkpoint note).

        The newest checkpoint row keeps the floor as of its size; only when it does
        not cover the head (a file from mltrail 0.1) are the records scanned.
        """
        row = self._conn.execute(
            "SELECT size, note, floor FROM checkpoints ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is not None and row[0] == size and row[2] is not None:
            return row[2], row[1]
        floor = self._time_floor()
        return (floor[0] if floor else None, row[1] if row is not None else None)

    def _time_floor(self) -> tuple[str, int] | None:
        reset = self._conn.execute(
            "SELECT max(seq) FROM records WHERE kind = ?", (self.roles.reset_kind,)
        ).fetchone()[0]
        row = self._conn.execute(
            "SELECT time, seq FROM records WHERE seq >= ? "  # noqa: S608 (constant)
            f"ORDER BY {TIME_ORDER_SQL} DESC, seq LIMIT 1",
            (reset or 0,),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    @contextmanager
    def _read(self) -> Iterator[None]:
        """One read transaction for several reads (inside ``snapshot()``, its
        own): in WAL mode its first read fixes what every later one sees."""
        if self._in_snapshot:
            yield
            return
        self._conn.execute("BEGIN")
        try:
            yield
        finally:
            if self._conn.in_transaction:
                self._conn.execute("COMMIT")

    def _snapshot(self) -> AbstractContextManager[object]:
        return self._read()

    def _head(self) -> StoreHead:
        with self._read():
            return self._head_in_txn()

    def _append_head(self) -> StoreHead:
        with self._read():
            return self._head_in_txn(full=True)

    def _rows(self, start: int, stop: int | None) -> Iterator[StoredRow]:
        stop = (1 << 62) if stop is None else stop
        while start < stop:
            batch = self._conn.execute(
                "SELECT seq, CAST(hash AS BLOB), CAST(record AS BLOB) FROM records "
                "WHERE seq >= ? AND seq < ? "
                "ORDER BY seq LIMIT 2000",
                (start, stop),
            ).fetchall()
            if not batch:
                return
            yield from (StoredRow(s, bytes(h), bytes(d)) for s, h, d in batch)
            start = batch[-1][0] + 1

    def _column_rows(self, start: int, stop: int | None) -> Iterator[ColumnRow]:
        stop = (1 << 62) if stop is None else stop
        while start < stop:
            batch = self._conn.execute(
                "SELECT seq, CAST(hash AS BLOB), CAST(record AS BLOB), kind, run, "
                "time FROM records WHERE seq >= ? AND seq < ? ORDER BY seq LIMIT 2000",
                (start, stop),
            ).fetchall()
            if not batch:
                return
            yield from (
                ColumnRow(s, bytes(h), bytes(d), k, r, t) for s, h, d, k, r, t in batch
            )
            start = batch[-1][0] + 1

    def _rows_of_kinds(self, kinds: tuple[str, ...], start: int) -> Iterator[StoredRow]:
        marks = ",".join("?" * len(kinds))
        cursor = self._conn.execute(
            "SELECT seq, CAST(hash AS BLOB), CAST(record AS BLOB) FROM records "  # noqa: S608
            f"WHERE kind IN ({marks}) AND seq >= ? ORDER BY seq",
            (*kinds, start),
        )
        for s, h, d in cursor.fetchall():
            yield StoredRow(s, bytes(h), bytes(d))

    def _node(self, level: int, index: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT CAST(hash AS BLOB) FROM merkle_nodes WHERE level = ? AND idx = ?",
            (level, index),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _node_range(self, level: int, start: int, stop: int) -> dict[int, bytes]:
        rows = self._conn.execute(
            "SELECT idx, CAST(hash AS BLOB) FROM merkle_nodes WHERE level = ? AND idx >= ? "
            "AND idx < ?",
            (level, start, stop),
        )
        return {i: bytes(h) for i, h in rows.fetchall()}

    def _latest_checkpoint(self) -> CheckpointRow | None:
        row = self._conn.execute(
            "SELECT id, size, note FROM checkpoints ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else CheckpointRow(f"checkpoint #{row[0]}", *row[1:])

    def _put_blob(self, digest: str, data: bytes) -> bool:
        if not self._purge_schema:
            self._write(self._migrate)
        cursor = self._conn.execute(
            "INSERT OR IGNORE INTO blobs (digest, size, data) SELECT ?, ?, ? "
            "WHERE NOT EXISTS (SELECT 1 FROM purges WHERE digest = ?)",
            (digest, len(data), data, digest),
        )
        return cursor.rowcount == 1

    def _put_blobs(self, blobs: Sequence[tuple[str, bytes]]) -> list[bool]:
        if not self._purge_schema:
            self._write(self._migrate)  # before: _put_blob would nest a transaction
        return self._write(lambda: [self._put_blob(d, data) for d, data in blobs])

    def _write(self, action: Callable[[], T]) -> T:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            result = action()
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
        return result

    def _find_blobs(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        rows = self._conn.execute(
            "SELECT digest, size FROM blobs WHERE digest >= ? AND digest < ? "
            "ORDER BY digest LIMIT ?",
            (prefix, prefix + "~", limit),
        )
        return [(d, s) for d, s in rows.fetchall()]

    def _purges(self, digest: str | None) -> list[StoredPurge]:
        if not self._purge_schema and not self._has_purges():
            return []  # an older file no one has written to since
        if digest is None:
            rows = self._conn.execute(PURGES_QUERY + " ORDER BY p.seq")
        else:
            rows = self._conn.execute(PURGES_QUERY + " WHERE p.digest = ?", (digest,))
        return [StoredPurge(d, s, q, bool(e)) for d, s, q, e in rows.fetchall()]

    def _erase_blob(self, digest: str) -> bool:
        def delete() -> bool:
            self._migrate()
            if not self._purges(digest):
                raise StoreError(
                    f"refusing to delete blob {digest}: no stored {self.roles.purge_kind} "
                    "record names it",
                    hint="blobs are erased by `mltrail purge`",
                )
            cursor = self._conn.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
            return cursor.rowcount == 1

        held = self._write(delete)
        self._conn.execute("VACUUM")  # no stale copy of a cell left in any page
        self._truncate_wal(required=True)
        self._conn.execute(
            "INSERT OR IGNORE INTO erasures (digest) VALUES (?)", (digest,)
        )
        self._truncate_wal(required=False)
        return held

    def _truncate_wal(self, *, required: bool) -> None:
        busy = self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy and required:
            raise StoreError(
                f"the blob was deleted, but readers of {self.path} kept its "
                "write-ahead log from being emptied, which may still hold its bytes",
                hint="close other mltrail processes and run `mltrail purge --resume`",
            )

    def _get_blob(self, digest: str) -> bytes | None:
        row = self._conn.execute(
            "SELECT CAST(data AS BLOB) FROM blobs WHERE digest = ?", (digest,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _add_checkpoint(self, size: int, text: str) -> None:
        self._conn.execute(
            "INSERT INTO checkpoints (size, note) VALUES (?, ?)", (size, text)
        )

    def _checkpoints(self) -> list[CheckpointRow]:
        rows = self._conn.execute("SELECT id, size, note FROM checkpoints ORDER BY id")
        return [CheckpointRow(f"checkpoint #{i}", s, n) for i, s, n in rows.fetchall()]

    def _add_evidence(
        self, kind: str, size: int, checkpoint: str, data: bytes, added: str
    ) -> None:
        def insert() -> None:
            self._add_evidence_schema(self._conn)  # older files gain the table
            self._conn.execute(
                "INSERT INTO checkpoint_evidence (kind, size, checkpoint, data, added) "
                "VALUES (?, ?, ?, ?, ?)",
                (kind, size, checkpoint, bytes(data), added),
            )

        self._write(insert)

    def _evidence(self) -> list[StoredEvidence]:
        if not self._has_table("checkpoint_evidence"):
            return []  # a file no mltrail with evidence has written to
        rows = self._conn.execute(
            "SELECT id, kind, size, checkpoint, CAST(data AS BLOB), added "
            "FROM checkpoint_evidence "
            "ORDER BY id"
        )
        return [StoredEvidence(i, k, s, c, bytes(d), a) for i, k, s, c, d, a in rows]

    def _meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def _init_meta(self, values: dict[str, str]) -> None:
        self._conn.executemany(
            "INSERT OR IGNORE INTO meta (key, value) VALUES (?, ?)",
            sorted(values.items()),
        )

    def _close(self) -> None:
        if self._reader is not None:
            self._reader.close()
        else:
            self._conn.close()
