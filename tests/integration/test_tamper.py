"""Tampering with a real ledger home on disk, as an attacker with file access would.

One golden home is built per module (30 records, blob attachments, a key
rotation, checkpoints in the middle and at the end); every test edits a fresh
copy of it directly through SQLite (dropping the append-only triggers first)
and checks that ``Home.verify()`` names the problem, where, and what happened.

Golden layout (every append stores the checkpoint of its batch)::

    seq 0        key.added (genesis, key A)         checkpoint size 1 (init)
    seq 1..10    notes; 3, 6, 9 carry a blob         checkpoints sizes 2..11
    seq 11       key.added (key B, signed by A)     one batch: checkpoint size 13
    seq 12       key.revoked (key A, signed by B)     (signed by B)
    seq 13..29   notes; 15, 18, 21, 24, 27 blobs     checkpoints 14..30 (+ witness)
"""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from mltrail.core.canonical import canonical_bytes, compute_leaf_hash
from mltrail.core.chain import seal_entries
from mltrail.core.checkpoint import (
    Checkpoint,
    NoteSignature,
    SignedCheckpoint,
    parse_signed_checkpoint,
    sign_checkpoint,
)
from mltrail.core.codec import decode_record, format_time, parse_time
from mltrail.core.entry import Entry, Record, compose_record_bytes, sign_entry
from mltrail.core.merkle import compute_root
from mltrail.core.verify import VerificationReport
from mltrail.errors import ConfigError, IntegrityError
from mltrail.ledger.home import Home, init_home, open_home
from mltrail.ledger.keystore import load_signer
from mltrail.ledger.ledger import Draft, Ledger
from mltrail.ledger.rotation import rotate_home_key
from mltrail.ledger.stored import KIND_ROLES, chain_head, new_batch
from mltrail.storage.sqlite import SQLiteStore
from mltrail.testing import fixed_signer
from mltrail.values import replace

ORIGIN = "example.org/tamper-test"
ENV: dict[str, str] = {}  # never pick up the caller's MLTRAIL_* settings
SIZE = 30
BLOB_SEQS = (3, 6, 9, 15, 18, 21, 24, 27)
ATTACKER = fixed_signer("attacker")


@dataclasses.dataclass(frozen=True)
class Golden:
    path: Path
    key_a: str
    key_b: str
    blobs: dict[int, str]  # seq -> digest of its attachment
    key_a_file: bytes  # the revoked key's file, as an attacker who copied it has it


def _note_body(home: Home, seq: int) -> dict:
    body: dict = {"text": f"note {seq:02d} alpha"}
    if seq in BLOB_SEQS:
        ref = home.ledger.put_blob(f"attachment of seq {seq}\n".encode() * 20)
        body["attachments"] = [{**ref, "name": f"file-{seq}.txt"}]
    return body


@pytest.fixture(scope="module")
def golden(tmp_path_factory: pytest.TempPathFactory) -> Golden:
    path = tmp_path_factory.mktemp("golden") / "home"
    init_home(path, origin=ORIGIN, env=ENV)
    home = open_home(path, env=ENV)
    blobs: dict[int, str] = {}
    try:
        for seq in range(1, 11):
            body = _note_body(home, seq)
            assert home.ledger.append("note", body).seq == seq
            if "attachments" in body:
                blobs[seq] = body["attachments"][0]["blob"]
        home.checkpoint()
        key_a = home.ledger.signer.key_id
        key_a_file = (path / "keys" / f"{key_a}.key").read_bytes()
        rotation = rotate_home_key(home, reason="scheduled rotation")
        assert rotation.disposal == "destroyed"
        assert not (path / "keys" / f"{key_a}.key").exists()
        key_b = rotation.added
        for seq in range(13, SIZE):
            body = _note_body(home, seq)
            assert home.ledger.append("note", body).seq == seq
            if "attachments" in body:
                blobs[seq] = body["attachments"][0]["blob"]
        home.checkpoint()
    finally:
        home.close()
    assert not Path(f"{path}/ledger.db-wal").exists()  # closed cleanly: one file
    return Golden(path, key_a, key_b, blobs, key_a_file)


