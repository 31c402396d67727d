"""Per-ledger server state: pooled read connections and one appender.

``Ledger`` and store objects are not thread-safe, so each request borrows one
from a small pool (one PostgreSQL connection each) and returns it; every write
to the chain goes through the ledger's one :class:`~mltrail.server.appender.Appender`
thread. Blob uploads are plain inserts and use a pooled connection.
"""

from __future__ import annotations

import bisect
import contextlib
import hashlib
import operator
import queue
import threading
import time
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Generic, TypeVar

from mltrail.core.chain import KEY_KINDS
from mltrail.core.codec import decode_record
from mltrail.core.erasure import PURGE_KIND
from mltrail.core.lock import LOCK_KIND
from mltrail.core.run_owner import ANYONE_KINDS, START_KIND
from mltrail.errors import IntegrityError, MltrailError, StoreError
from mltrail.ledger.columns import column_refusal
from mltrail.ledger.ledger import Ledger
from mltrail.ledger.stored import KIND_ROLES
from mltrail.server.appender import Appender
from mltrail.server.control import Control, LedgerRow, schema_url
from mltrail.server.limits import ServerLimits, Slots
from mltrail.server.verifications import Verifications
from mltrail.storage.base import StoredRow, _as_store_error
from mltrail.storage.postgres import PostgresStore, check_kept, connection_lost

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    import psycopg

    from mltrail.core.entry import Entry
    from mltrail.storage.base import NewBatch, Prepare, StoreHead

__all__ = ["LedgerHandle", "Pool", "ServerState", "ServerStore", "Shares", "SignedSize"]

T = TypeVar("T")
_CACHED_KINDS = (tuple(KEY_KINDS), (LOCK_KIND,))
READERS_PER_LEDGER = 8
_seq_of = operator.attrgetter("seq")
CONTROL_CONNECTIONS = 8


class Pool(Generic[T]):
    """At most ``size`` objects made on demand, each lent to one thread at a time."""

    def __init__(
        self,
        make: Callable[[], T],
        close: Callable[[T], None],
        size: int,
        broken: Callable[[T], bool] = lambda item: False,
    ) -> None:
        self._make, self._close, self._size = make, close, size
        self._broken = broken
        self._idle: queue.LifoQueue[T] = queue.LifoQueue()
        self._made = 0
        self._lock = threading.Lock()

    @contextmanager
    def borrow(self) -> Iterator[T]:
        """Lend an object; one left broken (a lost connection) is closed, not reused."""
        item = self._take()
        try:
            yield item
        except BaseException:
            self._give_back(item)
            raise
        self._give_back(item)

    def _give_back(self, item: T) -> None:
        if self._broken(item):
            self._discard(item)
        else:
            self._idle.put(item)

    def _take(self) -> T:
        while True:
            try:
                item = self._idle.get_nowait()
            except queue.Empty:
                break
            if not self._broken(item):
                return item
            self._discard(item)  # lost while idle (the database restarted)
        with self._lock:
            make = self._made < self._size
            if make:
                self._made += 1
        if make:
            try:
                return self._make()
            except BaseException:
                with self._lock:
                    self._made -= 1
                raise
        return self._idle.get(timeout=60)

    def _discard(self, item: T) -> None:
        with self._lock:
            self._made -= 1
        with contextlib.suppress(Exception):  # a broken connection may fail to close
            self._close(item)

    def close(self) -> None:
        """Close every idle object."""
        while True:
            try:
                self._close(self._idle.get_nowait())
            except queue.Empty:
                return


class SignedSize:
    """The largest size of a checkpoint this process signed for one ledger.

    The database holding fewer records was rolled back behind the server
    (by its owner, or restored from an older backup): appending would sign a
    second checkpoint of a size already signed, a fork that every writer's
    receipt and every auditor's checkpoint of the lost records contradicts.
    Kept in memory only: a restarted server knows only what the database says.
    """

    def __init__(self) -> None:
        self.size = 0
        self._lock = threading.Lock()

    def raise_to(self, size: int) -> None:
        with self._lock:
            self.size = max(self.size, size)

    def check(self, size: int) -> None:
        """Refuse to append to a head of ``size`` records behind what was signed.

        Raises:
            IntegrityError: the database was rolled back.
        """
        if size < self.size:
            raise IntegrityError(
                f"the ledger's database holds {size} records but this server "
                f"signed a checkpoint of {self.size}: the database was rolled "
                "back; nothing is appended (it would fork the signed log)",
                hint="restore the records signed since from a backup, check it "
                "with `mltrail verify` in a home on that database (`mltrail init "
                "--store URL`), then restart the server",
            )


