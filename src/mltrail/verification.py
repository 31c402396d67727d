"""Verifying a whole store: stream rows, check them on every core, walk them in order.

Per-record work (parsing, canonical form, schema, Ed25519) runs in worker
processes on large ledgers; the sequential checks (seq, prev chain, key validity,
Merkle roots against checkpoints) run here on their results. Then every
referenced blob is re-hashed, and successive checkpoints are checked for
consistency with RFC 9162 proofs built from the store's Merkle nodes.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from itertools import islice, pairwise
from typing import TYPE_CHECKING

from mltrail.core.canonical import compute_blob_digest
from mltrail.core.chain import KEY_KINDS
from mltrail.core.codec import parse_json
from mltrail.core.merkle import consistency_proof, verify_consistency
from mltrail.core.signing import compute_key_id, decode_b64
from mltrail.core.verify import (
    LedgerVerifier,
    RecordCheck,
    StoredCheckpoint,
    VerificationReport,
    check_record,
)
from mltrail.errors import MltrailError, StoreError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence

    from mltrail.storage.base import Store, StoredRow

__all__ = ["PARALLEL_THRESHOLD", "verify_store"]

PARALLEL_THRESHOLD = 20_000
_CHUNK = 2_000
# fork starts workers in milliseconds and needs no importable __main__ (spawn
# re-imports it, which fails for scripts read from stdin); workers only compute
# over the bytes they are sent, never touching the parent's connections.
_START_METHOD = "fork" if sys.platform == "linux" else "spawn"


def verify_store(
    store: Store,
    *,
    origin: str,
    trusted_key: str | None = None,
    witness: Sequence[tuple[str, int, str]] = (),
    progress: Callable[[int, int], None] | None = None,
    workers: int | None = None,
) -> VerificationReport:
    """Verify everything in ``store``.

    Args:
        store: the store to check.
        origin: the origin every checkpoint must name.
        trusted_key: the genesis key id to insist on (None: whatever genesis says).
        witness: checkpoints kept outside the store, as (label, size, text), e.g. the
            one this machine saw last; a store rolled back behind them fails.
        progress: called with (records done, total) as the walk advances.
        workers: processes for per-record checks (default: all cores on large ledgers).
    """
    checkpoints = store.checkpoints() + [StoredCheckpoint(*w) for w in witness]
    verifier = LedgerVerifier(origin, checkpoints, trusted_key)
    try:
        total = store.head().size
    except (
        StoreError
    ):  # e.g. Merkle nodes missing for forged rows: the walk reports them
        total = 0
    keys = _public_keys(store)
    for done, check in enumerate(_checks(store.rows(), keys, total, workers), start=1):
        verifier.accept(check)
        if progress is not None and (done % 1000 == 0 or done == total):
            progress(done, total)
    report = verifier.finish()
    _verify_blobs(store, verifier)
    _verify_consistency(store, verifier)
    return report


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


def _checks(
    rows: Iterable[StoredRow],
    keys: Mapping[str, bytes],
    total: int,
    workers: int | None,
) -> Iterator[RecordCheck]:
    count = workers if workers is not None else (os.cpu_count() or 1)
    if count <= 1 or (workers is None and total < PARALLEL_THRESHOLD):
        for row in rows:
            yield check_record(row.seq, row.hash, row.data, keys)
        return
    context = multiprocessing.get_context(_START_METHOD)
    with ProcessPoolExecutor(
        count, mp_context=context, initializer=_init_worker, initargs=(dict(keys),)
    ) as pool:
        chunks = _chunked(rows)
        pending = [pool.submit(_check_chunk, c) for c in islice(chunks, count * 2)]
        while pending:
            results = pending.pop(0).result()
            nxt = next(chunks, None)
            if nxt is not None:
                pending.append(pool.submit(_check_chunk, nxt))
            yield from results


def _chunked(rows: Iterable[StoredRow]) -> Iterator[list[tuple[int, bytes, bytes]]]:
    iterator = iter(rows)
    while chunk := [(r.seq, r.hash, r.data) for r in islice(iterator, _CHUNK)]:
        yield chunk


_WORKER_KEYS: dict[str, bytes] = {}


def _init_worker(keys: dict[str, bytes]) -> None:
    _WORKER_KEYS.update(keys)


def _check_chunk(chunk: list[tuple[int, bytes, bytes]]) -> list[RecordCheck]:
    return [
        check_record(seq, digest, data, _WORKER_KEYS) for seq, digest, data in chunk
    ]


def _verify_blobs(store: Store, verifier: LedgerVerifier) -> None:
    for digest, refs in verifier.blob_refs.items():
        data = store.get_blob(digest)
        verifier.report.blobs_checked += 1
        for seq, ref in refs:
            if data is None:
                verifier.problem(
                    seq,
                    "blob-missing",
                    f"blob {digest} referenced at {ref.path} is missing from the store",
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


def _verify_consistency(store: Store, verifier: LedgerVerifier) -> None:
    """Each checkpoint must be consistent with the next, by proofs from stored nodes."""
    size = verifier.report.size
    heads = sorted((h for h in verifier.heads if h[1] <= size), key=lambda h: h[1])
    for (label1, size1, root1), (label2, size2, root2) in pairwise(heads):
        try:
            proof = consistency_proof(size1, size2, store.node)
            verify_consistency(size1, size2, root1, root2, proof)
        except MltrailError as e:
            verifier.problem(
                size2 - 1,
                "consistency",
                f"{label1} (size {size1}) and {label2} "
                f"(size {size2}) are not consistent: {e}",
            )
