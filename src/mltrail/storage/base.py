"""The store contract: an append-only home for records, Merkle nodes, blobs, checkpoints.

The contract speaks plain values (bytes, hashes, sizes, texts), never the core's
types, and knows no entry kinds: a record's kind is an opaque label a store keeps
in an indexed column (``rows_of_kinds``). The three kinds whose records change
what a store keeps are given to it as data by whoever opens it
(:class:`KindRoles`): the key kinds whose newest seq is the head's key epoch,
the kind that restarts the time floor, and the purge kind.

Nothing is ever updated or deleted, with one exception: the bytes of a blob that
a stored purge record names may be erased (``erase_blob``). A store learns of a
purge when it stores that record, in the same transaction; from then on the
digest is never stored again (``put_blob`` keeps nothing), and the bytes are
erased from the store's files, not just unlinked from a table.

Backends implement the ``_``-prefixed methods; the public methods here wrap them
so that a backend's own exceptions (sqlite3, psycopg, botocore...) always reach
callers as :class:`~mltrail.errors.StoreError`, chained to the cause. Stores hold
no hashing or signing logic: ``append`` takes a ``prepare`` function (the ledger
layer's, which seals entries with the core) and calls it under the store's
append lock with the current :class:`StoreHead`, then persists exactly the
:class:`NewBatch` it returns, all or nothing.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from typing import NamedTuple, Protocol, TypeVar

from mltrail.errors import MltrailError, StoreError
from mltrail.values import Frozen

__all__ = [
    "EMPTY_STORE_HEAD",
    "TIME_ORDER_SQL",
    "CheckpointRow",
    "ColumnRow",
    "KindRoles",
    "NewBatch",
    "NewRecord",
    "Prepare",
    "RunHold",
    "StaleSnapshotError",
    "Store",
    "StoreHead",
    "StoredEvidence",
    "StoredPurge",
    "StoredRow",
    "build_head",
    "frontier_nodes",
    "head_after",
    "time_order_key",
]

_set = object.__setattr__  # how a frozen value sets its fields in __init__
_T = TypeVar("_T")
SNAPSHOT_TRIES = 3
"""Snapshots ``Store.read_in_snapshot`` begins before it gives up."""
_KIND = re.compile(r"[a-z][a-z0-9_-]*(\.[a-z0-9_-]+)*")


class KindRoles(Frozen):
    """The record kinds a store treats specially, given by whoever opens it.

    ``epoch_kinds``: the newest stored record of one of them, plus one, is the
    head's ``key_epoch`` (0 if none). ``reset_kind``: a record of it restarts the
    time floor (``time_floor``, the head's ``floor_time``). ``purge_kind``: a
    stored record of it names a blob (``entry.body.digest`` and ``size`` in its
    bytes) whose bytes may then be erased; SQL stores write it into the trigger
    text of a schema they create. Kinds are checked to be plain dotted names,
    so they can never change the meaning of that text.
    """

    __slots__ = __match_args__ = ("epoch_kinds", "reset_kind", "purge_kind")
    epoch_kinds: tuple[str, ...]
    reset_kind: str
    purge_kind: str

    def __init__(
        self, epoch_kinds: tuple[str, ...], reset_kind: str, purge_kind: str
    ) -> None:
        _set(self, "epoch_kinds", epoch_kinds)
        _set(self, "reset_kind", reset_kind)
        _set(self, "purge_kind", purge_kind)
        for kind in (*epoch_kinds, reset_kind, purge_kind):
            if not isinstance(kind, str) or not _KIND.fullmatch(kind):
                raise ValueError(f"not a plain dotted kind name: {kind!r}")


class StoreHead(Frozen):
    """What a store knows of its newest record: size, last hash and time, the
    stored Merkle nodes of its frontier (``frontier_nodes(size)``, left first),
    the key epoch (see :class:`KindRoles`).

    ``floor_time`` (the newest entry time since the last reset record) and
    ``checkpoint`` (the text of the newest stored checkpoint) are filled only
    for the head an append's ``prepare`` gets.
    """

    __slots__ = __match_args__ = (
        "size", "last_hash", "last_time", "frontier", "key_epoch", "floor_time",
        "checkpoint",
    )  # fmt: skip
    _compared = __match_args__[:5]  # not floor_time, checkpoint
    size: int
    last_hash: bytes
    last_time: str | None
    frontier: tuple[bytes, ...]
    key_epoch: int
    floor_time: str | None
    checkpoint: str | None

    def __init__(
        self,
        size: int,
        last_hash: bytes,
        last_time: str | None,
        frontier: tuple[bytes, ...],
        key_epoch: int = 0,
        floor_time: str | None = None,
        checkpoint: str | None = None,
    ) -> None:
        _set(self, "size", size)
        _set(self, "last_hash", last_hash)
        _set(self, "last_time", last_time)
        _set(self, "frontier", frontier)
        _set(self, "key_epoch", key_epoch)
        _set(self, "floor_time", floor_time)
        _set(self, "checkpoint", checkpoint)


EMPTY_STORE_HEAD = StoreHead(size=0, last_hash=bytes(32), last_time=None, frontier=())


class NewRecord(NamedTuple):
    """A record to store: its seq, ``prev`` (hex, as its bytes say), hash and
    bytes, and the columns a store indexes (kind, run, time).

    A named tuple, not a frozen dataclass: one is made per appended record, and
    a frozen dataclass takes several times as long to build (ADR 0032)."""

    seq: int
    prev: str
    hash: bytes
    kind: str
    run: str | None
    time: str
    data: bytes


class NewBatch(NamedTuple):
    """What one append writes: records, new Merkle nodes ``(level, index,
    hash)``, the head after them, and the checkpoint text of that head (stored
    with them when not None)."""

    records: tuple[NewRecord, ...]
    nodes: tuple[tuple[int, int, bytes], ...]
    head: StoreHead
    checkpoint: str | None = None


Prepare = Callable[[StoreHead], NewBatch]


class CheckpointRow(Frozen):
    """A checkpoint a store keeps: where it is kept (``label``), the tree size it
    covers and its signed note text."""

    __slots__ = __match_args__ = ("label", "size", "text")
    label: str
    size: int
    text: str

    def __init__(self, label: str, size: int, text: str) -> None:
        _set(self, "label", label)
        _set(self, "size", size)
        _set(self, "text", text)


class RunHold(Protocol):
    """A run held live in a shared store, for as long as its recorder lives."""

    def release(self) -> None:
        """Let the run go (idempotent)."""
        ...


class StoredRow(Frozen):
    """A record as a store keeps it: its seq, its hash column and its bytes."""

    __slots__ = __match_args__ = ("seq", "hash", "data")
    seq: int
    hash: bytes
    data: bytes

    def __init__(self, seq: int, hash: bytes, data: bytes) -> None:
        _set(self, "seq", seq)
        _set(self, "hash", hash)
        _set(self, "data", data)


class ColumnRow(NamedTuple):
    """A stored row with the columns a store derived from its bytes when it
    stored it (kind, run, time), as the store keeps them now: verification
    compares them with what the signed bytes say (``column-differs``). ``kind``
    None: the store keeps no such columns (nothing to compare)."""

    seq: int
    hash: bytes
    data: bytes
    kind: str | None = None
    run: str | None = None
    time: str | None = None


class StoredPurge(Frozen):
    """A purge a store knows of: a purge record stored at ``seq`` names
    the blob ``digest`` of ``size`` bytes; ``erased`` once its bytes are gone from
    the store's files (False: the purge was interrupted, see ``erase_blob``)."""

    __slots__ = __match_args__ = ("digest", "size", "seq", "erased")
    digest: str
    size: int
    seq: int
    erased: bool

    def __init__(self, digest: str, size: int, seq: int, erased: bool) -> None:
        _set(self, "digest", digest)
        _set(self, "size", size)
        _set(self, "seq", seq)
        _set(self, "erased", erased)


class StoredEvidence(Frozen):
    """Evidence about a checkpoint kept beside it (see :mod:`mltrail.core.evidence`):
    a timestamp token, a cosigned note, or a marker that a stamp is pending."""

    __slots__ = __match_args__ = ("id", "kind", "size", "checkpoint", "data", "added")
    id: int
    kind: str
    size: int
    checkpoint: str
    """The signed checkpoint note text the evidence is about."""
    data: bytes
    added: str
    """When it was stored, by this machine's clock (informational only)."""

    def __init__(
        self,
        id: int,
        kind: str,
        size: int,
        checkpoint: str,
        data: bytes,
        added: str,
    ) -> None:
        _set(self, "id", id)
        _set(self, "kind", kind)
        _set(self, "size", size)
        _set(self, "checkpoint", checkpoint)
        _set(self, "data", data)
        _set(self, "added", added)


class StaleSnapshotError(StoreError):
    """A read inside a snapshot cannot be answered as of it: what the store
    holds now contradicts the snapshot's state in a way no later read inside
    it can settle (over HTTP: a blob erased by a purge recorded after the
    pinned size). The reads must be made again in a new snapshot
    (``Store.read_in_snapshot``)."""


@contextmanager
def _as_store_error(action: str) -> Iterator[None]:
    try:
        yield
    except MltrailError:
        raise
    except Exception as e:
        raise StoreError(f"store failed to {action}: {e}") from e


class Store(ABC):
    """Append-only storage behind one contract (see tests/integration/test_store_contract.py)."""

    location: str = ""
    read_only: bool = False
    _in_snapshot: bool = False

    @contextmanager
    def snapshot(self) -> Iterator[None]:
        """Every read inside sees one state of the store: what other
        connections commit meanwhile (an append, a purge's erasure) is not
        seen until it ends. A verification reads checkpoints, records, Merkle
        nodes, blobs and evidence one after the other; read apart, an append
        committed between two of them read as tampering (records no
        checkpoint it read covers, a blob gone that no purge record it read
        names). ADR 0004, amendment of 2026-12-07.

        Re-entrant: one inside another is the outer one. Nothing may be
        written inside. A store read in one process only (memory) reads as
        it always does; over HTTP every read inside answers as of the size
        of one head read (``HttpStore``; ADR 0004, amendment of 2026-12-08),
        and may find the snapshot stale (``read_in_snapshot`` reads again).
        """
        if self._in_snapshot:
            yield
            return
        held = self._snapshot()
        with _as_store_error("begin a consistent read"):
            held.__enter__()
        self._in_snapshot = True
        try:
            yield
        except BaseException as e:
            self._in_snapshot = False
            held.__exit__(type(e), e, e.__traceback__)
            raise
        self._in_snapshot = False
        with _as_store_error("end a consistent read"):
            held.__exit__(None, None, None)

    def _snapshot(self) -> AbstractContextManager[object]:
        return nullcontext()

    def read_in_snapshot(
        self, read: Callable[[], _T], *, tries: int = SNAPSHOT_TRIES
    ) -> _T:
        """``read()`` inside one snapshot; made again in a new snapshot when
        a read inside finds the first stale (``StaleSnapshotError``), at most
        ``tries`` times. Inside an outer snapshot, ``read()`` in it: the
        outermost one begins again.

        Raises:
            StaleSnapshotError: each snapshot went stale (the store kept
                changing): run it again.
        """
        if self._in_snapshot:
            return read()
        for attempt in range(tries):
            try:
                with self.snapshot():
                    return read()
            except StaleSnapshotError:
                if attempt == tries - 1:
                    raise
        raise AssertionError("unreachable")  # pragma: no cover

    def append(self, prepare: Prepare) -> NewBatch:
        """Atomically append what ``prepare(head)`` returns; durable when this returns.

        ``prepare`` runs under the store's append lock and gets the full head
        (with ``floor_time`` and the newest ``checkpoint``); the records, Merkle
        nodes and the batch's checkpoint are persisted all together, or nothing.
        Returns the batch ``prepare`` returned.
        """
        with _as_store_error("append"):
            return self._append(prepare)

    def head(self) -> StoreHead:
        """The current head (size, last hash and time, Merkle frontier, key epoch).

        Only appends need ``floor_time`` and ``checkpoint``; this head leaves them
        None so that reads never pay for them.
        """
        with _as_store_error("read the head"):
            return self._head()

    def append_head(self) -> StoreHead:
        """The head an append's ``prepare`` would get now (with ``floor_time``
        and the newest ``checkpoint``), read without writing: what tells a
        reader what the next append will check."""
        with _as_store_error("read the head"):
            return self._append_head()

    def rows(self, start: int = 0, stop: int | None = None) -> Iterator[StoredRow]:
        """Stored rows with ``start <= seq < stop`` in seq order, streamed."""
        with _as_store_error("read records"):
            yield from self._rows(start, stop)

    def column_rows(
        self, start: int = 0, stop: int | None = None
    ) -> Iterator[ColumnRow]:
        """``rows`` with the derived columns the store keeps beside each record
        (kind, run, time), which reads by kind, run or time trust; a store that
        keeps none gives ``kind`` None."""
        with _as_store_error("read records"):
            yield from self._column_rows(start, stop)

    def rows_of_kinds(
        self, kinds: Sequence[str], start: int = 0
    ) -> Iterator[StoredRow]:
        """Stored rows whose kind column is one of ``kinds``, in seq order, from
        seq ``start`` on (a reader that kept what it read before asks only for
        the rows after it: the writer's key ring)."""
        with _as_store_error("read records"):
            yield from self._rows_of_kinds(tuple(kinds), max(start, 0))

    def node_range(self, level: int, start: int, stop: int) -> dict[int, bytes]:
        """Stored Merkle nodes at ``level`` with ``start <= index < stop``, by index."""
        with _as_store_error("read Merkle nodes"):
            return self._node_range(level, start, stop)

    def time_floor(self) -> tuple[str, int] | None:
        """(time, seq) of the newest-dated record since the last reset record
        (``KindRoles.reset_kind``), None for an empty store."""
        with _as_store_error("read records"):
            return self._time_floor()

    def latest_checkpoint(self) -> CheckpointRow | None:
        """The most recently stored checkpoint, if any."""
        with _as_store_error("read checkpoints"):
            return self._latest_checkpoint()

    def node(self, level: int, index: int) -> bytes:
        """The stored Merkle node of the perfect subtree (level, index)."""
        with _as_store_error("read a Merkle node"):
            found = self._node(level, index)
        if found is None:
            raise StoreError(
                f"Merkle node ({level}, {index}) is missing from the store"
            )
        return found

    def put_blob(self, digest: str, data: bytes) -> bool:
        """Store a blob under its digest; True if it was new (deduplicated otherwise).

        A digest a stored purge names is not stored again (False): the same bytes
        stay erased, and a new reference to them reads as purged.
        """
        with _as_store_error("store a blob"):
            return self._put_blob(digest, data)

    def put_blobs(self, blobs: Sequence[tuple[str, bytes]]) -> list[bool]:
        """``put_blob`` for each ``(digest, data)``, in one write where the backend
        can (SQLite: one transaction, so one sync of the disk for them all)."""
        with _as_store_error("store blobs"):
            return self._put_blobs(blobs)

    def get_blob(self, digest: str) -> bytes | None:
        """The blob's bytes, or None when the store does not hold it."""
        with _as_store_error("read a blob"):
            return self._get_blob(digest)

    def find_blobs(self, prefix: str, limit: int = 10) -> list[tuple[str, int]]:
        """(digest, size) of stored blobs whose digest starts with ``prefix``
        (``sha256:`` and hex digits), in digest order, at most ``limit``."""
        with _as_store_error("read blobs"):
            return self._find_blobs(prefix, limit)

    def purges(self) -> list[StoredPurge]:
        """Every purge the store knows of, in seq order."""
        with _as_store_error("read purges"):
            return self._purges(None)

    def protection_gaps(self) -> list[str]:
        """What is off in the store's own refusal of changes (a database's
        append-only trigger dropped or disabled, a rule or trigger that is not
        mltrail's on a ledger table), one sentence each, for verification to
        warn of; empty where the backend has nothing to check."""
        with _as_store_error("read the store's protections"):
            return self._protection_gaps()

    def _protection_gaps(self) -> list[str]:
        return []

    def purge_of(self, digest: str) -> StoredPurge | None:
        """The purge that names ``digest``, if one is stored."""
        with _as_store_error("read purges"):
            found = self._purges(digest)
        return found[0] if found else None

    def erase_blob(self, digest: str) -> bool:
        """Erase the bytes of a blob that a stored purge record names.

        They leave the store's files too (no copy in free pages or a log), and
        the purge is marked erased. Safe to repeat (an interrupted erasure is
        finished). Returns whether the bytes were still held.

        Raises:
            StoreError: no stored purge names ``digest``, or the files could
                not be rewritten (the purge then stays unerased).
        """
        with _as_store_error("erase a blob"):
            return self._erase_blob(digest)

    def add_checkpoint(self, size: int, text: str) -> None:
        """Keep a signed checkpoint of the tree at ``size``."""
        with _as_store_error("store a checkpoint"):
            self._add_checkpoint(size, text)

    def checkpoints(self) -> list[CheckpointRow]:
        """Every checkpoint kept, oldest first."""
        with _as_store_error("read checkpoints"):
            return self._checkpoints()

    def add_evidence(
        self, kind: str, size: int, checkpoint: str, data: bytes, added: str
    ) -> None:
        """Keep evidence about the checkpoint ``checkpoint`` (of ``size`` records).

        Append-only like everything else: evidence is never changed or removed.
        """
        with _as_store_error("store checkpoint evidence"):
            self._add_evidence(kind, size, checkpoint, data, added)

    def evidence(self) -> list[StoredEvidence]:
        """Every piece of checkpoint evidence kept, oldest first."""
        with _as_store_error("read checkpoint evidence"):
            return self._evidence()

    def meta(self) -> dict[str, str]:
        """Write-once ledger settings (origin, schema version)."""
        with _as_store_error("read ledger settings"):
            return self._meta()

    def init_meta(self, values: dict[str, str]) -> None:
        """Write ledger settings once; existing keys are never changed."""
        with _as_store_error("write ledger settings"):
            self._init_meta(values)

    def hold_run(self, run_id: str) -> RunHold | None:
        """Mark run ``run_id`` live to every host that shares this store, until
        the hold is released or this process dies; None for a store one home
        owns (the home's lock files say which runs live, see ``open_runs``).
        """
        with _as_store_error("hold a live run"):
            return self._hold_run(run_id)

    def live_runs(self, run_ids: Collection[str]) -> set[str] | None:
        """Which of ``run_ids`` some process on any host holds (``hold_run``);
        None for a store without holds."""
        with _as_store_error("read live runs"):
            return self._live_runs(run_ids)

    def _hold_run(self, run_id: str) -> RunHold | None:
        return None

    def _live_runs(self, run_ids: Collection[str]) -> set[str] | None:
        return None

    def close(self) -> None:
        """Release connections."""
        with _as_store_error("close"):
            self._close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @abstractmethod
    def _append(self, prepare: Prepare) -> NewBatch: ...
    @abstractmethod
    def _head(self) -> StoreHead: ...
    @abstractmethod
    def _rows(self, start: int, stop: int | None) -> Iterator[StoredRow]: ...
    @abstractmethod
    def _rows_of_kinds(
        self, kinds: tuple[str, ...], start: int
    ) -> Iterator[StoredRow]: ...

    def _append_head(self) -> StoreHead:
        return self._head()

    def _column_rows(self, start: int, stop: int | None) -> Iterator[ColumnRow]:
        for row in self._rows(start, stop):
            yield ColumnRow(row.seq, row.hash, row.data)

    @abstractmethod
    def _node(self, level: int, index: int) -> bytes | None: ...
    @abstractmethod
    def _node_range(self, level: int, start: int, stop: int) -> dict[int, bytes]: ...
    @abstractmethod
    def _time_floor(self) -> tuple[str, int] | None: ...
    @abstractmethod
    def _latest_checkpoint(self) -> CheckpointRow | None: ...
    @abstractmethod
    def _put_blob(self, digest: str, data: bytes) -> bool: ...

    def _put_blobs(self, blobs: Sequence[tuple[str, bytes]]) -> list[bool]:
        return [self._put_blob(digest, data) for digest, data in blobs]

    @abstractmethod
    def _get_blob(self, digest: str) -> bytes | None: ...
    @abstractmethod
    def _find_blobs(self, prefix: str, limit: int) -> list[tuple[str, int]]: ...
    @abstractmethod
    def _purges(self, digest: str | None) -> list[StoredPurge]: ...
    @abstractmethod
    def _erase_blob(self, digest: str) -> bool: ...
    @abstractmethod
    def _add_checkpoint(self, size: int, text: str) -> None: ...
    @abstractmethod
    def _checkpoints(self) -> list[CheckpointRow]: ...
    @abstractmethod
    def _add_evidence(
        self, kind: str, size: int, checkpoint: str, data: bytes, added: str
    ) -> None: ...
    @abstractmethod
    def _evidence(self) -> list[StoredEvidence]: ...
    @abstractmethod
    def _meta(self) -> dict[str, str]: ...
    @abstractmethod
    def _init_meta(self, values: dict[str, str]) -> None: ...
    @abstractmethod
    def _close(self) -> None: ...


# An entry time (``YYYY-MM-DDTHH:MM:SS[.f]Z``, 1 to 9 fraction digits, checked by
# the core before a record is stored) as text that sorts like the instant the core
# reads: the seconds, then the fraction cut or padded to microseconds (the core
# truncates beyond them). Plain text order does not: ``...:00Z`` sorts after
# ``...:00.5Z``, and ``.1Z`` after ``.10Z``. Stores order times by it, so their
# floor is the one the chain keeps (the first seq of the latest instant).
TIME_ORDER_SQL = (
    "substr(time, 1, 19) || CASE WHEN substr(time, 20, 1) = '.' "
    "THEN substr(substr(time, 21, length(time) - 21) || '000000', 1, 6) "
    "ELSE '000000' END"
)


def time_order_key(time: str) -> str:
    """``TIME_ORDER_SQL`` in Python, for stores that keep records in memory."""
    fraction = time[20:-1] if time[19:20] == "." else ""
    return time[:19] + (fraction + "000000")[:6]


def frontier_nodes(size: int) -> list[tuple[int, int]]:
    """``(level, index)`` of the stored Merkle nodes that tile ``[0, size)``, left
    first: the perfect subtrees the head's ``frontier`` holds, largest first.

    How a store addresses the nodes it keeps (``merkle_nodes``), the same
    tiling as RFC 9162's compact ranges; ``mltrail.core.merkle`` computes the
    same positions (``frontier_positions``, cross-checked by a unit test).
    """
    positions, begin = [], 0
    while begin < size:
        level = (size - begin).bit_length() - 1
        positions.append((level, begin >> level))
        begin += 1 << level
    return positions


def head_after(
    before: StoreHead, batch: NewBatch, epoch_kinds: tuple[str, ...]
) -> StoreHead:
    """The head a store keeps after storing ``batch`` on ``before``: the batch's,
    with the key epoch the store itself derives from the kinds it stored (so a
    head read back from a cache is the head a fresh read would give)."""
    epoch = before.key_epoch
    for record in batch.records:
        if record.kind in epoch_kinds:
            epoch = record.seq + 1
    head = batch.head
    if head.key_epoch == epoch:
        return head
    return StoreHead(
        head.size,
        head.last_hash,
        head.last_time,
        head.frontier,
        epoch,
        floor_time=head.floor_time,
        checkpoint=head.checkpoint,
    )


def build_head(
    size: int,
    last: tuple[bytes, str] | None,
    key_epoch: int,
    node: Callable[[int, int], bytes | None],
    *,
    floor_time: str | None = None,
    checkpoint: str | None = None,
) -> StoreHead:
    """Assemble a head from a backend's last row and its stored frontier nodes."""
    if size == 0 or last is None:
        return EMPTY_STORE_HEAD
    frontier = []
    for level, index in frontier_nodes(size):
        found = node(level, index)
        if found is None:
            raise StoreError(
                f"Merkle node ({level}, {index}) is missing: the store is corrupt"
            )
        frontier.append(found)
    return StoreHead(
        size,
        last[0],
        last[1],
        tuple(frontier),
        key_epoch,
        floor_time=floor_time,
        checkpoint=checkpoint,
    )
