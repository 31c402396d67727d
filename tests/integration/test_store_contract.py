"""The store contract: every backend passes the same suite.

Add a backend by adding a factory to ``STORE_FACTORIES``. The PostgreSQL
store opens a fresh schema of one throwaway database per test session on the
test server (tests/postgres_db.py: skipped, saying how to enable it, where none
answers; a failure under CI=true). Backend-specific guarantees (SQLite
triggers, WAL, file errors) follow the contract suite; PostgreSQL's are in
test_postgres_store.py.
"""

from __future__ import annotations

import hashlib
import itertools
import random
import shutil
import sqlite3
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from mltrail.core.chain import seal_entries
from mltrail.core.codec import decode_record
from mltrail.core.entry import Entry, sign_entry
from mltrail.core.merkle import (
    EMPTY_ROOT,
    compute_root,
    frontier_positions,
    frontier_root,
    hash_leaf,
)
from mltrail.core.signing import encode_b64
from mltrail.errors import ConfigError, InputError, StoreError
from mltrail.ledger.stored import KIND_ROLES, chain_head, new_batch
from mltrail.storage.base import (
    KindRoles,
    NewBatch,
    Prepare,
    Store,
    StoredPurge,
    StoreHead,
    frontier_nodes,
)
from mltrail.storage.memory import MemoryStore
from mltrail.storage.sqlite import SQLiteStore
from mltrail.testing import fixed_signer
from postgres_db import throwaway_database, throwaway_schema

T0 = datetime(2026, 1, 1, tzinfo=UTC)
SIGNER = fixed_signer("store-contract-key")
OTHER = fixed_signer("store-contract-other")


def _sqlite(path: Path, **options: Any) -> SQLiteStore:
    """A SQLite store opened as the ledger layer opens it (its kind roles)."""
    return SQLiteStore(path, roles=options.pop("roles", KIND_ROLES), **options)


def _sqlite_store(tmp_path: Path, roles: KindRoles = KIND_ROLES) -> Store:
    return _sqlite(tmp_path / "contract.db", roles=roles, create=True)


def _memory_store(tmp_path: Path, roles: KindRoles = KIND_ROLES) -> Store:
    return MemoryStore(roles=roles)


def _postgres_store(schema_url: str, roles: KindRoles = KIND_ROLES) -> Store:
    from mltrail.storage.postgres import PostgresStore

    return PostgresStore(schema_url, roles=roles, create=True)


STORE_FACTORIES: dict[str, Callable[..., Store]] = {
    "sqlite": _sqlite_store,
    "memory": _memory_store,
}
# Factories given the URL of a fresh schema on the test PostgreSQL.
DATABASE_FACTORIES: dict[str, Callable[..., Store]] = {
    "postgres": _postgres_store,
}


@pytest.fixture(scope="session")
def postgres_database() -> Iterator[str]:
    with throwaway_database() as url:
        yield url


def _open(
    request: pytest.FixtureRequest, tmp_path: Path, roles: KindRoles
) -> Iterator[Store]:
    if request.param in DATABASE_FACTORIES:
        database = request.getfixturevalue("postgres_database")
        with throwaway_schema(database) as url:
            made = DATABASE_FACTORIES[request.param](url, roles)
            yield made
            made.close()
        return
    made = STORE_FACTORIES[request.param](tmp_path, roles)
    yield made
    made.close()  # closing twice is harmless


@pytest.fixture(params=sorted([*STORE_FACTORIES, *DATABASE_FACTORIES]))
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from _open(request, tmp_path, KIND_ROLES)


OTHER_ROLES = KindRoles(
    epoch_kinds=("note",), reset_kind="model.flagged", purge_kind="run.ended"
)
"""Roles no ledger uses: a store follows whatever roles its opener gives."""


@pytest.fixture(params=sorted([*STORE_FACTORIES, *DATABASE_FACTORIES]))
def other_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    yield from _open(request, tmp_path, OTHER_ROLES)


# -- helpers -----------------------------------------------------------------