@pytest.fixture
def home_dir(golden: Golden, tmp_path: Path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(golden.path, copy)
    return copy


# -- helpers -----------------------------------------------------------------


@contextmanager
def _attacker_db(home_dir: Path) -> Iterator[sqlite3.Connection]:
    """A raw connection to ledger.db with every append-only trigger dropped."""
    conn = sqlite3.connect(home_dir / "ledger.db")
    try:
        triggers = [
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            )
        ]
        assert triggers, "the golden ledger must have its triggers"
        for name in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        yield conn
        conn.commit()
    finally:
        conn.close()


def _verify(home_dir: Path) -> VerificationReport:
    home = open_home(home_dir, writable=False, env=ENV)
    try:
        return home.verify()
    finally:
        home.close()


def _codes_at(report: VerificationReport, seq: int | None) -> set[str]:
    """Codes of the errors at ``seq`` (warnings, e.g. about anchors, left out)."""
    return {p.code for p in report.errors if p.seq == seq}


def _problem(report: VerificationReport, code: str, seq: int | None) -> str:
    """The message of the problem ``code`` at ``seq``; fails listing all problems."""
    for p in report.problems:
        if p.code == code and p.seq == seq:
            return p.message
    listed = "\n".join(f"  {p.seq} {p.code}: {p.message}" for p in report.problems)
    raise AssertionError(f"no {code!r} problem at seq {seq}; problems:\n{listed}")


def _assert_tampered(report: VerificationReport, first_bad: int | None) -> None:
    assert not report.ok
    assert not report
    assert report.verdict().startswith("TAMPERED")
    assert report.first_bad_seq == first_bad
    with pytest.raises(IntegrityError, match="TAMPERED"):
        report.raise_for_failure()


def _read(conn: sqlite3.Connection, seq: int) -> bytes:
    return bytes(
        conn.execute("SELECT record FROM records WHERE seq = ?", (seq,)).fetchone()[0]
    )


def _write(
    conn: sqlite3.Connection, seq: int, data: bytes, *, rehash: bool = True
) -> None:
    record = decode_record(data).record
    conn.execute(
        "UPDATE records SET record = ?, time = ? WHERE seq = ?",
        (data, record.entry.time, seq),
    )
    if rehash:
        conn.execute(
            "UPDATE records SET hash = ? WHERE seq = ?",
            (hashlib.sha256(data).digest(), seq),
        )


def _rechain(conn: sqlite3.Connection, start: int) -> None:
    """Rewrite seq and prev of every record from ``start`` on, as a careful attacker would.

    Entry signatures do not cover seq or prev, so the entries stay validly signed.
    """
    rows = conn.execute(
        "SELECT seq, record FROM records WHERE seq >= ? ORDER BY seq", (start - 1,)
    ).fetchall()
    prev = hashlib.sha256(bytes(rows[0][1])).hexdigest()
    for seq, data in rows[1:]:
        entry = decode_record(bytes(data)).record.entry
        fixed = Record(seq, prev, entry).to_bytes()
        _write(conn, seq, fixed)
        prev = hashlib.sha256(fixed).hexdigest()


def _resign(data: bytes, signer, **changes: object) -> bytes:
    record = decode_record(data).record
    entry = replace(record.entry, sig=None, **changes)
    return Record(record.seq, record.prev, sign_entry(entry, signer)).to_bytes()


# -- the untampered ledger ---------------------------------------------------


def test_untampered_ledger_verifies(home_dir: Path, golden: Golden) -> None:
    report = _verify(home_dir)
    assert report.ok, [str(p) for p in report.problems]
    # the only remark: every anchor (ledger.json, the witness) lies in the home
    assert [(p.code, str(p.severity)) for p in report.problems] == [
        ("anchors", "warning")
    ]
    assert report.size == SIZE
    assert report.covered == SIZE
    assert report.records_checked == SIZE
    assert report.checkpoints_checked == 30  # 29 batches and the witness
    # every stored Merkle node: 30 leaves, then 15, 7, 3 and 1 above them
    assert report.nodes_checked == sum(SIZE >> level for level in range(5)) == 56
    assert report.blobs_checked == len(BLOB_SEQS)
    assert report.first_bad_seq is None
    assert report.verdict().startswith("OK")
    report.raise_for_failure()  # does not raise


