"""Reads pinned to what a verification checked.

Reports and exports verify the ledger, then read it again (an index derived in
memory, a run's records, a manifest blob). A store can answer the same read
differently the second time: someone who can write the home can replace the
``records`` table of ``ledger.db`` with a view that picks between the signed
bytes and others at random or by the clock, or rewrite the file while the
command runs. Verification then sees the signed bytes and the export the
others, and the ledger key signs them (ADR 0024 amendment).

:class:`PinnedStore` hands out only what was verified: pinned before the
verification, it reads every record once and keeps each one's Merkle leaf hash
and the root they give; every record it hands out after must have the leaf hash
pinned for its seq, every range must come back whole, and every blob must hash
to its address. Once verification is done, ``confirm`` checks that it verified
the same records (its size and root); nothing read is handed out before that.
It writes nothing.
"""

from __future__ import annotations

import re
from array import array
from hashlib import sha256 as _sha256
from typing import TYPE_CHECKING

from mltrail.core.canonical import compute_blob_digest, compute_leaf_hash
from mltrail.core.merkle import CompactRange, hash_children
from mltrail.errors import IntegrityError, MltrailError, StoreError
from mltrail.storage.base import ColumnRow, StaleSnapshotError, Store, StoredRow

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence
    from contextlib import AbstractContextManager

    from mltrail.core.report import VerificationReport
    from mltrail.ledger.ledger import Ledger
    from mltrail.storage.base import (
        CheckpointRow,
        NewBatch,
        Prepare,
        StoredEvidence,
        StoredPurge,
        StoreHead,
    )

__all__ = ["PinnedStore", "PurgedSinceVerifiedError", "pin_reads", "read_leaves"]

_LEAF = 32
_HINT = (
    "the store answered differently after it was verified: ledger.db is being "
    "changed, or is not a plain mltrail database (a view in place of a table?); "
    "run `mltrail verify` on a copy"
)


class PurgedSinceVerifiedError(StoreError):
    """A blob the pinned (verified) records leave held is gone now, erased by a
    purge record the store now holds beyond them: purged by policy after the
    verification, not deleted without a purge. Run the command again: its
    verification reads the purge record (ADR 0024, amendment of 2026-12-08)."""

    def __init__(self, digest: str, seq: int, size: int) -> None:
        super().__init__(
            f"blob {digest} was purged (seq {seq}) after the verification this "
            f"command made, which read {size} records: its bytes were erased "
            "since",
            hint="run the command again: its verification will read the purge "
            "record, and the blob is then read as purged by policy",
        )
        self.digest = digest
        self.seq = seq


def pin_reads(ledger: Ledger) -> PinnedStore:
    """Pin ``ledger``'s records as they read now: from here on it hands out only
    those (see :class:`PinnedStore`). Call ``confirm`` with the verification's
    report before anything read is handed out.

    Raises:
        IntegrityError: a record is missing from the read.
    """
    store = ledger.store
    if not isinstance(store, PinnedStore):
        store = ledger.store = PinnedStore(store)
    return store


def read_leaves(
    store: Store,
    size: int,
    tree: CompactRange,
    refuse: Callable[[str], IntegrityError],
) -> Iterator[tuple[StoredRow, bytes]]:
    """Records 0 to ``size`` of ``store``, read once: each row with its Merkle
    leaf hash, which is appended to ``tree`` (empty when given) before the row
    is handed out, so ``tree`` holds every row handed out so far. The rows must
    come each the seq after the one before, all of them; the caller checks
    ``tree`` against what was verified (its size and root).

    Raises:
        what ``refuse`` makes of the reason, when a seq is missing from the read.
    """
    for row in _contiguous(store.rows(0, size), 0, size, refuse):
        leaf = compute_leaf_hash(row.data)
        tree.append(leaf)
        yield row, leaf


def _contiguous(
    rows: Iterator[StoredRow],
    start: int,
    stop: int,
    refuse: Callable[[str], IntegrityError],
) -> Iterator[StoredRow]:
    """``rows`` as they come, each the seq after the one before, all of
    ``start`` to ``stop`` (or what ``refuse`` makes of the reason)."""
    expected = start
    for row in rows:
        if row.seq != expected:
            raise refuse(
                f"record seq {expected} is missing from a read of records "
                f"{start} to {stop - 1}"
            )
        yield row
        expected += 1
    if expected < stop:
        raise refuse(f"records seq {expected} to {stop - 1} are missing from a read")


