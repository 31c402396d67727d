"""``checkpoint(adopt=True)`` covers only what the writer's key wrote, judged on
the bytes verified: a forged ledger naming the real key as a log key, its
checkpoints removed, is refused, also when the store shows the real key's id
on a second read of rows the verification saw signed by another (ADR 0011
amendment)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from mltrail.core.signing import encode_b64
from mltrail.errors import IntegrityError
from mltrail.ledger.ledger import Draft, Ledger
from mltrail.storage.base import StoredRow
from mltrail.testing import MemoryStore, fixed_signer

ORIGIN = "example.org/adopt"
ATTACKER, REAL = fixed_signer("attacker"), fixed_signer("real")


class LyingStore(MemoryStore):
    """After ``swap`` is set, every row read names the real key as its signer."""

    swap = False

    def _rows(self, start: int, stop: int | None) -> Iterator[StoredRow]:
        for row in super()._rows(start, stop):
            if not self.swap:
                yield row
                continue
            record = json.loads(row.data)
            record["entry"]["sig"]["key"] = REAL.key_id
            data = json.dumps(record, separators=(",", ":"), sort_keys=True)
            yield StoredRow(row.seq, row.hash, data.encode())


def _forged() -> LyingStore:
    store = LyingStore()
    forger = Ledger.create(store, ATTACKER, origin=ORIGIN)
    body = {
        "alg": "ed25519",
        "key": REAL.key_id,
        "public_key": encode_b64(REAL.public_key),
        "reason": "taken in",
    }
    forger._append_signed(forger._sign([Draft("key.added", body)]))
    forger.append("note", {"text": "forged history"})
    store._cps.clear()  # the forger's checkpoints removed
    return store


def test_a_forged_ledger_naming_the_real_key_is_not_adopted() -> None:
    victim = Ledger(_forged(), REAL, origin=ORIGIN, trusted_key=REAL.key_id)
    with pytest.raises(IntegrityError, match="record seq 0 is not signed by this"):
        victim.checkpoint(adopt=True)


def test_rows_that_read_otherwise_after_verification_are_not_adopted() -> None:
    store = _forged()
    victim = Ledger(store, REAL, origin=ORIGIN, trusted_key=REAL.key_id)
    verify = victim.verify

    def verify_then_lie(**options: Any) -> Any:
        report = verify(**options)
        store.swap = True  # the next read shows the real key's id on every row
        return report

    victim.verify = verify_then_lie  # type: ignore[method-assign]
    with pytest.raises(IntegrityError, match="not the records verified"):
        victim.checkpoint(adopt=True)
    assert not store._cps


def test_the_writers_own_uncovered_records_are_adopted() -> None:
    store = MemoryStore()
    ledger = Ledger.create(store, REAL, origin=ORIGIN)
    ledger.append("note", {"text": "one"})
    ledger.append("note", {"text": "two"})
    store._cps[:] = store._cps[:1]  # as mltrail 0.1 left it: the tail uncovered
    adopted = Ledger(store, REAL, origin=ORIGIN).checkpoint(adopt=True)
    assert adopted.checkpoint.size == 3


class DroppingStore(MemoryStore):
    """Every read of rows leaves out seq ``drop`` (none while it is None)."""

    drop: int | None = None

    def _rows(self, start: int, stop: int | None) -> Iterator[StoredRow]:
        return (row for row in super()._rows(start, stop) if row.seq != self.drop)


@pytest.mark.parametrize(
    ("drop", "said"),
    [(1, "record seq 1 is missing from a read"), (2, "records? seq 2")],
)
def test_a_second_read_that_leaves_a_record_out_is_not_adopted(
    drop: int, said: str
) -> None:
    """The records read again must all come, in order: one left out (inside the
    read or at its end) after verification refuses the adoption."""
    store = DroppingStore()
    ledger = Ledger.create(store, REAL, origin=ORIGIN)
    ledger.append("note", {"text": "one"})
    ledger.append("note", {"text": "two"})
    store._cps[:] = store._cps[:1]
    victim = Ledger(store, REAL, origin=ORIGIN)
    verify = victim.verify

    def verify_then_drop(**options: Any) -> Any:
        report = verify(**options)
        store.drop = drop
        return report

    victim.verify = verify_then_drop  # type: ignore[method-assign]
    with pytest.raises(IntegrityError, match=f"refusing to adopt: {said}"):
        victim.checkpoint(adopt=True)
    assert len(store._cps) == 1
