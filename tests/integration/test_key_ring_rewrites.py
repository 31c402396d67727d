"""A running writer's key ring when the store's key rows are rewritten under it.

The writer brings its ring up to date from the key rows after the newest one
it applied, its anchor (ADR 0025 amendment of 2026-12-08). The attacker here
can write ``ledger.db`` (dropping its triggers) but holds no key, and edits it
while a writer holds it open; a second writer of the home appends meanwhile.
Where the store no longer lists the anchor as it was read (relabelled, its
bytes changed) the writer reads and checks every key row again, so it decides
what a new writer decides: here, that bob's key was never (validly) added.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from mltrail.core.codec import decode_record, format_time
from mltrail.core.entry import Entry, sign_entry
from mltrail.core.keyring import make_key_proof
from mltrail.errors import ConfigError, IntegrityError
from mltrail.ledger.home import Home, init_home, open_home
from mltrail.ledger.ledger import Ledger
from mltrail.testing import MemoryStore, fixed_signer

ORIGIN = "example.org/ring-rewrites"
BOB = fixed_signer("rewrites-bob")
CAROL = fixed_signer("rewrites-carol")
DAVE = fixed_signer("rewrites-dave")


def _register(ledger: Ledger, signer: Any, identity: str) -> int:
    proof = make_key_proof(signer, ORIGIN, identity)
    return ledger.register_key(signer.public_key, identity, proof).seq


@pytest.fixture
def home(tmp_path: Path) -> Path:
    """A home: genesis, two notes, bob's author key, a note."""
    path = tmp_path / "home"
    init_home(path, origin=ORIGIN, env={})
    opened = open_home(path, env={})
    try:
        for i in range(2):
            opened.ledger.append("note", {"text": f"note {i}"})
        _register(opened.ledger, BOB, "bob")
        opened.ledger.append("note", {"text": "after bob"})
    finally:
        opened.close()
    return path


@pytest.fixture
def writer(home: Path) -> Iterator[Home]:
    """The running writer, its key ring read (its anchor: bob's key.added)."""
    opened = open_home(home, env={})
    assert BOB.key_id in opened.ledger.keys().keys
    yield opened
    opened.close()


