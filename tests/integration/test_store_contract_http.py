"""The store contract through HTTP: ``HttpStore`` against a real ``mltrail server``.

tests/integration/test_store_contract.py runs the contract on the stores a
home opens itself (SQLite, memory, PostgreSQL). A ledger kept by a server is
sequenced by the server, so its write half is not ``Store.append(prepare)``
(refused by design) but what client mode does: entries signed by an author
key registered for the token's name, posted with ``HttpStore.append_entries``
and checked with ``remote_append.post_entries`` against a ``ServerTrust``
(the pinned log key). Each contract test has its counterpart here, through
the API only:

* appends assign seq and prev in order and answer with what they persisted
  (hashes, prev, a checkpoint the log key signed); the head, row ranges, rows
  of kinds and every perfect Merkle node agree with the rows read back;
* a registered key moves the key epoch;
* blobs: deduplicated, never overwritten, the empty blob, found by prefix;
* a batch with one bad entry stores nothing and says why; an unreachable
  server is a ``StoreError``;
* several clients appending at once leave no fork or gap; a retried append
  (same idempotency key, or a lost answer) lands once;
* a run held by one client is live to another, and held once;
* what only the server's admin does (meta, checkpoints, evidence, erasure, a
  raw ``append``) is refused with ``StoreError`` and stores nothing.

One server for the module (tests/server_fixture.py), in its own throwaway
database: ``team-b`` is never written, ``team-a`` takes the appends.
"""

from __future__ import annotations

import hashlib
import itertools
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any

import pytest

from optional_extras import require_extra

require_extra("server", "fastapi", "uvicorn", "psycopg")
require_extra("client", "httpx2")

from mltrail.core.checkpoint import verify_checkpoint  # noqa: E402
from mltrail.core.codec import decode_record, format_time  # noqa: E402
from mltrail.core.entry import Entry, sign_entry  # noqa: E402
from mltrail.core.keyring import make_key_proof  # noqa: E402
from mltrail.core.merkle import compute_root, frontier_root, hash_leaf  # noqa: E402
from mltrail.errors import AuthError, InputError, StoreError  # noqa: E402
from mltrail.ledger.remote_append import post_entries  # noqa: E402
from mltrail.ledger.server_trust import ServerTrust  # noqa: E402
from mltrail.storage import http  # noqa: E402
from mltrail.storage.http import HttpStore  # noqa: E402
from server_fixture import free_port, running_server  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from mltrail.storage.base import StoredRow

ORIGIN = "test.example/team-a"
USER = "hana"
KEY_KINDS = ("key.added", "key.revoked")


@pytest.fixture(scope="module")
def server():
    with running_server() as running:
        yield running


def _url(server, ledger: str = "team-a") -> str:
    return f"http://127.0.0.1:{server.port}/ledgers/{ledger}"


@pytest.fixture(scope="module")
def store(server) -> Iterator[HttpStore]:
    """USER's writer store on team-a (USER's author key registered first)."""
    server.signer_for("team-a", USER)
    with HttpStore(_url(server), server.token("writer", USER)) as opened:
        yield opened


@pytest.fixture(scope="module")
def filled(store, server) -> int:
    """Ten notes appended in batches of 1, 2, 3, 4; the seq of the first."""
    first = store.head().size
    done = 0
    for count in (1, 2, 3, 4):
        store.append_entries(_notes(server, done, count))
        done += count
    return first


# -- helpers -------------------------------------------------------------------


def _entry(
    server,
    kind: str,
    body: dict[str, Any],
    *,
    user: str = USER,
    moment: datetime | None = None,
    signer: Any = None,
) -> Entry:
    """An entry of ``user`` dated ``moment`` (now), signed by their author key."""
    entry = Entry(kind, format_time(moment or datetime.now(UTC)), {"user": user}, body)
    return sign_entry(entry, signer or server.signer_for("team-a", user))


def _notes(server, first: int, count: int, user: str = USER) -> list[dict[str, Any]]:
    return [
        _entry(server, "note", {"text": f"note {i}"}, user=user).to_dict()
        for i in range(first, first + count)
    ]


def _text(row: StoredRow) -> str | None:
    return decode_record(row.data).record.entry.body.get("text")


def _kind(row: StoredRow) -> str:
    return decode_record(row.data).record.entry.kind


