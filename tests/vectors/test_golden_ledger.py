"""The golden ledger: mltrail/1 records, checkpoints and proofs must never drift."""

import importlib.util
import json
from pathlib import Path

import pytest

from mltrail.core.chain import seal_entries
from mltrail.core.checkpoint import parse_signed_checkpoint
from mltrail.core.codec import decode_record
from mltrail.core.merkle import verify_consistency, verify_inclusion
from mltrail.ledger.stored import chain_head, new_batch
from mltrail.ledger.verification import verify_store
from mltrail.testing import MemoryStore

GOLDEN = Path(__file__).parent / "ledger_v1"
ORIGIN = "golden.mltrail.local/ledger-v1"


def load_generator():
    spec = importlib.util.spec_from_file_location(
        "golden_generate", GOLDEN / "generate.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def golden_records():
    return (GOLDEN / "records.jsonl").read_bytes().splitlines()


def test_regeneration_matches_the_checked_in_files_byte_for_byte():
    built = load_generator().build_golden()
    on_disk = {
        str(p.relative_to(GOLDEN)): p.read_bytes()
        for p in GOLDEN.rglob("*")
        if p.is_file() and p.name != "generate.py" and "__pycache__" not in p.parts
    }
    assert sorted(built) == sorted(on_disk)
    for name, data in built.items():
        assert data == on_disk[name], f"{name} drifted: the mltrail/1 format changed"


def load_into_store():
    """Replay the golden bytes into a fresh store through the normal append path."""
    store = MemoryStore()
    for line in golden_records():
        entry = decode_record(line).record.entry
        store.append(
            lambda head, e=entry: new_batch(
                seal_entries(
                    chain_head(head), [e], now=_far_future(), tolerance=_no_tolerance()
                )
            )
        )
    for path in sorted(GOLDEN.glob("checkpoint-*.txt")):
        text = path.read_text("utf-8")
        store.add_checkpoint(parse_signed_checkpoint(text).checkpoint.size, text)
    blob_dir = GOLDEN / "blobs"
    for blob in blob_dir.iterdir():
        store.put_blob("sha256:" + blob.name, blob.read_bytes())
    return store


def _far_future():
    from datetime import UTC, datetime

    return datetime(2100, 1, 1, tzinfo=UTC)


def _no_tolerance():
    from datetime import timedelta

    return timedelta(days=365 * 200)


def test_replayed_golden_ledger_reproduces_the_same_bytes_and_verifies():
    store = load_into_store()
    assert [row.data for row in store.rows()] == golden_records()
    report = verify_store(store, origin=ORIGIN)
    assert report.ok, report.problems
    assert report.records_checked == len(golden_records())
    # every append batch carries its checkpoint: genesis, the batch of three
    # notes, the key rotation, and the last note
    assert report.checkpoints_checked == 4
    assert report.covered == report.size
    assert report.blobs_checked == 1


def test_golden_proofs_verify_against_golden_checkpoints():
    proofs = json.loads((GOLDEN / "proofs.json").read_text())
    final = parse_signed_checkpoint(
        (GOLDEN / "checkpoint-4.txt").read_text()
    ).checkpoint
    first = parse_signed_checkpoint(
        (GOLDEN / "checkpoint-1.txt").read_text()
    ).checkpoint
    assert (first.size, final.size) == (1, 7)
    inc = proofs["inclusion"]
    assert bytes.fromhex(inc["root"]) == final.root
    verify_inclusion(
        inc["index"],
        inc["size"],
        bytes.fromhex(inc["leaf_hash"]),
        [bytes.fromhex(h) for h in inc["hashes"]],
        final.root,
    )
    con = proofs["consistency"]
    verify_consistency(
        con["size1"],
        con["size2"],
        first.root,
        final.root,
        [bytes.fromhex(h) for h in con["hashes"]],
    )


@pytest.mark.parametrize("index", range(7))
def test_each_golden_record_is_canonical_and_chained(index):
    lines = golden_records()
    assert len(lines) == 7
    decoded = decode_record(lines[index])
    assert decoded.record.seq == index
    hashes = json.loads((GOLDEN / "proofs.json").read_text())["record_hashes"]
    assert decoded.hash.hex() == hashes[index]
    if index:
        assert decoded.record.prev == hashes[index - 1]
