"""Attacks on a real ledger home, made from the outside, judged by the CLI.

Each test builds a home with the `mltrail` command, then edits the SQLite file,
the key folder or the witness as an attacker with write access to the home
would (no ledger key unless the test says the attacker stole one), and runs
`mltrail verify` / `append` / `checkpoint` as a user would. Tampering must end
in exit 3 with the first bad seq named.

The strongest no-key attacker is modelled by ``_rewrite``: it replaces the
records with any sequence of validly signed entries, renumbers them, recomputes
every prev hash, hash column and Merkle node, deletes the checkpoints that no
longer fit and removes the witness. What remains for verification is that no
one without the key can sign the checkpoint that must cover every record.

One limit is tested as such: cutting whole append batches from the end, with
their checkpoints and the witness inside the home, leaves a ledger that is a
true earlier state; only an anchor kept outside the home (a checkpoint the
auditor saved, a witness file elsewhere) can tell.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mltrail.core.canonical import compute_leaf_hash, compute_record_hash
from mltrail.core.checkpoint import (
    Checkpoint,
    CheckpointSigner,
    parse_signed_checkpoint,
    sign_checkpoint,
)
from mltrail.core.codec import decode_record, format_time
from mltrail.core.entry import Entry, Record, Signature, sign_entry
from mltrail.core.merkle import CompactRange, frontier_positions
from mltrail.errors import InputError, MltrailError
from mltrail.ledger.home import open_home
from mltrail.ledger.keystore import load_signer
from mltrail.testing import FixedClock, fixed_signer

ORIGIN = "example.org/attacks"
ATTACKER = fixed_signer("attacker")


# -- running the CLI -------------------------------------------------------------


def mltrail(home: Path, *args: str, env: dict[str, str] | None = None):
    environment = {**os.environ, "MLTRAIL_HOME": str(home), **(env or {})}
    for name in ("MLTRAIL_RUN_ID", "MLTRAIL_KEY_PASSWORD", "RANK", "WORLD_SIZE"):
        environment.pop(name, None)
    if env is None or "MLTRAIL_WITNESS" not in env:
        environment.pop("MLTRAIL_WITNESS", None)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


def verify(home: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = mltrail(home, "verify", "--json", *args, env=env)
    assert proc.returncode in (0, 3), proc.stderr
    report = json.loads(proc.stdout)
    report["exit"] = proc.returncode
    return report


def errors(report: dict[str, Any]) -> list[tuple[int | None, str]]:
    return [
        (p["seq"], p["code"]) for p in report["problems"] if p["severity"] == "error"
    ]


def message(report: dict[str, Any], code: str) -> str:
    found = [p["message"] for p in report["problems"] if p["code"] == code]
    assert found, f"no {code!r} problem in {report['problems']}"
    return found[0]


def append(home: Path, text: str, env: dict[str, str] | None = None) -> None:
    proc = mltrail(
        home, "append", "--kind", "note", "--body", json.dumps({"text": text}), env=env
    )
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home: genesis, five single-record appends, one `mltrail run` (two batches)."""
    path = tmp_path / "home"
    proc = mltrail(path, "init", "--origin", ORIGIN)
    assert proc.returncode == 0, proc.stderr
    for i in range(1, 6):
        append(path, f"note {i}")
    work = tmp_path / "work"
    work.mkdir()
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", "run", "-q", "--name", "train", "--", "true"],
        cwd=work,
        env={
            **os.environ,
            "MLTRAIL_HOME": str(path),
            "GIT_CEILING_DIRECTORIES": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert verify(path)["exit"] == 0
    return path


# -- the attacker's tools --------------------------------------------------------


def _db(home: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(home / "ledger.db", isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'"):
        conn.execute(f'DROP TRIGGER "{name}"')
    return conn


def _entries(home: Path) -> list[Entry]:
    with _db(home) as conn:
        rows = conn.execute("SELECT record FROM records ORDER BY seq").fetchall()
    return [decode_record(bytes(r[0])).record.entry for r in rows]


def _batch_ends(home: Path) -> list[int]:
    with _db(home) as conn:
        return [r[0] for r in conn.execute("SELECT size FROM checkpoints ORDER BY id")]


def _rewrite(home: Path, entries: list[Entry], *, keep_checkpoints_upto: int) -> None:
    """Replace the records by ``entries``, consistently, without any key."""
    conn = _db(home)
    try:
        conn.execute("BEGIN")
        conn.execute("DELETE FROM records")
        conn.execute("DELETE FROM merkle_nodes")
        tree, prev = CompactRange(), "0" * 64
        for seq, entry in enumerate(entries):
            data = Record(seq, prev, entry).to_bytes()
            digest = compute_record_hash(data)
            conn.execute(
                "INSERT INTO records (seq, hash, kind, run, time, record) "
                "VALUES (?,?,?,?,?,?)",
                (seq, digest, entry.kind, entry.run, entry.time, data),
            )
            conn.executemany(
                "INSERT INTO merkle_nodes (level, idx, hash) VALUES (?,?,?)",
                tree.append(compute_leaf_hash(data)),
            )
            prev = digest.hex()
        conn.execute("DELETE FROM checkpoints WHERE size > ?", (keep_checkpoints_upto,))
        conn.execute("COMMIT")
    finally:
        conn.close()
    (home / "witness" / "checkpoint").unlink(missing_ok=True)


def _cut(home: Path, size: int) -> None:
    """Keep the first ``size`` records, as they are."""
    _rewrite(home, _entries(home)[:size], keep_checkpoints_upto=size)


# -- records after the last checkpoint -------------------------------------------


def test_cut_inside_a_batch_is_caught(home: Path) -> None:
    ends = _batch_ends(home)
    start_batch = ends[-3]  # the run's start batch begins after this size
    assert ends[-2] - start_batch > 2, "the run's start batch holds several records"
    _cut(home, start_batch + 2)
    report = verify(home)
    assert report["exit"] == 3
    assert report["first_bad_seq"] == start_batch
    assert (start_batch, "uncovered") in errors(report)
    assert f"records seq {start_batch} to {start_batch + 1} are not covered" in message(
        report, "uncovered"
    )


def test_every_checkpoint_deleted_is_caught(home: Path) -> None:
    with _db(home) as conn:
        conn.execute("DELETE FROM checkpoints")
    (home / "witness" / "checkpoint").unlink()
    report = verify(home)
    assert report["exit"] == 3
    assert errors(report) == [(0, "uncovered")]
    assert "no checkpoint signed by a trusted key covers the ledger" in message(
        report, "uncovered"
    )


def test_whole_batches_cut_need_an_anchor_outside_the_home(
    home: Path, tmp_path: Path
) -> None:
    """The known limit: a true earlier state is only told apart by an outside anchor."""
    size = len(_entries(home))
    append(home, "approved by the risk committee")
    saved = tmp_path / "auditor.cp"  # kept by the auditor, outside the home
    saved.write_text(mltrail(home, "checkpoint").stdout)
    _cut(home, size)  # the approval, its checkpoint and the witness removed

    alone = verify(home)
    assert alone["exit"] == 0
    assert "every trust anchor used lies inside the ledger home" in message(
        alone, "anchors"
    )
    report = verify(home, "--trust-checkpoint", str(saved))
    assert report["exit"] == 3
    assert errors(report) == [(size, "truncated")]
    assert f"covers {size + 1} records but the ledger has only {size}" in message(
        report, "truncated"
    )


def test_witness_outside_the_home_catches_whole_batches_cut(
    home: Path, tmp_path: Path
) -> None:
    outside = {"MLTRAIL_WITNESS": str(tmp_path / "elsewhere" / "witness.cp")}
    append(home, "first with an outside witness", env=outside)
    size = len(_entries(home))
    append(home, "model promoted", env=outside)
    _cut(home, size)
    report = verify(home, env=outside)
    assert report["exit"] == 3
    assert (size, "truncated") in errors(report)
    assert "witnessed checkpoint" in message(report, "truncated")


# -- removed, reordered, replayed, without the key ---------------------------------


def test_middle_record_deleted_and_renumbered(home: Path) -> None:
    entries = _entries(home)
    _rewrite(home, entries[:3] + entries[4:], keep_checkpoints_upto=3)
    report = verify(home)
    assert report["exit"] == 3
    assert report["first_bad_seq"] == 3
    assert errors(report) == [(3, "uncovered")]


def test_middle_record_deleted_with_checkpoints_left_in_place(home: Path) -> None:
    entries = _entries(home)
    _rewrite(home, entries[:3] + entries[4:], keep_checkpoints_upto=10**6)
    report = verify(home)
    assert report["exit"] == 3
    assert report["first_bad_seq"] == 3
    assert (3, "root") in errors(report)


def test_two_records_swapped(home: Path) -> None:
    entries = _entries(home)
    entries[2], entries[3] = entries[3], entries[2]
    _rewrite(home, entries, keep_checkpoints_upto=2)
    report = verify(home)
    assert report["exit"] == 3
    assert report["first_bad_seq"] == 2
    assert (2, "uncovered") in errors(report)


def test_signed_entry_replayed_at_the_end(home: Path) -> None:
    entries = _entries(home)
    size = len(entries)
    _rewrite(home, [*entries, entries[4]], keep_checkpoints_upto=size)
    report = verify(home)
    assert report["exit"] == 3
    assert errors(report) == [(size, "uncovered")]
    # and nothing can be written on top of it
    proc = mltrail(home, "append", "--kind", "note", "--body", '{"text": "x"}')
    assert proc.returncode == 3
    assert f"records seq {size} to {size} are not covered" in proc.stderr


# -- time -----------------------------------------------------------------------------


def test_back_dated_entry_refused_and_named(home: Path) -> None:
    opened = open_home(home, env={})
    try:
        opened.ledger.clock = FixedClock(datetime(2026, 3, 13, 9, 30, tzinfo=UTC))
        with pytest.raises(InputError, match="the ledger already holds an entry dated"):
            opened.ledger.append("note", {"text": "promoted on 13 March"})
    finally:
        opened.close()
    # the key holder writes it anyway, straight into the file, with a checkpoint
    signer = load_signer(next((home / "keys").glob("*.key")))
    entries = _entries(home)
    size = len(entries)
    late = sign_entry(
        Entry("note", "2026-03-13T09:30:00.000000Z", {}, {"text": "ok"}), signer
    )
    _rewrite(home, [*entries, late], keep_checkpoints_upto=size + 1)
    _sign_head(home, signer)
    report = verify(home)
    assert report["exit"] == 3
    assert errors(report) == [(size, "time")]
    assert "entry times may go back at most 5 minutes" in message(report, "time")


def test_an_entry_dated_in_the_future_is_a_warning(home: Path) -> None:
    """The key holder writes a run's record dated next year straight into the
    file (appends refuse it): queries for next year would find it, so verify says
    it is dated after the verifying machine's clock."""
    signer = load_signer(next((home / "keys").glob("*.key")))
    entries = _entries(home)
    ahead = format_time(datetime.now(UTC) + timedelta(days=365))
    late = sign_entry(Entry("note", ahead, {}, {"text": "from the future"}), signer)
    _rewrite(home, [*entries, late], keep_checkpoints_upto=len(entries))
    _sign_head(home, signer)
    report = verify(home)
    assert report["exit"] == 0
    [future] = [p for p in report["problems"] if p["code"] == "future"]
    assert (future["seq"], future["severity"]) == (len(entries), "warning")
    assert f"dated {ahead}, 364 days after this machine's clock" in future["message"]


def _sign_head(home: Path, signer) -> None:
    with _db(home) as conn:
        rows = conn.execute("SELECT record FROM records ORDER BY seq").fetchall()
        tree = CompactRange()
        for (data,) in rows:
            tree.append(compute_leaf_hash(bytes(data)))
        text = sign_checkpoint(Checkpoint(ORIGIN, tree.size, tree.root()), signer)
        conn.execute(
            "INSERT INTO checkpoints (size, note) VALUES (?, ?)",
            (tree.size, text.to_text()),
        )


def test_a_clock_a_year_ahead_does_not_brick_the_ledger(home: Path) -> None:
    ahead = datetime.now(UTC) + timedelta(days=365)
    opened = open_home(home, env={})
    try:
        opened.ledger.clock = FixedClock(ahead)
        opened.ledger.append("note", {"text": "written by gpu-07, clock a year ahead"})
    finally:
        opened.close()
    proc = mltrail(home, "append", "--kind", "note", "--body", '{"text": "today"}')
    assert proc.returncode == 2
    assert "mltrail clock reset" in proc.stderr
    assert "later (times may go back at most 5 minutes)" in proc.stderr
    status = mltrail(home, "clock", "status")
    assert status.returncode == 1
    assert "ahead of this clock" in status.stdout
    reset = mltrail(home, "clock", "reset", "--reason", "gpu-07 ran a year ahead")
    assert reset.returncode == 0, reset.stderr
    append(home, "today, after the reset")
    report = verify(home)
    assert report["exit"] == 0
    assert "gpu-07 ran a year ahead" in message(report, "clock-reset")
    assert "364 days" in message(report, "clock-reset") or "365 days" in message(
        report, "clock-reset"
    )


def test_back_dating_through_a_clock_reset_is_a_limit_always_reported(
    home: Path,
) -> None:
    """The limit, pinned: the log key's holder sets a clock a week back, records
    a clock reset (the ledger now looks a week ahead of that clock) and appends
    entries dated last week. Nothing can prove them back-dated (anchors bound
    times from above only); verify passes and always names the reset, with how
    far back it lets entries go."""
    opened = open_home(home, env={})
    try:
        opened.ledger.clock = FixedClock(datetime.now(UTC) - timedelta(days=7))
        reset = opened.ledger.reset_clock("the clock was a week ahead")
        opened.ledger.append("note", {"text": "dated last week"})
    finally:
        opened.close()
    report = verify(home)
    assert report["exit"] == 0
    [warned] = [p for p in report["problems"] if p["code"] == "clock-reset"]
    assert warned["seq"] == reset.seq
    assert re.search(
        r"entries from here on are dated up to [67] days before seq", warned["message"]
    )


def test_a_clock_reset_is_not_refused_for_a_time_spelled_without_microseconds(
    home: Path,
) -> None:
    """A time of the same second without a fraction (valid, written by another
    client) sorts after ``.500000Z`` as text: the store named it as the newest,
    the chain did not, and every reset was refused, so the ledger stayed bricked."""
    ahead = (datetime.now(UTC) + timedelta(days=365)).replace(microsecond=500000)
    signer = load_signer(next((home / "keys").glob("*.key")))
    same_second = ahead.strftime("%Y-%m-%dT%H:%M:%SZ")
    opened = open_home(home, env={})
    try:
        opened.ledger.clock = FixedClock(ahead)
        opened.ledger.append("note", {"text": "gpu-07, a year ahead"})
        late = Entry("note", same_second, {}, {"text": "the same second"})
        opened.ledger.append_entries([sign_entry(late, signer)])
    finally:
        opened.close()
    status = mltrail(home, "clock", "status")
    assert f"newest entry time: {format_time(ahead)}" in status.stdout
    reset = mltrail(home, "clock", "reset", "--reason", "gpu-07 ran a year ahead")
    assert reset.returncode == 0, reset.stderr
    append(home, "today, after the reset")
    assert verify(home)["exit"] == 0


@pytest.mark.parametrize("last_row_too", [False, True])
def test_a_newest_time_cache_set_ahead_does_not_brick_the_ledger(
    home: Path, last_row_too: bool
) -> None:
    """The newest time beside each checkpoint is a cache anyone who can write the
    file can change, without a key. Set a century ahead, it refused every append
    while `clock status` (which scans the records) saw nothing wrong and `clock
    reset` was refused for naming the real newest time: bricked, and verify
    passed. Appends refused by such a cache now read the records again."""
    with _db(home) as conn:
        conn.execute(
            "UPDATE checkpoints SET floor = '2099-01-01T00:00:00.000000Z' "
            "WHERE id = (SELECT max(id) FROM checkpoints)"
        )
        if last_row_too:  # the time column of the last row, read for the head
            conn.execute(
                "UPDATE records SET time = '2099-01-01T00:00:00.000000Z' "
                "WHERE seq = (SELECT max(seq) FROM records)"
            )
    edited = len(_entries(home)) - 1
    append(home, "after the cache was set ahead")
    append(home, "and the next one")
    report = verify(home)
    if not last_row_too:
        assert report["exit"] == 0
        return
    # the time column is a copy of what the signed bytes say: verify names it
    assert report["exit"] == 3
    assert errors(report) == [(edited, "column-differs")]


def test_an_append_refused_for_a_true_newest_time_is_still_refused(home: Path) -> None:
    opened = open_home(home, env={})
    try:
        opened.ledger.clock = FixedClock(datetime.now(UTC) - timedelta(days=1))
        with pytest.raises(InputError, match="the ledger already holds an entry"):
            opened.ledger.append("note", {"text": "a day behind"})
    finally:
        opened.close()


# -- checkpoint checks before it signs ---------------------------------------------------


def test_rolled_back_home_refuses_checkpoint_and_append(
    home: Path, tmp_path: Path
) -> None:
    old = tmp_path / "old.db"
    shutil.copy(home / "ledger.db", old)
    append(home, "after the copy")
    witness = (home / "witness" / "checkpoint").read_text()
    for suffix in ("-wal", "-shm"):
        Path(f"{home}/ledger.db{suffix}").unlink(missing_ok=True)
    shutil.copy(old, home / "ledger.db")
    for args in (["checkpoint"], ["append", "--kind", "note", "--body", "{}"]):
        proc = mltrail(home, *args)
        assert proc.returncode == 3, proc.stderr
        assert "rolled back" in proc.stderr
    assert (home / "witness" / "checkpoint").read_text() == witness
    report = verify(home)
    assert report["exit"] == 3
    assert "rolled back" in message(report, "truncated")


def test_forked_home_refuses_checkpoint(home: Path, tmp_path: Path) -> None:
    old = tmp_path / "old.db"
    shutil.copy(home / "ledger.db", old)
    append(home, "the real next record")
    witness = (home / "witness" / "checkpoint").read_text()
    shutil.copy(old, home / "ledger.db")
    (home / "witness" / "checkpoint").unlink()
    append(home, "a different next record")  # a fork of the same length
    (home / "witness" / "checkpoint").write_text(witness)
    proc = mltrail(home, "checkpoint")
    assert proc.returncode == 3
    assert "forked or rewritten" in proc.stderr
    assert (home / "witness" / "checkpoint").read_text() == witness


def test_swapped_key_file_signs_nothing(home: Path) -> None:
    [key_file] = (home / "keys").glob("*.key")
    good = key_file.read_bytes()
    witness = (home / "witness" / "checkpoint").read_text()
    key_file.write_bytes(_pem(ATTACKER))
    proc = mltrail(home, "append", "--kind", "note", "--body", '{"text": "x"}')
    assert proc.returncode == 2
    assert "which the ledger never added" in proc.stderr
    proc = mltrail(home, "checkpoint")
    assert proc.returncode == 0, proc.stderr  # the stored, checked checkpoint
    assert (home / "witness" / "checkpoint").read_text() == witness
    assert verify(home)["exit"] == 0
    key_file.write_bytes(good)


def test_a_changed_genesis_key_record_refuses_writes_in_words(home: Path) -> None:
    """With the first key record's public key changed, no key record verifies:
    a writer refuses and says so (it used to pass on an internal error about an
    empty list of keys), and verify names the record."""
    with _db(home) as conn:
        record = bytes(
            conn.execute("SELECT record FROM records WHERE seq = 0").fetchone()[0]
        )
        at = record.index(b'"public_key":"') + len(b'"public_key":"')
        changed = record[:at] + (b"B" if record[at : at + 1] == b"A" else b"A")
        conn.execute(
            "UPDATE records SET record = ? WHERE seq = 0",
            (changed + record[at + 1 :],),
        )
    proc = mltrail(home, "append", "--kind", "note", "--body", '{"text": "x"}')
    assert proc.returncode == 3, proc.stderr
    assert "no key record of this ledger verifies" in proc.stderr
    assert "sequence of 32-byte keys" not in proc.stderr
    report = verify(home)
    assert report["exit"] == 3
    assert 0 in {seq for seq, _ in errors(report)}


def _pem(signer) -> bytes:
    from cryptography.hazmat.primitives import serialization

    return signer.private_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )


def test_corrupted_merkle_node_refuses_writes_and_is_named(home: Path) -> None:
    size = len(_entries(home))
    level, index = frontier_positions(size)[-1]  # what appends build on
    last_leaf = ((index + 1) << level) - 1
    with _db(home) as conn:
        conn.execute(
            "UPDATE merkle_nodes SET hash = ? WHERE level = ? AND idx = ?",
            (bytes(32), level, index),
        )
    for args in (["checkpoint"], ["append", "--kind", "note", "--body", "{}"]):
        proc = mltrail(home, *args)
        assert proc.returncode == 3, proc.stderr
        assert "stored Merkle nodes do not give the root" in proc.stderr
    report = verify(home)
    assert report["exit"] == 3
    assert errors(report) == [(last_leaf, "merkle-node")]


def test_corrupted_inner_merkle_node_is_named(home: Path) -> None:
    with _db(home) as conn:
        conn.execute(
            "UPDATE merkle_nodes SET hash = ? WHERE level = 1 AND idx = 0", (bytes(32),)
        )
    report = verify(home)
    assert report["exit"] == 3
    assert errors(report) == [(1, "merkle-node")]
    assert "tree cache was altered" in message(report, "merkle-node")


# -- keys ---------------------------------------------------------------------------------


def test_rotation_destroys_the_revoked_key_and_history_stays_safe(
    home: Path, tmp_path: Path
) -> None:
    [old_file] = (home / "keys").glob("*.key")
    stolen = tmp_path / "stolen.key"
    shutil.copy(old_file, stolen)  # what an attacker copied before the rotation
    proc = mltrail(home, "keys", "rotate", "--reason", "scheduled")
    assert proc.returncode == 0, proc.stderr
    assert "overwritten and deleted" in proc.stderr
    assert not old_file.exists()
    assert len(list((home / "keys").glob("*.key"))) == 1
    rotation = len(_entries(home))
    append(home, "after the rotation")
    # rewrite history before the rotation with the stolen, revoked key
    old = load_signer(stolen)
    entries = _entries(home)
    forged = dataclass_replace_sig(entries[2], old, {"text": "note 2, rewritten"})
    _rewrite(home, [*entries[:2], forged, *entries[3:]], keep_checkpoints_upto=2)
    with _db(home) as conn:  # and re-sign every checkpoint the old key could sign
        tree = CompactRange()
        for (data,) in conn.execute("SELECT record FROM records ORDER BY seq"):
            tree.append(compute_leaf_hash(bytes(data)))
            if 2 < tree.size < rotation - 1:
                text = sign_checkpoint(Checkpoint(ORIGIN, tree.size, tree.root()), old)
                conn.execute(
                    "INSERT INTO checkpoints (size, note) VALUES (?, ?)",
                    (tree.size, text.to_text()),
                )
    report = verify(home)
    assert report["exit"] == 3
    # what the old key could not sign (the rotation and after) is not covered
    assert report["covered"] < rotation
    assert any(code == "uncovered" for _, code in errors(report))


def test_a_revoked_key_signing_a_record_dated_before_its_revocation_is_named(
    home: Path, tmp_path: Path
) -> None:
    """Key validity goes by seq (ADR 0003), never by the time an entry claims:
    a record signed by the revoked key and dated before the rotation is refused
    at append and named by verify at its seq."""
    [old_file] = (home / "keys").glob("*.key")
    old = load_signer(old_file)
    before = _entries(home)[1].time  # dated while the key was valid
    assert mltrail(home, "keys", "rotate", "--reason", "scheduled").returncode == 0
    new = load_signer(next((home / "keys").glob("*.key")))
    late = sign_entry(Entry("note", before, {}, {"text": "back-dated"}), old)
    opened = open_home(home, env={})
    try:
        with pytest.raises(MltrailError, match="after it was revoked at seq"):
            opened.ledger.append_entries([late])
    finally:
        opened.close()
    entries = _entries(home)
    _rewrite(home, [*entries, late], keep_checkpoints_upto=len(entries))
    _sign_head(home, new)
    report = verify(home)
    assert report["exit"] == 3
    assert (len(entries), "signer") in errors(report)


def dataclass_replace_sig(entry: Entry, signer, body: dict[str, Any]) -> Entry:
    unsigned = Entry(entry.kind, entry.time, entry.actor, body, run=entry.run)
    return sign_entry(unsigned, signer)


def _append_forged(home: Path, entries: list[Entry], checkpoint_signer) -> int:
    """Append ``entries`` as the store would, with a checkpoint signed by
    ``checkpoint_signer``, bypassing every check of the ledger; their first seq."""
    from mltrail.core.chain import seal_entries
    from mltrail.ledger.stored import KIND_ROLES, chain_head, new_batch
    from mltrail.storage.sqlite import SQLiteStore

    store = SQLiteStore(home / "ledger.db", roles=KIND_ROLES)
    try:
        first = store.head().size

        def batch(head):
            sealed = seal_entries(
                chain_head(head),
                entries,
                now=datetime.now(UTC),
                tolerance=timedelta(minutes=5),
            )
            tree = CompactRange(sealed.head.size, list(sealed.head.frontier))
            cp = Checkpoint(ORIGIN, sealed.head.size, tree.root())
            text = sign_checkpoint(cp, checkpoint_signer).to_text()
            return new_batch(sealed.with_checkpoint(text))

        store.append(batch)
    finally:
        store.close()
    return first


def _key_added(signer, public_key: bytes, key_id: str | None = None) -> Entry:
    from mltrail.core.signing import compute_key_id, encode_b64

    body = {
        "alg": "ed25519",
        "key": key_id or compute_key_id(public_key),
        "public_key": encode_b64(public_key),
    }
    return sign_entry(
        Entry("key.added", format_time(datetime.now(UTC)), {}, body), signer
    )


def _note(signer, text: str) -> Entry:
    entry = Entry("note", format_time(datetime.now(UTC)), {}, {"text": text})
    return sign_entry(entry, signer)


def test_a_revoked_key_cannot_add_a_key_of_its_own(home: Path, tmp_path: Path) -> None:
    """The leaked key, revoked by a rotation, signs a key.added for the
    attacker's key, which then signs a note and the checkpoint: the key record
    changes no key, so neither verify nor the next append takes the attacker's
    key for a key of the ledger."""
    key_id = mltrail(home, "keys", "export", "--format", "id").stdout.strip()
    [key_file] = (home / "keys").glob("*.key")
    stolen = tmp_path / "stolen.key"
    shutil.copy(key_file, stolen)
    assert mltrail(home, "keys", "rotate", "--reason", "leaked").returncode == 0
    leaked = load_signer(stolen)
    seq = _append_forged(
        home,
        [_key_added(leaked, ATTACKER.public_key), _note(ATTACKER, "by the attacker")],
        ATTACKER,
    )
    report = verify(home, "--trust-key", key_id)
    assert report["exit"] == 3
    found = errors(report)
    assert (seq, "signer") in found
    assert (seq, "key-signer") in found
    assert (seq + 1, "signer") in found  # the attacker's key was never added
    assert "it was not applied" in message(report, "key-signer")
    proc = mltrail(
        home, "append", "--kind", "note", "--body", json.dumps({"text": "next"})
    )
    assert proc.returncode == 3, proc.stderr
    assert "refusing to write" in proc.stderr
    assert ATTACKER.key_id not in mltrail(home, "keys", "list").stdout


def test_a_forged_signature_on_a_key_record_adds_no_key(home: Path) -> None:
    """Without any key: a key.added naming the ledger's own key as its signer,
    with the attacker's signature, then the attacker's note and checkpoint."""
    key_id = mltrail(home, "keys", "export", "--format", "id").stdout.strip()
    own = _key_added(ATTACKER, ATTACKER.public_key)
    assert own.sig is not None
    claimed = Entry(
        own.kind,
        own.time,
        own.actor,
        own.body,
        sig=Signature(key_id, own.sig.value),
    )
    seq = _append_forged(home, [claimed, _note(ATTACKER, "by the attacker")], ATTACKER)
    report = verify(home, "--trust-key", key_id)
    assert report["exit"] == 3
    assert (seq, "signature") in errors(report)
    assert (seq + 1, "signer") in errors(report)
    proc = mltrail(
        home, "append", "--kind", "note", "--body", json.dumps({"text": "next"})
    )
    assert proc.returncode == 3, proc.stderr
    assert "refusing to write" in proc.stderr
    assert ATTACKER.key_id not in mltrail(home, "keys", "list").stdout


def test_a_fork_by_a_leaked_key_is_named_as_a_limit_and_caught_by_a_checkpoint(
    home: Path, tmp_path: Path
) -> None:
    """The leaked key forks the ledger before its revocation and extends the
    fork: nothing in the fork shows the revocation, so the pinned key alone
    cannot tell; verify says so, and a checkpoint kept since the rotation
    catches the fork."""
    key_id = mltrail(home, "keys", "export", "--format", "id").stdout.strip()
    [key_file] = (home / "keys").glob("*.key")
    leaked = load_signer(key_file)
    fork = tmp_path / "fork"
    shutil.copytree(home, fork)
    assert mltrail(home, "keys", "rotate", "--reason", "leaked").returncode == 0
    kept = tmp_path / "kept.cp"
    kept.write_text(mltrail(home, "checkpoint").stdout)
    _append_forged(fork, [_note(leaked, "a history that never happened")], leaked)
    alone = verify(fork, "--trust-key", key_id)
    assert alone["exit"] == 0  # the limit: a fork without the revocation
    warning = message(alone, "anchors")
    assert "not that this is the ledger's newest state" in warning
    assert "fork it before the revocation" in warning
    anchored = verify(fork, "--trust-key", key_id, "--trust-checkpoint", str(kept))
    assert anchored["exit"] == 3
    assert not [p for p in anchored["problems"] if p["code"] == "anchors"]
    genuine = verify(home, "--trust-key", key_id, "--trust-checkpoint", str(kept))
    assert genuine["exit"] == 0, genuine["problems"]
    assert not [p for p in genuine["problems"] if p["code"] == "anchors"]


SMALL_ORDER_KEYS = {"identity": bytes([1]) + bytes(31), "all zeros": bytes(32)}


@pytest.mark.parametrize("weak", SMALL_ORDER_KEYS.values(), ids=SMALL_ORDER_KEYS.keys())
def test_a_small_order_public_key_is_never_added(home: Path, weak: bytes) -> None:
    key_id = mltrail(home, "keys", "export", "--format", "id").stdout.strip()
    [key_file] = (home / "keys").glob("*.key")
    genuine = load_signer(key_file)
    # the holder of the genuine key writes it (the API adds only keys it holds
    # the private key of, or that sign a proof: never a small-order one)
    seq = _append_forged(home, [_key_added(genuine, weak)], genuine)
    report = verify(home, "--trust-key", key_id)
    assert report["exit"] == 3
    assert errors(report) == [(seq, "key")]
    assert "not a valid Ed25519 key" in message(report, "key")


# -- trust anchors ---------------------------------------------------------------------


def test_replaced_ledger_passes_alone_and_fails_against_the_pinned_key(
    home: Path, tmp_path: Path
) -> None:
    vkey = mltrail(home, "keys", "export", "--format", "vkey").stdout.strip()
    # the attacker builds a whole new ledger under their own key, same origin ...
    forged = tmp_path / "forged"
    proc = mltrail(forged, "init", "--origin", ORIGIN)
    assert proc.returncode == 0, proc.stderr
    for i in range(8):
        append(forged, f"a history that never happened {i}")
    # ... and puts it in place of the real one, ledger.json and witness included
    shutil.rmtree(home)
    shutil.copytree(forged, home)
    alone = verify(home)
    assert alone["exit"] == 0  # nothing inside the home says otherwise
    assert "every trust anchor used lies inside the ledger home" in message(
        alone, "anchors"
    )
    pinned = verify(home, "--trust-key", vkey)
    assert pinned["exit"] == 3
    assert errors(pinned) == [(0, "genesis")]
    assert "not the ledger you trust" in message(pinned, "genesis")


def test_pinned_key_survives_rotation(home: Path) -> None:
    key_id = mltrail(home, "keys", "export", "--format", "id").stdout.strip()
    assert mltrail(home, "keys", "rotate").returncode == 0
    append(home, "signed by the new key")
    report = verify(home, "--trust-key", key_id)
    assert report["exit"] == 0, report["problems"]
    assert report["anchors"][0]["external"] is True


def test_witness_problems_are_never_silent(home: Path, tmp_path: Path) -> None:
    nowhere = {"MLTRAIL_WITNESS": str(tmp_path / "no" / "such" / "witness")}
    report = verify(home, env=nowhere)
    assert report["exit"] == 0
    assert "MLTRAIL_WITNESS points to" in message(report, "witness")
    other = tmp_path / "other"
    assert mltrail(other, "init", "--origin", "example.org/another").returncode == 0
    foreign = {"MLTRAIL_WITNESS": str(other / "witness" / "checkpoint")}
    report = verify(home, env=foreign)
    assert report["exit"] == 3
    assert "is a checkpoint of another ledger ('example.org/another'" in message(
        report, "foreign-checkpoint"
    )
    proc = mltrail(home, "append", "--kind", "note", "--body", "{}", env=foreign)
    assert proc.returncode == 3
    assert "refusing to use or overwrite it" in proc.stderr


def test_trusted_checkpoint_of_another_ledger_is_an_error(
    home: Path, tmp_path: Path
) -> None:
    other = tmp_path / "other"
    assert mltrail(other, "init", "--origin", "example.org/another").returncode == 0
    saved = tmp_path / "other.cp"
    saved.write_text(mltrail(other, "checkpoint").stdout)
    report = verify(home, "--trust-checkpoint", str(saved))
    assert report["exit"] == 3
    assert "another ledger" in message(report, "foreign-checkpoint")
    proc = mltrail(
        home,
        "verify",
        "--trust-key",
        mltrail(other, "keys", "export", "--format", "vkey").stdout.strip(),
    )
    assert proc.returncode == 2
    assert "is a verifier key of the ledger 'example.org/another'" in proc.stderr


def test_checkpoint_output_is_a_valid_trusted_checkpoint(
    home: Path, tmp_path: Path
) -> None:
    saved = tmp_path / "cp"
    saved.write_text(mltrail(home, "checkpoint").stdout)
    assert parse_signed_checkpoint(saved.read_text()).checkpoint.size == len(
        _entries(home)
    )
    append(home, "later")
    report = verify(home, "--trust-checkpoint", str(saved))
    assert report["exit"] == 0
    assert [a["external"] for a in report["anchors"]] == [False, True, False]


def test_future_format_record_is_read_verified_and_never_written(home: Path) -> None:
    signer = load_signer(next((home / "keys").glob("*.key")))
    entries = _entries(home)
    size = len(entries)
    newer = sign_entry(
        Entry(
            "model.card",
            format_time(datetime.now(UTC)),
            {"user": "future"},
            {"anything": [1, 2]},
            v="mltrail/2",
        ),
        signer,
    )
    _rewrite(home, [*entries, newer], keep_checkpoints_upto=size)
    _sign_head(home, signer)
    report = verify(home)
    assert report["exit"] == 0, report["problems"]
    assert "written by a newer mltrail" in message(report, "newer-format")
    log = mltrail(home, "log", "--json")
    assert log.returncode == 0, log.stderr
    assert json.loads(log.stdout)[-1]["entry"]["v"] == "mltrail/2"
    assert mltrail(home, "show", str(size)).returncode == 0
    proc = mltrail(home, "append", "--kind", "note", "--body", '{"text": "x"}')
    assert proc.returncode == 2
    assert "written by a newer mltrail (format mltrail/2)" in proc.stderr


def test_a_witness_that_cannot_be_written(home: Path, tmp_path: Path) -> None:
    nowhere = {"MLTRAIL_WITNESS": "/proc/no-such-folder/witness.cp"}
    fresh = tmp_path / "fresh"
    proc = mltrail(fresh, "init", env=nowhere)
    assert proc.returncode == 2
    assert "cannot write the witness /proc/no-such-folder/witness.cp" in proc.stderr
    assert not fresh.exists()  # refused before anything was created
    size = len(_entries(home))
    proc = mltrail(
        home, "append", "--kind", "note", "--body", '{"text": "x"}', env=nowhere
    )
    assert proc.returncode == 0, proc.stderr  # the record is in, and covered
    assert "warning: cannot write the witness" in proc.stderr
    assert len(_entries(home)) == size + 1
    proc = mltrail(home, "checkpoint", env=nowhere)  # its whole job: an error
    assert proc.returncode == 2
    assert "error: cannot write the witness" in proc.stderr


# -- a ledger from mltrail 0.1 ---------------------------------------------------------


def test_adopting_the_uncovered_tail_of_an_old_ledger(home: Path) -> None:
    """mltrail 0.1 signed checkpoints only at a run's end and on demand: a ledger it
    wrote may end in records no checkpoint covers. Nothing is written on top of
    them until the owner adopts them, after a full verification."""
    size = len(_entries(home))
    with _db(home) as conn:  # as 0.1 left it: the last run uncovered
        conn.execute("DELETE FROM checkpoints WHERE size > ?", (size - 2,))
    (home / "witness" / "checkpoint").unlink()
    covered = max(_batch_ends(home))
    assert covered < size
    report = verify(home)
    assert report["exit"] == 3
    assert errors(report) == [(covered, "uncovered")]
    assert "mltrail checkpoint --adopt" in message(report, "uncovered")
    note = ["append", "--kind", "note", "--body", '{"text": "x"}']
    for args in (note, ["checkpoint"]):
        proc = mltrail(home, *args)
        assert proc.returncode == 3, proc.stderr
        assert "hint: run `mltrail verify`; if the records are genuine" in proc.stderr
    proc = mltrail(home, "checkpoint", "--adopt")
    assert proc.returncode == 0, proc.stderr
    assert parse_signed_checkpoint(proc.stdout).checkpoint.size == size
    assert verify(home)["exit"] == 0
    append(home, "writing again")


def test_adopt_refuses_a_ledger_with_anything_else_wrong(home: Path) -> None:
    entries = _entries(home)
    forged = dataclass_replace_sig(entries[3], ATTACKER, {"text": "forged"})
    _rewrite(home, [*entries[:3], forged, *entries[4:]], keep_checkpoints_upto=3)
    proc = mltrail(home, "checkpoint", "--adopt")
    assert proc.returncode == 3
    assert "refusing to adopt uncovered records: TAMPERED" in proc.stderr
    assert "which the ledger never added" in proc.stderr


# -- the time floor kept with each checkpoint ---------------------------------------------


def test_an_older_file_gains_the_floor_column_on_its_first_write(home: Path) -> None:
    with _db(home) as conn:  # as files written before the column existed
        conn.execute("ALTER TABLE checkpoints DROP COLUMN floor")
    append(home, "first write with the column back")
    with _db(home) as conn:
        columns = {c[1] for c in conn.execute("PRAGMA table_info(checkpoints)")}
        newest = conn.execute(
            "SELECT floor FROM checkpoints ORDER BY id DESC LIMIT 1"
        ).fetchone()[0]
    assert "floor" in columns
    assert newest == _entries(home)[-1].time
    assert verify(home)["exit"] == 0


def test_a_poisoned_floor_cache_is_caught_by_verify(home: Path) -> None:
    """The floor in a checkpoint row only spares appends a scan: an attacker who
    lowers it lets a back-dated append through, and verify still names it."""
    with _db(home) as conn:
        conn.execute(
            "UPDATE checkpoints SET floor = '2000-01-01T00:00:00.000000Z' "
            "WHERE id = (SELECT max(id) FROM checkpoints)"
        )
    size = len(_entries(home))
    opened = open_home(home, env={})
    try:
        opened.ledger.clock = FixedClock(datetime.now(UTC) - timedelta(days=21))
        opened.ledger.append("note", {"text": "dated three weeks back"})
    finally:
        opened.close()
    report = verify(home)
    assert report["exit"] == 3
    assert errors(report) == [(size, "time")]


def test_a_run_pushed_with_an_earlier_date_is_shown_as_pushed(home: Path) -> None:
    """A push window (ADR 0031) lets entries keep times days before the
    ledger's newest one: a run recorded 'last week' appears in last week's runs,
    with no problem in verify. That is what a push is; the listing now says
    when this ledger received it, so the date is read as the claim it is."""
    signer = load_signer(next((home / "keys").glob("*.key")))
    now = datetime.now(UTC)
    week_ago = now - timedelta(days=7)
    run = "00000000-1111-2222-3333-444444444444"

    def entry(kind: str, when: datetime, body: dict[str, Any]) -> Entry:
        actor = {"user": "mallory", "host": "laptop"}
        return sign_entry(Entry(kind, format_time(when), actor, body, run=run), signer)

    laptop = "example.org/laptop"
    header = dataclass_replace_sig(
        Entry("ledger.pushed", format_time(now), {}, {}),
        signer,
        {"origin": laptop, "key": signer.key_id, "count": 2, "from": 1, "to": 3,
         "checkpoint": CheckpointSigner(laptop, signer).sign(3, bytes(32))},
    )  # fmt: skip
    pushed = [
        entry("run.started", week_ago, {"source": "api", "name": "late"}),
        entry("run.ended", week_ago + timedelta(minutes=1), {"status": "succeeded"}),
    ]
    opened = open_home(home, env={})
    try:
        [head, *_] = opened.ledger.append_entries([header, *pushed])
    finally:
        opened.close()
    assert verify(home)["exit"] == 0
    proc = mltrail(home, "runs", "--week", week_ago.strftime("%G-W%V"), "--json")
    [listed] = json.loads(proc.stdout)
    assert listed["started"] == format_time(week_ago)
    assert listed["pushed"] == {"seq": head.seq, "time": header.time, "origin": laptop}
    table = mltrail(home, "runs", "--week", week_ago.strftime("%G-W%V")).stdout
    assert f"(pushed {header.time[:16].replace('T', ' ')})" in table
    mine = json.loads(mltrail(home, "runs", "--name", "train", "--json").stdout)
    assert mine[0]["pushed"] is None


def test_prove_refuses_a_checkpoint_no_key_of_the_ledger_signed(home: Path) -> None:
    """Without the key, the attacker appends a note of their own, the Merkle
    nodes for it and a checkpoint signed by a key of theirs: `prove` printed an
    inclusion proof of the note "in the signed tree", checked only against the
    root of that checkpoint."""
    seq = _append_forged(home, [_note(ATTACKER, "model approved")], ATTACKER)
    for args in (("prove", str(seq), "--json"), ("prove", str(seq))):
        proc = mltrail(home, *args)
        assert proc.returncode == 3, proc.stdout
        assert "not signed by a key of this ledger" in proc.stderr
    proc = mltrail(home, "prove", "1", "--json")  # proven against the same head
    assert proc.returncode == 3
    assert verify(home)["exit"] == 3
