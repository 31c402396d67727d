"""Verifying a whole store: stream rows, check them on every core, walk them in order.

Per-record work (parsing, canonical form, schema, Ed25519) runs in worker
processes on large ledgers; the sequential checks (seq, prev chain, key validity,
times, Merkle roots against checkpoints, coverage) run here on their results.
Workers fold runs of plain records into one ``PlainRun`` each, which the walk
takes whole when it is sure to find nothing there; else it checks the run's rows
again and takes them one by one (ADR 0036's amendment).
The Merkle nodes the store keeps (which proofs and appends use) are compared
with the ones recomputed from the records as the walk goes. Then every
referenced blob is re-hashed, unless a valid ``blob.purged`` record erased it
(reported as purged by policy, a warning). (Every checkpoint's root is compared with the root
recomputed from the records at its size, so checkpoints that pass are
consistent with each other by construction.)
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from collections import defaultdict
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from itertools import islice
from typing import TYPE_CHECKING

from mltrail.core.canonical import compute_blob_digest
from mltrail.core.chain import KEY_KINDS
from mltrail.core.codec import parse_json
from mltrail.core.record_check import (
    CheckpointCheck,
    PlainRun,
    RecordCheck,
    check_checkpoint_text,
    check_record,
    summarise_checks,
)
from mltrail.core.report import Severity
from mltrail.core.signing import compute_key_id, decode_b64
from mltrail.core.verify import LedgerVerifier
from mltrail.errors import MltrailError, StoreError
from mltrail.ledger.purge_checks import check_held_purges, records_at
from mltrail.ledger.stored import stored_checkpoints

if TYPE_CHECKING:
    from collections.abc import (
        Callable,
        Collection,
        Iterable,
        Iterator,
        Mapping,
        Sequence,
    )

    from mltrail.core.codec import BlobRef
    from mltrail.core.erasure import PurgeNote
    from mltrail.core.report import StoredCheckpoint, VerificationReport
    from mltrail.storage.base import ColumnRow, Store

__all__ = ["MAX_WORKERS", "PARALLEL_THRESHOLD", "verify_store"]

PARALLEL_THRESHOLD = 20_000
MAX_WORKERS = 64
_CHUNK = 2_000
_NODE_BATCH = 4_096
_MAX_NODE_REPORTS = 5
# fork starts workers in milliseconds and needs no importable __main__ (spawn
# re-imports it, which fails for scripts read from stdin); workers only compute
# over the bytes they are sent, never touching the parent's connections.
_START_METHOD = "fork" if sys.platform == "linux" else "spawn"


def verify_store(
    store: Store,
    *,
    origin: str,
    trusted_keys: Collection[str] = (),
    witness: Sequence[StoredCheckpoint] = (),
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> VerificationReport:
    """Verify everything in ``store``.

    Args:
        store: the store to check.
        origin: the origin every checkpoint must name.
        trusted_keys: key ids to trust (empty: whatever the genesis record says).
        witness: checkpoints kept outside the store (the one this machine saw
            last, an auditor's copy); a store rolled back behind them fails.
        progress: called with (records done, total) as the walk advances.
        workers: processes for per-record checks (default: all cores on large
            ledgers, at most ``MAX_WORKERS``).

    Every read is made in one snapshot of the store (``Store.snapshot``):
    what other writers commit meanwhile is left for the next verification,
    and the report's ``size`` is the size verified. A snapshot found stale
    (a blob erased by a purge recorded after it, over HTTP) is verified
    again in a new one (``Store.read_in_snapshot``).
    """
    return store.read_in_snapshot(
        lambda: _verify_snapshot(
            store, origin, trusted_keys, witness, progress, workers
        )
    )


def _verify_snapshot(
    store: Store,
    origin: str,
    trusted_keys: Collection[str],
    witness: Sequence[StoredCheckpoint],
    progress: Callable[[int, int], None] | None,
    workers: int | None,
) -> VerificationReport:
    checkpoints = stored_checkpoints(store.checkpoints()) + list(witness)
    try:
        total = store.head().size
    except (
        StoreError
    ):  # e.g. Merkle nodes missing for forged rows: the walk reports them
        total = 0
    keys = _public_keys(store)
    args = (store, origin, trusted_keys, checkpoints, total, progress, workers)
    verifier = _walk(keys, *args)
    # the keys come from rows the kind column lists as key records: a key.added
    # relabelled another kind (column-differs) is learned by the walk only,
    # too late for the checkpoints it signed; walk again knowing it (rare)
    learned = {
        key_id: state.public_key
        for key_id, state in verifier.keyring.keys.items()
        if key_id not in keys
    }
    if learned:
        verifier = _walk(keys | learned, *args)
    report = verifier.report
    _verify_blobs(store, verifier)
    check_held_purges(store, verifier)
    for gap in store.protection_gaps():  # the records were checked all the same
        verifier.problem(None, "store-protection", gap, Severity.WARNING)
    return report


def _walk(
    keys: dict[str, bytes],
    store: Store,
    origin: str,
    trusted_keys: Collection[str],
    checkpoints: list[StoredCheckpoint],
    total: int,
    progress: Callable[[int, int], None] | None,
    workers: int | None,
) -> LedgerVerifier:
    """One walk over every record with ``keys`` known up front."""
    with _pool(keys, _worker_count(workers, total)) as pool:
        checks = _checkpoint_checks(checkpoints, keys, pool)
        verifier = LedgerVerifier(origin, checkpoints, checks, trusted_keys)
        nodes = _NodeComparison(store, verifier)
        done = 0
        for chunk, items in _record_checks(store.column_rows(), keys, pool):
            for item in items:
                if type(item) is RecordCheck:
                    checks: Iterable[RecordCheck] = (item,)
                elif verifier.accept_plain(item, _NODE_BATCH, nodes.compare):
                    done = _report_progress(progress, done, len(item.times), total)
                    continue
                else:  # the run's records, one by one (see PlainRun)
                    rows = chunk[item.position : item.position + len(item.times)]
                    checks = (
                        check_record(seq, digest, data, keys, columns)
                        for seq, digest, data, columns in rows
                    )
                for check in checks:
                    verifier.accept(check)
                    if len(verifier.nodes) >= _NODE_BATCH:
                        nodes.compare()
                    done = _report_progress(progress, done, 1, total)
    nodes.compare()
    verifier.finish()
    nodes.summarise()
    return verifier


def _worker_count(workers: int | None, total: int) -> int:
    if workers is not None:
        return max(1, min(workers, MAX_WORKERS))
    if total < PARALLEL_THRESHOLD:
        return 1
    return min(os.cpu_count() or 1, MAX_WORKERS)


@contextmanager
def _pool(keys: Mapping[str, bytes], count: int) -> Iterator[_Pool | None]:
    """Worker processes that know every public key, or None to work in-process."""
    if count <= 1:
        yield None
        return
    context = multiprocessing.get_context(_START_METHOD)
    with ProcessPoolExecutor(
        count, mp_context=context, initializer=_init_worker, initargs=(dict(keys),)
    ) as executor:
        yield _Pool(executor, count)


@dataclass(frozen=True)
class _Pool:
    executor: ProcessPoolExecutor
    count: int


class _NodeComparison:
    """Compares the Merkle nodes the walk recomputed with the ones the store keeps."""

    def __init__(self, store: Store, verifier: LedgerVerifier) -> None:
        self._store = store
        self._verifier = verifier
        self._bad: list[tuple[int, int]] = []

    def compare(self) -> None:
        verifier = self._verifier
        completed, verifier.nodes = verifier.nodes, []
        if not verifier.nodes_comparable:
            return
        by_level: dict[int, list[tuple[int, bytes]]] = defaultdict(list)
        for level, index, digest in completed:
            by_level[level].append((index, digest))
        for level, items in by_level.items():
            stored = self._store.node_range(level, items[0][0], items[-1][0] + 1)
            verifier.report.nodes_checked += len(items)
            # indices run on without a gap at each level: one comparison in C
            # answers for all when none differs, else each is looked at
            if list(stored.items()) != items:
                self._bad.extend(
                    (level, index)
                    for index, digest in items
                    if stored.get(index) != digest
                )

    def summarise(self) -> None:
        """Report mismatching nodes: each (up to a few) when the records are intact,
        else one warning, since altered records explain them."""
        if not self._bad:
            return
        if self._verifier.report.errors:
            self._verifier.problem(
                None,
                "merkle-node",
                f"{len(self._bad)} stored Merkle nodes do not match the records "
                "(a consequence of the changes above)",
                Severity.WARNING,
            )
            return
        for level, index in self._bad[:_MAX_NODE_REPORTS]:
            last_leaf = ((index + 1) << level) - 1
            self._verifier.problem(
                last_leaf,
                "merkle-node",
                f"the stored Merkle node (level {level}, index {index}) does not "
                "match the records: the store's tree cache was altered, so proofs "
                "and appends built on it would be wrong",
            )
        if len(self._bad) > _MAX_NODE_REPORTS:
            self._verifier.problem(
                None,
                "merkle-node",
                f"{len(self._bad) - _MAX_NODE_REPORTS} more stored Merkle nodes do "
                "not match the records",
            )


def _public_keys(store: Store) -> dict[str, bytes]:
    """Every public key any key.added row carries (key ids self-certify; trust comes later)."""
    keys: dict[str, bytes] = {}
    for row in store.rows_of_kinds(KEY_KINDS):
        try:
            body = parse_json(row.data)["entry"]["body"]
            public_key = decode_b64(body["public_key"])
            keys[compute_key_id(public_key)] = public_key
        except (MltrailError, KeyError, TypeError, ValueError):
            continue  # the walk reports the malformed row itself
    return keys


def _checkpoint_checks(
    checkpoints: Sequence[StoredCheckpoint],
    keys: Mapping[str, bytes],
    pool: _Pool | None,
) -> list[CheckpointCheck]:
    """Parse every checkpoint and check its signatures, in the workers when many."""
    texts = [cp.text for cp in checkpoints]
    if pool is None or len(texts) < _CHUNK:
        return [check_checkpoint_text(text, keys) for text in texts]
    chunks = [texts[i : i + _CHUNK] for i in range(0, len(texts), _CHUNK)]
    return [
        check
        for done in pool.executor.map(_check_checkpoint_chunk, chunks)
        for check in done
    ]


def _report_progress(
    progress: Callable[[int, int], None] | None, done: int, more: int, total: int
) -> int:
    """Records done after ``more`` more; ``progress`` is told at each thousand
    passed, and at ``total``: the same calls whether the records came one by one
    or as a plain run taken whole."""
    now = done + more
    if progress is None:
        return now
    for passed in range(done // 1000 + 1, now // 1000 + 1):
        progress(passed * 1000, total)
    if now == total and (now % 1000 or now // 1000 == done // 1000):
        progress(now, total)
    return now


_Columns = tuple[str, str | None, str] | None
_Chunk = list[tuple[int, bytes, bytes, _Columns]]


def _record_checks(
    rows: Iterable[ColumnRow], keys: Mapping[str, bytes], pool: _Pool | None
) -> Iterator[tuple[_Chunk, list[RecordCheck | PlainRun]]]:
    """Each chunk of rows with what ``_check_chunk`` finds in it, in order."""
    chunks = _chunked(rows)
    if pool is None:
        for chunk in chunks:
            yield chunk, _check_chunk(chunk, keys)
        return
    submit = pool.executor.submit
    pending = [(c, submit(_check_chunk, c)) for c in islice(chunks, pool.count * 2)]
    while pending:
        chunk, future = pending.pop(0)
        results = future.result()
        nxt = next(chunks, None)
        if nxt is not None:
            pending.append((nxt, submit(_check_chunk, nxt)))
        yield chunk, results


def _columns(row: ColumnRow) -> _Columns:
    """The (kind, run, time) columns a store keeps beside the row, if any."""
    return None if row.kind is None else (row.kind, row.run, row.time or "")


def _chunked(rows: Iterable[ColumnRow]) -> Iterator[_Chunk]:
    iterator = iter(rows)
    while chunk := [
        (r.seq, r.hash, r.data, _columns(r)) for r in islice(iterator, _CHUNK)
    ]:
        yield chunk


_WORKER_KEYS: dict[str, bytes] = {}


def _init_worker(keys: dict[str, bytes]) -> None:
    _WORKER_KEYS.update(keys)


def _check_checkpoint_chunk(texts: list[str]) -> list[CheckpointCheck]:
    return [check_checkpoint_text(text, _WORKER_KEYS) for text in texts]


def _check_chunk(
    chunk: _Chunk, keys: Mapping[str, bytes] | None = None
) -> list[RecordCheck | PlainRun]:
    """Check each row; fold runs of plain records (see ``PlainRun``): the parent
    receives, and walks, far fewer objects."""
    keys = _WORKER_KEYS if keys is None else keys
    return summarise_checks(
        check_record(seq, digest, data, keys, columns)
        for seq, digest, data, columns in chunk
    )


def _verify_blobs(store: Store, verifier: LedgerVerifier) -> None:
    for digest, refs in verifier.blob_refs.items():
        data = store.get_blob(digest)
        purge = verifier.trusted_purge(digest)
        if purge is not None:
            _report_purge(store, verifier, purge, held=data is not None, refs=refs)
            if data is None:
                continue
        verifier.report.blobs_checked += 1
        for seq, ref in refs:
            if data is None:
                verifier.problem(
                    seq,
                    "blob-missing",
                    f"blob {digest} referenced at {ref.path} is missing from the "
                    "store, and no valid blob.purged record names it",
                )
            elif compute_blob_digest(data) != digest:
                verifier.problem(
                    seq,
                    "blob-altered",
                    f"blob {digest} referenced at "
                    f"{ref.path} was replaced: its bytes hash to "
                    f"{compute_blob_digest(data)}",
                )
            elif len(data) != ref.size:
                verifier.problem(
                    seq,
                    "blob-size",
                    f"blob {digest} at {ref.path} has "
                    f"{len(data)} bytes, the entry says {ref.size}",
                )
    for digest in verifier.purges.keys() - verifier.blob_refs.keys():
        purge = verifier.trusted_purge(digest)
        if purge is not None:  # a blob no record referenced
            held = store.get_blob(digest) is not None
            _report_purge(store, verifier, purge, held=held, refs=[])


def _report_purge(
    store: Store,
    verifier: LedgerVerifier,
    purge: PurgeNote,
    *,
    held: bool,
    refs: Sequence[tuple[int, BlobRef]],
) -> None:
    """A blob a valid ``blob.purged`` record names: purged by policy, or (bytes
    still stored) a purge that was interrupted."""
    where = sorted({seq for seq, _ in refs})
    shown = ", ".join(map(str, where[:10])) + (", ..." if len(where) > 10 else "")
    if held:
        verifier.problem(
            purge.seq,
            "purge-pending",
            f"blob {purge.digest} was purged ({purge.describe()}) but its bytes are "
            "still stored: the purge was interrupted; `mltrail purge --resume` "
            "finishes it",
            Severity.WARNING,
        )
        return
    verifier.report.purged.append(purge)
    kept = f"; record(s) {shown} keep its hash" if where else ""
    verifier.problem(
        purge.seq,
        "blob-purged",
        f"blob {purge.digest} ({purge.size} bytes) was purged by policy "
        f"({purge.describe()}){kept}",
        Severity.WARNING,
    )
    earlier = _authors(store, sorted({seq for seq, _ in refs if seq < purge.seq}))
    message = purge.erased_others_work(earlier)
    if message is not None:
        verifier.problem(purge.seq, "purge-by-other", message, Severity.WARNING)


def _authors(store: Store, seqs: Sequence[int]) -> list[tuple[int, str]]:
    """(seq, ``actor.user``) of the records at ``seqs`` that decode: read only
    for a purged blob's references, after the walk, rather than kept for every
    reference of every verify."""
    return [
        (record.seq, user)
        for record in records_at(store, seqs)
        if isinstance(user := record.entry.actor.get("user"), str)
    ]