def _verified(server, text: str):
    """The checkpoint ``text``, verified with team-a's log key and origin."""
    public = server.log_signer("team-a").public_key
    return verify_checkpoint(text, origin=ORIGIN, public_keys=[public])


def _snapshot(store: HttpStore) -> tuple[Any, ...]:
    """Everything a refused write must leave as it was."""
    return (
        store.head(),
        list(store.rows()),
        [c.text for c in store.checkpoints()],
        store.meta(),
        store.purges(),
        store.evidence(),
    )


def _trust(store: HttpStore, home: Path) -> ServerTrust:
    """What client mode pins for ``store`` in ``home``: the log key, the newest
    checkpoint."""
    return ServerTrust.open(home, store)


# -- a ledger as the server makes it -------------------------------------------


def test_a_new_ledger_holds_its_genesis_only(server):
    """The counterpart of an empty store: a server ledger starts with the log
    key's self-signed key.added at seq 0 (team-b is never written here)."""
    with HttpStore(
        _url(server, "team-b"), server.token("auditor", "ina", "team-b")
    ) as b:
        head = b.head()
        (row,) = list(b.rows())
        record = decode_record(row.data).record
        assert (row.seq, record.prev, record.entry.kind) == (0, "0" * 64, "key.added")
        assert record.entry.sig.key == record.entry.body["key"]
        assert record.entry.sig.key in b.info()["log_keys"]
        assert (head.size, head.last_hash, head.key_epoch) == (1, row.hash, 1)
        assert frontier_root(head.frontier) == compute_root([hash_leaf(row.data)])
        assert b.meta()["origin"] == "test.example/team-b"
        assert b.purges() == []
        assert b.evidence() == []
        (checkpoint,) = b.checkpoints()
        public = server.log_signer("team-b").public_key
        verified = verify_checkpoint(
            checkpoint.text, origin="test.example/team-b", public_keys=[public]
        )
        assert (checkpoint.size, verified.size, verified.root) == (
            1,
            1,
            frontier_root(head.frontier),
        )


# -- appends -------------------------------------------------------------------


def test_appends_assign_seq_and_prev_in_order(store, server, filled):
    rows = list(store.rows(filled - 1, filled + 10))
    assert [r.seq for r in rows] == list(range(filled - 1, filled + 10))
    for before, row in itertools.pairwise(rows):
        record = decode_record(row.data).record
        assert record.seq == row.seq
        assert record.prev == before.hash.hex()
        assert row.hash == hashlib.sha256(row.data).digest()
    assert [_text(r) for r in rows[1:]] == [f"note {i}" for i in range(10)]


def test_an_append_answers_what_it_persisted(store, server):
    before = store.head().size
    answer = store.append_entries(_notes(server, 20, 3))
    assert [r["seq"] for r in answer["records"]] == [before, before + 1, before + 2]
    stored = {r.seq: r for r in store.rows(before - 1)}
    for placed in answer["records"]:
        row = stored[placed["seq"]]
        assert row.hash.hex() == placed["hash"]
        assert decode_record(row.data).record.prev == placed["prev"]
        assert stored[placed["seq"] - 1].hash.hex() == placed["prev"]
    checkpoint = _verified(server, answer["checkpoint"])
    assert checkpoint.size == answer["size"] == store.head().size
    leaves = [hash_leaf(r.data) for r in store.rows(0, checkpoint.size)]
    assert checkpoint.root == compute_root(leaves)
    assert answer["checkpoint"] in [c.text for c in store.checkpoints()]


def test_the_client_mode_path_checks_the_answer_and_returns_the_records(
    store, server, tmp_path
):
    trust = _trust(store, tmp_path)
    entries = [_entry(server, "note", {"text": f"checked {i}"}) for i in range(3)]
    records = post_entries(store, trust, entries, ORIGIN)
    stored = {r.seq: r for r in store.rows(records[0].seq, records[-1].seq + 1)}
    assert [r.entry for r in records] == entries
    for record in records:
        assert stored[record.seq].data == record.to_bytes()
    kept = _verified(server, trust.checkpoint or "")
    assert kept.size > records[-1].seq


