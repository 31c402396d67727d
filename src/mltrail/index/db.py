"""The index database: open, catch up with the ledger, rebuild.

The index lives beside the ledger (``$MLTRAIL_HOME/index.db``) and remembers the
last record it ingested and that record's hash. Opening it catches up with new
records; a ledger that no longer holds that record with that hash (another
ledger, a restore from backup) or an index of another version is rebuilt from
scratch. Deleting the file is always safe.

A blob purged since the index was built (``mltrail purge``) may have fed it (a
written dataset's file hashes come from its manifest), so the index remembers
how many purges the store held and is rebuilt when that changes, then its file
is rewritten (``VACUUM``, ``secure_delete``) and its WAL emptied, so nothing
read from the purged blob is left in it.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import sys
from typing import TYPE_CHECKING, Any

from mltrail.core.limits import MAX_RECORD_DEPTH, exceeds_text_depth
from mltrail.errors import SideStoreError
from mltrail.index.tables import INDEX_VERSION, SCHEMA

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping
    from pathlib import Path

    from mltrail.ledger.ledger import Ledger

__all__ = ["INDEX_FILE", "Index"]

INDEX_FILE = "index.db"
_BATCH = 5_000


class Index:
    """A derived, rebuildable view of one ledger, in SQLite.

    Args:
        path: the index file, or ``None`` for an in-memory index (rebuilt each time).
        ledger: the ledger it mirrors.
    """

    def __init__(self, path: Path | None, ledger: Ledger) -> None:
        self.path = path
        self.ledger = ledger
        self.conn = _connect(path)
        # runs whose rows were found to agree with their records (index.check)
        self.checked_runs: set[str] = set()
        # where a warning about this index goes (the CLI sets its stderr console)
        self.warn: Callable[[str], None] = _stderr
        try:
            if self._stored_version() in (None, INDEX_VERSION):
                self.conn.executescript(SCHEMA)
                return
        except sqlite3.Error:  # tables of another shape: made by hand, say
            if self.conn.in_transaction:
                self.conn.rollback()
        # made by another version or by hand: its tables may not fit the schema
        try:
            with _transaction(self.conn):
                self._reset()
        except sqlite3.Error as e:
            self.conn.close()
            raise SideStoreError(
                f"cannot open the index {path}: {e}",
                hint="delete it (it is rebuilt from the ledger) or check permissions",
            ) from e

    def _stored_version(self) -> str | None:
        exists = self.conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
        ).fetchone()
        return self._meta("version") if exists else None

    # -- catching up ----------------------------------------------------------

    def sync(
        self,
        progress: Callable[[int, int], None] | None = None,
        *,
        rebuild: bool = False,
    ) -> int:
        """Ingest the records added since the last sync; return how many.

        Starts over (in the same transaction, so readers never see a half-built
        index) when ``rebuild`` is set, the index was made by another version,
        or for a ledger this one does not extend.
        """
        head = self.ledger.head()
        purges = str(len(self.ledger.store.purges()))
        purged = (self._meta("purges") or "0") != purges
        fresh = not (rebuild or purged) and self._current(head.size)
        if fresh and not self._ends_where_it_says():
            self.warn(
                f"warning: the index ({self.path}) says it holds records up to seq "
                f"{self.last_seq} but its last record row is another; it is "
                "rebuilt from the ledger. Someone or something changed index.db"
            )
            rebuild, fresh = True, False
        self.checked_runs.clear()
        if fresh and self.last_seq + 1 >= head.size:
            return 0
        with _transaction(self.conn):
            if rebuild or purged or not self._current(head.size):
                self._reset()
            start = self.last_seq + 1
            done = 0 if start >= head.size else self._ingest(start, head.size, progress)
            self._set_meta(purges=purges)
        if purged and self.path is not None:
            self._erase_stale_pages()
        return done

    def _erase_stale_pages(self) -> None:
        """Rewrite the file and empty its WAL: no copy of a dropped row is left."""
        self.conn.execute("PRAGMA secure_delete = ON")
        self.conn.execute("VACUUM")
        busy = self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
        if busy:
            raise SideStoreError(
                f"the index {self.path} was rebuilt after a purge, but another "
                "process kept its write-ahead log from being emptied",
                hint="run `mltrail reindex` when no other mltrail process is running",
            )

    def rebuild(self, progress: Callable[[int, int], None] | None = None) -> int:
        """Drop every row and ingest the whole ledger again; return the record count."""
        return self.sync(progress, rebuild=True)

    @property
    def last_seq(self) -> int:
        """The seq of the last ingested record (-1 when empty)."""
        value = self._meta("last_seq")
        return -1 if value is None else int(value)

    @property
    def skipped(self) -> list[int]:
        """Seqs of records that cannot be read, left out of the index.

        Only a damaged ledger, or one written by an older version beyond today's
        limits, has any; ``mltrail verify`` reports them as malformed.
        """
        value = self._meta("skipped")
        return [int(seq) for seq in value.split(",")] if value else []

    def _current(self, size: int) -> bool:
        if self._meta("version") != INDEX_VERSION:
            return False
        if self._meta("origin") not in (None, self.ledger.origin):
            return False
        last = self.last_seq
        if last < 0:
            return True
        if last >= size:
            return False
        rows = list(self.ledger.store.rows(last, last + 1))
        return bool(rows) and rows[0].hash.hex() == self._meta("last_hash")

    def _ends_where_it_says(self) -> bool:
        """Whether the last ``records`` row is the last seq the index remembers
        (or one left out as unreadable): an index told it ingested records it
        never did would hide them from every answer."""
        last = self.last_seq
        (top,) = self.conn.execute("SELECT max(seq) FROM records").fetchone()
        if top == last or (top is None and last < 0):
            return True
        skipped = self.skipped
        return bool(skipped) and skipped[-1] == last and (top is None or top < last)

    def _ingest(
        self, start: int, stop: int, progress: Callable[[int, int], None] | None
    ) -> int:
        from mltrail.index.ingest import ingest_entry  # only when catching up

        get_blob = self.ledger.store.get_blob
        cur = self.conn.cursor()
        done, last_hash, skipped = 0, None, self.skipped
        for row in self.ledger.store.rows(start, stop):
            entry = _readable_entry(row.data)
            if entry is None:
                skipped.append(row.seq)
            else:
                ingest_entry(cur, get_blob, row.seq, entry)
            last_hash, done = row.hash, done + 1
            if progress is not None and done % _BATCH == 0:
                progress(done, stop - start)
        if last_hash is not None:
            self._set_meta(
                version=INDEX_VERSION,
                origin=self.ledger.origin,
                last_seq=str(start + done - 1),
                last_hash=last_hash.hex(),
                skipped=",".join(map(str, skipped)),
            )
        if progress is not None:
            progress(done, stop - start)
        return done

    def _reset(self) -> None:
        """Drop every table and create them again (inside the caller's transaction)."""
        tables = [
            r[0]
            for r in self.conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'table' "
                "AND name NOT LIKE 'sqlite_%'"
            )
        ]
        for table in tables:  # any name, in a file someone else wrote
            quoted = table.replace('"', '""')
            self.conn.execute(f'DROP TABLE IF EXISTS "{quoted}"')
        for statement in SCHEMA.split(";"):
            if statement.strip():
                self.conn.execute(statement)

    # -- meta -----------------------------------------------------------------

    def _meta(self, key: str) -> str | None:
        row = self.conn.execute(
            "SELECT value FROM meta WHERE key = ?", (key,)
        ).fetchone()
        return None if row is None else str(row[0])

    def _set_meta(self, **values: str) -> None:
        self.conn.executemany(
            "INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", values.items()
        )

    # -- reading --------------------------------------------------------------

    def query(
        self, sql: str, params: tuple[Any, ...] | list[Any] | Mapping[str, Any] = ()
    ) -> list[Any]:
        """Rows of a read query (``params`` by position, or by name for ``:name``).

        Raises:
            StoreError: the index cannot be read (locked for too long, corrupt).
        """
        try:
            return self.conn.execute(sql, params).fetchall()
        except sqlite3.OperationalError as e:
            raise SideStoreError(
                f"cannot read the index {self.path or '(in memory)'}: {e}",
                hint="`mltrail reindex` rebuilds it from the ledger",
            ) from e

    def close(self) -> None:
        """Close the database."""
        self.conn.close()


def _stderr(message: str) -> None:
    sys.stderr.write(message + "\n")
    sys.stderr.flush()


def _readable_entry(data: bytes) -> dict[str, Any] | None:
    """A stored record's entry, or None when its bytes cannot be parsed.

    Plain ``json.loads`` (fast; integers as written), after the codec's depth limit.
    """
    if exceeds_text_depth(data, MAX_RECORD_DEPTH):
        return None
    try:
        record = json.loads(data)
    except ValueError:
        return None
    entry = record.get("entry") if isinstance(record, dict) else None
    return entry if isinstance(entry, dict) else None


def _connect(path: Path | None) -> sqlite3.Connection:
    try:
        conn = sqlite3.connect(
            ":memory:" if path is None else path, isolation_level=None, timeout=60.0
        )
        conn.execute("PRAGMA busy_timeout = 60000")
        if path is not None:
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA synchronous = NORMAL")
    except sqlite3.Error as e:
        raise SideStoreError(
            f"cannot open the index {path}: {e}",
            hint="delete it (it is rebuilt from the ledger) or check permissions",
        ) from e
    return conn


@contextlib.contextmanager
def _transaction(conn: sqlite3.Connection) -> Iterator[None]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")
