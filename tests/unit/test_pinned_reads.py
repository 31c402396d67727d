"""``PinnedStore``: after pinning, a store that answers a second read differently
(a view in place of a table, a file rewritten meanwhile) is caught at the read,
and a verification of other records is refused by ``confirm`` (ADR 0024
amendment)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from mltrail.core.canonical import compute_blob_digest
from mltrail.core.report import VerificationReport
from mltrail.errors import IntegrityError, StoreError
from mltrail.ledger.ledger import Ledger
from mltrail.ledger.pinned import PinnedStore, pin_reads
from mltrail.storage.base import StoredRow
from mltrail.testing import MemoryStore, fixed_signer

ORIGIN = "test.example/pinned"
BLOB = b"a manifest"


class ShiftyStore(MemoryStore):
    """Answers the first ``honest`` reads of rows truly; after that, ``change``
    decides what each row becomes (None: left out)."""

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.honest = 10**9
        self.change = lambda row: row
        self.blob_change: bytes | None = None

    def _rows(self, start: int, stop: int | None) -> Iterator[StoredRow]:
        self.honest -= 1
        for row in super()._rows(start, stop):
            if self.honest >= 0:
                yield row
            elif (changed := self.change(row)) is not None:
                yield changed

    def _get_blob(self, digest: str) -> bytes | None:
        found = super()._get_blob(digest)
        return self.blob_change if self.blob_change is not None else found


def _forged(row: StoredRow) -> StoredRow:
    if row.seq != 2:
        return row
    return StoredRow(row.seq, row.hash, row.data.replace(b"note 1", b"note 9"))


@pytest.fixture
def ledger() -> Ledger:
    ledger = Ledger.create(ShiftyStore(), fixed_signer(), origin=ORIGIN)
    ledger.store.put_blob(compute_blob_digest(BLOB), BLOB)
    for n in range(4):
        ledger.append("note", {"text": f"note {n}"})
    return ledger


def test_the_pinned_records_read_again_as_they_were(ledger: Ledger) -> None:
    before = [row.data for row in ledger.store.rows()]
    pinned = pin_reads(ledger)
    assert pin_reads(ledger) is pinned  # pinned once
    assert [row.data for row in ledger.store.rows()] == before
    assert [r.seq for r in ledger.records(1, 3)] == [1, 2]
    pinned.confirm(_verified(ledger, pinned))


def _verified(ledger: Ledger, pinned: PinnedStore) -> VerificationReport:
    """The ledger verified on the store itself, as ``verify_pinned`` does."""
    ledger.store = pinned.inner
    try:
        return ledger.verify()
    finally:
        ledger.store = pinned


def test_a_record_that_reads_otherwise_after_pinning_is_refused(ledger: Ledger) -> None:
    store = ledger.store
    assert isinstance(store, ShiftyStore)
    store.honest, store.change = 1, _forged  # the pinning read is the honest one
    pin_reads(ledger)
    with pytest.raises(IntegrityError, match="seq 2 read again is not the record"):
        list(ledger.store.rows())
    with pytest.raises(IntegrityError, match="seq 2 read again"):
        ledger.record(2)


def test_a_record_left_out_of_a_later_read_is_refused(ledger: Ledger) -> None:
    store = ledger.store
    assert isinstance(store, ShiftyStore)
    store.honest = 1
    store.change = lambda row: None if row.seq == 3 else row
    pin_reads(ledger)
    with pytest.raises(IntegrityError, match="seq 3 is missing"):
        list(ledger.store.rows(1, 5))
    with pytest.raises(IntegrityError, match="seq 3 to 3 are missing"):
        list(ledger.store.rows(2, 4))


def test_a_verification_of_other_bytes_is_not_confirmed(ledger: Ledger) -> None:
    """The pinning read saw forged bytes, the verification the signed ones (a
    view choosing at random): the pinned records are not the verified ones."""
    store = ledger.store
    assert isinstance(store, ShiftyStore)
    store.honest, store.change = 0, _forged  # forged from the first read on
    pinned = PinnedStore(store)
    store.honest = 10**9
    report = ledger.verify()
    assert report.ok
    with pytest.raises(IntegrityError, match="not the bytes read for this command"):
        pinned.confirm(report)


def test_a_ledger_grown_since_pinning_is_not_confirmed(ledger: Ledger) -> None:
    pinned = PinnedStore(ledger.store)
    ledger.append("note", {"text": "after"})
    report = ledger.verify()
    with pytest.raises(StoreError, match="6 records were verified, 5 read"):
        pinned.confirm(report)
    with pytest.raises(IntegrityError, match="not the bytes read"):
        pinned.confirm(report, grown_ok=False)  # pinned in the same snapshot
    assert [row.seq for row in pinned.rows()] == [0, 1, 2, 3, 4]  # still the pinned


def test_a_blob_that_does_not_hash_to_its_address_is_refused(ledger: Ledger) -> None:
    store = ledger.store
    assert isinstance(store, ShiftyStore)
    pinned = pin_reads(ledger)
    assert pinned.get_blob(compute_blob_digest(BLOB)) == BLOB
    store.blob_change = b"another manifest"
    with pytest.raises(IntegrityError, match="does not hash to its address"):
        pinned.get_blob(compute_blob_digest(BLOB))


def test_kinds_are_read_from_the_signed_bytes(ledger: Ledger) -> None:
    pinned = pin_reads(ledger)
    assert [row.seq for row in pinned.rows_of_kinds(("key.added",))] == [0]
    assert [row.seq for row in pinned.rows_of_kinds(("note",))] == [1, 2, 3, 4]
    assert [row.seq for row in pinned.rows_of_kinds(("note",), 3)] == [3, 4]
    assert [row.seq for row in pinned.rows_of_kinds(("key.added",), 1)] == []
    assert [row.seq for row in pinned.rows_of_kinds(("note",), 9)] == []
    assert ledger.keys().keys  # the key ring reads through it


def test_nothing_is_written_through_it(ledger: Ledger) -> None:
    pin_reads(ledger)
    with pytest.raises(StoreError, match="read-only"):
        ledger.append("note", {"text": "refused"})
    with pytest.raises(StoreError, match="read-only"):
        ledger.store.put_blob(compute_blob_digest(b"x"), b"x")


def test_the_pinned_store_answers_as_of_its_pinning(tmp_path) -> None:
    """Checkpoints, the head and Merkle nodes are the pinned records' (an append
    by another process afterwards changes none of them): a report reads the
    newest checkpoint, the size and timestamps' roots through them."""
    from mltrail.core.merkle import range_root
    from mltrail.ledger.stored import KIND_ROLES
    from mltrail.storage.sqlite import SQLiteStore

    db = tmp_path / "ledger.db"
    ledger = Ledger.create(
        SQLiteStore(db, roles=KIND_ROLES, create=True), fixed_signer(), origin=ORIGIN
    )
    for n in range(4):
        ledger.append("note", {"text": f"note {n}"})
    stored = {
        (level, index): ledger.store.node(level, index)
        for level, index in ((0, 0), (0, 4), (1, 1), (2, 0))
    }
    pinned = pin_reads(ledger)
    other = Ledger(SQLiteStore(db, roles=KIND_ROLES), fixed_signer(), origin=ORIGIN)
    try:
        before = (pinned.checkpoints(), pinned.latest_checkpoint(), pinned.head())
        other.append("note", {"text": "meanwhile"})
        assert (pinned.checkpoints(), pinned.latest_checkpoint(), pinned.head()) == (
            before
        )
        assert pinned.head().size == 5
        assert pinned.head().frontier == ledger.store.head().frontier  # computed
        for (level, index), node in stored.items():
            assert pinned.node(level, index) == node
        assert pinned.node_range(0, 3, 9) == {3: pinned.node(0, 3), 4: stored[0, 4]}
        with pytest.raises(StoreError, match="missing"):
            pinned.node(0, 5)  # the record appended since
        assert range_root(0, 5, pinned.node) == pinned.root
    finally:
        other.store.close()
        pinned.close()


def test_pinning_keeps_no_interior_node(ledger: Ledger) -> None:
    """The head's frontier is the compact range built while pinning: pinning a
    ledger of n records neither hashes its interior nodes again nor keeps them
    (about n of them: 140 MB and 2 s for a million records)."""
    for n in range(4, 13):
        ledger.append("note", {"text": f"note {n}"})
    pinned = PinnedStore(ledger.store)
    assert pinned._nodes == {}
    assert pinned.head() == ledger.store.head()
    assert pinned.node(2, 1) == ledger.store.node(2, 1)
