"""A ledger in PostgreSQL (``mltrail[postgres]``, psycopg 3): the team's shared store.

``postgresql://user@host:5432/db`` opens the tables in the connection's current
schema (``?options=-csearch_path%3Dteam_a`` picks another one). The tables,
triggers and migrations are in :mod:`mltrail.storage.postgres_schema`;
``mltrail db init`` applies them and sets up a role that may only SELECT and
INSERT (:func:`init_database`).

Appends run in one READ COMMITTED transaction that first takes a transaction
advisory lock of this schema: appenders in every process and on every host queue
on it, each reads the head only once it holds the lock, so seq and prev never
fork, and the primary key on seq refuses a writer that skipped the lock. The
commit waits for the WAL flush (``synchronous_commit`` is raised to ``on`` if the
server has it off), so an append is durable when it returns.

As in SQLite, the one deletion allowed is a purged blob's (a trigger checks it
for everyone; the application role reaches it only through
``mltrail_erase_blob``). PostgreSQL keeps a deleted row's bytes in the table's
files until vacuum reuses the space, and in WAL archives and backups until they
expire; see ADR 0022.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import re
import select
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import psycopg
from psycopg import sql

from mltrail.errors import ConfigError, InputError, StoreError
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
    frontier_nodes,
    head_after,
)
from mltrail.storage.postgres_schema import (
    APPEND_ONLY_TABLES,
    BLOB_CHECK,
    PROTECTIONS,
    SCHEMA_VERSION,
    VERSION_TABLE,
    blob_check_statement,
    function_sources,
    function_statement,
    ledger_migrations,
    protection_statements,
)
from mltrail.storage.registry import display_url

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Sequence
    from contextlib import AbstractContextManager

    from mltrail.storage.base import RunHold

__all__ = [
    "SCHEMA_VERSION",
    "DatabaseInit",
    "PostgresStore",
    "RunHeldError",
    "check_kept",
    "connection_lost",
    "init_database",
    "protection_gaps",
]

_APPEND_LOCK = 0x6D6C7431  # advisory lock class ids ("mlt1", "mlt2"); the schema's
_MIGRATE_LOCK = 0x6D6C7432  # hashtext is the object id
_COPY_FROM = 16  # rows; fewer go as INSERTs
_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")
_PURGES_QUERY = (
    "SELECT p.digest, p.size, p.seq, e.digest IS NOT NULL FROM purges p "
    "LEFT JOIN erasures e ON e.digest = p.digest"
)


def connect(url: str, *, busy_timeout: float = 60.0) -> psycopg.Connection[Any]:
    """An autocommit connection for a store, durable commits, bounded lock waits.

    Raises:
        StoreError: the server cannot be reached or refuses the login.
    """
    try:
        conn = psycopg.connect(
            url, autocommit=True, connect_timeout=10, application_name="mltrail"
        )
    except psycopg.Error as e:
        reason = str(e).strip().splitlines()[-1] if str(e).strip() else type(e).__name__
        raise StoreError(
            f"cannot connect to PostgreSQL at {display_url(url)}: {reason}",
            hint="check the URL, that the server runs, and the login "
            "(PGPASSWORD or ~/.pgpass for a password)",
        ) from e
    conn.execute(f"SET lock_timeout = {int(busy_timeout * 1000)}")
    if conn.execute("SHOW synchronous_commit").fetchone()[0] in ("off", "local"):
        conn.execute("SET synchronous_commit = on")
    return conn


def connection_lost(conn: psycopg.Connection[Any]) -> bool:
    """Whether an idle connection is gone: closed, or its socket has something
    to read although no query runs (the server said it is terminating it, for
    example when PostgreSQL restarted). Costs one ``select`` with no wait."""
    if conn.closed:
        return True
    try:
        readable, _, _ = select.select([conn.fileno()], [], [], 0)
    except (OSError, ValueError, psycopg.Error):
        return True
    return bool(readable)


def _schema_of(conn: psycopg.Connection[Any], url: str) -> str:
    schema = conn.execute("SELECT current_schema()").fetchone()[0]
    if schema is None:
        raise ConfigError(
            f"the search_path of {display_url(url)} names no existing schema",
            hint="create the schema, or fix options=-csearch_path=... in the URL",
        )
    return schema


def _version(conn: psycopg.Connection[Any], schema: str) -> int:
    table = f"{sql.Identifier(schema).as_string(conn)}.mltrail_schema"
    if conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()[0] is None:
        return 0
    found = conn.execute(f"SELECT max(version) FROM {table}").fetchone()[0]  # noqa: S608
    return found or 0


def _owner_hint(conn: psycopg.Connection[Any], schema: str, location: str) -> str:
    """What to run to upgrade ``schema``'s tables: `db init` connected as their
    owner, keeping the connecting role (not the owner) as the application role."""
    owner, user = conn.execute(
        "SELECT tableowner, current_user FROM pg_tables "
        "WHERE schemaname = %s AND tablename = 'mltrail_schema'",
        (schema,),
    ).fetchone() or (None, None)
    if owner is None or owner == user:
        return f"run `mltrail db init --db {location}` as the tables' owner"
    return (
        f"run `mltrail db init --db URL --role {user}` as {owner}, the tables' "
        f"owner (URL: {location} with {owner}'s login instead of {user}'s; "
        f"--role {user} keeps {user} the application role)"
    )


def migrate(
    conn: psycopg.Connection[Any],
    schema: str,
    migrations: Sequence[tuple[int, str, tuple[str, ...]]],
) -> list[int]:
    """Apply the migrations this schema lacks, in one transaction; the versions applied.

    Re-runnable: a schema already at its newest version gets no DDL at all (so an
    application role without CREATE may open it). ``migrations``: the ledger
    tables' (``ledger_migrations``) or the team server's control tables'.
    """
    if _version(conn, schema) >= migrations[-1][0]:
        return []
    quoted = sql.Identifier(schema).as_string(conn)
    applied = []
    with conn.transaction():
        conn.execute(
            "SELECT pg_advisory_xact_lock(%s, hashtext(%s))", (_MIGRATE_LOCK, schema)
        )
        current = _version(conn, schema)
        if current == 0:
            conn.execute(VERSION_TABLE.replace("{s}", quoted))
        for version, description, statements in migrations:
            if version <= current:
                continue
            script = ";\n".join(statements).replace("{s}", quoted)
            conn.execute(script.encode())  # one round trip (no parameters)
            conn.execute(
                f"INSERT INTO {quoted}.mltrail_schema (version, description) "  # noqa: S608
                "VALUES (%s, %s)",
                (version, description),
            )
            applied.append(version)
    return applied


_TRIGGER_STATES = {
    "D": "is disabled",
    "O": "fires in origin mode only (a session in replica mode skips it)",
    "R": "fires in replica mode only",
}


def _triggers(conn: psycopg.Connection[Any], schema: str) -> dict[tuple[str, str], str]:
    """(table, trigger) -> ``pg_trigger.tgenabled`` of the triggers on ``schema``'s
    tables (not PostgreSQL's own, which keep keys)."""
    rows = conn.execute(
        "SELECT c.relname, t.tgname, t.tgenabled FROM pg_trigger t "
        "JOIN pg_class c ON c.oid = t.tgrelid "
        "JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = %s AND NOT t.tgisinternal",
        (schema,),
    ).fetchall()
    return {(table, name): str(state) for table, name, state in rows}


def _has_blob_check(conn: psycopg.Connection[Any], schema: str) -> bool:
    return (
        conn.execute(
            "SELECT 1 FROM pg_constraint c JOIN pg_class t ON t.oid = c.conrelid "
            "JOIN pg_namespace n ON n.oid = t.relnamespace "
            "WHERE n.nspname = %s AND t.relname = 'blobs' AND c.conname = %s",
            (schema, BLOB_CHECK),
        ).fetchone()
        is not None
    )


def _functions_changed(
    conn: psycopg.Connection[Any], schema: str, purge_kind: str
) -> list[str]:
    """mltrail's functions in ``schema`` missing or whose body is not mltrail's."""
    quoted = sql.Identifier(schema).as_string(conn)
    found = dict(
        conn.execute(
            "SELECT p.proname, p.prosrc FROM pg_proc p "
            "JOIN pg_namespace n ON n.oid = p.pronamespace WHERE n.nspname = %s",
            (schema,),
        ).fetchall()
    )
    return [
        name
        for name, body in function_sources(purge_kind, quoted).items()
        if found.get(name) != body
    ]


def protection_gaps(
    conn: psycopg.Connection[Any], schema: str, purge_kind: str
) -> list[str]:
    """Each of mltrail's triggers on the ledger tables of ``schema`` missing or not
    firing as it should, each of its functions missing or replaced, and each
    rule or trigger on them that is not mltrail's (it may change or drop what is
    written): one sentence each. ``purge_kind``: the schema's."""
    found = _triggers(conn, schema)
    gaps = [
        f"mltrail's function {schema}.{name} is missing or not mltrail's (replaced): "
        "the refusals that call it may let changes through; `mltrail db init` as "
        "the owner sets it back"
        for name in _functions_changed(conn, schema, purge_kind)
    ]
    for trigger, (table, states) in PROTECTIONS.items():
        state = found.pop((table, trigger), None)
        if state is None:
            gaps.append(
                f"mltrail's trigger {trigger} on {schema}.{table} is missing: that "
                "table's refusals of changes are off; `mltrail db init` as the "
                "owner restores it"
            )
        elif state not in states:
            gaps.append(
                f"mltrail's trigger {trigger} on {schema}.{table} "
                f"{_TRIGGER_STATES.get(state, 'is in state ' + state)}: "
                "`mltrail db init` as the owner sets it firing always"
            )
    if not _has_blob_check(conn, schema):
        gaps.append(
            f"the constraint {BLOB_CHECK} on {schema}.blobs is missing: a blob's "
            "bytes may be stored under another digest; `mltrail db init` as the "
            "owner restores it"
        )
    rules = conn.execute(
        "SELECT tablename, rulename FROM pg_rules WHERE schemaname = %s", (schema,)
    ).fetchall()
    foreign = [("trigger", t, n) for t, n in found] + [("rule", t, n) for t, n in rules]
    gaps += [
        f"{what} {name} on {schema}.{table} is not mltrail's: it may change or "
        "drop what is written (the records were checked all the same)"
        for what, table, name in sorted(foreign)
        if table in APPEND_ONLY_TABLES
    ]
    return gaps


def _insert(
    cur: psycopg.Cursor[Any], target: str, rows: Sequence[Sequence[Any]]
) -> None:
    """INSERT rows (COPY for many: the same privilege and triggers, fewer round
    trips), every one of them (see :func:`check_kept`)."""
    if len(rows) > _COPY_FROM:
        with cur.copy(f"COPY {target} FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)
    elif rows:
        columns = target.split("(", 1)[1]
        marks = ", ".join(["%s"] * (columns.count(",") + 1))
        cur.executemany(f"INSERT INTO {target} VALUES ({marks})", rows)  # noqa: S608
    else:
        return
    check_kept(target.split(" ", 1)[0], len(rows), cur.rowcount)


def check_kept(table: str, wanted: int, kept: int) -> None:
    """Refuse a write PostgreSQL acknowledged without keeping every row.

    A rule (``DO INSTEAD NOTHING``) or a ``BEFORE INSERT`` trigger returning
    NULL, which the tables' owner may add, drops rows without an error: an
    append would be acknowledged, its records and checkpoint gone, and
    nothing left to verify. Raised inside the append's transaction, which
    rolls back.

    Raises:
        StoreError: fewer rows kept than written.
    """
    if kept != wanted:
        raise StoreError(
            f"PostgreSQL kept {kept} of the {wanted} rows written to {table}: a rule "
            "or trigger that is not mltrail's dropped them; nothing was written",
            hint=f"the owner of the tables removes it (psql: \\d {table} lists them)",
        )


class PostgresStore(Store):
    """A ledger in a PostgreSQL schema.

    Args:
        url: a ``postgresql://`` URL (libpq's; a password is best left to
            PGPASSWORD or ~/.pgpass).
        roles: the kinds of records that set the key epoch, reset the time
            floor and purge a blob (the ledger's, see ``KindRoles``).
        create: apply missing migrations (needs CREATE on the schema); else a
            schema without the ledger tables is an error.
        busy_timeout: seconds to wait for another appender's lock.
    """

    def __init__(
        self,
        url: str,
        *,
        roles: KindRoles,
        create: bool = False,
        busy_timeout: float = 60.0,
    ) -> None:
        self.location = display_url(url)
        self.roles = roles
        self._epoch_kinds = list(roles.epoch_kinds)
        self._url = url
        self._conn = connect(url, busy_timeout=busy_timeout)
        try:
            self.schema = _schema_of(self._conn, url)
            self._open_schema(create)
        except psycopg.errors.InsufficientPrivilege as e:  # an upgrade, as the app role
            hint = _owner_hint(self._conn, self.schema, self.location)
            self._conn.close()
            raise StoreError(
                f"cannot open ledger {self.location}: {e}", hint=hint
            ) from e
        except psycopg.Error as e:
            self._conn.close()
            raise StoreError(f"cannot open ledger {self.location}: {e}") from e
        except BaseException:
            self._conn.close()
            raise
        self._cached: StoreHead | None = None

    def _open_schema(self, create: bool) -> None:
        if create:
            migrate(self._conn, self.schema, ledger_migrations(self.roles.purge_kind))
        found = _version(self._conn, self.schema)
        if found == 0:
            raise ConfigError(
                f"no mltrail ledger in {self.location} (schema {self.schema})",
                hint=f"run `mltrail db init --db {self.location}` first",
            )
        if found < SCHEMA_VERSION:
            raise StoreError(
                f"the ledger tables in {self.location} are at schema version "
                f"{found}, this mltrail needs {SCHEMA_VERSION}",
                hint=_owner_hint(self._conn, self.schema, self.location),
            )

    @contextmanager
    def _read(self) -> Iterator[psycopg.Connection[Any]]:
        """One snapshot for several reads (inside ``snapshot()``, its own)."""
        if self._in_snapshot:
            yield self._conn
            return
        with self._conn.transaction():
            self._conn.execute(
                "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY"
            )
            yield self._conn

    def _snapshot(self) -> AbstractContextManager[object]:
        """A REPEATABLE READ transaction: every statement in it reads the
        snapshot its first one took."""
        return self._read()

    def _append(self, prepare: Prepare) -> NewBatch:
        conn = self._conn
        try:
            with conn.transaction():
                conn.execute(
                    "SELECT pg_advisory_xact_lock(%s, hashtext(%s))",
                    (_APPEND_LOCK, self.schema),
                )
                before = self._head_in_txn(full=True)
                batch = prepare(before)
                self._write_batch(batch)
        except BaseException:
            self._cached = None
            raise
        self._cached = head_after(before, batch, self.roles.epoch_kinds)
        return batch

    def _write_batch(self, batch: NewBatch) -> None:
        records = [
            (r.seq, r.hash, r.kind, r.run, r.time, r.data) for r in batch.records
        ]
        with self._conn.cursor() as cur:
            _insert(cur, "records (seq, hash, kind, run, time, record)", records)
            _insert(cur, "merkle_nodes (level, idx, hash)", batch.nodes)
            if batch.checkpoint is not None:
                cur.execute(
                    "INSERT INTO checkpoints (size, note, floor) VALUES (%s, %s, %s)",
                    (batch.head.size, batch.checkpoint, batch.head.floor_time),
                )
                check_kept("checkpoints", 1, cur.rowcount)

    def _head_in_txn(self, *, full: bool = False) -> StoreHead:
        conn = self._conn
        found = conn.execute("SELECT max(seq) FROM records").fetchone()[0]
        size = 0 if found is None else found + 1
        cached = self._cached
        if (
            cached is not None
            and cached.size == size
            and (not full or cached.checkpoint is not None)
        ):
            return cached
        last = conn.execute(
            "SELECT hash, time FROM records WHERE seq = %s", (size - 1,)
        ).fetchone()
        epoch = conn.execute(
            "SELECT max(seq) FROM records WHERE kind = ANY(%s)", (self._epoch_kinds,)
        ).fetchone()[0]
        floor, checkpoint = self._append_state(size) if full else (None, None)
        nodes = self._frontier(size)
        head = build_head(
            size,
            (bytes(last[0]), last[1]) if last else None,
            0 if epoch is None else epoch + 1,
            lambda level, index: nodes.get((level, index)),
            floor_time=floor,
            checkpoint=checkpoint,
        )
        self._cached = head
        return head

    def _frontier(self, size: int) -> dict[tuple[int, int], bytes]:
        """The stored nodes of the head's frontier, read in one query."""
        wanted = frontier_nodes(size)
        if not wanted:
            return {}
        rows = self._conn.execute(
            "SELECT level, idx, hash FROM merkle_nodes "
            "WHERE (level, idx) IN (SELECT * FROM unnest(%s::int[], %s::bigint[]))",
            ([lvl for lvl, _ in wanted], [idx for _, idx in wanted]),
        ).fetchall()
        return {(lvl, idx): bytes(h) for lvl, idx, h in rows}

    def _append_state(self, size: int) -> tuple[str | None, str | None]:
        """(newest entry time since the last reset record, newest checkpoint note)."""
        row = self._conn.execute(
            "SELECT size, note, floor FROM checkpoints ORDER BY id DESC LIMIT 1"
        ).fetchone()
        if row is not None and row[0] == size and row[2] is not None:
            return row[2], row[1]
        floor = self._time_floor_now()
        return (floor[0] if floor else None, row[1] if row is not None else None)

    def _time_floor_now(self) -> tuple[str, int] | None:
        reset = self._conn.execute(
            "SELECT max(seq) FROM records WHERE kind = %s", (self.roles.reset_kind,)
        ).fetchone()[0]
        row = self._conn.execute(
            "SELECT time, seq FROM records WHERE seq >= %s "  # noqa: S608 (constant)
            f"ORDER BY {TIME_ORDER_SQL} DESC, seq LIMIT 1",
            (reset or 0,),
        ).fetchone()
        return None if row is None else (row[0], row[1])

    def _time_floor(self) -> tuple[str, int] | None:
        with self._read():
            return self._time_floor_now()

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
                "SELECT seq, hash, record FROM records WHERE seq >= %s AND seq < %s "
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
                "SELECT seq, hash, record, kind, run, time FROM records "
                "WHERE seq >= %s AND seq < %s ORDER BY seq LIMIT 2000",
                (start, stop),
            ).fetchall()
            if not batch:
                return
            yield from (
                ColumnRow(s, bytes(h), bytes(d), k, r, t) for s, h, d, k, r, t in batch
            )
            start = batch[-1][0] + 1

    def _rows_of_kinds(self, kinds: tuple[str, ...], start: int) -> Iterator[StoredRow]:
        rows = self._conn.execute(
            "SELECT seq, hash, record FROM records WHERE kind = ANY(%s) "
            "AND seq >= %s ORDER BY seq",
            (list(kinds), start),
        ).fetchall()
        for s, h, d in rows:
            yield StoredRow(s, bytes(h), bytes(d))

    def _node(self, level: int, index: int) -> bytes | None:
        row = self._conn.execute(
            "SELECT hash FROM merkle_nodes WHERE level = %s AND idx = %s",
            (level, index),
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _node_range(self, level: int, start: int, stop: int) -> dict[int, bytes]:
        rows = self._conn.execute(
            "SELECT idx, hash FROM merkle_nodes WHERE level = %s AND idx >= %s "
            "AND idx < %s",
            (level, start, stop),
        ).fetchall()
        return {i: bytes(h) for i, h in rows}

    def _latest_checkpoint(self) -> CheckpointRow | None:
        row = self._conn.execute(
            "SELECT id, size, note FROM checkpoints ORDER BY id DESC LIMIT 1"
        ).fetchone()
        return None if row is None else CheckpointRow(f"checkpoint #{row[0]}", *row[1:])

    def _put_blob(self, digest: str, data: bytes) -> bool:
        cursor = self._conn.execute(
            "INSERT INTO blobs (digest, size, data) SELECT %s, %s, %s "
            "WHERE NOT EXISTS (SELECT 1 FROM purges WHERE digest = %s) "
            "ON CONFLICT (digest) DO NOTHING",
            (digest, len(data), bytes(data), digest),
        )
        return cursor.rowcount == 1

    def _get_blob(self, digest: str) -> bytes | None:
        row = self._conn.execute(
            "SELECT data FROM blobs WHERE digest = %s", (digest,)
        ).fetchone()
        return None if row is None else bytes(row[0])

    def _find_blobs(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        rows = self._conn.execute(
            "SELECT digest, size FROM blobs WHERE digest >= %s AND digest < %s "
            "ORDER BY digest LIMIT %s",
            (prefix, prefix + "~", limit),
        ).fetchall()
        return [(d, s) for d, s in rows]

    def _purges(self, digest: str | None) -> list[StoredPurge]:
        if digest is None:
            rows = self._conn.execute(_PURGES_QUERY + " ORDER BY p.seq")
        else:
            rows = self._conn.execute(_PURGES_QUERY + " WHERE p.digest = %s", (digest,))
        return [StoredPurge(d, s, q, bool(e)) for d, s, q, e in rows.fetchall()]

    def _erase_blob(self, digest: str) -> bool:
        if not self._purges(digest):
            raise StoreError(
                f"refusing to delete blob {digest}: no stored {self.roles.purge_kind} "
                "record names it",
                hint="blobs are erased by `mltrail purge`",
            )
        with self._conn.transaction():
            held = self._conn.execute(
                "SELECT mltrail_erase_blob(%s)", (digest,)
            ).fetchone()[0]
            self._conn.execute(
                "INSERT INTO erasures (digest) VALUES (%s) ON CONFLICT DO NOTHING",
                (digest,),
            )
        return bool(held)

    def _add_checkpoint(self, size: int, text: str) -> None:
        cursor = self._conn.execute(
            "INSERT INTO checkpoints (size, note) VALUES (%s, %s)", (size, text)
        )
        check_kept("checkpoints", 1, cursor.rowcount)

    def _checkpoints(self) -> list[CheckpointRow]:
        rows = self._conn.execute(
            "SELECT id, size, note FROM checkpoints ORDER BY id"
        ).fetchall()
        return [CheckpointRow(f"checkpoint #{i}", s, n) for i, s, n in rows]

    def _add_evidence(
        self, kind: str, size: int, checkpoint: str, data: bytes, added: str
    ) -> None:
        cursor = self._conn.execute(
            "INSERT INTO checkpoint_evidence (kind, size, checkpoint, data, added) "
            "VALUES (%s, %s, %s, %s, %s)",
            (kind, size, checkpoint, bytes(data), added),
        )
        check_kept("checkpoint_evidence", 1, cursor.rowcount)

    def _evidence(self) -> list[StoredEvidence]:
        rows = self._conn.execute(
            "SELECT id, kind, size, checkpoint, data, added FROM checkpoint_evidence "
            "ORDER BY id"
        ).fetchall()
        return [StoredEvidence(i, k, s, c, bytes(d), a) for i, k, s, c, d, a in rows]

    def _meta(self) -> dict[str, str]:
        return dict(self._conn.execute("SELECT key, value FROM meta").fetchall())

    def _protection_gaps(self) -> list[str]:
        with self._read():
            return protection_gaps(self._conn, self.schema, self.roles.purge_kind)

    def _init_meta(self, values: dict[str, str]) -> None:
        with self._conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO meta (key, value) VALUES (%s, %s) ON CONFLICT DO NOTHING",
                sorted(values.items()),
            )

    def _hold_run(self, run_id: str) -> RunHold:
        """A session advisory lock on a connection of its own: PostgreSQL drops
        it when the holder closes it, exits or its host stops answering TCP
        keepalives (about a minute), so other hosts then see the run stale.
        A session the server ended (a restart, a terminated backend) is seen
        by the hold, which takes the run again (``_PostgresRunHold``)."""
        conn = self._take_run(run_id)
        if conn is None:
            raise RunHeldError(run_id)
        return _PostgresRunHold(conn, functools.partial(self._take_run, run_id))

    def _take_run(self, run_id: str) -> psycopg.Connection[Any] | None:
        """A new connection holding run ``run_id``'s lock; None when another
        session holds it."""
        conn = connect(self._url)
        try:
            for name, value in _KEEPALIVES:
                conn.execute(f"SET {name} = {value}")
            conn.execute("SET idle_session_timeout = 0")
            taken = conn.execute(
                "SELECT pg_try_advisory_lock(%s, %s)",
                _run_lock_key(self.schema, run_id),
            ).fetchone()[0]
        except BaseException:
            conn.close()
            raise
        if not taken:
            conn.close()
            return None
        return conn

    def _live_runs(self, run_ids: Collection[str]) -> set[str]:
        if not run_ids:
            return set()
        keys = {_run_lock_key(self.schema, run): run for run in run_ids}
        classes = sorted({k[0] & 0xFFFFFFFF for k in keys})
        rows = self._conn.execute(
            "SELECT classid::bigint, objid::bigint FROM pg_locks WHERE locktype = "
            "'advisory' AND objsubid = 2 AND granted AND database = (SELECT oid "
            "FROM pg_database WHERE datname = current_database()) "
            "AND classid::bigint = ANY(%s)",
            (classes,),
        ).fetchall()
        held = {(c, o) for c, o in rows}
        return {
            run
            for (k1, k2), run in keys.items()
            if (k1 & 0xFFFFFFFF, k2 & 0xFFFFFFFF) in held
        }

    def _close(self) -> None:
        self._conn.close()


_KEEPALIVES = (
    ("tcp_keepalives_idle", 20),
    ("tcp_keepalives_interval", 10),
    ("tcp_keepalives_count", 3),
)
"""How soon the server notices a holder's host is gone: about a minute."""


def _int32(data: bytes) -> int:
    return int.from_bytes(hashlib.sha256(data).digest()[:4], "big", signed=True)


def _run_lock_key(schema: str, run_id: str) -> tuple[int, int]:
    """The two-int advisory lock key of a live run: (ledger schema, run id).

    Two run ids may share a key (32 bits): one would then look live while the
    other runs, never the reverse."""
    return _int32(f"mltrail-run:{schema}".encode()), _int32(run_id.encode())


class RunHeldError(InputError):
    """Another live process holds this run already (a run id used twice)."""

    def __init__(self, run_id: str) -> None:
        super().__init__(
            f"run {run_id} is held live by another process already",
            hint="run ids are unique: start a new run instead of reusing this id",
        )
        self.run_id = run_id


HOLD_CHECK_SECONDS = 10.0
"""How often a hold looks whether the server ended its session (and so the
lock): a restart, a failover, ``pg_terminate_backend``."""
_HOLD_RETAKES = 6
"""Tries (one a check) to take a lost run's lock that another session holds."""


class _PostgresRunHold:
    """A live run's advisory lock and the connection that holds it.

    A thread looks every ``HOLD_CHECK_SECONDS`` whether the server ended the
    connection's session (``connection_lost``: no query, no wait) and, if it
    did, takes the run's lock again on a new connection, so the run looks
    stale to other hosts only while the server is away. It stops when the
    hold is released, or when another session took the run meanwhile. A
    network that drops packets without a word is not seen from here: the
    server drops the lock after its keepalives (about a minute) and the run
    stays unheld.
    """

    def __init__(
        self,
        conn: psycopg.Connection[Any],
        take: Callable[[], psycopg.Connection[Any] | None],
    ) -> None:
        self._conn: psycopg.Connection[Any] | None = conn
        self._take = take
        self._swap = threading.Lock()
        self._stop = threading.Event()
        threading.Thread(
            target=self._watch, name="mltrail-run-hold", daemon=True
        ).start()

    def _watch(self) -> None:
        refused = 0
        while not self._stop.wait(HOLD_CHECK_SECONDS):
            with self._swap:  # release() never races a lock being taken again
                conn = self._conn
                if self._stop.is_set() or conn is None or not connection_lost(conn):
                    continue
                try:
                    new = self._take()
                except (StoreError, psycopg.Error):  # the server is still away
                    continue
                if new is None:
                    # The ended session's backend may not have exited yet; after
                    # a minute, another session holds the run: leave it.
                    refused += 1
                    if refused >= _HOLD_RETAKES:
                        return
                    continue
                self._conn = new
            _unlock_and_close(conn)

    def release(self) -> None:
        """Unlock, then close: closing alone ends the server's backend, and so
        its lock, only some time after the client has gone, and meanwhile
        other hosts would still see the run live."""
        self._stop.set()
        with self._swap:
            conn, self._conn = self._conn, None
        _unlock_and_close(conn)


def _unlock_and_close(conn: psycopg.Connection[Any] | None) -> None:
    if conn is not None:
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT pg_advisory_unlock_all()")
        with contextlib.suppress(psycopg.Error):
            conn.close()


# -- mltrail db init -----------------------------------------------------------


class DatabaseInit:
    """What :func:`init_database` did."""

    def __init__(
        self,
        location: str,
        schema: str,
        version: int,
        applied: list[int],
        role: str | None,
    ) -> None:
        self.location = location
        self.schema = schema
        self.version = version
        self.applied = applied
        self.role = role
        self.role_created = False
        self.restored: list[str] = []
        """mltrail's triggers (and blob constraint) found dropped or not in
        force, set right."""

    def to_dict(self) -> dict[str, Any]:
        """The result as JSON-able values."""
        return {
            "db": self.location,
            "schema": self.schema,
            "version": self.version,
            "applied": self.applied,
            "restored": self.restored,
            "role": self.role,
            "role_created": self.role_created,
            "role_privileges": ["SELECT", "INSERT"] if self.role else [],
        }


def check_role_name(role: str) -> str:
    """A role name mltrail will create: lower-case letters, digits, underscores.

    Raises:
        InputError: anything else.
    """
    if not _ROLE_NAME.fullmatch(role):
        raise InputError(
            f"role name {role!r} is not a plain lower-case identifier",
            hint="use letters a-z, digits and _ (at most 63), e.g. mltrail_app",
        )
    return role


def init_database(
    url: str, *, roles: KindRoles, role: str | None = "mltrail_app"
) -> DatabaseInit:
    """Apply the migrations and grant ``role`` SELECT and INSERT only (created if missing).

    ``roles`` are the ledger's record kinds (see ``KindRoles``): a schema
    created here gets triggers for its purge kind.

    Re-runnable. Run it as the owner of the schema (it creates the tables,
    triggers and the erasure function); the application connects as ``role``.

    Raises:
        InputError: a bad role name, or ``role`` is the connecting user.
        StoreError: the database cannot be reached or refuses a statement.
    """
    if role is not None:
        check_role_name(role)
    conn = connect(url)
    try:
        schema = _schema_of(conn, url)
        # a migration names triggers (ALTER ... ENABLE ALWAYS): one dropped from an
        # older schema is created again first, or the upgrade stops on it
        early = (
            _restore_protections(conn, schema, roles.purge_kind, missing_only=True)
            if 0 < _version(conn, schema) < SCHEMA_VERSION
            else []
        )
        applied = migrate(conn, schema, ledger_migrations(roles.purge_kind))
        result = DatabaseInit(display_url(url), schema, SCHEMA_VERSION, applied, role)
        result.restored = early + _restore_protections(conn, schema, roles.purge_kind)
        if role is not None:
            result.role_created = _grant_app_role(conn, schema, role)
        return result
    except psycopg.errors.InsufficientPrivilege as e:
        raise StoreError(
            f"cannot set up {display_url(url)}: {e}",
            hint=_owner_hint(conn, schema, display_url(url)),
        ) from e
    except psycopg.Error as e:
        raise StoreError(f"cannot set up {display_url(url)}: {e}") from e
    finally:
        conn.close()


def _restore_protections(
    conn: psycopg.Connection[Any],
    schema: str,
    purge_kind: str,
    *,
    missing_only: bool = False,
) -> list[str]:
    """Create again each of mltrail's triggers someone dropped, set each firing
    as it should (a disabled one, one in origin mode), add the blob constraint
    again if dropped; the names of those set right.
    A schema keeps the purge kind it was created with; ``purge_kind`` is used
    only to create ``records_purge`` again. ``missing_only``: create the dropped
    triggers only (a schema not yet migrated, whose triggers are not all meant
    to fire always yet and which has no blob constraint yet)."""
    found = _triggers(conn, schema)
    quoted = sql.Identifier(schema).as_string(conn)
    restored = []
    with conn.transaction():
        for name in _functions_changed(conn, schema, purge_kind):  # first: triggers
            statement = function_statement(name, purge_kind)  # call them
            conn.execute(statement.replace("{s}", quoted).encode())
            restored.append(name)
        for trigger, (table, states) in PROTECTIONS.items():
            state = found.get((table, trigger))
            if state is not None and (missing_only or state in states):
                continue
            missing = state is None
            for statement in protection_statements(
                trigger, purge_kind, missing=missing
            ):
                conn.execute(statement.replace("{s}", quoted).encode())
            restored.append(trigger)
        if not missing_only and not _has_blob_check(conn, schema):
            conn.execute(blob_check_statement().replace("{s}", quoted).encode())
            restored.append(BLOB_CHECK)
    return restored


def _grant_app_role(conn: psycopg.Connection[Any], schema: str, role: str) -> bool:
    if conn.execute("SELECT current_user").fetchone()[0] == role:
        raise InputError(
            f"the role {role} is the one connecting: it owns the tables",
            hint="connect as the owner and name another role for the application",
        )
    s, r = sql.Identifier(schema), sql.Identifier(role)
    tables = sql.SQL(", ").join(
        sql.SQL("{}.{}").format(s, sql.Identifier(t)) for t in APPEND_ONLY_TABLES
    )
    with conn.transaction():
        exists = conn.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)
        ).fetchone()
        if not exists:
            conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(r))
        for statement in (
            "GRANT USAGE ON SCHEMA {s} TO {r}",
            "REVOKE CREATE ON SCHEMA {s} FROM {r}",
            "REVOKE ALL ON {tables} FROM {r}",
            "GRANT SELECT, INSERT ON {tables} TO {r}",
            "REVOKE INSERT ON {s}.mltrail_schema FROM {r}",
            "GRANT EXECUTE ON FUNCTION {s}.mltrail_erase_blob(text) TO {r}",
        ):
            conn.execute(sql.SQL(statement).format(s=s, r=r, tables=tables))
    return not exists
