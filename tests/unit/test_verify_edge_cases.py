"""Verification reports malformed input as problems; it never crashes on it."""

from mltrail.core.canonical import (
    canonical_bytes,
    compute_leaf_hash,
    compute_record_hash,
)
from mltrail.core.chain import Batch, ChainHead, SealedRecord
from mltrail.core.entry import compose_record_bytes
from mltrail.core.report import StoredCheckpoint
from mltrail.ledger.ledger import Ledger
from mltrail.ledger.stored import chain_head, new_batch
from mltrail.ledger.verification import verify_store
from mltrail.storage.base import NewBatch, StoreHead
from mltrail.testing import FixedClock, MemoryStore, fixed_signer

ORIGIN = "test.mltrail.local/edge"


def new_ledger():
    store = MemoryStore()
    ledger = Ledger.create(store, fixed_signer(), origin=ORIGIN, clock=FixedClock())
    ledger.append("note", {"text": "ok"})
    return store, ledger


def append_raw(store, entry_dict):
    """Append a crafted entry, bypassing signing and validation (an attacker's write)."""

    def prepare(stored: StoreHead) -> NewBatch:
        head = chain_head(stored)
        data = compose_record_bytes(head.size, head.prev, canonical_bytes(entry_dict))
        tree = head.compact_range()
        nodes = tree.append(compute_leaf_hash(data))
        digest = compute_record_hash(data)
        record = SealedRecord(
            head.size,
            head.prev,
            digest,
            data,
            entry_dict["kind"],
            None,
            entry_dict["time"],
        )
        new = ChainHead(
            head.size + 1, digest, entry_dict["time"], tree.hashes, head.key_epoch
        )
        return new_batch(Batch((record,), tuple(nodes), new))

    store.append(prepare)


def last_entry(store):
    from mltrail.core.codec import parse_json

    return parse_json(list(store.rows())[-1].data)["entry"]


def test_record_without_signature_is_malformed_not_a_crash():
    store, _ = new_ledger()
    entry = dict(last_entry(store))
    entry.pop("sig")
    append_raw(store, entry)
    report = verify_store(store, origin=ORIGIN)
    assert not report.ok
    assert [p.code for p in report.problems if p.seq == 2] == [
        "malformed",
        "uncovered",  # no checkpoint signed by the ledger key covers it
    ]
    assert "no signature" in report.problems[0].message


def test_non_canonical_base64_signature_is_a_bad_signature():
    store, _ = new_ledger()
    entry = dict(last_entry(store))
    value = entry["sig"]["value"]
    entry["sig"] = {
        **entry["sig"],
        "value": value[:-3] + ("B" if value[-3] != "B" else "C") + "==",
    }
    append_raw(store, entry)
    report = verify_store(store, origin=ORIGIN)
    assert [p.code for p in report.problems if p.seq == 2] == [
        "signature",
        "uncovered",
    ]


def test_unreadable_checkpoint_is_reported_and_others_still_checked():
    store, ledger = new_ledger()
    ledger.checkpoint()
    report = verify_store(
        store, origin=ORIGIN, witness=[StoredCheckpoint("witness file", 0, "garbage\n")]
    )
    codes = [p.code for p in report.problems]
    assert codes == ["checkpoint"]
    assert "witness file is unreadable" in report.problems[0].message
    assert "truncated" not in codes


def test_checkpoint_size_column_must_match_its_text():
    store, ledger = new_ledger()
    signed = ledger.checkpoint()
    report = verify_store(
        store, origin=ORIGIN, witness=[StoredCheckpoint("forged", 1, signed.to_text())]
    )
    assert any(
        "stored as size 1 but its signed text says 2" in p.message
        for p in report.problems
    )


def test_empty_ledger_fails_with_a_plain_verdict():
    report = verify_store(MemoryStore(), origin=ORIGIN)
    assert not report.ok
    assert report.verdict() == "FAILED: the ledger holds no records"


def test_genesis_of_another_origin_is_reported():
    store, _ = new_ledger()
    report = verify_store(store, origin="test.mltrail.local/other")
    assert any(
        p.code == "genesis" and "another ledger" in p.message for p in report.problems
    )


def test_corrupt_merkle_node_table_is_named():
    store, ledger = new_ledger()
    ledger.append("note", {"text": "three"})
    ledger.checkpoint()
    for i in range(5):
        ledger.append("note", {"text": f"more {i}"})
    ledger.checkpoint()
    assert verify_store(store, origin=ORIGIN).ok
    for level, index in list(store._nodes):
        if level == 0:
            store._nodes[(level, index)] = bytes(32)
    report = verify_store(store, origin=ORIGIN)
    assert {p.code for p in report.problems} == {"merkle-node"}
    first = report.problems[0]
    assert first.seq == 0
    assert "stored Merkle node (level 0, index 0) does not match" in first.message
    assert "3 more stored Merkle nodes" in report.problems[-1].message
