"""Attacks on the columns a store derives from each record's signed bytes.

SQLite keeps ``records(seq, hash, kind, run, time, record)``: kind, run and time
are copies of what the signed bytes say, read without the bytes by the key
ring, the lock check, the clock commands and reads by run. The attacker here
can write ``ledger.db`` (dropping its triggers) but holds no key; the auditor
holds a copy and the public key. Each test builds a real home with the public
API, edits one column with sqlite3 and checks what verify, appends and
``mltrail clock status`` make of it (ADR 0011, amendment of 2026-12-07).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mltrail.core.codec import decode_record
from mltrail.errors import ConfigError, IntegrityError
from mltrail.ledger.home import Home, init_home, open_home
from mltrail.ledger.ledger import Ledger
from mltrail.testing import FixedClock, fixed_signer

ORIGIN = "example.org/columns"
FAR = "2099-01-01T00:00:00.000000Z"


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home: genesis, three notes, a run's records."""
    path = tmp_path / "home"
    init_home(path, origin=ORIGIN, env={})
    opened = open_home(path, env={})
    try:
        for i in range(3):
            opened.ledger.append("note", {"text": f"note {i}"})
        opened.ledger.append("note", {"text": "of a run"}, run="run-a")
    finally:
        opened.close()
    return path


@pytest.fixture
def opened(home: Path) -> Iterator[Home]:
    found = open_home(home, env={})
    yield found
    found.close()