def test_golden_layout(home_dir: Path, golden: Golden) -> None:
    home = open_home(home_dir, writable=False, env=ENV)
    try:
        records = list(home.ledger.records())
        assert [r.entry.kind for r in records[10:14]] == [
            "note",
            "key.added",
            "key.revoked",
            "note",
        ]
        sizes = [c.size for c in home.ledger.store.checkpoints()]
        assert sizes == [*range(1, 12), *range(13, SIZE + 1)]
        witnessed = parse_signed_checkpoint(home.witness.read() or "")
        assert witnessed.checkpoint.size == SIZE
    finally:
        home.close()


# -- records changed -----------------------------------------------------------


def test_changed_body_byte(home_dir: Path) -> None:
    with _attacker_db(home_dir) as conn:
        data = _read(conn, 5)
        assert b"note 05 alpha" in data
        _write(conn, 5, data.replace(b"note 05 alpha", b"note 05 omega"), rehash=False)
    report = _verify(home_dir)
    _assert_tampered(report, 5)
    assert "the record was changed" in _problem(report, "hash-column", 5)
    assert "altered after it was signed" in _problem(report, "signature", 5)
    assert "prev hash does not match seq 5" in _problem(report, "prev", 6)
    # the batch checkpoint of size 6 names the first record that changed
    assert "records up to seq 5 were changed" in _problem(report, "root", 5)
    later = _problem(report, "root", None)
    assert "23 later checkpoint(s) (sizes 7 to 30) do not match" in later


def test_changed_body_byte_with_recomputed_hash(home_dir: Path) -> None:
    with _attacker_db(home_dir) as conn:
        data = _read(conn, 5)
        _write(conn, 5, data.replace(b"note 05 alpha", b"note 05 omega"), rehash=True)
    report = _verify(home_dir)
    _assert_tampered(report, 5)
    assert _codes_at(report, 5) == {"signature", "root"}
    assert "altered after it was signed" in _problem(report, "signature", 5)
    assert "a record was changed or removed" in _problem(report, "prev", 6)


def test_changed_body_byte_and_rechained(home_dir: Path) -> None:
    """Hash column and every later prev fixed: the signature and the checkpoints remain."""
    with _attacker_db(home_dir) as conn:
        data = _read(conn, 20)
        _write(conn, 20, data.replace(b"note 20 alpha", b"note 20 omega"))
        _rechain(conn, 21)
    report = _verify(home_dir)
    _assert_tampered(report, 20)
    assert _codes_at(report, 20) == {"signature", "root"}
    assert {p.code for p in report.errors} == {"signature", "root"}
    assert "does not match the records' root" in _problem(report, "root", 20)
    # the witness is reported on its own, the other stored checkpoints summarised
    assert "witnessed checkpoint" in _problem(report, "root", SIZE - 1)