class ServerStore(PostgresStore):
    """The PostgreSQL store with two hooks the server needs, opened with the
    ledger's kind roles.

    ``before_write()`` runs inside the append transaction, under the append
    lock, before the batch is made (the run owners' check, which must see what
    other processes appended); ``on_write(conn, batch)`` runs inside it after
    the records (idempotency rows commit with the records they answer), and
    ``last_batch`` is what the latest append wrote (seqs, hashes, checkpoint).
    """

    on_write: Callable[[psycopg.Connection[Any], NewBatch], None] | None = None
    before_write: Callable[[], None] | None = None
    last_batch: NewBatch | None = None
    signed: SignedSize | None = None
    """Shared by the ledger's stores: appends behind it are refused."""
    _kind_cache: dict[tuple[str, ...], list[StoredRow]] | None = None

    def __init__(self, url: str, **options: Any) -> None:
        super().__init__(url, roles=KIND_ROLES, **options)

    def _rows_of_kinds(self, kinds: tuple[str, ...], start: int) -> Iterator[StoredRow]:
        """Key and lock records, which every append reads, are cached and only
        the newer ones fetched (records are never updated or deleted)."""
        if kinds not in _CACHED_KINDS:
            yield from super()._rows_of_kinds(kinds, start)
            return
        if self._kind_cache is None:
            self._kind_cache = {}
        rows = self._kind_cache.setdefault(kinds, [])
        after = rows[-1].seq if rows else -1
        fresh = self._conn.execute(
            "SELECT seq, hash, record FROM records WHERE kind = ANY(%s) AND seq > %s "
            "ORDER BY seq",
            (list(kinds), after),
        ).fetchall()
        rows.extend(StoredRow(q, bytes(h), bytes(d)) for q, h, d in fresh)
        yield from rows[bisect.bisect_left(rows, start, key=_seq_of) :]

    def _write_batch(self, batch: NewBatch) -> None:
        """Records, Merkle nodes and the checkpoint in one statement (one round
        trip instead of three; the same rows, privileges and triggers)."""
        rows = batch.records
        if any(r.kind == PURGE_KIND for r in rows):  # its trigger: the store's own way
            super()._write_batch(batch)
            if self.on_write is not None:
                self.on_write(self._conn, batch)
            return
        levels, indexes, hashes = (
            zip(*batch.nodes, strict=True) if batch.nodes else ((), (), ())
        )
        # RETURNING counts the rows kept: a trigger's NULL drops one silently
        written = (
            self._conn.cursor(binary=True)
            .execute(  # bytea arrays as bytes
                "WITH r AS (INSERT INTO records (seq, hash, kind, run, time, record) "
                "SELECT * FROM unnest(%s::bigint[], %s::bytea[], %s::text[], %s::text[], "
                "%s::text[], %s::bytea[]) RETURNING 1), "
                "n AS (INSERT INTO merkle_nodes (level, idx, hash) "
                "SELECT * FROM unnest(%s::int[], %s::bigint[], %s::bytea[]) RETURNING 1), "
                "c AS (INSERT INTO checkpoints (size, note, floor) SELECT %s, %s, %s "
                "WHERE %s::text IS NOT NULL RETURNING 1) "
                "SELECT (SELECT count(*) FROM r), (SELECT count(*) FROM n), "
                "(SELECT count(*) FROM c)",
                (
                    [r.seq for r in rows],
                    [r.hash for r in rows],
                    [r.kind for r in rows],
                    [r.run for r in rows],
                    [r.time for r in rows],
                    [r.data for r in rows],
                    list(levels),
                    list(indexes),
                    list(hashes),
                    batch.head.size,
                    batch.checkpoint,
                    batch.head.floor_time,
                    batch.checkpoint,
                ),
            )
            .fetchone()
        )
        for table, wanted, kept in zip(
            ("records", "merkle_nodes", "checkpoints"),
            (len(rows), len(batch.nodes), int(batch.checkpoint is not None)),
            written,
            strict=True,
        ):
            check_kept(table, wanted, kept)
        if self.on_write is not None:
            self.on_write(self._conn, batch)

    def _append(self, prepare: Prepare) -> NewBatch:
        check = self.before_write

        signed = self.signed

        def checked(head: StoreHead) -> NewBatch:
            if signed is not None:
                signed.check(head.size)
            if check is not None:
                check()  # under the append lock, in the append's transaction
            return prepare(head)

        batch = super()._append(checked)
        self.last_batch = batch
        if signed is not None and batch.checkpoint is not None:
            signed.raise_to(batch.head.size)
        return batch

    def records_page(
        self,
        start: int,
        stop: int,
        limit: int,
        max_bytes: int,
        kinds: tuple[str, ...] = (),
    ) -> tuple[list[StoredRow], bool]:
        """Rows with ``start <= seq < stop`` (of ``kinds`` when given), in order:
        at most ``limit``, and no more once they hold ``max_bytes`` (the first
        always comes, whatever its size); and whether more may follow.

        The bound is kept by PostgreSQL (a running sum of the records' lengths,
        which reads no record), so a page of large records is never fetched
        whole into memory."""
        where = "kind = ANY(%s) AND " if kinds else ""
        params: list[Any] = [list(kinds)] if kinds else []
        with _as_store_error("read records"):
            rows = self._conn.execute(
                "SELECT seq, hash, record, upto FROM (SELECT seq, hash, record, "  # noqa: S608
                "sum(octet_length(record)) OVER (ORDER BY seq) AS upto, "
                "octet_length(record) AS size FROM records "
                f"WHERE {where}seq >= %s AND seq < %s ORDER BY seq LIMIT %s) AS page "
                "WHERE upto - size < %s ORDER BY seq",
                (*params, start, stop, limit + 1, max_bytes),
            ).fetchall()
        more = len(rows) > limit or bool(rows and rows[-1][3] >= max_bytes)
        return [StoredRow(q, bytes(h), bytes(d)) for q, h, d, _ in rows[:limit]], more

    def run_starter(self, run: str) -> str | None:
        """The ``actor.user`` of run ``run``'s first ``run.started``, or None when
        the run has not started (one index look-up: ``records (run, seq)``)."""
        with _as_store_error("read the run's start"):
            row = self._conn.execute(
                "SELECT seq, record FROM records WHERE run = %s "
                "AND kind = 'run.started' ORDER BY seq LIMIT 1",
                (run,),
            ).fetchone()
        if row is None:
            return None
        user = _run_row(run, START_KIND, row[0], row[1]).actor.get("user")
        return user if isinstance(user, str) else ""

    def run_owner(self, run: str) -> tuple[str, bool] | None:
        """Whose run ``run`` is, as stored: ``(user, True)`` from its first
        ``run.started``; ``(user, False)`` from its first record other than a
        note when it has not started (a rank of a distributed run may write
        before rank 0's start); None when no such record names it. Usually one
        index look-up (``records (run, seq)``): a run's first record is its start.
        """
        with _as_store_error("read the run's owner"):
            row = self._conn.execute(
                "SELECT kind, record, seq FROM records WHERE run = %s "
                "AND kind <> ALL(%s) ORDER BY seq LIMIT 1",
                (run, list(ANYONE_KINDS)),
            ).fetchone()
        if row is None:
            return None
        entry = _run_row(run, row[0], row[2], row[1])
        if row[0] != START_KIND:
            starter = self.run_starter(run)
            if starter is not None:
                return starter, True
        user = entry.actor.get("user")
        return (user if isinstance(user, str) else ""), row[0] == START_KIND