def _db(home: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(home / "ledger.db", isolation_level=None)
    for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'"):
        conn.execute(f'DROP TRIGGER "{name}"')
    return conn


def _edit(home: Path, sql: str, *args: Any) -> None:
    conn = _db(home)
    try:
        conn.execute(sql, args)
    finally:
        conn.close()


def _seq_of_bobs_key(home: Path) -> int:
    conn = sqlite3.connect(home / "ledger.db")
    try:
        rows = conn.execute("SELECT seq, record FROM records ORDER BY seq").fetchall()
    finally:
        conn.close()
    for seq, data in rows:
        entry = decode_record(bytes(data)).record.entry
        if entry.kind == "key.added" and entry.body.get("key") == BOB.key_id:
            return int(seq)
    raise AssertionError("bob's key.added is not stored")


def _by_another_writer(home: Path, *, key: Any = None) -> None:
    """Another writer of the home appends: a note, or ``key``'s registration."""
    other = open_home(home, env={})
    try:
        if key is None:
            other.ledger.append("note", {"text": "by another writer"})
        else:
            _register(other.ledger, key, "carol")
    finally:
        other.close()


def _bobs_note(ledger: Ledger) -> Entry:
    entry = Entry(
        "note", format_time(ledger.clock.now()), {"user": "bob"}, {"text": "bob"}
    )
    return sign_entry(entry, BOB)


def _as_a_new_writer(home: Path, writer: Home) -> None:
    """The running writer refuses bob's note as a new writer does, and holds
    the ring a new writer builds."""
    fresh = open_home(home, env={})
    try:
        with pytest.raises(ConfigError, match="never added"):
            fresh.ledger.append_entries([_bobs_note(fresh.ledger)])
        with pytest.raises(ConfigError, match="never added"):
            writer.ledger.append_entries([_bobs_note(writer.ledger)])
        assert writer.ledger.keys() == fresh.ledger.keys()
    finally:
        fresh.close()


def test_the_anchor_relabelled_away_takes_the_key_epoch_back(
    home: Path, writer: Home
) -> None:
    """Bob's key.added, the newest key row, relabelled a note: the store's key
    epoch goes below the writer's. Read from the anchor on, the ring would keep
    bob's key (and the writer, its epoch never met, would give up); read again
    from the start, it is the ring of a new writer."""
    _edit(
        home, "UPDATE records SET kind = 'note' WHERE seq = ?", _seq_of_bobs_key(home)
    )
    _by_another_writer(home)
    _as_a_new_writer(home, writer)


def test_the_anchor_relabelled_away_under_a_new_key_record(
    home: Path, writer: Home
) -> None:
    """The same, with a key registered after it (the epoch moves forward): read
    from the anchor on, the writer saw only carol's key and went on taking
    bob's entries, which every new writer refuses."""
    _edit(
        home, "UPDATE records SET kind = 'note' WHERE seq = ?", _seq_of_bobs_key(home)
    )
    _by_another_writer(home, key=CAROL)
    _as_a_new_writer(home, writer)
    assert CAROL.key_id in writer.ledger.keys().keys


def test_the_anchors_bytes_changed_under_a_new_key_record(
    home: Path, writer: Home
) -> None:
    """Bob's key.added rewritten (one letter of its reason): its signature no
    longer verifies, so a new writer does not add bob's key. The writer that
    applied it before reads it again and decides the same."""
    seq = _seq_of_bobs_key(home)
    conn = _db(home)
    try:
        (data,) = conn.execute(
            "SELECT record FROM records WHERE seq = ?", (seq,)
        ).fetchone()
        changed = bytes(data).replace(b'"registered"', b'"registerex"')
        assert changed != bytes(data)
        conn.execute("UPDATE records SET record = ? WHERE seq = ?", (changed, seq))
    finally:
        conn.close()
    _by_another_writer(home, key=CAROL)
    _as_a_new_writer(home, writer)


def test_a_note_listed_as_a_key_record_after_the_anchor_refuses_the_write(
    home: Path, writer: Home
) -> None:
    """A row after the anchor is read and checked like every new key row: the
    writer refuses as a new writer does."""
    seq = _seq_of_bobs_key(home) + 1  # the note after bob's key
    _edit(home, "UPDATE records SET kind = 'key.revoked' WHERE seq = ?", seq)
    with pytest.raises(IntegrityError, match=f"lists seq {seq} as a key"):
        open_home(home, env={})
    with pytest.raises(IntegrityError, match=f"lists seq {seq} as a key"):
        _register(writer.ledger, CAROL, "carol")


def test_a_rewrite_before_the_anchor_is_seen_by_every_new_writer(
    home: Path, writer: Home
) -> None:
    """Left as decided (ADR 0025 amendment of 2026-12-08): a key row before
    the anchor is not read again by a running writer, so a note listed as a
    key record there leaves the ring it checked as it was (before, the writer
    read every key row again at its next key record, and refused). Every new
    writer refuses to write, and verify names the row."""
    _edit(home, "UPDATE records SET kind = 'key.added' WHERE seq = 1")
    _register(writer.ledger, DAVE, "dave")
    ring = writer.ledger.keys()
    assert {BOB.key_id, DAVE.key_id} <= set(ring.keys)
    with pytest.raises(IntegrityError, match="lists seq 1 as a key"):
        open_home(home, env={})
    report = open_home(home, writable=False, env={})
    try:
        problems = {(p.seq, p.code) for p in report.ledger.verify().problems}
    finally:
        report.close()
    assert (1, "column-differs") in problems


def test_a_key_epoch_gone_back_under_an_append_reads_every_key_row() -> None:
    """The store's head says a key epoch below the writer's (its newest key
    row taken away under it): the writer reads every key row again, not the
    rows from its anchor, which the store no longer lists."""
    signer = fixed_signer("rewrites-log")
    store = MemoryStore()
    ledger = Ledger.create(store, signer, origin=ORIGIN)
    seq = _register(ledger, BOB, "bob")
    ledger.append("note", {"text": "after bob"})
    starts: list[int] = []
    read = store.rows_of_kinds

    def spy(kinds: Any, start: int = 0) -> Any:
        starts.append(start)
        return read(kinds, start)

    store.rows_of_kinds = spy  # type: ignore[method-assign]
    row, time, _, run = store._records[seq]
    store._records[seq] = (row, time, "note", run)  # relabelled: the epoch goes back
    store._key_epoch = 1
    ledger.append("note", {"text": "after the rewrite"})
    assert starts[0] == 0
    assert BOB.key_id not in ledger.keys().keys