def test_unparseable_record_bytes(home_dir: Path) -> None:
    with _attacker_db(home_dir) as conn:
        data = bytearray(_read(conn, 8))
        data[len(data) // 2] = 0xFF  # not UTF-8 any more
        conn.execute("UPDATE records SET record = ? WHERE seq = 8", (bytes(data),))
    report = _verify(home_dir)
    _assert_tampered(report, 8)
    assert "unreadable or altered" in _problem(report, "malformed", 8)


def test_non_canonical_record_bytes(home_dir: Path) -> None:
    with _attacker_db(home_dir) as conn:
        data = _read(conn, 8)
        spaced = data.replace(b'"seq":8', b'"seq": 8')
        assert spaced != data
        conn.execute(
            "UPDATE records SET record = ?, hash = ? WHERE seq = 8",
            (spaced, hashlib.sha256(spaced).digest()),
        )
    report = _verify(home_dir)
    _assert_tampered(report, 8)
    assert "canonical" in _problem(report, "malformed", 8)


@pytest.mark.parametrize("rehash", [False, True])
def test_changed_timestamp(home_dir: Path, rehash: bool) -> None:
    with _attacker_db(home_dir) as conn:
        data = _read(conn, 16)
        record = decode_record(data).record
        earlier = format_time(parse_time(record.entry.time) - timedelta(days=3))
        entry = replace(record.entry, time=earlier)
        forged = Record(record.seq, record.prev, entry).to_bytes()
        assert forged != data
        _write(conn, 16, forged, rehash=rehash)
    report = _verify(home_dir)
    _assert_tampered(report, 16)
    expected = {"signature", "time", "root"} | (
        {"hash-column"} if not rehash else set()
    )
    assert _codes_at(report, 16) == expected
    assert "altered after it was signed" in _problem(report, "signature", 16)
    assert re.search(
        r"dated \S+, [23] days before seq 15", _problem(report, "time", 16)
    )
    assert "prev" in _codes_at(report, 17)


# -- records removed, moved, inserted -----------------------------------------


def test_deleted_middle_record(home_dir: Path) -> None:
    with _attacker_db(home_dir) as conn:
        conn.execute("DELETE FROM records WHERE seq = 7")
    report = _verify(home_dir)
    _assert_tampered(report, 7)
    message = _problem(report, "missing", 7)
    assert "a record was removed" in message
    assert "next stored record is seq 8" in message
    assert "prev hash does not match seq 7" in _problem(report, "prev", 8)
    # the gap is filled with a stand-in leaf, so later checkpoints are compared (and
    # fail on their root) instead of being misreported as a truncated tail
    assert not [p for p in report.problems if p.code == "truncated"]
    assert [p for p in report.problems if p.code == "root"]


def test_truncated_tail_detected_against_checkpoint(home_dir: Path) -> None:
    with _attacker_db(home_dir) as conn:
        conn.execute("DELETE FROM records WHERE seq >= ?", (SIZE - 3,))
    report = _verify(home_dir)
    _assert_tampered(report, SIZE - 3)
    assert report.size == SIZE - 3
    labels = [p.message for p in report.problems if p.code == "truncated"]
    assert len(labels) == 4  # the checkpoints of sizes 28, 29, 30 and the witness
    message = next(m for m in labels if m.startswith("witnessed"))
    assert f"covers {SIZE} records but the ledger has only {SIZE - 3}" in message
    assert "removed from the end" in message
    assert any(m.startswith("checkpoint #") for m in labels)  # the stored one
    assert any(m.startswith("witnessed checkpoint") for m in labels)


def test_truncated_tail_and_checkpoints_removed_caught_by_witness(
    home_dir: Path,
) -> None:
    with _attacker_db(home_dir) as conn:
        conn.execute("DELETE FROM records WHERE seq >= ?", (SIZE - 3,))
        conn.execute("DELETE FROM checkpoints WHERE size > ?", (SIZE - 3,))
    report = _verify(home_dir)
    _assert_tampered(report, SIZE - 3)
    [problem] = [p for p in report.problems if p.code == "truncated"]
    assert problem.message.startswith("witnessed checkpoint")
    assert "rolled back" in problem.message


def test_swapped_records(home_dir: Path) -> None:
    with _attacker_db(home_dir) as conn:
        cols = "hash, kind, run, time, record"
        row17 = conn.execute(f"SELECT {cols} FROM records WHERE seq = 17").fetchone()
        row18 = conn.execute(f"SELECT {cols} FROM records WHERE seq = 18").fetchone()
        update = (
            "UPDATE records SET hash = ?, kind = ?, run = ?, time = ?, record = ? "
            "WHERE seq = ?"
        )
        conn.execute(update, (*row18, 17))
        conn.execute(update, (*row17, 18))
    report = _verify(home_dir)
    _assert_tampered(report, 17)
    message = _problem(report, "misplaced", 17)
    assert "stored at seq 17 says it is seq 18" in message
    assert "moved or swapped" in message
    assert "says it is seq 17" in _problem(report, "misplaced", 18)
    assert "signature" not in {p.code for p in report.errors}


def _insert_forged(conn: sqlite3.Connection, seq: int, *, rechain: bool) -> None:
    """Insert a validly signed note by the attacker's key at ``seq``, shifting the rest."""
    rows = conn.execute(
        "SELECT seq, hash, kind, run, time, record FROM records "
        "WHERE seq >= ? ORDER BY seq DESC",
        (seq,),
    ).fetchall()
    for row in rows:  # highest first, so seq + 1 is always free
        conn.execute("UPDATE records SET seq = ? WHERE seq = ?", (row[0] + 1, row[0]))
    prev_row = conn.execute(
        "SELECT hash, time FROM records WHERE seq = ?", (seq - 1,)
    ).fetchone()
    entry = sign_entry(
        Entry(
            "note",
            prev_row[1],
            {"user": "mallory"},
            {"text": "model approved by the safety board"},
        ),
        ATTACKER,
    )
    data = compose_record_bytes(
        seq, bytes(prev_row[0]).hex(), canonical_bytes(entry.to_dict())
    )
    conn.execute(
        "INSERT INTO records (seq, hash, kind, run, time, record) "
        "VALUES (?, ?, 'note', NULL, ?, ?)",
        (seq, hashlib.sha256(data).digest(), entry.time, data),
    )
    if rechain:
        _rechain(conn, seq + 1)


def test_inserted_record_shifting_the_rest(home_dir: Path) -> None:
    with _attacker_db(home_dir) as conn:
        _insert_forged(conn, 8, rechain=False)
    report = _verify(home_dir)
    _assert_tampered(report, 8)
    assert report.size == SIZE + 1
    assert "never added" in _problem(report, "signer", 8)
    assert "says it is seq 8" in _problem(report, "misplaced", 9)
    assert "prev" in _codes_at(report, 9)


def test_inserted_record_with_rechained_tail(home_dir: Path) -> None:
    with _attacker_db(home_dir) as conn:
        _insert_forged(conn, 22, rechain=True)
    report = _verify(home_dir)
    _assert_tampered(report, 22)
    assert _codes_at(report, 22) == {"signer", "root"}
    assert f"signed by key {ATTACKER.key_id[:16]}" in _problem(report, "signer", 22)
    assert {p.code for p in report.errors} == {"signer", "root"}


def test_record_appended_by_attacker_key(home_dir: Path) -> None:
    with _attacker_db(home_dir) as conn:
        last = conn.execute(
            "SELECT hash, time FROM records WHERE seq = ?", (SIZE - 1,)
        ).fetchone()
        entry = sign_entry(Entry("note", last[1], {}, {"text": "appended"}), ATTACKER)
        data = compose_record_bytes(
            SIZE, bytes(last[0]).hex(), canonical_bytes(entry.to_dict())
        )
        conn.execute(
            "INSERT INTO records VALUES (?, ?, 'note', NULL, ?, ?)",
            (SIZE, hashlib.sha256(data).digest(), entry.time, data),
        )
    report = _verify(home_dir)
    _assert_tampered(report, SIZE)
    assert _codes_at(report, SIZE) == {"signer", "uncovered"}
    assert "never added" in _problem(report, "signer", SIZE)
    assert f"records seq {SIZE} to {SIZE} are not covered" in _problem(
        report, "uncovered", SIZE
    )


# -- blobs ----------------------------------------------------------------------


def test_blob_replaced(home_dir: Path, golden: Golden) -> None:
    digest = golden.blobs[6]
    with _attacker_db(home_dir) as conn:
        original = bytes(
            conn.execute(
                "SELECT data FROM blobs WHERE digest = ?", (digest,)
            ).fetchone()[0]
        )
        forged = original.replace(b"attachment", b"ATTACHMENT")
        assert len(forged) == len(original)
        conn.execute("UPDATE blobs SET data = ? WHERE digest = ?", (forged, digest))
    report = _verify(home_dir)
    _assert_tampered(report, 6)
    assert [p.seq for p in report.errors] == [6]
    message = _problem(report, "blob-altered", 6)
    assert digest in message
    assert "was replaced" in message
    assert "body.attachments[0]" in message


def test_blob_removed(home_dir: Path, golden: Golden) -> None:
    digest = golden.blobs[21]
    with _attacker_db(home_dir) as conn:
        conn.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
    report = _verify(home_dir)
    _assert_tampered(report, 21)
    assert "missing from the store" in _problem(report, "blob-missing", 21)


# -- signatures and keys --------------------------------------------------------


def test_entry_resigned_with_unknown_key(home_dir: Path) -> None:
    """Re-signed, re-hashed and re-chained: only the unknown key shows at seq k."""
    with _attacker_db(home_dir) as conn:
        forged = _resign(_read(conn, 5), ATTACKER, body={"text": "note 05 forged"})
        _write(conn, 5, forged)
        _rechain(conn, 6)
    report = _verify(home_dir)
    _assert_tampered(report, 5)
    assert _codes_at(report, 5) == {"signer", "root"}
    message = _problem(report, "signer", 5)
    assert (
        f"signed by key {ATTACKER.key_id[:16]}... which the ledger never added"
        in message
    )
    # Later records stay chained and signed; only the checkpoints' roots disagree:
    # the first (size 6), the witness (size 30), and a summary of the others.
    assert {p.code for p in report.errors} == {"signer", "root"}
    assert {p.seq for p in report.errors if p.code == "root"} == {5, SIZE - 1, None}


def test_entry_signed_by_revoked_key_after_revocation(
    home_dir: Path, golden: Golden
) -> None:
    stolen = home_dir.parent / "stolen.key"
    stolen.write_bytes(golden.key_a_file)
    stolen.chmod(0o600)  # a private key file (ADR 0003: others' access refused)
    old = load_signer(stolen)
    assert old.key_id == golden.key_a
    store = SQLiteStore(home_dir / "ledger.db", roles=KIND_ROLES)
    try:
        head = store.head()
        now = parse_time(head.last_time) + timedelta(seconds=1)
        entry = sign_entry(Entry("note", format_time(now), {}, {"text": "late"}), old)
        store.append(
            lambda h: new_batch(
                seal_entries(
                    chain_head(h), [entry], now=now, tolerance=timedelta(minutes=5)
                )
            )
        )
    finally:
        store.close()
    report = _verify(home_dir)
    _assert_tampered(report, SIZE)
    assert _codes_at(report, SIZE) == {"signer", "uncovered"}
    assert "after it was revoked at seq 12" in _problem(report, "signer", SIZE)


def test_key_rotation_keeps_old_entries_valid(home_dir: Path, golden: Golden) -> None:
    home = open_home(home_dir, writable=False, env=ENV)
    try:
        signers = [r.entry.sig.key for r in home.ledger.records()]
        keys = home.ledger.keys()
    finally:
        home.close()
    assert set(signers[:12]) == {golden.key_a}
    assert set(signers[12:]) == {golden.key_b}
    assert keys.keys[golden.key_a].revoked_seq == 12
    assert keys.keys[golden.key_b].added_seq == 11
    assert keys.keys[golden.key_b].revoked_seq is None
    assert keys.genesis_key == golden.key_a
    assert _verify(home_dir).ok


def test_ledger_holding_the_old_key_is_refused_at_append(home_dir: Path) -> None:
    stale = open_home(home_dir, env=ENV)
    fresh = open_home(home_dir, env=ENV)
    try:
        stale.ledger.append("note", {"text": "before the second rotation"})
        fresh_key = rotate_home_key(fresh, reason="suspected leak").added
        with pytest.raises(ConfigError, match="after it was revoked at seq 32"):
            stale.ledger.append("note", {"text": "with the revoked key"})
        size = fresh.ledger.head().size
        assert size == SIZE + 3
        fresh.ledger.append("note", {"text": "with the new key"})
        last = fresh.ledger.record(SIZE + 3)
        assert last.entry.sig.key == fresh_key
    finally:
        stale.close()
        fresh.close()
    assert _verify(home_dir).ok


def test_ledger_object_with_revoked_signer_writes_nothing(tmp_path: Path) -> None:
    old, new = fixed_signer("rotation-old"), fixed_signer("rotation-new")
    path = tmp_path / "ledger.db"
    writer = Ledger.create(
        SQLiteStore(path, roles=KIND_ROLES, create=True), old, origin=ORIGIN
    )
    other = Ledger(
        SQLiteStore(path, roles=KIND_ROLES), old, origin=ORIGIN, trusted_key=old.key_id
    )
    try:
        other.append("note", {"text": "fine while the key is valid"})
        writer.rotate_key(new)
        size = writer.head().size
        with pytest.raises(ConfigError, match="revoked"):
            other.append("note", {"text": "refused"})
        with pytest.raises(ConfigError, match="revoked"):
            other.append_many(
                [Draft("note", {"text": "a"}), Draft("note", {"text": "b"})]
            )
        assert writer.head().size == size
        assert writer.verify().ok
    finally:
        writer.close()
        other.close()


# -- checkpoints ------------------------------------------------------------------


def _root_at(home_dir: Path, size: int) -> bytes:
    store = SQLiteStore(home_dir / "ledger.db", roles=KIND_ROLES)
    try:
        return compute_root([compute_leaf_hash(r.data) for r in store.rows(0, size)])
    finally:
        store.close()


def test_checkpoint_signed_by_attacker_key(home_dir: Path) -> None:
    forged = sign_checkpoint(
        Checkpoint(ORIGIN, 20, hashlib.sha256(b"fake").digest()), ATTACKER
    )
    with _attacker_db(home_dir) as conn:
        conn.execute(
            "INSERT INTO checkpoints (size, note) VALUES (20, ?)", (forged.to_text(),)
        )
    report = _verify(home_dir)
    _assert_tampered(report, 19)
    message = _problem(report, "checkpoint", 19)
    assert "(size 20) is not valid" in message
    assert "no signature by a trusted key" in message


def test_checkpoint_signed_by_attacker_key_with_true_root(home_dir: Path) -> None:
    """Even a truthful checkpoint is refused when an untrusted key signed it."""
    forged = sign_checkpoint(Checkpoint(ORIGIN, 20, _root_at(home_dir, 20)), ATTACKER)
    with _attacker_db(home_dir) as conn:
        conn.execute(
            "INSERT INTO checkpoints (size, note) VALUES (20, ?)", (forged.to_text(),)
        )
    report = _verify(home_dir)
    _assert_tampered(report, 19)
    assert _codes_at(report, 19) == {"checkpoint"}


def test_checkpoint_with_flipped_signature_byte(home_dir: Path) -> None:
    with _attacker_db(home_dir) as conn:
        cp_id, text = conn.execute(
            "SELECT id, note FROM checkpoints WHERE size = ?", (SIZE,)
        ).fetchone()
        signed = parse_signed_checkpoint(text)
        sig = signed.signatures[0]
        flipped = bytearray(sig.signature)
        flipped[10] ^= 0x01
        bad = SignedCheckpoint(
            signed.checkpoint, (NoteSignature(sig.name, sig.key_hash, bytes(flipped)),)
        )
        conn.execute(
            "UPDATE checkpoints SET note = ? WHERE id = ?", (bad.to_text(), cp_id)
        )
    report = _verify(home_dir)
    _assert_tampered(report, SIZE - 1)
    message = _problem(report, "checkpoint", SIZE - 1)
    assert "invalid signature" in message


def test_checkpoint_for_another_origin(home_dir: Path, golden: Golden) -> None:
    home = open_home(home_dir, env=ENV)
    try:
        signer = home.ledger.signer
        root = home.ledger.head().root()
    finally:
        home.close()
    other = sign_checkpoint(Checkpoint("example.org/other-ledger", SIZE, root), signer)
    with _attacker_db(home_dir) as conn:
        conn.execute(
            "INSERT INTO checkpoints (size, note) VALUES (?, ?)",
            (SIZE, other.to_text()),
        )
    report = _verify(home_dir)
    _assert_tampered(report, None)
    message = _problem(report, "foreign-checkpoint", None)
    assert "is a checkpoint of another ledger ('example.org/other-ledger'" in message


# -- whole-ledger attacks -----------------------------------------------------------


def _remove_db(home_dir: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{home_dir}/ledger.db{suffix}").unlink(missing_ok=True)


def test_rollback_to_older_copy_caught_by_witness(home_dir: Path) -> None:
    aside = home_dir.parent / "ledger.db.old"
    shutil.copy2(home_dir / "ledger.db", aside)
    home = open_home(home_dir, env=ENV)
    try:
        for i in range(5):
            home.ledger.append("note", {"text": f"after the copy {i}"})
        home.checkpoint()
    finally:
        home.close()
    assert _verify(home_dir).ok
    _remove_db(home_dir)
    shutil.copy2(aside, home_dir / "ledger.db")

    report = _verify(home_dir)
    _assert_tampered(report, SIZE)
    [problem] = report.errors
    assert problem.code == "truncated"
    assert problem.message.startswith("witnessed checkpoint")
    assert (
        f"covers {SIZE + 5} records but the ledger has only {SIZE}" in problem.message
    )
    assert "rolled back" in problem.message

    # nothing can be written onto the rolled-back copy: opening it to write fails
    with pytest.raises(IntegrityError, match="rolled back"):
        open_home(home_dir, env=ENV)


def _forge_ledger(path: Path, notes: int) -> None:
    store = SQLiteStore(path, roles=KIND_ROLES, create=True)
    ledger = Ledger.create(store, ATTACKER, origin=ORIGIN)
    try:
        for i in range(notes):
            ledger.append("note", {"text": f"rewritten history {i}"})
        ledger.checkpoint()
    finally:
        ledger.close()


@pytest.mark.parametrize("keep_witness", [False, True])
def test_full_rewrite_with_attacker_key(home_dir: Path, keep_witness: bool) -> None:
    forged = home_dir.parent / "forged.db"
    _forge_ledger(forged, SIZE + 10)
    _remove_db(home_dir)
    shutil.copy2(forged, home_dir / "ledger.db")
    if not keep_witness:
        (home_dir / "witness" / "checkpoint").unlink()

    report = _verify(home_dir)
    _assert_tampered(report, 0)
    message = _problem(report, "genesis", 0)
    assert f"started by key {ATTACKER.key_id[:16]}" in message
    assert "not the ledger you trust, or it was rewritten" in message
    if not keep_witness:
        assert {p.code for p in report.errors} == {"genesis"}
    else:
        assert "witnessed checkpoint" in _problem(report, "checkpoint", SIZE - 1)


def test_forged_genesis_record(home_dir: Path) -> None:
    """The genesis record itself altered: verification reports, it does not crash."""
    with _attacker_db(home_dir) as conn:
        data = _read(conn, 0)
        _write(
            conn,
            0,
            data.replace(b'"reason":"ledger created"', b'"reason":"ledger created!"'),
        )
    report = _verify(home_dir)
    _assert_tampered(report, 0)
    assert "signature" in _codes_at(report, 0) or "genesis" in _codes_at(report, 0)


def test_genesis_record_made_unreadable(home_dir: Path) -> None:
    with _attacker_db(home_dir) as conn:
        conn.execute("UPDATE records SET record = ? WHERE seq = 0", (b"{}",))
    report = _verify(home_dir)
    _assert_tampered(report, 0)
    assert "malformed" in _codes_at(report, 0)


@pytest.mark.parametrize(
    "value",
    [
        "CAST(replace(CAST(record AS TEXT), '\"seq\":8', '\"seq\":9') AS TEXT)",
        "42",
        "4.5",
    ],
    ids=["text", "integer", "real"],
)
def test_record_stored_as_another_sqlite_type(home_dir: Path, value: str) -> None:
    """SQLite keeps any type in any column: an insider editing the file can store
    a record as TEXT or a number (the column refuses NULL). Verification must still read it and name
    the seq, not stop on a type error."""
    with _attacker_db(home_dir) as conn:
        conn.execute(f"UPDATE records SET record = {value} WHERE seq = 8")
        assert (
            conn.execute("SELECT typeof(record) FROM records WHERE seq = 8").fetchone()[
                0
            ]
            != "blob"
        )
    report = _verify(home_dir)
    _assert_tampered(report, 8)
    assert _codes_at(report, 8)


def test_record_and_hash_stored_as_text_unchanged_still_verify(home_dir: Path) -> None:
    """The same bytes stored as TEXT are the same record: nothing was altered."""
    with _attacker_db(home_dir) as conn:
        conn.execute("UPDATE records SET record = CAST(record AS TEXT) WHERE seq = 8")
    assert _verify(home_dir).ok


def test_hash_stored_as_text_is_named(home_dir: Path) -> None:
    with _attacker_db(home_dir) as conn:
        conn.execute("UPDATE records SET hash = hex(hash) WHERE seq = 8")
    report = _verify(home_dir)
    _assert_tampered(report, 8)