def _run_row(run: str, kind: str, seq: int, data: bytes) -> Entry:
    """The entry of a row read by its run and kind columns, which must say what
    its signed bytes say: who may write to a run is decided from it (ADR 0011,
    amendment of 2026-12-07, derived columns).

    Raises:
        IntegrityError: the store's run or kind column was edited.
    """
    entry = decode_record(bytes(data)).record.entry
    if entry.run != run or entry.kind != kind:
        raise column_refusal(
            f"the store lists seq {seq} as a {kind} record of run {run}, but its "
            f"signed bytes say a {entry.kind} record of run {entry.run}"
        )
    return entry


class LedgerHandle:
    """One served ledger: origin, log key, readers and the appender."""

    def __init__(self, row: LedgerRow, url: str, keys: Path) -> None:
        self.row = row
        self.url = schema_url(url, row.schema)
        self._keys_dir = keys
        with ServerStore(self.url) as store:
            first = next(iter(store.rows(0, 1)), None)
        genesis = None if first is None else decode_record(first.data).record.entry
        self.genesis_key = (
            None if genesis is None or genesis.sig is None else genesis.sig.key
        )
        self._next_look = 0.0
        self.signed = SignedSize()
        ledger = self._open(None)
        try:
            self.signer = self._current_key(ledger)
        finally:
            ledger.close()
        self._key_stat = self._stat_key()
        self._readers: Pool[Ledger] = Pool(
            lambda: self._open(None),
            Ledger.close,
            READERS_PER_LEDGER,
            lambda ledger: connection_lost(ledger.store._conn),  # type: ignore[attr-defined]
        )
        self.appender = Appender(
            row.name, lambda: self._open(self.signer), self._fresh_signer
        )

    def _current_key(self, ledger: Ledger) -> Any:
        """The log key to sign with, an interrupted rotation taken up (see
        :func:`mltrail.server.log_key.current_log_key`)."""
        from mltrail.ledger.keystore import key_password
        from mltrail.server.log_key import current_log_key

        return current_log_key(self._keys_dir, self.row.name, ledger, key_password())

    def _stat_key(self) -> tuple[tuple[int, int] | None, ...]:
        """(inode, mtime) of the key file and of a rotation's two other names."""
        from mltrail.server.log_key import key_paths

        found: list[tuple[int, int] | None] = []
        for path in key_paths(self._keys_dir, self.row.name):
            try:
                st = path.stat()
            except OSError:
                found.append(None)
            else:
                found.append((st.st_ino, st.st_mtime_ns))
        return tuple(found)

    def _fresh_signer(self, ledger: Ledger) -> Any:
        """The log key to sign with when it changed since it was loaded (the
        admin rotated it with `mltrail keys rotate --db ... --ledger ...`, or a
        rotation killed after storing its records left the new key to take
        up), else None. Looked for when the key files changed, or when the
        ledger's keys as last read revoked the key signing now, or (once a
        second at most) while a rotation's ``.old`` file is left to destroy. A
        file missing or unreadable mid-rotation is tried again next time."""
        now = self._stat_key()
        if now == self._key_stat and not ledger.signer_revoked():
            # an old key's second name left by a rotation (killed, or busy
            # when last looked): looked at again, once a second at most
            if now[2] is None or time.monotonic() < self._next_look:
                return None
            self._next_look = time.monotonic() + 1.0
        try:
            signer = self._current_key(ledger)
        except (MltrailError, OSError, ValueError):
            return None
        self._key_stat = self._stat_key()
        self.signer = signer
        current = ledger.signer
        return (
            None if current is not None and current.key_id == signer.key_id else signer
        )

    def _open(self, signer: Any) -> Ledger:
        store = ServerStore(self.url)
        store.signed = self.signed
        return Ledger(
            store,
            signer,
            origin=self.row.origin,
            trusted_key=self.genesis_key,
            actor={"user": "mltrail-server"},
        )

    @contextmanager
    def reader(self) -> Iterator[Ledger]:
        """A read-only ledger (its store a :class:`ServerStore`) for this thread."""
        with self._readers.borrow() as ledger:
            yield ledger

    def keys(self, ledger: Ledger) -> list[dict[str, Any]]:
        """Every key the ledger ever added, with identity, added and revoked seqs."""
        out: dict[str, dict[str, Any]] = {}
        for row in ledger.store.rows_of_kinds(KEY_KINDS):
            entry = decode_record(row.data).record.entry
            body = dict(entry.body)
            if entry.kind == "key.added":
                out[str(body.get("key"))] = {
                    "key": body.get("key"),
                    "public_key": body.get("public_key"),
                    "identity": body.get("identity"),
                    "added_seq": row.seq,
                    "revoked_seq": None,
                }
            elif str(body.get("key")) in out:
                out[str(body["key"])]["revoked_seq"] = row.seq
        return list(out.values())

    def close(self) -> None:
        """Stop the appender and close the connections."""
        self.appender.stop()
        self._readers.close()