def _entry(kind: str, body: dict, seconds: int, signer=SIGNER) -> Entry:
    time = (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    return sign_entry(Entry(kind, time, {"user": "contract"}, body), signer)


def _genesis() -> Entry:
    body = {
        "alg": "ed25519",
        "key": SIGNER.key_id,
        "public_key": encode_b64(SIGNER.public_key),
        "reason": "contract",
    }
    return _entry("key.added", body, 0)


def _notes(first: int, count: int) -> list[Entry]:
    return [
        _entry("note", {"text": f"note {i}"}, i) for i in range(first, first + count)
    ]


def _sealer(entries: list[Entry]) -> Prepare:
    """A ``prepare`` sealing ``entries`` with the core, in plain values (what the
    ledger layer hands a store)."""

    def prepare(head: StoreHead) -> NewBatch:
        sealed = seal_entries(
            chain_head(head),
            entries,
            now=T0 + timedelta(days=1),
            tolerance=timedelta(minutes=5),
        )
        return new_batch(sealed)

    return prepare


def _fill(store: Store, notes: int) -> list[NewBatch]:
    """Genesis, then ``notes`` notes in batches of 1, 2, 3, ... entries."""
    batches = [store.append(_sealer([_genesis()]))]
    done = 0
    size = 1
    while done < notes:
        count = min(size, notes - done)
        batches.append(store.append(_sealer(_notes(done + 1, count))))
        done += count
        size += 1
    return batches


def _texts(store: Store) -> list[str]:
    out = []
    for row in store.rows():
        body = decode_record(row.data).record.entry.body
        out.append(body.get("text", "<key>"))
    return out


# -- append ------------------------------------------------------------------


def test_empty_store_has_empty_head(store: Store) -> None:
    head = store.head()
    assert head.size == 0
    assert head.frontier == ()
    assert frontier_root(head.frontier) == EMPTY_ROOT
    assert list(store.rows()) == []
    assert store.checkpoints() == []
    assert store.meta() == {}


def test_append_assigns_seq_and_prev_in_order(store: Store) -> None:
    _fill(store, 9)
    rows = list(store.rows())
    assert [r.seq for r in rows] == list(range(10))
    prev = "0" * 64
    for row in rows:
        record = decode_record(row.data).record
        assert record.seq == row.seq
        assert record.prev == prev
        assert row.hash == hashlib.sha256(row.data).digest()
        prev = row.hash.hex()
    assert _texts(store) == ["<key>"] + [f"note {i}" for i in range(1, 10)]


def test_append_returns_what_it_persisted(store: Store) -> None:
    store.append(_sealer([_genesis()]))
    batch = store.append(_sealer(_notes(1, 3)))
    assert [r.seq for r in batch.records] == [1, 2, 3]
    stored = {r.seq: r for r in store.rows()}
    for sealed in batch.records:
        assert stored[sealed.seq].data == sealed.data
        assert stored[sealed.seq].hash == sealed.hash
    assert batch.head == store.head()


def test_prepare_receives_current_head(store: Store) -> None:
    _fill(store, 4)
    seen: list[StoreHead] = []
    expected = store.head()

    def prepare(head: StoreHead) -> NewBatch:
        seen.append(head)
        return _sealer(_notes(50, 1))(head)

    store.append(prepare)
    assert seen == [expected]


def test_append_is_atomic_when_prepare_raises(store: Store) -> None:
    _fill(store, 3)
    before_head = store.head()
    before_rows = list(store.rows())

    def failing(head: StoreHead) -> NewBatch:
        raise InputError("refused by prepare")

    with pytest.raises(InputError, match="refused by prepare"):
        store.append(failing)
    assert store.head() == before_head
    assert list(store.rows()) == before_rows
    # The store still takes appends afterwards, at the right seq.
    batch = store.append(_sealer(_notes(10, 2)))
    assert [r.seq for r in batch.records] == [4, 5]


def test_append_is_atomic_for_a_multi_record_batch(store: Store) -> None:
    """A batch that fails to seal half-way (second entry unsigned) leaves nothing."""
    _fill(store, 2)
    before = list(store.rows())
    unsigned = Entry("note", "2026-01-01T00:00:05.000000Z", {}, {"text": "unsigned"})
    with pytest.raises(InputError, match="not signed"):
        store.append(_sealer([*_notes(20, 2), unsigned]))
    assert list(store.rows()) == before
    assert store.head().size == 3


def test_foreign_exception_in_append_becomes_store_error(store: Store) -> None:
    _fill(store, 1)

    def broken(head: StoreHead) -> NewBatch:
        raise RuntimeError("backend exploded")

    with pytest.raises(StoreError, match="backend exploded") as info:
        store.append(broken)
    assert isinstance(info.value.__cause__, RuntimeError)
    assert store.head().size == 2


def test_head_after_appends(store: Store) -> None:
    batches = _fill(store, 6)
    rows = list(store.rows())
    head = store.head()
    assert head.size == 7
    assert head.last_hash == rows[-1].hash
    assert head.last_time == decode_record(rows[-1].data).record.entry.time
    assert frontier_root(head.frontier) == compute_root(
        [hash_leaf(r.data) for r in rows]
    )
    assert head == batches[-1].head
    assert head.key_epoch == 1  # the genesis key.added at seq 0


def test_head_key_epoch_follows_key_records(store: Store) -> None:
    _fill(store, 3)
    added = {
        "alg": "ed25519",
        "key": OTHER.key_id,
        "public_key": encode_b64(OTHER.public_key),
        "reason": "rotation",
    }
    store.append(_sealer([_entry("key.added", added, 10)]))
    store.append(_sealer(_notes(11, 2)))
    assert store.head().key_epoch == 5


@pytest.mark.parametrize(
    ("start", "stop", "expected"),
    [
        (0, None, list(range(11))),
        (0, 11, list(range(11))),
        (3, 7, [3, 4, 5, 6]),
        (10, None, [10]),
        (10, 11, [10]),
        (5, 5, []),
        (7, 3, []),
        (11, None, []),
        (4, 1000, list(range(4, 11))),
    ],
)
def test_rows_ranges(
    store: Store, start: int, stop: int | None, expected: list[int]
) -> None:
    _fill(store, 10)
    assert [r.seq for r in store.rows(start, stop)] == expected


def test_rows_of_kinds(store: Store) -> None:
    _keys_and_notes(store)
    assert [r.seq for r in store.rows_of_kinds(["key.added", "key.revoked"])] == [
        0,
        4,
        5,
    ]
    assert [r.seq for r in store.rows_of_kinds(["key.revoked"])] == [5]
    assert [r.seq for r in store.rows_of_kinds(["note"])] == [1, 2, 3, 6]
    assert list(store.rows_of_kinds(["run.started"])) == []
    by_seq = {r.seq: r for r in store.rows()}
    for row in store.rows_of_kinds(["key.added"]):
        assert row == by_seq[row.seq]


def _keys_and_notes(store: Store) -> None:
    """Genesis, notes 1-3, key.added 4, key.revoked 5, note 6."""
    _fill(store, 3)
    added = {
        "alg": "ed25519",
        "key": OTHER.key_id,
        "public_key": encode_b64(OTHER.public_key),
        "reason": "rotation",
    }
    revoked = {"key": SIGNER.key_id, "reason": "rotation", "replaced_by": OTHER.key_id}
    store.append(
        _sealer(
            [_entry("key.added", added, 10), _entry("key.revoked", revoked, 11, OTHER)]
        )
    )
    store.append(_sealer([_entry("note", {"text": "after"}, 12, OTHER)]))


@pytest.mark.parametrize(
    ("start", "keys", "notes"),
    [
        (0, [0, 4, 5], [1, 2, 3, 6]),
        (1, [4, 5], [1, 2, 3, 6]),
        (4, [4, 5], [6]),
        (5, [5], [6]),
        (6, [], [6]),
        (7, [], []),
        (1000, [], []),
        (-3, [0, 4, 5], [1, 2, 3, 6]),
    ],
)
def test_rows_of_kinds_from_a_seq(
    store: Store, start: int, keys: list[int], notes: list[int]
) -> None:
    """``rows_of_kinds(kinds, start)``: the rows of those kinds with seq >=
    start (what a writer's key ring reads after the key rows it applied)."""
    _keys_and_notes(store)
    kinds = ["key.added", "key.revoked"]
    assert [r.seq for r in store.rows_of_kinds(kinds, start)] == keys
    assert [r.seq for r in store.rows_of_kinds(["note"], start)] == notes
    assert [r.seq for r in store.rows_of_kinds(kinds, start=start)] == keys
    by_seq = {r.seq: r for r in store.rows()}
    for row in store.rows_of_kinds(kinds, start):
        assert row == by_seq[row.seq]


def test_the_servers_cached_key_rows_are_read_from_a_seq(
    postgres_database: str,
) -> None:
    """The server's store caches the key and lock rows every append reads and
    fetches only newer ones: a read from a seq gives the cached rows from it,
    and rows appended since (by another connection too)."""
    from mltrail.server.ledgers import ServerStore

    kinds = ("key.added", "key.revoked")
    with throwaway_schema(postgres_database) as url:
        store = ServerStore(url, create=True)
        other = ServerStore(url)
        try:
            _keys_and_notes(store)
            assert [r.seq for r in store.rows_of_kinds(kinds)] == [0, 4, 5]
            assert [r.seq for r in store.rows_of_kinds(kinds, 5)] == [5]
            assert [r.seq for r in store.rows_of_kinds(kinds, 6)] == []
            added = {
                "alg": "ed25519",
                "key": SIGNER.key_id,
                "public_key": encode_b64(SIGNER.public_key),
                "reason": "again",
            }
            other.append(_sealer([_entry("key.added", added, 20, OTHER)]))
            assert [r.seq for r in store.rows_of_kinds(kinds, 6)] == [7]
            assert [r.seq for r in store.rows_of_kinds(kinds, 1)] == [4, 5, 7]
            assert [r.seq for r in store.rows_of_kinds(kinds)] == [0, 4, 5, 7]
            assert [r.seq for r in store.rows_of_kinds(["note"], 4)] == [6]
            by_seq = {r.seq: r for r in other.rows()}
            for row in store.rows_of_kinds(kinds, 4):
                assert row == by_seq[row.seq]
        finally:
            other.close()
            store.close()


def test_node_returns_every_perfect_node(store: Store) -> None:
    _fill(store, 12)  # 13 leaves
    leaves = [hash_leaf(r.data) for r in store.rows()]
    size = len(leaves)
    checked = 0
    level = 0
    while (1 << level) <= size:
        for index in range(size >> level):
            span = leaves[index << level : (index + 1) << level]
            assert store.node(level, index) == compute_root(span), (level, index)
            checked += 1
        level += 1
    assert checked == 13 + 6 + 3 + 1


@pytest.mark.parametrize(
    ("level", "index"), [(0, 13), (1, 6), (2, 3), (3, 1), (4, 0), (9, 0)]
)
def test_node_missing_raises_store_error(store: Store, level: int, index: int) -> None:
    _fill(store, 12)
    with pytest.raises(
        StoreError, match=rf"Merkle node \({level}, {index}\) is missing"
    ):
        store.node(level, index)


# -- kind roles: the opener's, not the store's -------------------------------


def _time(seconds: int) -> str:
    return (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def test_a_store_follows_the_kind_roles_it_was_opened_with(other_store: Store) -> None:
    """No kind is the store's own: the key epoch, the time floor and purges
    follow the roles its opener gave (here notes set the key epoch, a
    ``model.flagged`` record resets the floor and ``run.ended`` purges)."""
    store = other_store
    store.append(_sealer([_genesis()]))
    assert store.head().key_epoch == 0  # key.added plays no role here
    store.append(_sealer(_notes(1, 2)))
    assert store.head().key_epoch == 3
    data = b"personal data"
    store.put_blob(_digest(data), data)
    with pytest.raises(StoreError, match=r"no stored run\.ended record names it"):
        store.erase_blob(_digest(data))
    store.append(_sealer([_purge_entry(_digest(data), len(data), 5)]))
    assert store.purges() == []  # blob.purged plays no role here
    named = {"digest": _digest(data), "size": len(data)}
    batch = store.append(_sealer([_entry("run.ended", named, 6)]))
    seq = batch.records[0].seq
    assert store.purge_of(_digest(data)) == StoredPurge(_digest(data), 13, seq, False)
    assert store.erase_blob(_digest(data)) is True
    assert store.get_blob(_digest(data)) is None
    store.append(_sealer([_entry("note", {"text": "late"}, 100)]))
    assert store.time_floor() == (_time(100), 5)
    store.append(_sealer([_entry("model.flagged", {"text": "reset"}, 90)]))
    assert store.time_floor() == (_time(90), 6)
    assert store.head().key_epoch == 6  # the newest note, at seq 5


def test_the_head_frontier_is_the_stored_nodes_tiling_the_tree(store: Store) -> None:
    batches = _fill(store, 12)
    head = store.head()
    assert frontier_nodes(head.size) == frontier_positions(head.size)
    assert head.frontier == tuple(
        store.node(level, index) for level, index in frontier_nodes(head.size)
    )
    assert head == batches[-1].head


# -- blobs, checkpoints, meta ------------------------------------------------


def test_put_blob_dedups_and_get_blob_returns_bytes(store: Store) -> None:
    data = b"\x00blob bytes\xff" * 100
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    assert store.get_blob(digest) is None
    assert store.put_blob(digest, data) is True
    assert store.put_blob(digest, data) is False
    assert store.get_blob(digest) == data
    other = b"another blob"
    other_digest = "sha256:" + hashlib.sha256(other).hexdigest()
    assert store.put_blob(other_digest, other) is True
    assert store.get_blob(other_digest) == other
    assert store.get_blob(digest) == data


def test_put_blob_never_overwrites(store: Store) -> None:
    data = b"original"
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    store.put_blob(digest, data)
    try:
        kept = store.put_blob(digest, b"impostor")
    except StoreError:  # PostgreSQL refuses bytes that are not the digest's
        kept = False
    assert kept is False
    assert store.get_blob(digest) == data


def test_empty_blob(store: Store) -> None:
    digest = "sha256:" + hashlib.sha256(b"").hexdigest()
    assert store.put_blob(digest, b"") is True
    assert store.get_blob(digest) == b""


def test_checkpoints_kept_oldest_first(store: Store) -> None:
    _fill(store, 5)
    texts = [(1, "cp one\n"), (4, "cp two\n"), (6, "cp three\n"), (4, "cp four\n")]
    for size, text in texts:
        store.add_checkpoint(size, text)
    kept = store.checkpoints()
    assert [(c.size, c.text) for c in kept] == texts
    assert len({c.label for c in kept}) == 4


def test_meta_is_write_once(store: Store) -> None:
    store.init_meta({"origin": "example.org/one", "format": "mltrail/1"})
    store.init_meta({"origin": "example.org/two", "extra": "x"})
    assert store.meta() == {
        "origin": "example.org/one",
        "format": "mltrail/1",
        "extra": "x",
    }
    store.init_meta({})
    assert store.meta()["origin"] == "example.org/one"


def test_store_is_a_context_manager(store: Store) -> None:
    with store as opened:
        assert opened is store
        assert opened.head().size == 0


# -- purges: the one deletion allowed ---------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def _purge_entry(digest: str, size: int, seconds: int) -> Entry:
    body = {"digest": digest, "size": size, "reason": "test", "referenced_by": []}
    return _entry("blob.purged", body, seconds)


def test_a_blob_is_erased_only_after_a_stored_purge_names_it(store: Store) -> None:
    _fill(store, 2)
    data, other = b"personal data", b"kept"
    store.put_blob(_digest(data), data)
    store.put_blob(_digest(other), other)
    with pytest.raises(StoreError, match=r"no stored blob\.purged record names it"):
        store.erase_blob(_digest(data))
    assert store.get_blob(_digest(data)) == data
    assert store.purges() == []
    batch = store.append(_sealer([_purge_entry(_digest(data), len(data), 10)]))
    seq = batch.records[0].seq
    assert store.purge_of(_digest(data)) == StoredPurge(_digest(data), 13, seq, False)
    assert store.erase_blob(_digest(data)) is True
    assert store.get_blob(_digest(data)) is None
    assert store.get_blob(_digest(other)) == other
    assert store.purges() == [StoredPurge(_digest(data), 13, seq, True)]
    assert store.erase_blob(_digest(data)) is False  # repeating is harmless


def test_a_purged_digest_is_never_stored_again(store: Store) -> None:
    _fill(store, 1)
    data = b"erased for good"
    store.put_blob(_digest(data), data)
    store.append(_sealer([_purge_entry(_digest(data), len(data), 10)]))
    store.erase_blob(_digest(data))
    assert store.put_blob(_digest(data), data) is False
    assert store.get_blob(_digest(data)) is None


def test_put_blobs_stores_each_like_put_blob(store: Store) -> None:
    _fill(store, 1)
    kept, erased, fresh = b"already here", b"erased for good", b"new"
    store.put_blob(_digest(kept), kept)
    store.put_blob(_digest(erased), erased)
    store.append(_sealer([_purge_entry(_digest(erased), len(erased), 10)]))
    store.erase_blob(_digest(erased))
    batch = [(_digest(d), d) for d in (kept, erased, fresh, b"", fresh)]
    assert store.put_blobs(batch) == [False, False, True, True, False]
    assert store.get_blob(_digest(kept)) == kept
    assert store.get_blob(_digest(erased)) is None  # a purged digest stays erased
    assert store.get_blob(_digest(fresh)) == fresh
    assert store.get_blob(_digest(b"")) == b""
    assert store.put_blobs([]) == []


def test_find_blobs_by_prefix(store: Store) -> None:
    blobs = [b"a", b"b", b"c"]
    for data in blobs:
        store.put_blob(_digest(data), data)
    wanted = _digest(b"b")
    assert store.find_blobs(wanted[:15]) == [(wanted, 1)]
    assert store.find_blobs(wanted) == [(wanted, 1)]
    assert len(store.find_blobs("sha256:")) == 3
    assert len(store.find_blobs("sha256:", limit=2)) == 2
    assert store.find_blobs("sha256:" + "g" * 8) == []


def test_checkpoint_evidence_is_kept_in_order(store: Store) -> None:
    assert store.evidence() == []
    store.add_evidence("rfc3161", 3, "cp\n", b"\x00token", "2026-01-01T00:00:00Z")
    store.add_evidence("cosignature", 5, "cp5\n", b"note", "2026-01-02T00:00:00Z")
    rows = store.evidence()
    assert [(r.id, r.kind, r.size, r.checkpoint, r.data) for r in rows] == [
        (1, "rfc3161", 3, "cp\n", b"\x00token"),
        (2, "cosignature", 5, "cp5\n", b"note"),
    ]
    assert rows[0].added == "2026-01-01T00:00:00Z"


# -- derived columns -----------------------------------------------------------


def _set_column(store: Store, seq: int, column: str, value: str | None) -> None:
    """What an attacker who can write the store does: change one derived column
    of a stored record (around the triggers that refuse UPDATE)."""
    if isinstance(store, MemoryStore):
        row, time, kind, run = store._records[seq]
        fields = {"time": time, "kind": kind, "run": run, column: value}
        store._records[seq] = (row, fields["time"], fields["kind"], fields["run"])
        return
    if isinstance(store, SQLiteStore):
        conn = sqlite3.connect(store.path, isolation_level=None)
        try:
            conn.execute("DROP TRIGGER records_no_UPDATE")
            conn.execute(f"UPDATE records SET {column} = ? WHERE seq = ?", (value, seq))
        finally:
            conn.close()
        return
    conn = store._conn  # type: ignore[attr-defined]  # the owner of the schema
    conn.execute("ALTER TABLE records DISABLE TRIGGER USER")
    conn.execute(f"UPDATE records SET {column} = %s WHERE seq = %s", (value, seq))
    conn.execute("ALTER TABLE records ENABLE TRIGGER USER")


def test_column_rows_carry_the_columns_derived_from_the_bytes(store: Store) -> None:
    _fill(store, 3)
    store.append(_sealer([_entry_of_run("run-a", 10)]))
    rows = list(store.column_rows())
    assert [(r.seq, r.hash, r.data) for r in rows] == [
        (r.seq, r.hash, r.data) for r in store.rows()
    ]
    for row in rows:
        entry = decode_record(row.data).record.entry
        assert (row.kind, row.run, row.time) == (entry.kind, entry.run, entry.time)
    assert [r.seq for r in store.column_rows(2, 4)] == [2, 3]


def _entry_of_run(run: str, seconds: int) -> Entry:
    time = (T0 + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    entry = Entry("note", time, {"user": "contract"}, {"text": "of a run"}, run=run)
    return sign_entry(entry, SIGNER)


@pytest.mark.parametrize(
    ("column", "value"),
    [("kind", "key.revoked"), ("run", "run-b"), ("time", "2099-01-01T00:00:00Z")],
)
def test_verify_names_a_derived_column_that_lies(
    store: Store, column: str, value: str
) -> None:
    """A store that keeps the columns shows them; verify compares them with
    the signed bytes and names the row (``column-differs``)."""
    from mltrail.ledger.verification import verify_store

    _fill(store, 3)
    store.append(_sealer([_entry_of_run("run-a", 10)]))
    seq = 4 if column == "run" else 2
    _set_column(store, seq, column, value)
    assert [getattr(r, column) for r in store.column_rows(seq, seq + 1)] == [value]
    report = verify_store(store, origin="example.org/contract")
    found = [p for p in report.problems if p.code == "column-differs"]
    assert [p.seq for p in found] == [seq]
    assert f"the store's {column} column says {value!r}" in found[0].message


def test_append_head_is_the_head_prepare_gets(store: Store) -> None:
    _fill(store, 3)
    seen: list[StoreHead] = []

    def prepare(head: StoreHead) -> NewBatch:
        seen.append(head)
        raise RuntimeError("only looking")

    with pytest.raises(StoreError):
        store.append(prepare)
    read = store.append_head()
    assert (read.size, read.last_hash, read.floor_time, read.checkpoint) == (
        seen[0].size,
        seen[0].last_hash,
        seen[0].floor_time,
        seen[0].checkpoint,
    )
    assert (
        read.floor_time
        == decode_record(next(iter(store.rows(read.size - 1))).data).record.entry.time
    )


# -- SQLite only -------------------------------------------------------------

SQLITE_TABLES = (
    "records", "merkle_nodes", "blobs", "checkpoints", "meta", "purges", "erasures",
    "checkpoint_evidence",
)  # fmt: skip
PURGE_DATA = b"purged blob"


@pytest.fixture
def sqlite_path(tmp_path: Path) -> Path:
    """Every table holds a row: a blob kept, one purged and erased."""
    path = tmp_path / "ledger.db"
    with _sqlite(path, create=True) as filled:
        filled.init_meta({"origin": "example.org/sqlite"})
        _fill(filled, 3)
        data = b"blob"
        filled.put_blob(_digest(data), data)
        filled.put_blob(_digest(PURGE_DATA), PURGE_DATA)
        filled.append(_sealer([_purge_entry(_digest(PURGE_DATA), 11, 10)]))
        filled.erase_blob(_digest(PURGE_DATA))
        filled.add_checkpoint(5, "checkpoint text\n")
        filled.add_evidence("rfc3161", 5, "checkpoint text\n", b"t", "2026-01-01")
    return path


@pytest.mark.parametrize("table", SQLITE_TABLES)
@pytest.mark.parametrize(
    "statement",
    ["UPDATE {table} SET {column} = {column}", "DELETE FROM {table}"],
)
def test_sqlite_tables_refuse_update_and_delete(
    sqlite_path: Path, table: str, statement: str
) -> None:
    conn = sqlite3.connect(sqlite_path)
    try:
        column = conn.execute(f"PRAGMA table_info({table})").fetchall()[0][1]
        assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] > 0
        sql = statement.format(table=table, column=column)
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute(sql)
        conn.rollback()
    finally:
        conn.close()
    with _sqlite(sqlite_path) as reopened:
        assert reopened.head().size == 5
        assert len(reopened.checkpoints()) == 1
        assert reopened.meta() == {"origin": "example.org/sqlite"}
        assert len(reopened.purges()) == 1


def test_sqlite_append_only_triggers_exist(sqlite_path: Path) -> None:
    conn = sqlite3.connect(sqlite_path)
    try:
        names = {
            r[0]
            for r in conn.execute(
                "SELECT name FROM sqlite_master WHERE type = 'trigger'"
            )
        }
    finally:
        conn.close()
    assert names == {
        f"{t}_no_{op}" for t in SQLITE_TABLES for op in ("UPDATE", "DELETE")
    } | {"records_purge", "purges_need_record", "erasures_need_purge"}


def test_sqlite_file_without_evidence_table_gains_it_on_first_write(
    tmp_path: Path,
) -> None:
    path = tmp_path / "older.db"
    with _sqlite(path, create=True) as made:
        _fill(made, 2)
    conn = sqlite3.connect(path)  # as written before checkpoint evidence existed
    conn.executescript(
        "DROP TRIGGER checkpoint_evidence_no_UPDATE;"
        "DROP TRIGGER checkpoint_evidence_no_DELETE;"
        "DROP TABLE checkpoint_evidence;"
    )
    conn.close()
    with _sqlite(path, read_only=True) as reader:
        assert reader.evidence() == []
    with _sqlite(path) as writer:
        assert writer.evidence() == []
        writer.add_evidence("rfc3161", 3, "cp\n", b"t", "2026-01-01")
        assert [r.kind for r in writer.evidence()] == ["rfc3161"]
    conn = sqlite3.connect(path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM checkpoint_evidence")
    finally:
        conn.close()


def test_sqlite_deletes_only_a_blob_a_stored_purge_names(sqlite_path: Path) -> None:
    kept = PURGE_DATA + b" again"
    with _sqlite(sqlite_path) as store:
        store.put_blob(_digest(kept), kept)
    conn = sqlite3.connect(sqlite_path)
    try:
        with pytest.raises(sqlite3.DatabaseError, match="append-only"):
            conn.execute("DELETE FROM blobs WHERE digest = ?", (_digest(kept),))
        conn.rollback()
        # a purge row is added only by storing its blob.purged record
        with pytest.raises(sqlite3.DatabaseError, match=r"blob\.purged record"):
            conn.execute(
                "INSERT INTO purges (digest, size, seq) VALUES (?, 17, 1)",
                (_digest(kept),),
            )
        conn.rollback()
        with pytest.raises(sqlite3.DatabaseError, match="whose bytes are gone"):
            conn.execute("INSERT INTO erasures (digest) VALUES (?)", (_digest(kept),))
        conn.rollback()
    finally:
        conn.close()
    with _sqlite(sqlite_path) as store:
        assert store.get_blob(_digest(kept)) == kept
        with pytest.raises(StoreError, match=r"no stored blob\.purged record"):
            store.erase_blob(_digest(kept))


def test_sqlite_erasure_leaves_no_copy_in_the_file(tmp_path: Path) -> None:
    """b-tree rebalancing leaves stale copies of cells in pages (secure_delete
    never sees them, since nothing was deleted): erasure rebuilds the file."""
    path = tmp_path / "ledger.db"
    rng = random.Random(1)
    blobs = [rng.randbytes(rng.choice([100, 500, 1500])) for _ in range(300)]
    with _sqlite(path, create=True) as store:
        _fill(store, 1)
        for data in blobs:
            store.put_blob(_digest(data), data)
    raw = path.read_bytes()  # closed: the WAL is folded in and removed
    twice = [data for data in blobs if raw.count(data[:24]) > 1]
    assert twice, "this SQLite left no stale copy: pick another seed"
    victims = [*twice, blobs[0], blobs[-1]]
    # secure_delete alone (what a plain DELETE would do) leaves the stale copies
    copy = tmp_path / "copy.db"
    shutil.copyfile(path, copy)
    conn = sqlite3.connect(copy, isolation_level=None)
    conn.execute("PRAGMA secure_delete = ON")
    conn.execute("DROP TRIGGER blobs_no_DELETE")
    for victim in victims:
        conn.execute("DELETE FROM blobs WHERE digest = ?", (_digest(victim),))
    conn.close()
    assert any(_residue(victim, copy.read_bytes()) for victim in victims)
    with _sqlite(path) as store:
        purges = [
            _purge_entry(_digest(v), len(v), 10 + i) for i, v in enumerate(victims)
        ]
        store.append(_sealer(purges))
        for victim in victims:
            assert store.erase_blob(_digest(victim)) is True
        raw = _raw(path)
        assert not [v for v in victims if _residue(v, raw)]
        assert all(data[:24] in raw for data in blobs if data not in victims)
        assert Path(f"{path}-wal").stat().st_size == 0


def test_sqlite_writes_with_secure_delete(sqlite_path: Path) -> None:
    """Freed pages (a deleted blob's overflow pages too) are zeroed as they are
    freed, so the WAL never carries them before the file is rebuilt."""
    with _sqlite(sqlite_path) as store:
        assert store._conn.execute("PRAGMA secure_delete").fetchone()[0] == 1


def _residue(data: bytes, raw: bytes) -> bool:
    """Whether any 24-byte window of ``data`` (at a 24-byte stride) is in ``raw``."""
    return any(data[i : i + 24] in raw for i in range(0, len(data) - 23, 24))


def _raw(path: Path) -> bytes:
    wal = Path(f"{path}-wal")
    return path.read_bytes() + (wal.read_bytes() if wal.exists() else b"")


def test_sqlite_file_of_an_older_version_gains_purges(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    with _sqlite(path, create=True) as store:
        _fill(store, 1)
        store.put_blob(_digest(b"old"), b"old")
    conn = sqlite3.connect(path)  # as mltrail 0.1 left it
    for name in ("records_purge", "purges_need_record", "erasures_need_purge",
                 "purges_no_UPDATE", "purges_no_DELETE", "erasures_no_UPDATE",
                 "erasures_no_DELETE", "blobs_no_DELETE"):  # fmt: skip
        conn.execute(f"DROP TRIGGER {name}")
    conn.execute("DROP TABLE purges")
    conn.execute("DROP TABLE erasures")
    conn.execute(
        "CREATE TRIGGER blobs_no_DELETE BEFORE DELETE ON blobs BEGIN SELECT "
        "RAISE(ABORT, 'mltrail ledger tables are append-only: DELETE refused'); END"
    )
    conn.commit()
    conn.close()
    with _sqlite(path, read_only=True) as reader:
        assert reader.purges() == []
    with _sqlite(path) as store:
        assert store.purges() == []
        store.append(_sealer([_purge_entry(_digest(b"old"), 3, 10)]))
        assert store.erase_blob(_digest(b"old")) is True
        assert store.get_blob(_digest(b"old")) is None


def test_sqlite_wal_and_synchronous_full(sqlite_path: Path) -> None:
    store = _sqlite(sqlite_path)
    try:
        conn = store._conn
        assert conn.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
        assert conn.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
    finally:
        store.close()
    raw = sqlite3.connect(sqlite_path)
    try:
        # WAL is persistent in the file: every later connection sees it.
        assert raw.execute("PRAGMA journal_mode").fetchone()[0].lower() == "wal"
    finally:
        raw.close()


def test_sqlite_appends_survive_reopen(sqlite_path: Path) -> None:
    with _sqlite(sqlite_path) as store:
        before = list(store.rows())
        head = store.head()
    with _sqlite(sqlite_path) as store:
        assert list(store.rows()) == before
        assert store.head() == head
        store.append(_sealer(_notes(30, 1)))
    with _sqlite(sqlite_path) as store:
        assert store.head().size == 6


def test_sqlite_two_connections_share_one_chain(sqlite_path: Path) -> None:
    with _sqlite(sqlite_path) as one, _sqlite(sqlite_path) as two:
        one.head()
        two.head()  # both cache the head, then each appends in turn
        one.append(_sealer(_notes(40, 1)))
        two.append(_sealer(_notes(41, 1)))
        one.append(_sealer(_notes(42, 1)))
        rows = list(two.rows())
    assert [r.seq for r in rows] == list(range(8))
    for before, after in itertools.pairwise(rows):
        assert decode_record(after.data).record.prev == before.hash.hex()


def test_sqlite_closed_connection_gives_store_error(sqlite_path: Path) -> None:
    store = _sqlite(sqlite_path)
    store.close()
    with pytest.raises(StoreError, match="read the head") as info:
        store.head()
    assert isinstance(info.value.__cause__, sqlite3.Error)
    with pytest.raises(StoreError, match="read records"):
        list(store.rows())
    with pytest.raises(StoreError, match="append"):
        store.append(_sealer(_notes(50, 1)))
    with pytest.raises(StoreError):
        store.get_blob("sha256:" + "0" * 64)
    with pytest.raises(StoreError):
        store.checkpoints()


def test_sqlite_corrupt_file_gives_store_error(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    path.write_bytes(b"this is not a database, just garbage bytes \x00\xff" * 200)
    with pytest.raises(StoreError, match="cannot open ledger"):
        _sqlite(path)


def test_sqlite_truncated_file_gives_store_error(sqlite_path: Path) -> None:
    data = sqlite_path.read_bytes()
    sqlite_path.write_bytes(data[:100] + b"\xde\xad\xbe\xef" * 50)
    with pytest.raises(StoreError), _sqlite(sqlite_path) as store:
        list(store.rows())


def test_sqlite_foreign_database_gives_store_error(tmp_path: Path) -> None:
    path = tmp_path / "other.db"
    conn = sqlite3.connect(path)
    conn.execute("CREATE TABLE something (x)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="cannot open ledger") as info:
        _sqlite(path)
    assert "not an mltrail ledger" in (info.value.hint or "")


def test_sqlite_missing_file_gives_config_error(tmp_path: Path) -> None:
    path = tmp_path / "absent.db"
    with pytest.raises(ConfigError, match="no ledger at"):
        _sqlite(path)
    assert not path.exists()


def test_a_held_run_is_live_until_released(store: Store) -> None:
    """A store several hosts share says which runs a recorder holds; one a
    single home owns has no holds (its lock files say) and answers None."""
    hold = store.hold_run("run-a")
    if hold is None:
        assert store.live_runs(["run-a"]) is None
        return
    try:
        assert store.live_runs(["run-a", "run-b"]) == {"run-a"}
        assert store.live_runs([]) == set()
    finally:
        hold.release()
    hold.release()  # twice is harmless
    assert store.live_runs(["run-a"]) == set()


def test_a_run_is_held_by_one_process_at_a_time(store: Store) -> None:
    """A second hold of a held run is refused (a run id used twice), not queued."""
    from mltrail.errors import InputError

    hold = store.hold_run("run-twice")
    if hold is None:
        return  # a store a single home owns: its lock files say
    try:
        with pytest.raises(InputError, match="held live by another process"):
            store.hold_run("run-twice")
    finally:
        hold.release()
    again = store.hold_run("run-twice")
    assert again is not None
    again.release()


def test_a_released_run_is_free_the_moment_release_returns(store: Store) -> None:
    """release() ends the hold before it returns, every time: closing the
    holder's PostgreSQL connection alone ends its lock only once the server's
    backend has exited, a moment later, and a loaded CI runner saw the run
    still live in that moment."""
    for _ in range(40):
        hold = store.hold_run("run-quick")
        if hold is None:
            return  # a store a single home owns: its lock files say
        hold.release()
        assert store.live_runs(["run-quick"]) == set()


def _dated(text: str, time: str) -> Entry:
    return sign_entry(Entry("note", time, {"user": "contract"}, {"text": text}), SIGNER)


@pytest.mark.parametrize(
    ("spellings", "newest"),
    [
        # the same second without a fraction sorts after it as text
        (["2026-01-01T00:01:40.500000Z", "2026-01-01T00:01:40Z"], 0),
        # the same instant, fewer digits: the first seq keeps the floor
        (["2026-01-01T00:01:40.100000Z", "2026-01-01T00:01:40.1Z"], 0),
        (["2026-01-01T00:01:40.10Z", "2026-01-01T00:01:40.1Z"], 0),
        # digits beyond microseconds are cut, as the core reads them
        (["2026-01-01T00:01:40.0000001Z", "2026-01-01T00:01:40.0000009Z"], 0),
        (["2026-01-01T00:01:40Z", "2026-01-01T00:01:40.000001Z"], 1),
        (["2026-01-01T00:01:40.9Z", "2026-01-01T00:01:40.10Z"], 0),
    ],
)
def test_the_time_floor_is_the_chains_whatever_the_spelling(
    store: Store, spellings: list[str], newest: int
) -> None:
    """``time_floor`` names the record the chain's floor is (the first seq of the
    latest instant), not the latest time as text: a clock reset names it, and is
    refused when the two differ."""
    store.append(_sealer([_genesis()]))
    batch = store.append(_sealer([_dated(f"at {t}", t) for t in spellings]))
    assert batch.head.floor_time == spellings[newest]  # the chain's floor
    assert store.time_floor() == (spellings[newest], 1 + newest)
