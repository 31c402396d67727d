"""The default store: one SQLite file, WAL, ``synchronous=FULL``, append-only by triggers.

A store opened ``read_only`` (a home this process may not write) writes nothing,
not even SQLite's ``-wal`` and ``-shm`` files: see :mod:`mltrail.storage.readonly`.

Appends run in ``BEGIN IMMEDIATE`` transactions, so several processes appending
to one file are serialised by SQLite's write lock: seq and prev never fork, and
an append either lands whole or not at all. Triggers abort every UPDATE and
DELETE on the ledger tables, whoever issues them through SQLite.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import TYPE_CHECKING

from mltrail.errors import ConfigError, StoreError
from mltrail.storage.base import Prepare, Store, StoredRow, build_head
from mltrail.storage.readonly import ReadOnlyConnection, connect_read_only

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mltrail.core.chain import Batch, ChainHead
    from mltrail.core.verify import StoredCheckpoint

__all__ = ["SCHEMA_VERSION", "SQLiteStore"]

SCHEMA_VERSION = "1"
_TABLES = ("records", "merkle_nodes", "blobs", "checkpoints", "meta")
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS records (
    seq INTEGER PRIMARY KEY,
    hash BLOB NOT NULL,
    kind TEXT NOT NULL,
    run TEXT,
    time TEXT NOT NULL,
    record BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS records_kind ON records (kind, seq);
CREATE INDEX IF NOT EXISTS records_run ON records (run, seq) WHERE run IS NOT NULL;
CREATE INDEX IF NOT EXISTS records_time ON records (time);
CREATE TABLE IF NOT EXISTS merkle_nodes (
    level INTEGER NOT NULL, idx INTEGER NOT NULL, hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS blobs (
    digest TEXT PRIMARY KEY, size INTEGER NOT NULL, data BLOB NOT NULL
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    id INTEGER PRIMARY KEY, size INTEGER NOT NULL, note TEXT NOT NULL
);
"""
_TRIGGER = """
CREATE TRIGGER IF NOT EXISTS {table}_no_{op} BEFORE {op} ON {table}
BEGIN SELECT RAISE(ABORT, 'mltrail ledger tables are append-only: {op} refused'); END;
"""
_KEY_KINDS = "('key.added', 'key.revoked')"
# Added after the first release: created by the first append on older files.
_MIGRATIONS = "CREATE INDEX IF NOT EXISTS records_time ON records (time)"


