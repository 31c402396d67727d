"""The store contract seen from the ledger: what stores are opened with, and the
core's values turned into the store's plain ones and back (ADR 0032).

A store knows no entry kinds and no core types (:mod:`mltrail.storage.base`).
The ledger layer opens every store with :data:`KIND_ROLES` (which kinds set the
key epoch, reset the time floor, purge a blob: the core's constants) and, for a
server's client, the core's record hash; it hands ``Store.append`` a
``prepare`` that seals with the core and returns plain values
(:func:`new_batch`), and reads heads and checkpoints back as core values
(:func:`chain_head`, :func:`stored_checkpoints`). The conversions copy a few
references per record: an append's cost is its signing and its commit.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mltrail.core.canonical import compute_record_hash
from mltrail.core.erasure import PURGE_KIND
from mltrail.core.head import CLOCK_RESET_KIND, KEY_KINDS, ChainHead
from mltrail.storage.base import KindRoles, NewBatch, NewRecord, StoreHead
from mltrail.storage.registry import StoreOptions

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mltrail.core.chain import Batch
    from mltrail.core.report import StoredCheckpoint
    from mltrail.storage.base import CheckpointRow

__all__ = [
    "KIND_ROLES",
    "chain_head",
    "new_batch",
    "store_options",
    "stored_checkpoints",
]

KIND_ROLES = KindRoles(
    epoch_kinds=tuple(KEY_KINDS),
    reset_kind=CLOCK_RESET_KIND,
    purge_kind=PURGE_KIND,
)
"""The kinds whose records change what a store keeps: key records (the key
epoch), ``clock.reset`` (the time floor) and ``blob.purged`` (erasable blobs)."""


def store_options(**options: Any) -> StoreOptions:
    """``StoreOptions`` for a ledger's store: its kind roles, and the record hash
    a server's client derives from the bytes it is sent."""
    return StoreOptions(roles=KIND_ROLES, row_hash=compute_record_hash, **options)


def chain_head(head: StoreHead) -> ChainHead:
    """The store's head as the core's ``ChainHead``."""
    return ChainHead(
        head.size,
        head.last_hash,
        head.last_time,
        head.frontier,
        head.key_epoch,
        head.floor_time,
        head.checkpoint,
    )


def new_batch(batch: Batch) -> NewBatch:
    """A sealed batch as the plain values a store persists."""
    h = batch.head
    return NewBatch(
        tuple(
            [
                NewRecord(r.seq, r.prev, r.hash, r.kind, r.run, r.time, r.record_bytes)
                for r in batch.records
            ]
        ),
        batch.nodes,
        StoreHead(
            h.size,
            h.last_hash,
            h.last_time,
            h.frontier,
            h.key_epoch,
            h.floor_time,
            h.checkpoint,
        ),
        batch.checkpoint,
    )


def stored_checkpoints(rows: Iterable[CheckpointRow]) -> list[StoredCheckpoint]:
    """Checkpoints a store keeps, as the core's ``StoredCheckpoint`` (in the store)."""
    from mltrail.core.report import StoredCheckpoint

    return [StoredCheckpoint(row.label, row.size, row.text) for row in rows]