def _stored_size(store: Store) -> int:
    """The number of records ``store`` holds: its head's size, or, when it has
    no head to give (a Merkle node of its frontier missing, as for rows forged
    without theirs), one past the last seq its rows list. Verification walks
    such a store and reports what is wrong (exit 3): pinning must not fail
    first with "the store is corrupt" (exit 4, where `mltrail verify` says 3)."""
    try:
        return store.head().size
    except StaleSnapshotError:
        raise
    except StoreError:
        last = -1
        for row in store.rows(0, None):
            last = row.seq
        return last + 1


def _refused_read(why: str) -> IntegrityError:
    return IntegrityError(why, hint=_HINT)


_SIG_HEAD = b',"sig":{"alg":"ed25519","key":"'
_SIG_MID = b'","value":"'
_SIG_KEY, _SIG_VALUE = 64, 88
_AFTER_SIG = re.compile(
    rb',"time":"[^"\\]*","v":"[^"\\]*"\},"prev":"[0-9a-f]{64}","seq":[0-9]+\}\Z'
)
"""An entry's time and v after its sig, then the record's prev and seq: the end
of a record whose entry has no member beyond the seven it knows."""


def _envelope_kind(data: bytes) -> bytes:
    """The entry's ``kind`` in a record's canonical bytes, without parsing them.

    An entry's members sort ``actor``, ``body``, ``kind``, ``run``, ``sig``,
    ``time``, ``v``, and a quote inside a string is escaped: so the last
    ``,"sig":{`` opens the entry's signature, and the last ``,"kind":"`` before
    it is the entry's kind (a body's own ``kind`` members come earlier), when
    nothing but a run stands between the two and nothing but the envelope's
    own members follows the signature. An entry with members it does not know
    (kept and signed, ``Entry.extra``), which may hold ``kind`` and ``sig``
    members of their own wherever they sort, is parsed instead. Bytes that
    are not a record give ``b""`` (of no kind); verification refuses them.
    """
    sig = data.rfind(b',"sig":{')
    at = data.rfind(b',"kind":"', 0, sig) if sig > 0 else -1
    if at >= 0:
        start = at + 9
        end = data.find(b'"', start, sig)
        if end > start and _only_run(data[end + 1 : sig]) and _plain_tail(data, sig):
            return data[start:end]
    return _parsed_kind(data)


def _only_run(between: bytes) -> bool:
    """Whether ``between`` (after the kind, before the sig) is nothing or a run."""
    return not between or (
        between.startswith(b',"run":"')
        and between.endswith(b'"')
        and b'"' not in between[8:-1]
    )


def _plain_tail(data: bytes, sig: int) -> bool:
    """Whether an Ed25519 sig at ``sig``, then time, v, prev and seq, end ``data``."""
    key = sig + len(_SIG_HEAD)
    value = key + _SIG_KEY + len(_SIG_MID)
    after = value + _SIG_VALUE + 2
    return (
        data.startswith(_SIG_HEAD, sig)
        and data.startswith(_SIG_MID, key + _SIG_KEY)
        and data.startswith(b'"}', after - 2)
        and b'"' not in data[key : key + _SIG_KEY]
        and b'"' not in data[value : after - 2]
        and _AFTER_SIG.match(data, after) is not None
    )


def _parsed_kind(data: bytes) -> bytes:
    """The entry's kind by parsing ``data`` (``b""``: no record, or no kind)."""
    from mltrail.core.codec import parse_json

    try:
        kind = parse_json(data, what="record")["entry"]["kind"]
    except (MltrailError, KeyError, TypeError, ValueError, RecursionError):
        return b""
    return kind.encode("utf-8", "surrogatepass") if isinstance(kind, str) else b""


def _purge_of(data: bytes) -> str | None:
    """The digest a record's bytes purge, when they are a purge record."""
    from mltrail.core.codec import parse_json
    from mltrail.core.erasure import PURGE_KIND

    try:
        entry = parse_json(data, what="record")["entry"]
        digest = entry["body"]["digest"] if entry["kind"] == PURGE_KIND else None
    except (MltrailError, KeyError, TypeError, ValueError, RecursionError):
        return None
    return digest if isinstance(digest, str) else None