def test_a_client_mode_ledger_appends_through_the_server(server, tmp_path):
    """``open_remote_ledger``: what `mltrail` does with MLTRAIL_URL set."""
    from mltrail.ledger.client_mode import open_remote_ledger

    signer = server.signer_for("team-a", USER)
    remote = open_remote_ledger(
        tmp_path, _url(server), {}, signer, token=server.token("writer", USER)
    )
    try:
        record = remote.ledger.append("note", {"text": "through a Ledger"})
        (row,) = list(remote.store.rows(record.seq, record.seq + 1))
        assert row.data == record.to_bytes()
        assert record.entry.actor["user"] == USER
        assert record.entry.sig.key == signer.key_id
        assert remote.store.head().size == record.seq + 1
    finally:
        remote.ledger.close()


def test_head_after_appends(store, server, filled):
    rows = list(store.rows())
    head = store.head()
    assert head.size == len(rows) == rows[-1].seq + 1
    assert head.last_hash == rows[-1].hash
    assert head.last_time == decode_record(rows[-1].data).record.entry.time
    assert frontier_root(head.frontier) == compute_root(
        [hash_leaf(r.data) for r in rows]
    )
    last_key = max(r.seq for r in store.rows_of_kinds(KEY_KINDS))
    assert head.key_epoch == last_key + 1


def test_registering_a_key_moves_the_key_epoch(store, server):
    from mltrail.ledger.keystore import generate_signer

    signer = generate_signer()
    proof = make_key_proof(signer, ORIGIN, USER)
    registered = store.register_key(signer.public_key, USER, proof)
    assert registered["key"] == signer.key_id
    assert store.head().key_epoch == registered["seq"] + 1
    note = _entry(server, "note", {"text": "new key"}, signer=signer)
    (placed,) = store.append_entries([note.to_dict()])["records"]
    assert store.head().key_epoch == registered["seq"] + 1
    rows = {r.seq: r for r in store.rows(registered["seq"])}
    added = decode_record(rows[registered["seq"]].data).record.entry
    assert (added.kind, added.body["key"]) == ("key.added", signer.key_id)
    assert added.sig.key in store.info()["log_keys"]  # the log key signs key records
    assert decode_record(rows[placed["seq"]].data).record.entry.sig.key == (
        signer.key_id
    )


@pytest.mark.parametrize(
    ("start", "stop"),
    [(0, None), (0, 10), (3, 7), (9, None), (9, 10), (5, 5), (7, 3), (4, 1000)],
)
def test_rows_ranges(store, filled, monkeypatch, start, stop):
    monkeypatch.setattr(http, "PAGE", 3)  # several pages per range
    first, last = filled + start, None if stop is None else filled + stop
    size = store.head().size
    wanted = list(range(first, size if last is None else min(last, size)))
    assert [r.seq for r in store.rows(first, last)] == wanted


def test_rows_past_the_end_are_none(store):
    size = store.head().size
    assert list(store.rows(size)) == []
    assert list(store.rows(size + 5, size + 10)) == []


def test_rows_of_kinds(store, filled, monkeypatch):
    monkeypatch.setattr(http, "PAGE", 4)
    rows = list(store.rows())
    for kinds in (["key.added"], ["note"], ["key.added", "note"], ["run.started"]):
        found = list(store.rows_of_kinds(kinds))
        assert found == [r for r in rows if _kind(r) in kinds], kinds
    assert list(store.rows_of_kinds([])) == []
    for start in (0, 1, filled, filled + 3, len(rows) - 1, len(rows), len(rows) + 9):
        for kinds in (["key.added"], ["key.added", "note"]):
            found = list(store.rows_of_kinds(kinds, start))
            assert found == [r for r in rows if _kind(r) in kinds and r.seq >= start]


