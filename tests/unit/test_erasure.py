"""Purging over the memory store: the record, the erasure, what verification believes."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import pytest

from mltrail.core.erasure import MAX_LISTED_REFERENCES, PurgeNote, purge_body
from mltrail.errors import InputError
from mltrail.ledger.erasure import purge_blob, referencing_seqs, resolve_blob
from mltrail.ledger.ledger import BlobPurgedError, Ledger
from mltrail.testing import FixedClock, MemoryStore, fixed_signer

ORIGIN = "example.org/unit-erasure"
SIGNER = fixed_signer("erasure-key")
SECRET = b"AKIA0000000000000000 leaked in a log\n"


@pytest.fixture
def ledger() -> Ledger:
    made = Ledger.create(
        MemoryStore(),
        SIGNER,
        origin=ORIGIN,
        clock=FixedClock(datetime(2026, 1, 1, tzinfo=UTC)),
        actor={"user": "unit"},
    )
    ref = made.put_blob(SECRET)
    made.append("note", {"text": "log", "attachments": [ref]})
    made.append("note", {"text": "unrelated"})
    made.append("note", {"text": "log again", "attachments": [ref]})
    return made


def _digest(ledger: Ledger) -> str:
    [(digest, _)] = ledger.store.find_blobs("sha256:")
    return digest


def test_a_purge_records_first_then_erases(ledger: Ledger) -> None:
    digest = _digest(ledger)
    result = purge_blob(
        ledger, digest[:15], reason="key leaked", policy="secret leaked"
    )
    record = ledger.record(4)
    assert result.note == PurgeNote(
        4, digest, len(SECRET), "key leaked", "secret leaked", (1, 3), "unit",
        record.entry.time,
    )  # fmt: skip
    assert result.held
    assert not result.resumed
    record = ledger.record(4)
    assert record.entry.kind == "blob.purged"
    assert record.entry.actor == {"user": "unit"}
    assert record.entry.body["references"] == 2
    assert ledger.store.get_blob(digest) is None
    with pytest.raises(BlobPurgedError, match=r"was purged \(seq 4\)"):
        ledger.get_blob(digest)
    report = ledger.verify()
    assert report.ok
    assert report.verdict().endswith("; ledger intact; 1 blob purged by policy")
    assert [p.seq for p in report.purged] == [4]
    assert report.to_dict()["purged"][0]["policy"] == "secret leaked"
    [warning] = [p for p in report.warnings if p.code == "blob-purged"]
    assert warning.seq == 4
    assert "record(s) 1, 3 keep its hash" in warning.message


def test_a_blob_gone_without_a_purge_is_missing(ledger: Ledger) -> None:
    digest = _digest(ledger)
    del ledger.store._blobs[digest]  # what an attacker with the file can do
    report = ledger.verify()
    assert not report.ok
    assert [(p.seq, p.code) for p in report.errors] == [
        (1, "blob-missing"),
        (3, "blob-missing"),
    ]
    assert report.purged == []
    with pytest.raises(InputError, match="is not in this ledger"):
        ledger.get_blob(digest)


def test_a_second_purge_is_refused(ledger: Ledger) -> None:
    digest = _digest(ledger)
    purge_blob(ledger, digest, reason="x")
    with pytest.raises(InputError, match=r"already purged \(seq 4\)"):
        purge_blob(ledger, digest, reason="x")
    assert ledger.head().size == 5


def test_a_reference_to_purged_bytes_can_still_be_appended(ledger: Ledger) -> None:
    digest = _digest(ledger)
    purge_blob(ledger, digest, reason="x")
    ref = ledger.put_blob(SECRET)  # the same bytes again: nothing is stored
    assert ledger.store.get_blob(digest) is None
    ledger.append("note", {"text": "same log", "attachments": [ref]})
    report = ledger.verify()
    assert report.ok
    assert len(report.purged) == 1
    wrong = {**ref, "size": len(SECRET) + 1}
    with pytest.raises(InputError, match="which is not stored"):
        ledger.append("note", {"text": "wrong size", "attachments": [wrong]})


def test_blob_purged_is_not_appended_directly(ledger: Ledger) -> None:
    body = purge_body(
        _digest(ledger), len(SECRET), reason="x", policy=None, referenced_by=[]
    )
    with pytest.raises(InputError, match="written by `mltrail purge`"):
        ledger.append("blob.purged", body)


def test_resolving_a_blob(ledger: Ledger) -> None:
    digest = _digest(ledger)
    assert resolve_blob(ledger, digest) == digest
    assert resolve_blob(ledger, digest[7:15].upper()) == digest
    for bad in ("1234567", "sha256:", "xyz12345", digest + "0"):
        with pytest.raises(InputError, match="does not name a blob"):
            resolve_blob(ledger, bad)
    first, second = _sharing_a_prefix()
    ledger.put_blob(first)
    ledger.put_blob(second)
    prefix = hashlib.sha256(first).hexdigest()[:8]
    with pytest.raises(InputError, match="names more than one blob"):
        resolve_blob(ledger, prefix)
    purge_blob(ledger, digest, reason="x")
    assert resolve_blob(ledger, digest[7:15]) == digest  # purged blobs are found too


def _sharing_a_prefix() -> tuple[bytes, bytes]:
    """Two byte strings whose SHA-256 share their first 8 hex digits (a birthday
    search: about 80,000 hashes)."""
    seen: dict[str, bytes] = {}
    for i in range(10**7):
        data = b"%d" % i
        prefix = hashlib.sha256(data).hexdigest()[:8]
        if prefix in seen:
            return seen[prefix], data
        seen[prefix] = data
    raise AssertionError("no shared prefix found")


def test_referencing_seqs_skip_purge_records(ledger: Ledger) -> None:
    digest = _digest(ledger)
    assert referencing_seqs(ledger, digest) == [1, 3]
    purge_blob(ledger, digest, reason="x")
    assert referencing_seqs(ledger, digest) == [1, 3]


def test_the_purge_body_lists_a_bounded_number_of_references() -> None:
    seqs = list(range(MAX_LISTED_REFERENCES + 5))
    body = purge_body(
        "sha256:" + "a" * 64, 1, reason="r", policy="p", referenced_by=seqs
    )
    assert len(body["referenced_by"]) == MAX_LISTED_REFERENCES
    assert body["references"] == len(seqs)
    assert PurgeNote.from_body(7, body) is not None
    assert PurgeNote.from_body(7, {"digest": 1, "size": 1, "reason": "r"}) is None
    assert "no policy named" in PurgeNote(1, "d", 1, "why").describe()


def test_long_or_multiline_parameter_text_becomes_a_blob() -> None:
    from mltrail.capture.run.blob import MAX_INLINE_TEXT, Blob, spill_text

    short, long = "adam", "x" * (MAX_INLINE_TEXT + 1)
    spilled = spill_text(
        {"opt": short, "prompt": long, "two": "a\nb", "n": 3, "list": [long, 1.5]}
    )
    assert spilled["opt"] == short
    assert spilled["n"] == 3
    # text: the recorder masks and scans it like every text blob
    assert spilled["prompt"] == Blob(long.encode(), "text/plain", text=True)
    assert spilled["two"] == Blob(b"a\nb", "text/plain", text=True)
    assert spilled["list"] == [Blob(long.encode(), "text/plain", text=True), 1.5]
    assert spill_text("x" * MAX_INLINE_TEXT) == "x" * MAX_INLINE_TEXT
