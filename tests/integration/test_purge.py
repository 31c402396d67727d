"""Erasing a blob without breaking the chain: `mltrail purge`, judged from outside.

A real SQLite home of 1,000 records (made through the API) holds blobs with
known bytes. Each test purges one as a user would, reads the raw database and
WAL files for its bytes, and runs `mltrail verify` / `show` as a user would;
the attacks edit the SQLite file as someone with write access to the home.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from cli_runner import mltrail
from mltrail.core.canonical import compute_leaf_hash, compute_record_hash
from mltrail.core.codec import format_time
from mltrail.core.entry import Entry, Record, sign_entry
from mltrail.core.merkle import CompactRange
from mltrail.errors import StoreError
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft
from mltrail.storage.sqlite import SQLiteStore
from mltrail.testing import fixed_signer

ORIGIN = "example.org/purge"
ATTACKER = fixed_signer("attacker")
SMALL = b"subject 4711, Jane Roe, 1970-01-01: " + random.Random(1).randbytes(300)
LARGE = random.Random(2).randbytes(200_000)  # spans overflow pages
KEPT = random.Random(3).randbytes(500)
SMALL_AT, LARGE_AT, KEPT_AT = (10, 500), (20,), (30,)


def verify(home: Path) -> dict[str, Any]:
    proc = mltrail(home, "verify", "--json")
    assert proc.returncode in (0, 3), proc.stderr
    return {**json.loads(proc.stdout), "exit": proc.returncode}


def codes(report: dict[str, Any], severity: str = "error") -> list[tuple[Any, str]]:
    return [
        (p["seq"], p["code"]) for p in report["problems"] if p["severity"] == severity
    ]


def digest(data: bytes) -> str:
    import hashlib

    return "sha256:" + hashlib.sha256(data).hexdigest()


def stored_bytes(home: Path) -> bytes:
    """Everything in ledger.db and its WAL, as a disk reader sees them."""
    db = home / "ledger.db"
    wal = Path(f"{db}-wal")
    return db.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def holds(raw: bytes, data: bytes) -> bool:
    """Whether any 32-byte window of ``data`` is in ``raw`` (a page of a large
    blob is 4 KiB, so a stride of 512 bytes still finds any page left)."""
    stride = 32 if len(data) < 4096 else 512
    return any(data[i : i + 32] in raw for i in range(0, len(data) - 31, stride))


@dataclass(frozen=True)
class Template:
    path: Path


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """Genesis and 999 notes; notes 10 and 500 attach SMALL, 20 LARGE, 30 KEPT."""
    path = tmp_path_factory.mktemp("purge") / "home"
    init_home(path, origin=ORIGIN, env={})
    home = open_home(path, env={})
    try:
        refs = {
            seq: {**home.ledger.put_blob(data), "name": name}
            for name, data, seqs in (
                ("small", SMALL, SMALL_AT),
                ("large", LARGE, LARGE_AT),
                ("kept", KEPT, KEPT_AT),
            )
            for seq in seqs
        }
        drafts = [
            Draft("note", {"text": f"note {seq}"} | (
                {"attachments": [refs[seq]]} if seq in refs else {}
            ))
            for seq in range(1, 1000)
        ]  # fmt: skip
        for start in range(0, len(drafts), 100):
            home.ledger.append_many(drafts[start : start + 100])
    finally:
        home.close()
    return Template(path)


@pytest.fixture
def home(template: Template, tmp_path: Path) -> Path:
    copy = tmp_path / "home"
    shutil.copytree(template.path, copy)
    return copy


# -- the purge, seen from outside ---------------------------------------------------


def test_purge_one_blob_of_1000_records(home: Path) -> None:
    before = verify(home)
    assert before["exit"] == 0
    assert before["records_checked"] == 1000
    hashes = {seq: _record_hash(home, seq) for seq in SMALL_AT}
    assert holds(stored_bytes(home), SMALL)  # the check below can fail
    proc = mltrail(
        home, "purge", digest(SMALL)[7:19], "--reason", "erasure request 12",
        "--policy", "GDPR Art. 17", "--json",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [done] = json.loads(proc.stdout)["purged"]
    assert done["seq"] == 1000
    assert done["digest"] == digest(SMALL)
    assert done["size"] == len(SMALL)
    assert done["referenced_by"] == list(SMALL_AT)
    assert done["bytes_erased"] is True
    assert done["resumed"] is False

    report = verify(home)
    assert report["exit"] == 0, report["problems"]
    assert report["verdict"].endswith("; 1 blob purged by policy")
    assert report["records_checked"] == 1001
    assert [(p["seq"], p["reason"], p["policy"]) for p in report["purged"]] == [
        (1000, "erasure request 12", "GDPR Art. 17")
    ]
    assert codes(report) == []
    assert (1000, "blob-purged") in codes(report, "warning")
    text = mltrail(home, "verify").stdout
    assert "1 blob purged by policy" in text.splitlines()[0]
    assert "seq 1000" in text
    assert "GDPR Art. 17" in text
    assert "erasure request 12" in text
    # the records that referenced it are untouched
    assert {seq: _record_hash(home, seq) for seq in SMALL_AT} == hashes

    raw = stored_bytes(home)
    assert not holds(raw, SMALL)
    assert holds(raw, KEPT)
    assert holds(raw, LARGE)
    _vacuum(home)
    assert not holds(stored_bytes(home), SMALL)


def test_show_says_a_blob_was_purged(home: Path) -> None:
    assert mltrail(home, "purge", digest(SMALL), "--reason", "leak").returncode == 0
    proc = mltrail(home, "show", str(SMALL_AT[0]), "--json")
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(proc.stdout)["blobs"][digest(SMALL)]
    assert shown.startswith("<purged by policy at seq 1000")
    assert "'leak'" in shown
    purge = json.loads(mltrail(home, "show", "1000", "--json").stdout)["entry"]
    assert purge["kind"] == "blob.purged"
    assert purge["body"]["referenced_by"] == list(SMALL_AT)
    assert purge["actor"]["user"]  # who: the OS account that ran it
    assert mltrail(home, "log", "--kind", "blob.purged").returncode == 0


def test_a_large_blob_leaves_no_overflow_page(home: Path) -> None:
    assert holds(stored_bytes(home), LARGE)
    opened = open_home(home, env={})
    try:
        result = opened.purge_blob(digest(LARGE), reason="too big", policy="retention")
    finally:
        opened.close()
    assert result.held
    assert result.note.referenced_by == LARGE_AT
    assert not holds(stored_bytes(home), LARGE)
    assert holds(stored_bytes(home), SMALL)
    assert verify(home)["verdict"].endswith("; 1 blob purged by policy")


def test_purging_twice_is_refused(home: Path) -> None:
    assert mltrail(home, "purge", digest(SMALL), "--reason", "x").returncode == 0
    again = mltrail(home, "purge", digest(SMALL), "--reason", "x")
    assert again.returncode == 2
    assert "was already purged (seq 1000)" in again.stderr
    assert "Traceback" not in again.stderr
    assert verify(home)["size"] == 1001  # nothing more was written


@pytest.mark.parametrize(
    ("blob", "says"),
    [
        ("sha256:" + "0" * 64, "is stored in this ledger"),
        ("abc", "does not name a blob"),
        ("zzzzzzzzzz", "does not name a blob"),
        ("", "does not name a blob"),
    ],
)
def test_a_blob_that_is_not_stored_is_refused(home: Path, blob: str, says: str) -> None:
    proc = mltrail(home, "purge", blob, "--reason", "x")
    assert proc.returncode == 2
    assert says in proc.stderr
    assert verify(home)["size"] == 1000


def test_a_purge_needs_a_reason(home: Path) -> None:
    proc = mltrail(home, "purge", digest(SMALL))
    assert proc.returncode == 2
    assert "--reason is required" in proc.stderr
    assert holds(stored_bytes(home), SMALL)


def test_a_purge_cannot_be_appended_directly(home: Path) -> None:
    body = {
        "digest": digest(SMALL),
        "size": len(SMALL),
        "reason": "x",
        "referenced_by": [],
    }
    proc = mltrail(home, "append", "--kind", "blob.purged", "--body", json.dumps(body))
    assert proc.returncode == 2
    assert "written by `mltrail purge`" in proc.stderr


def test_the_same_bytes_stored_again_stay_erased(home: Path, tmp_path: Path) -> None:
    assert mltrail(home, "purge", digest(SMALL), "--reason", "x").returncode == 0
    again = tmp_path / "again.bin"
    again.write_bytes(SMALL)
    proc = mltrail(
        home,
        "append",
        "--kind",
        "note",
        "--body",
        '{"text": "again"}',
        "--attach",
        str(again),
    )
    assert proc.returncode == 0, proc.stderr
    assert not holds(stored_bytes(home), SMALL)
    report = verify(home)
    assert report["exit"] == 0
    assert report["verdict"].endswith("; 1 blob purged by policy")
    shown = json.loads(mltrail(home, "show", "1001", "--json").stdout)["blobs"]
    assert shown[digest(SMALL)].startswith("<purged by policy at seq 1000")


# -- what the store still refuses, and what verify still catches ----------------------


def test_the_store_refuses_deleting_a_blob_by_hand(home: Path) -> None:
    conn = sqlite3.connect(home / "ledger.db")
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM blobs WHERE digest = ?", (digest(SMALL),))
    finally:
        conn.close()
    assert verify(home)["exit"] == 0


def test_a_blob_deleted_without_a_purge_is_tampering(home: Path) -> None:
    conn = _attacker_db(home)
    conn.execute("DELETE FROM blobs WHERE digest = ?", (digest(SMALL),))
    conn.close()
    report = verify(home)
    assert report["exit"] == 3
    assert codes(report) == [(seq, "blob-missing") for seq in SMALL_AT]
    assert report["purged"] == []
    assert "no valid blob.purged record names it" in report["problems"][0]["message"]


def test_a_forged_purge_without_the_key_is_caught(home: Path) -> None:
    """The attacker writes a blob.purged record signed by their own key, with the
    triggers in place: the store then lets the blob go, verification does not."""
    conn = sqlite3.connect(home / "ledger.db", isolation_level=None)
    try:
        seq = _append_forged_purge(conn, digest(SMALL), len(SMALL))
        conn.execute("DELETE FROM blobs WHERE digest = ?", (digest(SMALL),))
    finally:
        conn.close()
    report = verify(home)
    assert report["exit"] == 3
    found = codes(report)
    assert (seq, "signer") in found
    assert (seq, "uncovered") in found
    assert [c for c in found if c[1] == "blob-missing"] == [
        (s, "blob-missing") for s in SMALL_AT
    ]
    assert report["purged"] == []
    assert "blob-purged" not in {code for _, code in codes(report, "warning")}


def test_a_purge_is_believed_only_under_a_trusted_key(home: Path) -> None:
    """Verification believes a purge only under a trusted key: pinned to another
    ledger's key, the same purge is not 'purged by policy'."""
    assert mltrail(home, "purge", digest(SMALL), "--reason", "x").returncode == 0
    proc = mltrail(home, "verify", "--json", "--trust-key", ATTACKER.key_id)
    report = json.loads(proc.stdout)
    assert proc.returncode == 3
    assert report["purged"] == []