class RecentTokens:
    """Tokens authenticated in the last ``ttl`` seconds, so a busy writer's
    requests do not each query the token tables. A revocation or expiry takes
    effect within ``ttl`` (1 s) on every server process; a revocation through
    this process's API at once (``forget``). Keyed by the SHA-256 of the whole
    token, so the cache holds no secret."""

    def __init__(self, ttl: float = 1.0, size: int = 10_000) -> None:
        self.ttl, self.size = ttl, size
        self._found: dict[bytes, tuple[Any, float]] = {}
        self._lock = threading.Lock()

    @staticmethod
    def _key(token: str) -> bytes:
        return hashlib.sha256(token.encode()).digest()

    def get(self, token: str) -> Any | None:
        """The principal of ``token`` if it was authenticated moments ago."""
        found = self._found.get(self._key(token))
        if found is None or found[1] < time.monotonic():
            return None
        expires = getattr(found[0], "expires", None)
        if expires is not None and expires <= datetime.now(UTC):
            return None
        return found[0]

    def put(self, token: str, principal: Any) -> None:
        """Remember an authenticated token for ``ttl`` seconds."""
        with self._lock:
            if len(self._found) >= self.size:
                self._found.clear()
            self._found[self._key(token)] = (principal, time.monotonic() + self.ttl)

    def forget(self, token_id: str) -> None:
        """Drop every cached token with this id (it was just revoked)."""
        with self._lock:
            for key, (principal, _) in list(self._found.items()):
                if getattr(principal, "token_id", None) == token_id:
                    del self._found[key]