def test_every_perfect_merkle_node_is_readable(store, filled):
    rows = list(store.rows())
    leaves = [hash_leaf(r.data) for r in rows]
    size = len(leaves)
    assert store.node_range(0, 0, size) == dict(enumerate(leaves))
    level = 0
    while (1 << level) <= size:
        count = size >> level
        expected = {
            i: compute_root(leaves[i << level : (i + 1) << level]) for i in range(count)
        }
        assert store.node_range(level, 0, count) == expected, level
        for index in {0, count // 2, count - 1}:
            assert store.node(level, index) == expected[index], (level, index)
        level += 1
    for absent, index in ((0, size), (level, 0), (20, 0)):
        with pytest.raises(
            StoreError, match=rf"Merkle node \({absent}, {index}\) is missing"
        ):
            store.node(absent, index)


def test_checkpoints_are_kept_oldest_first_and_signed_by_the_log_key(store, server):
    answers = [store.append_entries(_notes(server, 30 + i, 1)) for i in range(2)]
    kept = store.checkpoints()
    sizes = [_verified(server, c.text).size for c in kept]
    assert sizes == [c.size for c in kept]
    assert sizes == sorted(sizes)
    texts = [c.text for c in kept]
    assert texts.index(answers[0]["checkpoint"]) < texts.index(answers[1]["checkpoint"])
    assert store.latest_checkpoint().text == texts[-1] == answers[1]["checkpoint"]


# -- blobs ---------------------------------------------------------------------


def _digest(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


def test_put_blob_dedups_and_get_blob_returns_bytes(store):
    data = b"\x00blob bytes\xff" * 100 + uuid.uuid4().bytes
    digest = _digest(data)
    assert store.get_blob(digest) is None
    assert store.put_blob(digest, data) is True
    assert store.put_blob(digest, data) is False
    assert store.get_blob(digest) == data
    other = b"another blob " + uuid.uuid4().bytes
    assert store.put_blob(_digest(other), other) is True
    assert store.get_blob(_digest(other)) == other
    assert store.get_blob(digest) == data


def test_put_blob_never_overwrites(store):
    data = b"original " + uuid.uuid4().bytes
    store.put_blob(_digest(data), data)
    with pytest.raises(InputError, match="SHA-256 is not the digest"):
        store.put_blob(_digest(data), b"impostor")
    assert store.get_blob(_digest(data)) == data


def test_empty_blob(store):
    digest = _digest(b"")
    assert store.put_blob(digest, b"") is True
    assert store.put_blob(digest, b"") is False
    assert store.get_blob(digest) == b""


def test_find_blobs_by_prefix(store):
    blobs = [b"found " + uuid.uuid4().bytes for _ in range(3)]
    for data in blobs:
        store.put_blob(_digest(data), data)
    wanted = _digest(blobs[1])
    assert store.find_blobs(wanted[:15]) == [(wanted, len(blobs[1]))]
    assert store.find_blobs(wanted) == [(wanted, len(blobs[1]))]
    assert len(store.find_blobs("sha256:", limit=2)) == 2
    everything = store.find_blobs("sha256:", limit=1000)
    assert {_digest(d) for d in blobs} <= {d for d, _ in everything}
    assert [d for d, _ in everything] == sorted(d for d, _ in everything)
    assert store.find_blobs("sha256:" + "0" * 63 + "1") == []
    with pytest.raises(InputError, match=r"prefix: .* \(HTTP 400\)"):
        store.find_blobs("sha256:" + "g" * 8)  # the server names a bad prefix


# -- what the server refuses -----------------------------------------------------

REFUSED = {
    "init_meta": lambda s: s.init_meta({"origin": "example.org/other"}),
    "erase_blob": lambda s: s.erase_blob(_digest(b"kept through a refusal")),
    "add_checkpoint": lambda s: s.add_checkpoint(1, "cp one\n"),
    "add_evidence": lambda s: s.add_evidence(
        "rfc3161", 1, "cp\n", b"\x00token", "2026-01-01T00:00:00Z"
    ),
}


@pytest.mark.parametrize("operation", sorted(REFUSED))
def test_what_only_the_server_admin_does_is_refused(store, operation):
    kept = b"kept through a refusal"
    store.put_blob(_digest(kept), kept)
    before = _snapshot(store)
    with pytest.raises(StoreError, match="server admin's work, not a client's"):
        REFUSED[operation](store)
    assert _snapshot(store) == before
    assert store.get_blob(_digest(kept)) == kept


def test_a_raw_append_is_refused_before_prepare_runs(store):
    before = _snapshot(store)
    seen: list[Any] = []
    with pytest.raises(StoreError, match="the server assigns seq and prev"):
        store.append(seen.append)
    assert seen == []
    assert _snapshot(store) == before


def _unsigned(server) -> dict[str, Any]:
    entry = _entry(server, "note", {"text": "unsigned"}).to_dict()
    del entry["sig"]
    return entry


def _tampered(server) -> dict[str, Any]:
    entry = _entry(server, "note", {"text": "signed"}).to_dict()
    entry["body"]["text"] = "changed after signing"
    return entry


def _dated(server, delta: timedelta) -> dict[str, Any]:
    moment = datetime.now(UTC) + delta
    return _entry(server, "note", {"text": "off time"}, moment=moment).to_dict()


def _own(server) -> Any:
    return server.signer_for("team-a", USER)


def _unregistered(server) -> dict[str, Any]:
    from mltrail.ledger.keystore import generate_signer

    return _entry(server, "note", {"text": "?"}, signer=generate_signer()).to_dict()


BAD_ENTRIES = {
    # name: (bad entry, error, message)
    "unsigned": (_unsigned, InputError, r"needs sig \{alg, key, value\}"),
    "tampered": (_tampered, InputError, "signature does not verify"),
    "unregistered-key": (_unregistered, InputError, "which the ledger never added"),
    "off-schema": (
        lambda s: _entry(s, "note", {"txt": 1}).to_dict(),
        InputError,
        r"entries\[2\]: body of note does not match its schema",
    ),
    "in-the-future": (
        lambda s: _dated(s, timedelta(hours=1)),
        InputError,
        r"is in the future \(the clock of the machine appending it says",
    ),
    "long-before": (
        lambda s: _dated(s, -timedelta(days=1)),
        InputError,
        "times may go back at most",
    ),
    "another-user": (
        lambda s: _entry(
            s, "note", {"text": "x"}, user="ivan", signer=_own(s)
        ).to_dict(),
        AuthError,
        "actor.user 'ivan' is not this token's name",
    ),
    "a-key-record": (
        lambda s: _entry(s, "key.revoked", {"key": "0" * 64, "reason": "x"}).to_dict(),
        AuthError,
        "may not append key.revoked",
    ),
}


@pytest.mark.parametrize("bad", sorted(BAD_ENTRIES))
def test_a_batch_with_one_bad_entry_stores_nothing(store, server, bad):
    make, error, message = BAD_ENTRIES[bad]
    before = list(store.rows())
    batch = [*_notes(server, 40, 2), make(server)]
    with pytest.raises(error, match=message):
        store.append_entries(batch)
    assert list(store.rows()) == before
    assert store.head().size == len(before)
    answer = store.append_entries(_notes(server, 42, 2))  # and appends go on
    assert [r["seq"] for r in answer["records"]] == [len(before), len(before) + 1]


def test_an_author_key_signs_no_clock_reset_even_for_an_admin(server):
    """Admins may append clock.reset, but only signed by the log key: an author
    key signs its own user's entries and nothing the log key alone signs."""
    with HttpStore(_url(server), server.token("admin", "ada")) as admin:
        before = admin.head()
        body = {"reason": "test", "newest_time": before.last_time}
        reset = _entry(server, "clock.reset", body, user="ada").to_dict()
        after_key = admin.head()  # registering ada's key appended a key.added
        with pytest.raises(
            InputError, match=r"may not sign a clock.reset \(only a log key may\)"
        ):
            admin.append_entries([*_notes(server, 80, 1, user="ada"), reset])
        assert admin.head() == after_key


def test_an_unreachable_server_is_a_store_error(server):
    url = f"http://127.0.0.1:{free_port()}/ledgers/team-a"
    with HttpStore(url, "mlt_0_x", retries=1, backoff=0.01) as gone:
        with pytest.raises(StoreError, match="cannot reach the mltrail server"):
            gone.head()
        with pytest.raises(StoreError, match="cannot reach") as info:
            gone.append_entries(_notes(server, 50, 1))
    assert info.value.__cause__ is not None


# -- several clients -------------------------------------------------------------


def test_concurrent_appends_from_several_clients_neither_fork_nor_gap(server, tmp_path):
    users = [f"writer{i}" for i in range(4)]
    for user in users:
        server.signer_for("team-a", user)
    stores = {u: HttpStore(_url(server), server.token("writer", u)) for u in users}
    try:
        before = stores[users[0]].head().size
        trusts = {u: _trust(stores[u], tmp_path / u) for u in users}
        seqs: list[int] = []
        problems: list[BaseException] = []
        lock = threading.Lock()

        def write(user: str) -> None:
            try:
                for i in range(5):
                    entries = [
                        _entry(server, "note", {"text": f"{user} {i} {j}"}, user=user)
                        for j in range(2)
                    ]
                    records = post_entries(stores[user], trusts[user], entries, ORIGIN)
                    with lock:
                        seqs.extend(r.seq for r in records)
            except BaseException as e:
                problems.append(e)

        threads = [threading.Thread(target=write, args=(u,)) for u in users]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert problems == []
        assert sorted(seqs) == list(range(before, before + 40))
        rows = list(stores[users[0]].rows(before - 1, before + 40))
        for previous, row in itertools.pairwise(rows):
            assert decode_record(row.data).record.prev == previous.hash.hex()
        for user in users:  # each batch of two landed side by side, in order
            mine = [r.seq for r in rows[1:] if (_text(r) or "").startswith(user)]
            assert all(b == a + 1 for a, b in zip(mine[::2], mine[1::2], strict=True))
    finally:
        for opened in stores.values():
            opened.close()
    status, report = server.call(
        "POST", "/ledgers/team-a/verify", server.token("auditor")
    )
    assert status == 200
    assert report["ok"], report


def test_a_retried_append_with_the_same_key_adds_nothing(store, server):
    key = str(uuid.uuid4())
    entries = _notes(server, 60, 2)
    first = store.append_entries(entries, key=key)
    size = store.head().size
    assert store.append_entries(entries, key=key) == first
    assert store.head().size == size
    with pytest.raises(InputError, match="HTTP 409"):
        store.append_entries(_notes(server, 62, 1), key=key)
    assert store.head().size == size


class _LoseFirstAnswer:
    """A transport that delivers the first POST, then loses its answer."""

    def __init__(self) -> None:
        import httpx2

        self._inner = httpx2.HTTPTransport()
        self._error = httpx2.ReadError
        self.posts: list[str | None] = []

    def handle_request(self, request: Any) -> Any:
        response = self._inner.handle_request(request)
        if request.method == "POST":
            self.posts.append(request.headers.get("Idempotency-Key"))
            if len(self.posts) == 1:
                response.read()
                response.close()
                raise self._error("the answer was lost", request=request)
        return response

    def close(self) -> None:
        self._inner.close()


def test_an_append_whose_answer_was_lost_is_retried_and_lands_once(server):
    transport = _LoseFirstAnswer()
    token = server.token("writer", USER)
    # The notes first: the first note signed by USER registers USER's key, an
    # entry of its own, when no earlier test on this worker has done so.
    notes = _notes(server, 70, 3)
    with HttpStore(_url(server), token, backoff=0.01, transport=transport) as lossy:
        before = lossy.head().size
        answer = lossy.append_entries(notes)
        assert [r["seq"] for r in answer["records"]] == list(range(before, before + 3))
        assert lossy.head().size == before + 3
    assert len(transport.posts) == 2
    assert transport.posts[0] == transport.posts[1] is not None
    assert [_text(r) for r in _rows_as_auditor(server, before)] == [
        f"note {i}" for i in range(70, 73)
    ]


def _rows_as_auditor(server, start: int) -> list[StoredRow]:
    with HttpStore(_url(server), server.token("auditor")) as reader:
        return list(reader.rows(start))


def _live_soon(store: HttpStore, run: str, wanted: set[str]) -> set[str] | None:
    """live_runs([run]) once it is ``wanted`` (a closed hold ends on the server
    as soon as it sees the request closed), or what it was after 20 s."""
    deadline = time.monotonic() + 20
    while True:
        live = store.live_runs([run])
        if live == wanted or time.monotonic() > deadline:
            return live
        time.sleep(0.05)


def test_a_run_held_by_one_client_is_live_to_another_and_held_once(store, server):
    run = f"held-{uuid.uuid4().hex[:8]}"
    with HttpStore(_url(server), server.token("writer", "other-host")) as other:
        hold = store.hold_run(run)
        assert hold is not None
        try:
            assert other.live_runs([run, "not-held"]) == {run}
            assert other.live_runs([]) == set()
            with pytest.raises(InputError, match="held live by another process"):
                other.hold_run(run)  # refused (409), not queued
            assert other.live_runs([run]) == {run}
        finally:
            hold.release()
        hold.release()  # twice is harmless
        assert _live_soon(other, run, set()) == set()
        again = other.hold_run(run)
        assert again is not None
        again.release()


def test_the_client_mode_path_names_an_unregistered_key(store, server, tmp_path):
    from mltrail.errors import ConfigError
    from mltrail.ledger.keystore import generate_signer

    before = store.head().size
    entry = _entry(server, "note", {"text": "?"}, signer=generate_signer())
    with pytest.raises(ConfigError, match="is not registered on the server's ledger"):
        post_entries(store, _trust(store, tmp_path), [entry], ORIGIN)
    assert store.head().size == before