class PinnedStore(Store):
    """A read-only view of ``inner`` limited to the records it held when
    pinned, byte for byte (see the module's docstring).

    Raises:
        IntegrityError: a record read differs from the one pinned, a range comes
            back with a seq missing, or a blob does not hash to its address;
            ``confirm``: the verification checked other bytes (StoreError:
            another size, the ledger grew meanwhile).
    """

    def __init__(self, inner: Store) -> None:
        self.inner = inner
        self.location = inner.location
        self.read_only = True
        self.size = size = _stored_size(inner)
        leaves = bytearray()
        tree = CompactRange(0, ())
        kind_ids: dict[bytes, int] = {}
        kinds = array("H")
        last_data = b""
        for row, leaf in read_leaves(inner, size, tree, _refused_read):
            data = last_data = row.data
            leaves += leaf
            kinds.append(kind_ids.setdefault(_envelope_kind(data), len(kind_ids)))
        self.root: bytes | None = tree.root() if size else None
        self._leaves = bytes(leaves)
        self._kind_ids = {
            kind.decode("utf-8", "replace"): i for kind, i in kind_ids.items()
        }
        self._kinds = kinds
        self._nodes: dict[tuple[int, int], bytes] = {}
        # what else a reader asks, read once (in the caller's snapshot when it
        # holds one): a later answer could differ. Not cut to the pinned size by
        # their size columns, which whoever writes the store sets: the readers
        # check a checkpoint or token against the pinned records themselves
        self._checkpoint_rows = inner.checkpoints()
        self._evidence_rows = inner.evidence()
        self._purge_rows = inner.purges()
        self._meta_values = inner.meta()
        self._pinned_head = self._make_head(last_data, tree.hashes)

    def confirm(self, report: VerificationReport, *, grown_ok: bool = True) -> None:
        """Refuse unless ``report`` verified exactly the pinned records.

        ``grown_ok``: the pin was read before the verification's snapshot, so
        more records verified than pinned may be another process's appends.

        Raises:
            StoreError: more records verified than pinned (``grown_ok``): run
                it again.
            IntegrityError: anything else (the same read answered otherwise).
        """
        if (report.size, report.root) == (self.size, self.root):
            return
        if grown_ok and report.size > self.size:  # another process appended
            raise StoreError(
                f"{report.size} records were verified, {self.size} read for this "
                "command: the ledger grew while it ran",
                hint="run it again",
            )
        raise IntegrityError(
            f"the {self.size} records verified are not the bytes read for this "
            "command: the store answered the same read otherwise",
            hint="run it again; if it keeps failing, " + _HINT,
        )

    def _pinned(self, row: StoredRow) -> StoredRow:
        """``row`` as verified (its hash recomputed), or IntegrityError."""
        seq, data = row.seq, row.data
        at = _LEAF * seq
        if (
            not 0 <= seq < self.size
            or _sha256(b"\x00" + data).digest() != self._leaves[at : at + _LEAF]
        ):
            raise IntegrityError(
                f"record seq {seq} read again is not the record pinned (verified)",
                hint=_HINT,
            )
        return StoredRow(seq, _sha256(data).digest(), data)

    # -- records ----------------------------------------------------------------

    def _rows(self, start: int, stop: int | None) -> Iterator[StoredRow]:
        stop = self.size if stop is None else min(stop, self.size)
        start = max(start, 0)
        if start >= stop:
            return
        pinned = self._pinned
        rows = self.inner.rows(start, stop)
        for row in _contiguous(rows, start, stop, _refused_read):
            yield pinned(row)

    def _column_rows(self, start: int, stop: int | None) -> Iterator[ColumnRow]:
        # no derived columns: a reader decodes the verified bytes instead
        for row in self._rows(start, stop):
            yield ColumnRow(row.seq, row.hash, row.data)

    def _rows_of_kinds(self, kinds: tuple[str, ...], start: int) -> Iterator[StoredRow]:
        """By the kind the pinned bytes say, not the store's kind column (which
        could leave a row out): the kinds were read off the records when they
        were pinned."""
        ids = {self._kind_ids[kind] for kind in kinds if kind in self._kind_ids}
        if not ids or start >= self.size:
            return
        kinds_read = self._kinds
        seqs = [seq for seq in range(start, self.size) if kinds_read[seq] in ids]
        if len(seqs) * 64 > self.size - start:  # many: one pass over all is faster
            wanted = set(seqs)
            yield from (row for row in self._rows(start, None) if row.seq in wanted)
            return
        for seq in seqs:
            yield from self._rows(seq, seq + 1)

    def _snapshot(self) -> AbstractContextManager[object]:
        # what is not pinned (checkpoints, nodes, evidence) read in one state
        return self.inner.snapshot()

    def _make_head(self, last_data: bytes, frontier: tuple[bytes, ...]) -> StoreHead:
        """The head of the pinned records: size, the last record's hash and
        time, the frontier (the compact range of the pinned leaves, built while
        pinning: not computed again, nor every interior node kept), the key
        epoch from the kinds read off the bytes."""
        from mltrail.core.codec import parse_json
        from mltrail.storage.base import StoreHead

        size = self.size
        if not size:
            return StoreHead(0, bytes(32), None, ())
        try:
            last_time = parse_json(last_data, what="record")["entry"]["time"]
        except (MltrailError, KeyError, TypeError, RecursionError):
            last_time = None  # verification refuses such a record anyway
        key_ids = {self._kind_ids.get(k) for k in ("key.added", "key.revoked")}
        epoch = next(
            (seq + 1 for seq in range(size - 1, -1, -1) if self._kinds[seq] in key_ids),
            0,
        )
        return StoreHead(
            size,
            _sha256(last_data).digest(),
            last_time if isinstance(last_time, str) else None,
            frontier,
            epoch,
        )

    def _head(self) -> StoreHead:
        return self._pinned_head

    def _append_head(self) -> StoreHead:
        return self._pinned_head

    def _computed(self, level: int, index: int) -> bytes:
        """The Merkle node (level, index) of the pinned leaves, computed (and
        kept) from them: never the store's."""
        found = self._nodes.get((level, index))
        if found is None:
            if level == 0:
                found = self._leaves[_LEAF * index : _LEAF * index + _LEAF]
            else:
                found = hash_children(
                    self._computed(level - 1, 2 * index),
                    self._computed(level - 1, 2 * index + 1),
                )
                self._nodes[level, index] = found
        return found

    # -- blobs ------------------------------------------------------------------

    def _get_blob(self, digest: str) -> bytes | None:
        data = self.inner.get_blob(digest)
        if data is None:
            self._refuse_if_purged_since(digest)
            return None
        if compute_blob_digest(data) != digest:
            raise IntegrityError(
                f"blob {digest} does not hash to its address",
                hint=_HINT,
            )
        return data

    def _refuse_if_purged_since(self, digest: str) -> None:
        """A blob the store no longer holds, and no pinned purge names: when a
        purge record the store holds now, beyond the pinned records, names it
        (by its bytes: the store's table of purges can be written without a
        record), it was purged after the verification. Any other blob gone is
        left to the reader, which reports it missing (deleted without a purge).
        The record beyond the pin is not verified: it only picks this error,
        which fails the command, and the next run verifies it.

        Raises:
            PurgedSinceVerifiedError: such a purge record names it.
        """
        if any(p.digest == digest for p in self._purge_rows):
            return  # purged as of the pin: the reader says so
        for purge in self.inner.purges():
            if purge.digest != digest or purge.seq < self.size:
                continue
            for row in self.inner.rows(purge.seq, purge.seq + 1):
                if row.seq == purge.seq and _purge_of(row.data) == digest:
                    raise PurgedSinceVerifiedError(digest, purge.seq, self.size)

    # -- the rest as the store has it -------------------------------------------

    def _node(self, level: int, index: int) -> bytes | None:
        if level < 0 or index < 0 or (index + 1) << level > self.size:
            return None  # no perfect subtree of the pinned records
        return self._computed(level, index)

    def _node_range(self, level: int, start: int, stop: int) -> dict[int, bytes]:
        found = {}
        for index in range(max(start, 0), stop):
            node = self._node(level, index)
            if node is None:
                break
            found[index] = node
        return found

    def _time_floor(self) -> tuple[str, int] | None:
        return self.inner.time_floor()

    def _latest_checkpoint(self) -> CheckpointRow | None:
        return self._checkpoint_rows[-1] if self._checkpoint_rows else None

    def _find_blobs(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        return self.inner.find_blobs(prefix, limit)

    def _purges(self, digest: str | None) -> list[StoredPurge]:
        rows = self._purge_rows
        return list(rows) if digest is None else [p for p in rows if p.digest == digest]

    def _checkpoints(self) -> list[CheckpointRow]:
        return list(self._checkpoint_rows)

    def _evidence(self) -> list[StoredEvidence]:
        return list(self._evidence_rows)

    def _meta(self) -> dict[str, str]:
        return dict(self._meta_values)

    def _protection_gaps(self) -> list[str]:
        return self.inner.protection_gaps()

    def _close(self) -> None:
        self.inner.close()

    # -- no writes --------------------------------------------------------------

    def _read_only(self) -> StoreError:
        return StoreError("a store pinned to a verification is read-only")

    def _append(self, prepare: Prepare) -> NewBatch:
        raise self._read_only()

    def _put_blob(self, digest: str, data: bytes) -> bool:
        raise self._read_only()

    def _put_blobs(self, blobs: Sequence[tuple[str, bytes]]) -> list[bool]:
        raise self._read_only()

    def _erase_blob(self, digest: str) -> bool:
        raise self._read_only()

    def _add_checkpoint(self, size: int, text: str) -> None:
        raise self._read_only()

    def _add_evidence(
        self, kind: str, size: int, checkpoint: str, data: bytes, added: str
    ) -> None:
        raise self._read_only()

    def _init_meta(self, values: dict[str, str]) -> None:
        raise self._read_only()