class SQLiteStore(Store):
    """A ledger in one SQLite file.

    Args:
        path: the database file.
        create: create the file and schema if missing (else a missing file is an error).
        busy_timeout: seconds to wait for another process's lock before failing.
        read_only: only read, writing nothing into the file's folder (for a
            ledger this process may not write; appends then fail).
    """

    def __init__(
        self,
        path: str | Path,
        *,
        create: bool = False,
        busy_timeout: float = 60.0,
        read_only: bool = False,
    ) -> None:
        self.path = Path(path)
        self.location = str(self.path)
        self.read_only = read_only
        if not create and not self.path.exists():
            raise ConfigError(
                f"no ledger at {self.path}", hint="run `mltrail init` to create one"
            )
        self._busy_timeout = busy_timeout
        self._reader: ReadOnlyConnection | None = None
        self._conn = self._connect_read_only() if read_only else self._connect(create)
        self._cached: ChainHead | None = None
        self._migrated = False

    def _connect(self, create: bool) -> sqlite3.Connection:
        try:
            timeout = self._busy_timeout
            conn = sqlite3.connect(self.path, isolation_level=None, timeout=timeout)
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
            conn.execute("PRAGMA synchronous = FULL")
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

    @staticmethod
    def _create_schema(conn: sqlite3.Connection) -> None:
        script = _SCHEMA + "".join(
            _TRIGGER.format(table=t, op=op)
            for t in _TABLES
            for op in ("UPDATE", "DELETE")
        )
        conn.executescript("BEGIN IMMEDIATE;" + script + "COMMIT;")

    def _append(self, prepare: Prepare) -> Batch:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            if not self._migrated:
                conn.execute(_MIGRATIONS)
                self._migrated = True
            batch = prepare(self._head_in_txn(full=True))
            conn.executemany(
                "INSERT INTO records (seq, hash, kind, run, time, record) VALUES (?,?,?,?,?,?)",
                [
                    (r.seq, r.hash, r.kind, r.run, r.time, r.record_bytes)
                    for r in batch.records
                ],
            )
            conn.executemany(
                "INSERT INTO merkle_nodes (level, idx, hash) VALUES (?,?,?)",
                batch.nodes,
            )
            if batch.checkpoint is not None:
                conn.execute(
                    "INSERT INTO checkpoints (size, note) VALUES (?, ?)",
                    (batch.head.size, batch.checkpoint),
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
        self._cached = batch.head
        return batch

    def _head_in_txn(self, *, full: bool = False) -> ChainHead:
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
            "SELECT hash, time FROM records WHERE seq = ?", (size - 1,)
        ).fetchone()
        epoch = self._conn.execute(
            f"SELECT max(seq) FROM records WHERE kind IN {_KEY_KINDS}"  # noqa: S608
        ).fetchone()[0]
        key_epoch = 0 if epoch is None else epoch + 1
        floor, checkpoint = self._append_state() if full else (None, None)
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

    def _append_state(self) -> tuple[str | None, str | None]:
        """(newest entry time since the last clock.reset, newest checkpoint note)."""
        floor = self._time_floor(indexed=True)
        latest = self._latest_checkpoint()
        return (
            floor[0] if floor else None,
            latest.text if latest is not None else None,
        )

    def _time_floor(self, *, indexed: bool = False) -> tuple[str, int] | None:
        # Appends run the migration that creates records_time first; readers of
        # an older file may not have it and scan instead.
        hint = "INDEXED BY records_time " if indexed else ""
        reset = self._conn.execute(
            "SELECT max(seq) FROM records WHERE kind = 'clock.reset'"
        ).fetchone()[0]
        row = self._conn.execute(
            f"SELECT time, seq FROM records {hint}WHERE seq >= ? "  # noqa: S608
            "ORDER BY time DESC, seq LIMIT 1",
            (reset or 0,),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def _head(self) -> ChainHead:
        self._conn.execute("BEGIN")
        try:
            return self._head_in_txn()
        finally:
            self._conn.execute("COMMIT")

    def _rows(self, start: int, stop: int | None) -> Iterator[StoredRow]:
        stop = (1 << 62) if stop is None else stop
        while start < stop:
            batch = self._conn.execute(
                "SELECT seq, hash, record FROM records WHERE seq >= ? AND seq < ? "
                "ORDER BY seq LIMIT 2000",
                (start, stop),
            ).fetchall()
            if not batch:
                return
            yield from (StoredRow(s, bytes(h), bytes(d)) for s, h, d in batch)
            start = batch[-1][0] + 1

    def _rows_of_kinds(self, kinds: tuple[str, ...]) -> Iterator[StoredRow]:
        marks = ",".join("?" * len(kinds))
        cursor = self._conn.execute(
            f"SELECT seq, hash, record FROM records WHERE kind IN ({marks}) ORDER BY seq",  # noqa: S608
            kinds,
        )
        for s, h, d in cursor.fetchall():
            yield StoredRow(s, bytes(h), bytes(d))

    def _node(self, level: int, index: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?", (level, index)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _node_range(self, level: int, start: int, stop: int) -> dict[int, bytes]:
        rows = self._conn.execute(
            "SELECT idx, hash FROM merkle_nodes WHERE level = ? AND idx >= ? "
            "AND idx < ?",
            (level, start, stop),
        )
        return {i: bytes(h) for i, h in rows.fetchall()}

    def _latest_checkpoint(self) -> StoredCheckpoint | None:
        from mltrail.core.verify import StoredCheckpoint

        row = self._conn.execute(
            "SELECT id, size, note FROM checkpoints ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return (
            None if row is None else StoredCheckpoint(f"checkpoint #{row[0]}", *row[1:])
        )

    def _put_blob(self, digest: str, data: bytes) -> bool:
        cursor = self._conn.execute(
            "INSERT OR IGNORE INTO blobs (digest, size, data) VALUES (?, ?, ?)",
            (digest, len(data), data),
        )
        return cursor.rowcount == 1

    def _get_blob(self, digest: str) -> bytes | None:
        row = self._conn.execute(
            "SELECT data FROM blobs WHERE digest = ?", (digest,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _add_checkpoint(self, size: int, text: str) -> None:
        self._conn.execute(
            "INSERT INTO checkpoints (size, note) VALUES (?, ?)", (size, text)
        )

    def _checkpoints(self) -> list[StoredCheckpoint]:
        from mltrail.core.verify import StoredCheckpoint

        rows = self._conn.execute("SELECT id, size, note FROM checkpoints ORDER BY id")
        return [
            StoredCheckpoint(f"checkpoint #{i}", s, n) for i, s, n in rows.fetchall()
        ]

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