class Shares:
    """The slots of a process's costly resources, each bounded per user, per
    ledger and in the process (:class:`~mltrail.server.limits.ServerLimits`)."""

    def __init__(self, limits: ServerLimits) -> None:
        self.limits = limits
        self.holds = Slots(_caps(limits, "holds"))
        self.verifies = Slots(_caps(limits, "verifies"))
        self.large_bodies = Slots(_caps(limits, "large_bodies"))

    def usage(self, ledger: str, name: str) -> dict[str, dict[str, int]]:
        """Slots of each kind held now by user ``name`` of ``ledger``, by the
        ledger's users together, and in the process."""
        kinds = {"holds": self.holds, "verifies": self.verifies}
        kinds["large_bodies"] = self.large_bodies
        return {
            kind: {
                "user": slots.held("user", (ledger, name)),
                "ledger": slots.held("ledger", ledger),
                "server": slots.held("server", None),
            }
            for kind, slots in kinds.items()
        }


def _caps(limits: ServerLimits, kind: str) -> dict[str, int]:
    return {
        "user": getattr(limits, f"{kind}_per_user"),
        "ledger": getattr(limits, f"{kind}_per_ledger", 0) or 10**9,
        "server": getattr(limits, kind),
    }


class ServerState:
    """What the application holds: the database URL, key folder, control
    connections and the ledgers opened so far."""

    def __init__(
        self, url: str, keys: Path, limits: ServerLimits | None = None
    ) -> None:
        self.url = url
        self.keys = keys
        self.limits = limits or ServerLimits()
        self.control: Pool[Control] = Pool(
            lambda: Control(url),
            Control.close,
            CONTROL_CONNECTIONS,
            lambda control: connection_lost(control.conn),
        )
        self._handles: dict[str, LedgerHandle] = {}
        self._lock = threading.Lock()
        self.recent_tokens = RecentTokens()
        self.shares = Shares(self.limits)
        self.verifications = Verifications()

    def handle(self, name: str) -> LedgerHandle | None:
        """The ledger ``name`` (opened on first use), or None when not served."""
        found = self._handles.get(name)
        if found is not None:
            return found
        with self.control.borrow() as control:
            row = control.ledger(name)
        if row is None:
            return None
        with self._lock:
            found = self._handles.get(name)
            if found is None:
                try:
                    found = LedgerHandle(row, self.url, self.keys)
                except MltrailError as e:
                    raise StoreError(f"ledger {name} cannot be served: {e}") from e
                self._handles[name] = found
        return found

    def close(self) -> None:
        """Close every ledger and control connection."""
        for handle in self._handles.values():
            handle.close()
        self.control.close()