# -- crashes between the record and the erasure ------------------------------------


def test_an_interrupted_purge_is_reported_then_finished(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def crash(self: SQLiteStore, blob: str) -> bool:
        raise RuntimeError("power cut")

    opened = open_home(home, env={})
    try:
        monkeypatch.setattr(SQLiteStore, "_erase_blob", crash)
        with pytest.raises(
            StoreError, match=r"is recorded \(seq 1000\), but its bytes"
        ):
            opened.purge_blob(digest(SMALL), reason="leak", policy="secret leaked")
        monkeypatch.undo()
    finally:
        opened.close()
    assert holds(stored_bytes(home), SMALL)
    report = verify(home)
    assert report["exit"] == 0
    assert (1000, "purge-pending") in codes(report, "warning")
    assert report["purged"] == []
    assert "purged by policy" not in report["verdict"]
    # the next purge of it finishes it, without a second record
    proc = mltrail(home, "purge", digest(SMALL)[7:20], "--reason", "again")
    assert proc.returncode == 0, proc.stderr
    assert "finished the interrupted purge" in proc.stdout
    assert not holds(stored_bytes(home), SMALL)
    report = verify(home)
    assert report["size"] == 1001
    assert report["verdict"].endswith("; 1 blob purged by policy")
    assert [p["reason"] for p in report["purged"]] == ["leak"]


def test_a_killed_purge_is_finished_by_the_next_write(home: Path) -> None:
    script = (
        "import os, signal, sys\n"
        "from mltrail.storage.sqlite import SQLiteStore\n"
        "SQLiteStore._erase_blob = lambda self, d: os.kill(os.getpid(), signal.SIGKILL)\n"
        "from mltrail.cli.main import main\n"
        "main(sys.argv[1:])\n"
    )
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    env.pop("MLTRAIL_WITNESS", None)
    killed = subprocess.run(
        [sys.executable, "-c", script, "purge", digest(LARGE), "--reason", "x"],
        capture_output=True, env=env, timeout=120, check=False,
    )  # fmt: skip
    assert killed.returncode == -signal.SIGKILL
    assert holds(stored_bytes(home), LARGE)
    report = verify(home)
    assert report["exit"] == 0
    assert (1000, "purge-pending") in codes(report, "warning")
    # any command that writes finishes it first
    note = mltrail(home, "append", "--kind", "note", "--body", '{"text": "later"}')
    assert note.returncode == 0, note.stderr
    assert not holds(stored_bytes(home), LARGE)
    report = verify(home)
    assert report["exit"] == 0
    assert report["verdict"].endswith("; 1 blob purged by policy")
    resume = mltrail(home, "purge", "--resume")
    assert resume.returncode == 0
    assert "no purge was left unfinished" in resume.stdout


def test_resume_finishes_every_interrupted_purge(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened = open_home(home, env={}, finish_purges=False)
    try:
        monkeypatch.setattr(SQLiteStore, "_erase_blob", lambda self, d: 1 / 0)
        for data in (SMALL, LARGE):
            with pytest.raises(StoreError):
                opened.purge_blob(digest(data), reason="x")
        monkeypatch.undo()
    finally:
        opened.close()
    proc = mltrail(home, "purge", "--resume", "--json")
    assert proc.returncode == 0, proc.stderr
    finished = json.loads(proc.stdout)["purged"]
    assert [(p["seq"], p["resumed"]) for p in finished] == [(1000, True), (1001, True)]
    raw = stored_bytes(home)
    assert not holds(raw, SMALL)
    assert not holds(raw, LARGE)
    assert verify(home)["verdict"].endswith("; 2 blobs purged by policy")


# -- helpers -------------------------------------------------------------------------


def _record_hash(home: Path, seq: int) -> str:
    proc = mltrail(home, "show", str(seq), "--json")
    return str(json.loads(proc.stdout)["hash"])


def _vacuum(home: Path) -> None:
    conn = sqlite3.connect(home / "ledger.db", isolation_level=None)
    try:
        conn.execute("VACUUM")
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def _attacker_db(home: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(home / "ledger.db", isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'"):
        conn.execute(f'DROP TRIGGER "{name}"')
    return conn


def _append_forged_purge(conn: sqlite3.Connection, blob: str, size: int) -> int:
    """A blob.purged record at the end, signed by the attacker's key, chained and
    with its Merkle nodes; no checkpoint can cover it without the ledger key."""
    rows = [
        bytes(r[0]) for r in conn.execute("SELECT record FROM records ORDER BY seq")
    ]
    tree = CompactRange()
    for data in rows:
        tree.append(compute_leaf_hash(data))
    body = {"digest": blob, "size": size, "reason": "cleanup", "referenced_by": []}
    time = format_time(datetime.now(UTC))
    entry = sign_entry(Entry("blob.purged", time, {"user": "mallory"}, body), ATTACKER)
    seq = len(rows)
    data = Record(seq, compute_record_hash(rows[-1]).hex(), entry).to_bytes()
    conn.execute(
        "INSERT INTO records (seq, hash, kind, run, time, record) VALUES (?,?,?,?,?,?)",
        (seq, compute_record_hash(data), entry.kind, None, entry.time, data),
    )
    conn.executemany(
        "INSERT INTO merkle_nodes (level, idx, hash) VALUES (?,?,?)",
        tree.append(compute_leaf_hash(data)),
    )
    return seq