def _db(home: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(home / "ledger.db", isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'"):
        conn.execute(f'DROP TRIGGER "{name}"')
    return conn


def _set(home: Path, seq: int, column: str, value: str | None) -> None:
    conn = _db(home)
    try:
        conn.execute(f"UPDATE records SET {column} = ? WHERE seq = ?", (value, seq))
    finally:
        conn.close()


def _seq_of(home: Path, kind: str) -> int:
    conn = sqlite3.connect(home / "ledger.db")
    try:
        rows = conn.execute("SELECT seq, record FROM records ORDER BY seq").fetchall()
    finally:
        conn.close()
    return max(s for s, r in rows if decode_record(bytes(r)).record.entry.kind == kind)


def _column_problems(home: Path) -> list[tuple[int | None, str]]:
    opened = open_home(home, writable=False, env={})
    try:
        report = opened.ledger.verify()
    finally:
        opened.close()
    return [(p.seq, p.message) for p in report.problems if p.code == "column-differs"]


def mltrail(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "MLTRAIL_HOME": str(home)}
    for name in ("MLTRAIL_RUN_ID", "MLTRAIL_KEY_PASSWORD", "MLTRAIL_WITNESS"):
        environment.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        capture_output=True,
        text=True,
        env=environment,
        timeout=120,
        check=False,
    )


# -- verify names every edited column ------------------------------------------


@pytest.mark.parametrize(
    ("column", "value"),
    [
        ("kind", "key.revoked"),
        ("kind", "clock.reset"),
        ("run", "run-b"),
        ("run", None),
        ("time", FAR),
        ("time", "2001-01-01T00:00:00.000000Z"),
    ],
)
def test_verify_names_a_column_that_differs_from_the_signed_bytes(
    home: Path, column: str, value: str | None
) -> None:
    """Before: verify passed, though reads by kind, run or time (the key
    ring, the clock floor, `runs`) trusted the edited column."""
    seq = 4 if column == "run" else 2
    _set(home, seq, column, value)
    [(found, text)] = _column_problems(home)
    assert found == seq
    assert f"the store's {column} column says {value!r}" in text
    proc = mltrail(home, "verify", "--json")
    assert proc.returncode == 3, proc.stderr
    codes = {(p["seq"], p["code"]) for p in json.loads(proc.stdout)["problems"]}
    assert (seq, "column-differs") in codes


def test_an_intact_home_has_no_column_problem(home: Path) -> None:
    assert _column_problems(home) == []


def test_verify_names_a_column_on_many_workers(home: Path) -> None:
    """The comparison runs where the record is decoded: in the workers too."""
    _set(home, 3, "kind", "key.added")
    opened = open_home(home, writable=False, env={})
    try:
        report = opened.ledger.verify(workers=2)
    finally:
        opened.close()
    assert [p.seq for p in report.problems if p.code == "column-differs"] == [3]


def test_a_hidden_key_record_is_named_and_nothing_else(home: Path) -> None:
    """The genesis key.added relabelled a note: verify learned public keys from
    the rows listed as key records, so every checkpoint that key signed was
    also reported unsigned. The walk learns the key from the bytes and walks
    again knowing it: the one lie is the one problem."""
    _set(home, 0, "kind", "note")
    opened = open_home(home, writable=False, env={})
    try:
        report = opened.ledger.verify()
    finally:
        opened.close()
    assert [(p.seq, p.code) for p in report.errors] == [(0, "column-differs")]


# -- the writer's key ring -------------------------------------------------------


def _append(home: Path, kind: str, body: dict[str, Any], run: str | None) -> None:
    opened = open_home(home, env={})
    try:
        opened.ledger.append(kind, body, run=run)
    finally:
        opened.close()


def _append_refused(home: Path, match: str, run: str | None = None) -> None:
    """Opening the home to write (which checks its head with the key ring) or
    appending is refused."""
    kind, body = (
        ("run.ended", {"status": "succeeded"}) if run else ("note", {"text": "x"})
    )
    with pytest.raises(IntegrityError, match=match):
        _append(home, kind, body, run)


def test_a_note_listed_as_a_key_record_refuses_the_write(home: Path) -> None:
    """A row the kind column lists as a key record must be one by its bytes:
    before, the writer took the note's seq as its key epoch and went on."""
    _set(home, 2, "kind", "key.revoked")
    _append_refused(home, "refusing to write: the store lists seq 2 as a key")


def test_a_hidden_revocation_does_not_let_the_revoked_key_write(
    home: Path, tmp_path: Path
) -> None:
    """A key.revoked row relabelled "note" is not returned by a read of the key
    kinds, so a writer holding the revoked key finds it valid in its key ring
    (finding the row needs every record read: a full scan per writer, see ADR
    0011). Before, it then wrote; now the writer's check that its own key signed
    the newest checkpoint stops it: the rotation's checkpoint is the new key's
    (ADR 0011 amendment). Verify names the edited row."""
    opened = open_home(home, env={})
    try:
        old = opened.ledger.signer
        assert old is not None
        new = fixed_signer("columns-new-key")
        opened.ledger.rotate_key(new, reason="rotation")
        store = opened.ledger.store
        refused = Ledger(store, old, origin=ORIGIN)
        with pytest.raises(ConfigError, match="revoked"):
            refused.append("note", {"text": "with the revoked key"})
        revoked = _seq_of(home, "key.revoked")
        _set(home, revoked, "kind", "note")
        fooled = Ledger(store, old, origin=ORIGIN)
        with pytest.raises(IntegrityError, match="not signed by this writer's key"):
            fooled.append("note", {"text": "with the revoked key, revocation hidden"})
    finally:
        opened.close()
    report = open_home(home, writable=False, env={})
    try:
        problems = report.ledger.verify().problems
    finally:
        report.close()
    codes = {(p.seq, p.code) for p in problems}
    assert (revoked, "column-differs") in codes


# -- locks -------------------------------------------------------------------------


def test_a_note_listed_as_a_seal_refuses_the_write(home: Path) -> None:
    """Before: a note listed as a seal locked nothing (its body names no
    model) and the append went on; the lock check now reads its bytes."""
    _set(home, 2, "kind", "model.sealed")
    _append_refused(home, r"as a model\.sealed record", run="run-a")


# -- time: the floor, clock status, clock reset -------------------------------------


def _status(home: Path) -> dict[str, Any]:
    proc = mltrail(home, "clock", "status", "--json")
    assert proc.returncode in (0, 1), proc.stderr
    found = json.loads(proc.stdout)
    assert found["can_append"] == (proc.returncode == 0)
    return found


def _newest(home: Path) -> str:
    opened = open_home(home, writable=False, env={})
    try:
        return max(r.entry.time for r in opened.ledger.records())
    finally:
        opened.close()


def test_clock_status_reports_the_floor_an_append_uses(home: Path) -> None:
    """A time column set a century ahead: appends read the newest time beside
    the newest checkpoint and go on, while `clock status` (which read the
    columns) said appends were refused and named the forged time."""
    _set(home, 2, "time", FAR)
    status = _status(home)
    assert status["can_append"] is True
    assert status["newest_time"] == _newest(home)
    proc = mltrail(
        home, "append", "--kind", "note", "--body", json.dumps({"text": "goes on"})
    )
    assert proc.returncode == 0, proc.stderr


def test_clock_status_and_append_agree_without_the_floor_cache(home: Path) -> None:
    """With the newest checkpoint's floor cleared too, an append reads the
    columns, is refused, and reads the signed records again; status says what
    that append decides."""
    _set(home, 2, "time", FAR)
    conn = _db(home)
    try:
        conn.execute("UPDATE checkpoints SET floor = NULL")
    finally:
        conn.close()
    status = _status(home)
    assert status["can_append"] is True
    assert status["newest_time"] == _newest(home)
    proc = mltrail(
        home, "append", "--kind", "note", "--body", json.dumps({"text": "goes on"})
    )
    assert proc.returncode == 0, proc.stderr


def test_clock_status_says_refused_when_an_append_is(home: Path) -> None:
    opened = open_home(home, env={})
    try:
        opened.ledger.clock = FixedClock(datetime.now(UTC) + timedelta(days=365))
        opened.ledger.append("note", {"text": "a year ahead"})
    finally:
        opened.close()
    _set(home, 2, "time", "2001-01-01T00:00:00.000000Z")  # no help to anyone
    status = _status(home)
    assert status["can_append"] is False
    proc = mltrail(home, "append", "--kind", "note", "--body", '{"text": "x"}')
    assert proc.returncode != 0
    reset = mltrail(home, "clock", "reset", "--reason", "a year ahead")
    assert reset.returncode == 0, reset.stderr
    assert _status(home)["can_append"] is True


def test_a_note_listed_as_a_clock_reset_is_refused_by_the_clock_commands(
    home: Path,
) -> None:
    """A row listed as a clock reset restarts the floor the store computes:
    the clock commands check it against its bytes (before, they named a floor
    from the rows after it)."""
    _set(home, 3, "kind", "clock.reset")
    opened = open_home(home, env={}, writable=False)
    try:
        with pytest.raises(IntegrityError, match=r"as a clock\.reset record"):
            opened.ledger.time_floor()
    finally:
        opened.close()


def test_a_forged_newest_time_is_refused_by_time_floor(home: Path) -> None:
    _set(home, 2, "time", FAR)
    opened = open_home(home, env={}, writable=False)
    try:
        with pytest.raises(IntegrityError, match=f"gives '{FAR}' as the newest time"):
            opened.ledger.time_floor()
    finally:
        opened.close()


def test_a_hidden_clock_reset_refuses_the_recorded_floor_read(home: Path) -> None:
    """An append refused for the floor reads the records since the last reset
    again: a note listed as a reset is refused there, not skipped."""
    opened = open_home(home, env={})
    try:
        opened.ledger.clock = FixedClock(datetime.now(UTC) + timedelta(days=365))
        opened.ledger.append("note", {"text": "a year ahead"})
    finally:
        opened.close()
    _set(home, 1, "kind", "clock.reset")
    conn = _db(home)
    try:
        conn.execute(f"UPDATE checkpoints SET floor = '{FAR}'")
    finally:
        conn.close()
    opened = open_home(home, env={})
    try:
        with pytest.raises(IntegrityError, match=r"as a clock\.reset record"):
            opened.ledger.append("note", {"text": "today"})
    finally:
        opened.close()


# -- the server's run owners (PostgreSQL) ------------------------------------------


def _sealed(entries: list[Any]):
    from mltrail.core.chain import seal_entries
    from mltrail.ledger.stored import chain_head, new_batch

    def prepare(head: Any) -> Any:
        now = datetime.now(UTC) + timedelta(days=1)
        return new_batch(seal_entries(chain_head(head), entries, now=now))

    return prepare


@pytest.mark.parametrize("column", ["run", "kind"])
def test_a_run_owner_read_from_edited_columns_refuses_the_write(column: str) -> None:
    """The server lets a writer add to a run only when the run is its own,
    looked up by the run and kind columns. Before, a row of mallory's run
    relabelled as run R's first record made R mallory's."""
    from optional_extras import require_extra

    require_extra("server", "psycopg")
    from mltrail.core.codec import format_time
    from mltrail.core.entry import Entry, sign_entry
    from mltrail.server.ledgers import ServerStore
    from postgres_db import throwaway_database, throwaway_schema

    signer = fixed_signer("run-owner-columns")

    def entry(user: str, kind: str, body: dict[str, Any], run: str) -> Entry:
        time = format_time(datetime.now(UTC))
        return sign_entry(Entry(kind, time, {"user": user}, body, run=run), signer)

    with throwaway_database() as database, throwaway_schema(database) as url:
        store = ServerStore(url, create=True)
        try:
            store.append(
                _sealed(
                    [
                        entry("alice", "run.started", {"source": "api"}, "run-r"),
                        entry("mallory", "run.started", {"source": "api"}, "run-m"),
                    ]
                )
            )
            assert store.run_owner("run-r") == ("alice", True)
            conn = store._conn
            conn.execute("ALTER TABLE records DISABLE TRIGGER USER")
            if column == "run":  # alice's start hidden, mallory's given to run-r
                conn.execute("UPDATE records SET run = 'run-x' WHERE seq = 0")
                conn.execute("UPDATE records SET run = 'run-r' WHERE seq = 1")
            else:  # alice's start relabelled a note: mallory's is read as run-r's
                conn.execute("UPDATE records SET run = 'run-r' WHERE seq = 1")
                conn.execute("UPDATE records SET kind = 'note' WHERE seq = 0")
            conn.execute("ALTER TABLE records ENABLE TRIGGER USER")
            with pytest.raises(IntegrityError, match="refusing to write"):
                store.run_owner("run-r")
            with pytest.raises(IntegrityError, match="refusing to write"):
                store.run_starter("run-r")
        finally:
            store.close()


# -- run ids and pushes ---------------------------------------------------------------


def test_a_note_listed_as_a_run_start_refuses_a_new_run_id(home: Path) -> None:
    """Before: a note of run-a relabelled `run.started` made the run id taken
    ("already names the run started at seq 4"), a false refusal."""
    from mltrail.record.recorder import check_new_run_id

    _set(home, 4, "kind", "run.started")
    opened = open_home(home, env={})
    try:
        with pytest.raises(IntegrityError, match=r"as a run\.started record"):
            check_new_run_id(opened.ledger, "run-a", "test")
    finally:
        opened.close()


def test_a_note_listed_as_a_push_header_refuses_the_push() -> None:
    """Where a push resumes is read from the server's `ledger.pushed` records.
    Before, a note carrying a header's fields, relabelled by whoever can write
    the server's store, made push skip every record up to its ``to``."""
    from mltrail.ledger.push import _last_header
    from mltrail.testing import MemoryStore

    store = MemoryStore()
    ledger = Ledger.create(
        store, fixed_signer("push-columns"), origin=ORIGIN, actor={"user": "pia"}
    )
    user = "pia"  # the note's author, as a push by pia would read it
    header = {"text": "x", "origin": "example.org/laptop", "key": "k", "to": 99}
    ledger.append("note", header)
    assert _last_header(store, "example.org/laptop", "k", user) is None
    row, time, _, run = store._records[1]
    store._records[1] = (row, time, "ledger.pushed", run)
    with pytest.raises(IntegrityError, match=r"as a ledger\.pushed record"):
        _last_header(store, "example.org/laptop", "k", user)


def test_an_edited_hash_column_of_the_last_row_refuses_the_write(home: Path) -> None:
    """The next record's prev is read from the last row's hash column. Before,
    the writer signed a record chained to the edited value (a `prev` error at
    the new seq, written by the ledger key itself)."""
    last = len(list(_seqs(home))) - 1
    conn = _db(home)
    try:
        conn.execute("UPDATE records SET hash = ? WHERE seq = ?", (bytes(32), last))
    finally:
        conn.close()
    _append_refused(home, f"the store's hash column of seq {last} is not the hash")


def _seqs(home: Path) -> Iterator[int]:
    conn = sqlite3.connect(home / "ledger.db")
    try:
        yield from (s for (s,) in conn.execute("SELECT seq FROM records ORDER BY seq"))
    finally:
        conn.close()


# -- the seal check's resumed walk ---------------------------------------------


def test_a_seal_walk_resumed_after_a_gap_finds_keys_by_their_bytes(home, tmp_path):
    """After a missing segment the seal check resumes its walk from the live
    ledger, and learns the keys from it: by the records' signed bytes, not the
    kind column. Before, relabelling the rotation's ``key.added`` row made every
    later sealed segment (signed by the new key) ``seal-invalid``."""
    import shutil

    from mltrail.evidence.seals import check_against_seals, seal_ledger
    from mltrail.ledger.rotation import rotate_home_key
    from mltrail.storage.worm import open_worm

    worm_path = tmp_path / "worm"
    for step in ("seal", "rotate", "seal", "notes", "seal"):
        opened = open_home(home, env={})
        try:
            if step == "seal":
                seal_ledger(opened, open_worm(str(worm_path)), None)
            elif step == "rotate":
                rotate_home_key(opened, reason="scheduled")
            else:
                opened.ledger.append("note", {"text": "by the new key"})
        finally:
            opened.close()
    segments = sorted((worm_path / "segments").iterdir())
    assert len(segments) == 3
    shutil.rmtree(segments[1])  # the segment holding the rotation: a gap
    _set(home, _seq_of(home, "key.added"), "kind", "note")

    opened = open_home(home, writable=False, env={})
    try:
        check = check_against_seals(opened, open_worm(str(worm_path)))
    finally:
        opened.close()
    found = {p.code for p in check.problems}
    assert "seal-missing" in found
    assert "seal-invalid" not in found, [p.message for p in check.problems]
    assert check.segments == 2
