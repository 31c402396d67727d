"""An in-memory store with the same contract, for tests, examples and dry runs."""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from mltrail.core.erasure import PURGE_KIND
from mltrail.errors import StoreError
from mltrail.storage.base import (
    Prepare,
    Store,
    StoredEvidence,
    StoredPurge,
    StoredRow,
    build_head,
)

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mltrail.core.chain import Batch, ChainHead
    from mltrail.core.verify import StoredCheckpoint

__all__ = ["MemoryStore"]


class MemoryStore(Store):
    """Everything in dicts and lists, guarded by one lock."""

    def __init__(self) -> None:
        self.location = ":memory:"
        self._lock = threading.Lock()
        self._records: list[tuple[StoredRow, str]] = []
        self._key_epoch = 0
        self._floor: str | None = None
        self._nodes: dict[tuple[int, int], bytes] = {}
        self._blobs: dict[str, bytes] = {}
        self._cps: list[tuple[int, str]] = []
        self._settings: dict[str, str] = {}
        self._purged: dict[str, tuple[int, int]] = {}  # digest -> (size, seq)
        self._erased: set[str] = set()
        self._evidence_rows: list[StoredEvidence] = []

    def _append(self, prepare: Prepare) -> Batch:
        with self._lock:
            batch = prepare(self._head(full=True))
            for r in batch.records:
                self._records.append((StoredRow(r.seq, r.hash, r.record_bytes), r.time))
                if r.kind == PURGE_KIND:
                    self._note_purge(r.seq, r.record_bytes)
            self._nodes.update(((lvl, idx), h) for lvl, idx, h in batch.nodes)
            self._key_epoch = batch.head.key_epoch
            self._floor = batch.head.floor_time
            if batch.checkpoint is not None:
                self._cps.append((batch.head.size, batch.checkpoint))
            return batch

    def _head(self, *, full: bool = False) -> ChainHead:
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

    def _rows(self, start: int, stop: int | None) -> Iterator[StoredRow]:
        rows = [r for r, _ in self._records]
        yield from (
            r for r in rows if r.seq >= start and (stop is None or r.seq < stop)
        )

    def _rows_of_kinds(self, kinds: tuple[str, ...]) -> Iterator[StoredRow]:
        from mltrail.core.codec import parse_json

        for row, _ in list(self._records):
            if parse_json(row.data)["entry"]["kind"] in kinds:
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
        from mltrail.core.codec import parse_json

        newest: tuple[str, int] | None = None
        for row, time in list(self._records):
            if (
                newest is None
                or parse_json(row.data)["entry"]["kind"] == "clock.reset"
                or time > newest[0]
            ):
                newest = (time, row.seq)
        return newest

    def _latest_checkpoint(self) -> StoredCheckpoint | None:
        from mltrail.core.report import StoredCheckpoint

        if not self._cps:
            return None
        size, text = self._cps[-1]
        return StoredCheckpoint(f"checkpoint #{len(self._cps)}", size, text)

    def _note_purge(self, seq: int, data: bytes) -> None:
        from mltrail.core.codec import parse_json

        body = parse_json(data)["entry"]["body"]
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
                    f"refusing to delete blob {digest}: no stored {PURGE_KIND} "
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

    def _checkpoints(self) -> list[StoredCheckpoint]:
        from mltrail.core.report import StoredCheckpoint

        return [
            StoredCheckpoint(f"checkpoint #{i + 1}", s, t)
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
