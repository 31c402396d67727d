"""An in-memory store with the same contract, for tests, examples and dry runs."""

from __future__ import annotations

import json
import threading
from typing import TYPE_CHECKING

from mltrail.errors import StoreError
from mltrail.storage.base import (
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
    time_order_key,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Everything in dicts and lists, guarded by one lock.

    Args:
        roles: the kinds of records that set the key epoch, reset the time
            floor and purge a blob (the ledger's, see ``KindRoles``).
    """

    def __init__(self, *, roles: KindRoles) -> None:
        self.location = ":memory:"
        self.roles = roles
        self._lock = threading.Lock()
        # row and the columns a store derives from it: time, kind, run
        self._records: list[tuple[StoredRow, str, str, str | None]] = []
        self._key_epoch = 0
        self._floor: str | None = None
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._blobs: dict[str, bytes] = {}
        self._cps: list[tuple[int, str]] = []
        self._settings: dict[str, str] = {}
        self._purged: dict[str, tuple[int, int]] = {}  # digest -> (size, seq)
        self._erased: set[str] = set()
        self._evidence_rows: list[StoredEvidence] = []

    def _append(self, prepare: Prepare) -> NewBatch:
        with self._lock:
            before = self._head(full=True)
            batch = prepare(before)
            purge_kind = self.roles.purge_kind
            for r in batch.records:
                row = StoredRow(r.seq, r.hash, r.data)
                self._records.append((row, r.time, r.kind, r.run))
                if r.kind == purge_kind:
                    self._note_purge(r.seq, r.data)
            self._nodes.update(((lvl, idx), h) for lvl, idx, h in batch.nodes)
            self._key_epoch = head_after(
                before, batch, self.roles.epoch_kinds
            ).key_epoch
            self._floor = batch.head.floor_time
            if batch.checkpoint is not None:
                self._cps.append((batch.head.size, batch.checkpoint))
            return batch

    def _head(self, *, full: bool = False) -> StoreHead:
        last = None
        if self._records:
            last = (self._records[-1][0].hash, self._records[-1][1])
        floor, checkpoint = (None, None)
        if full:
            floor, checkpoint = self._floor, (self._cps[-1][1] if self._cps else None)
        return build_head(
            len(self._records),
            last,
            self._key_epoch,
            self._node,
            floor_time=floor,
            checkpoint=checkpoint,
        )

    def _append_head(self) -> StoreHead:
        with self._lock:
            return self._head(full=True)

    def _rows(self, start: int, stop: int | None) -> Iterator[StoredRow]:
        rows = [r for r, *_ in self._records]
        yield from (
            r for r in rows if r.seq >= start and (stop is None or r.seq < stop)
        )

    def _column_rows(self, start: int, stop: int | None) -> Iterator[ColumnRow]:
        for row, time, kind, run in list(self._records):
            if row.seq >= start and (stop is None or row.seq < stop):
                yield ColumnRow(row.seq, row.hash, row.data, kind, run, time)

    def _rows_of_kinds(self, kinds: tuple[str, ...], start: int) -> Iterator[StoredRow]:
        for row, _, kind, _ in list(self._records):
            if kind in kinds and row.seq >= start:
                yield row

    def _node(self, level: int, index: int) -> bytes | None:
        return self._nodes.get((level, index))

    def _node_range(self, level: int, start: int, stop: int) -> dict[int, bytes]:
        return {
            i: h
            for (lvl, i), h in list(self._nodes.items())
            if lvl == level and start <= i < stop
        }

    def _time_floor(self) -> tuple[str, int] | None:
        newest: tuple[str, int] | None = None
        reset_kind = self.roles.reset_kind
        for row, time, kind, _ in list(self._records):
            if (
                newest is None
                or kind == reset_kind
                or time_order_key(time) > time_order_key(newest[0])
            ):
                newest = (time, row.seq)
        return newest

    def _latest_checkpoint(self) -> CheckpointRow | None:
        if not self._cps:
            return None
        size, text = self._cps[-1]
        return CheckpointRow(f"checkpoint #{len(self._cps)}", size, text)

    def _note_purge(self, seq: int, data: bytes) -> None:
        """What the SQL stores' purge trigger does: read ``entry.body.digest``
        and ``size`` from the stored bytes."""
        body = json.loads(data)["entry"]["body"]
        self._purged.setdefault(body["digest"], (body["size"], seq))

    def _put_blob(self, digest: str, data: bytes) -> bool:
        with self._lock:
            new = digest not in self._blobs and digest not in self._purged
            if new:
                self._blobs[digest] = data
            return new

    def _get_blob(self, digest: str) -> bytes | None:
        return self._blobs.get(digest)

    def _find_blobs(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        found = sorted(d for d in list(self._blobs) if d.startswith(prefix))
        return [(d, len(self._blobs[d])) for d in found[:limit]]

    def _purges(self, digest: str | None) -> list[StoredPurge]:
        found = [
            StoredPurge(d, size, seq, d in self._erased)
            for d, (size, seq) in list(self._purged.items())
            if digest is None or d == digest
        ]
        return sorted(found, key=lambda p: p.seq)

    def _erase_blob(self, digest: str) -> bool:
        with self._lock:
            if digest not in self._purged:
                raise StoreError(
                    f"refusing to delete blob {digest}: no stored {self.roles.purge_kind} "
                    "record names it"
                )
            self._erased.add(digest)
            return self._blobs.pop(digest, None) is not None

    def _add_checkpoint(self, size: int, text: str) -> None:
        with self._lock:
            self._cps.append((size, text))

    def _add_evidence(
        self, kind: str, size: int, checkpoint: str, data: bytes, added: str
    ) -> None:
        with self._lock:
            row_id = len(self._evidence_rows) + 1
            row = StoredEvidence(row_id, kind, size, checkpoint, bytes(data), added)
            self._evidence_rows.append(row)

    def _evidence(self) -> list[StoredEvidence]:
        return list(self._evidence_rows)

    def _checkpoints(self) -> list[CheckpointRow]:
        return [
            CheckpointRow(f"checkpoint #{i + 1}", s, t)
            for i, (s, t) in enumerate(self._cps)
        ]

    def _meta(self) -> dict[str, str]:
        return dict(self._settings)

    def _init_meta(self, values: dict[str, str]) -> None:
        with self._lock:
            for k, v in values.items():
                self._settings.setdefault(k, v)

    def _close(self) -> None:
        return None
