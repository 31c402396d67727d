"""Fair shares of a running team server (real ``mltrail server`` subprocess, real
PostgreSQL; ADR 0027, amendment of 2026-12-07): one user, or one ledger's
users, using up run holds, verifications or large request bodies is refused
(429 for the user's own share, 503 for the ledger's or the process's, with
``Retry-After``) while every other user's requests still pass, and a flood of
refusals leaves a few lines in the server's log, not one each.

The server runs with small bounds (``--limit``), so that each share is used up
with a few requests.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import socket
import threading
import time
from typing import TYPE_CHECKING, Any

import pytest

from optional_extras import require_extra

if TYPE_CHECKING:
    from collections.abc import Iterator

require_extra("server", "fastapi", "uvicorn", "psycopg")

LIMITS = {
    "holds_per_user": 2,
    "holds_per_ledger": 3,
    "holds": 4,
    "large_bodies_per_user": 1,
    "large_body_bytes": 65536,
    "verify_pause": 100_000,
    "error_lines": 3,
    "error_interval": 3600,
}
A, B = "/ledgers/team-a", "/ledgers/team-b"


@pytest.fixture(scope="module")
def server():
    from server_fixture import running_server

    options = [o for k, v in LIMITS.items() for o in ("--limit", f"{k}={v}")]
    with running_server(*options) as s:
        yield s


def _connect(server) -> http.client.HTTPConnection:
    return http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)


def _open_hold(server, token: str, ledger: str = A) -> tuple[Any, int, Any]:
    """Hold a new run (lease 2 minutes): (the open connection or None, status,
    (error, Retry-After) of a refusal)."""
    from mltrail.record.recorder import new_run_id

    conn = _connect(server)
    conn.request(
        "POST",
        f"{server.prefix}{ledger}/runs/{new_run_id()}/hold?lease=120",
        headers={"Authorization": f"Bearer {token}"},
    )
    response = conn.getresponse()
    if response.status == 200:
        assert response.readline().strip() == b"held"
        return _Held(conn, response), 200, None
    refusal = json.loads(response.read())["error"], response.getheader("retry-after")
    conn.close()
    return None, response.status, refusal


class _Held:
    """An open hold: its connection and its streamed answer."""

    def __init__(self, conn: http.client.HTTPConnection, response: Any) -> None:
        self.conn, self.response = conn, response

    def close(self) -> None:
        self.response.close()
        self.conn.close()


def _in_use(server, token: str, kind: str, ledger: str = A) -> dict[str, int]:
    status, answer = server.call("GET", f"{ledger}/limits", token)
    assert status == 200, answer
    return answer["in_use"][kind]


def _wait_until(check: Any, what: str) -> None:
    deadline = time.monotonic() + 30
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"waited 30 s for {what}")
        time.sleep(0.05)


def _small_append_and_read(server, name: str, ledger: str = A) -> None:
    short = ledger.removeprefix("/ledgers/")
    token = server.token("writer", name, ledger=short)
    entry = server.entry(name, "note", {"text": "small"}, ledger=short)
    status, answer = server.call(
        "POST", f"{ledger}/entries", token, {"entries": [entry]}
    )
    assert status == 201, answer
    assert server.call("GET", f"{ledger}/head", token)[0] == 200


def test_one_user_or_ledger_using_up_holds_leaves_the_others_theirs(server):
    """Before, holds were bounded per token and per process only: one user with
    a second token, or one ledger's users, could take all of them."""
    s = server
    alice = s.token("writer", "hold-alice")
    alice_again = s.new_token("writer", "hold-alice")["token"]  # a second token
    held = []
    try:
        for token in (alice, alice_again):
            conn, status, refusal = _open_hold(s, token)
            assert status == 200, refusal
            held.append(conn)
        _, status, (error, retry_after) = _open_hold(s, alice_again)
        assert status == 429, error
        assert error["code"] == "too_many_requests"
        assert error["limit"] == "holds_per_user"
        assert "'hold-alice' has 2 live-run holds already" in error["message"]
        assert retry_after == str(error["retry_after"])

        conn, status, refusal = _open_hold(s, s.token("writer", "hold-bob"))
        assert status == 200, refusal  # another user of the same ledger
        held.append(conn)
        _, status, (error, retry_after) = _open_hold(s, s.token("writer", "hold-cy"))
        assert (status, error["limit"]) == (503, "holds_per_ledger"), error
        assert retry_after is not None

        b_writer = s.token("writer", "hold-dee", ledger="team-b")
        conn, status, refusal = _open_hold(s, b_writer, B)
        assert status == 200, refusal  # another ledger: team-a's users took 3 of 4
        held.append(conn)
        b_other = s.token("writer", "hold-eve", ledger="team-b")
        _, status, (error, _) = _open_hold(s, b_other, B)
        assert (status, error["limit"]) == (503, "holds_per_server"), error

        _small_append_and_read(s, "hold-cy")  # nothing else is refused
        _small_append_and_read(s, "hold-alice")
    finally:
        for conn in held:
            conn.close()
    _wait_until(lambda: _in_use(s, alice, "holds")["server"] == 0, "holds to end")
    conn, status, refusal = _open_hold(s, alice)
    assert status == 200, refusal
    conn.close()


def _send_head(server, path: str, token: str, length: int, method: str = "POST"):
    """A request's headers declaring ``length`` bytes of body, none sent yet."""
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=10)
    sock.sendall(
        f"{method} {server.prefix}{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {length}\r\n\r\n".encode()
    )
    return sock


def test_one_users_large_bodies_leave_everyone_elses_requests_alone(server):
    """Alice keeps one large append open (its body half sent): her next large
    body is refused before it is read, 429; her small appends and everyone
    else's large and small requests pass. Before, each could buffer 16 MiB."""
    s = server
    alice = s.token("writer", "body-alice")
    path = f"{A}/entries"
    first = _send_head(s, path, alice, 4 * 2**20)
    try:
        first.sendall(b'{"entries": [' + b" " * 100_000)
        _wait_until(
            lambda: _in_use(s, alice, "large_bodies")["user"] == 1,
            "alice's large body to take its slot",
        )
        from server_fixture import answer_before_the_body

        second = _send_head(s, path, alice, 4 * 2**20)
        with second:
            status, answer = answer_before_the_body(second)
        assert status == 429, answer
        assert b"retry-after: 2" in answer.lower()
        assert b"large_bodies_per_user" in answer

        _small_append_and_read(s, "body-alice")  # her own small ones pass

        bob = s.token("writer", "body-bob")
        blob = b"b" * 200_000  # a large body of his own
        digest = "sha256:" + hashlib.sha256(blob).hexdigest()
        status, answer = s.call("PUT", f"{A}/blobs/{digest}", bob, raw=blob)
        assert status == 201, answer
        big_note = s.entry("body-bob", "note", {"text": "x" * 90_000})
        status, answer = s.call("POST", path, bob, {"entries": [big_note]})
        assert status == 201, answer
        _small_append_and_read(s, "body-bob")
    finally:
        first.close()
    _wait_until(
        lambda: _in_use(s, alice, "large_bodies")["user"] == 0,
        "the slot to be given back once the client went away",
    )
    big_note = s.entry("body-alice", "note", {"text": "y" * 90_000})
    status, answer = s.call("POST", path, alice, {"entries": [big_note]})
    assert status == 201, answer


def _get_unread(server, path: str, token: str) -> socket.socket:
    """A GET whose answer the client does not read (a small receive window):
    the server is left sending it."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.settimeout(10)
    sock.connect(("127.0.0.1", server.port))
    sock.sendall(
        f"GET {server.prefix}{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {token}\r\n\r\n".encode()
    )
    return sock


def test_a_readers_large_blob_reads_take_its_large_body_slots(server):
    """An auditor (the lowest role) asked for a large blob on one connection
    after another without reading the answers: each read the whole blob into
    the server's memory and kept it there until sent, without bound (here 8
    MiB each; blobs go up to 256 MiB). Now a blob of ``large_body_bytes`` or
    more is read in the reader's large-body slot, given back once sent: its
    next large read is 429 while one is unread, and ``HEAD``, small blobs and
    other users pass."""
    s = server
    writer, reader = s.token("writer", "blob-w"), s.token("auditor", "blob-r")
    big = b"B" * (8 * 2**20)
    small = b"s" * 100
    digests = []
    for data in (big, small):
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        status, answer = s.call("PUT", f"{A}/blobs/{digest}", writer, raw=data)
        assert status == 201, answer
        digests.append(digest)
    path, small_path = (f"{A}/blobs/{d}" for d in digests)
    unread = _get_unread(s, path, reader)
    try:
        _wait_until(
            lambda: _in_use(s, reader, "large_bodies")["user"] == 1,
            "the unread blob to hold its reader's slot",
        )
        status, answer = s.call("GET", path, reader)
        assert status == 429, answer
        assert answer["error"]["limit"] == "large_bodies_per_user"
        assert s.call("HEAD", path, reader)[0] == 200
        assert s.call("GET", small_path, reader) == (200, small)
        assert s.call("GET", path, writer) == (200, big)
    finally:
        unread.close()
    _wait_until(
        lambda: _in_use(s, reader, "large_bodies")["user"] == 0,
        "the slot to be given back once the client went away",
    )
    assert s.call("GET", path, reader) == (200, big)


def test_a_readers_pages_of_records_take_its_large_body_slots(server):
    """A page of records is up to 16 MiB (22 MiB of JSON), read and built in a
    worker thread, and held until sent: an auditor asking for pages on
    connection after connection kept every worker thread reading and had the
    server hold each unread page, without bound. Now a page is read in the
    reader's large-body slot, taken before anything is read and given back
    once a large answer is sent (at once for a small one): while one large
    page is unread, its next page is refused 429 without touching the
    database (answered while the records table is locked), and another
    user's large page passes; the slot comes back when the client goes away.
    """
    import psycopg

    s = server
    writer, reader = s.token("writer", "page-w"), s.token("auditor", "page-r")
    big = [s.entry("page-w", "note", {"text": "p" * 100_000}) for _ in range(80)]
    status, answer = s.call("POST", f"{A}/entries", writer, {"entries": big})
    assert status == 201, answer
    big_seq = answer["records"][0]["seq"]
    path = f"{A}/records?start={big_seq}&limit=80"  # 8 MB of records
    status, page = s.call("GET", f"{A}/records?start={big_seq}&limit=1", reader)
    assert status == 200, page  # a small answer gives its slot back at once
    assert _in_use(s, reader, "large_bodies")["user"] == 0

    unread = _get_unread(s, path, reader)
    lock = psycopg.connect(s.owner_url)
    try:
        _wait_until(
            lambda: _in_use(s, reader, "large_bodies")["user"] == 1,
            "the unread page to hold its reader's slot",
        )
        schema = _schema(s, "team-a")
        lock.execute(
            f'LOCK TABLE "{schema}".records, "{schema}".merkle_nodes '
            "IN ACCESS EXCLUSIVE MODE"
        )
        for asked in (
            f"records?start={big_seq}&limit=1",
            "nodes?level=0&start=0&stop=1000",  # may be 89 kB of JSON
        ):
            conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=20)
            conn.request(
                "GET",
                f"{s.prefix}{A}/{asked}",
                headers={"Authorization": f"Bearer {reader}"},
            )
            response = conn.getresponse()  # a read would wait on the lock
            error = json.loads(response.read())["error"]
            conn.close()
            assert response.status == 429, (asked, error)
            assert error["limit"] == "large_bodies_per_user"
            assert response.getheader("retry-after") == "2"
        lock.rollback()
        status, found = s.call("GET", f"{A}/nodes?level=0&start=0&stop=10", reader)
        assert status == 200, found  # a small range takes no slot
        assert len(found["nodes"]) == 10
        status, page = s.call("GET", path, writer)
        assert status == 200, page
        assert [r["seq"] for r in page["records"]] == [big_seq + n for n in range(80)]
    finally:
        lock.rollback()
        lock.close()
        unread.close()
    _wait_until(
        lambda: _in_use(s, reader, "large_bodies")["user"] == 0,
        "the slot to be given back once the client went away",
    )
    status, again = s.call("GET", path, reader)
    assert (status, again) == (200, page)


def _schema(server, ledger: str) -> str:
    import psycopg

    with psycopg.connect(server.owner_url, autocommit=True) as conn:
        row = conn.execute(
            "SELECT schema FROM mltrail_server.ledgers WHERE name = %s", (ledger,)
        ).fetchone()
    return str(row[0])


def test_a_verification_flood_is_bounded_and_shared(server):
    """A verification of team-a is kept running (its blob read waits on a lock
    the test holds): the same user's next one at the same head shares it; at a
    new head it is refused 429, another user's 503 (the ledger's one slot),
    while team-a's appends and reads, and team-b's verification, pass. Before,
    every request started a verification of its own."""
    import psycopg

    s = server
    vera, walt = s.token("auditor", "verify-vera"), s.token("auditor", "verify-walt")
    writer = s.token("writer", "verify-wes")
    blob = b"a blob the verification re-reads"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    assert s.call("PUT", f"{A}/blobs/{digest}", writer, raw=blob)[0] == 201
    attached = s.entry(
        "verify-wes",
        "note",
        {"text": "with a blob", "attachments": [{"blob": digest, "size": len(blob)}]},
    )
    assert s.call("POST", f"{A}/entries", writer, {"entries": [attached]})[0] == 201

    answers: list[tuple[int, Any]] = []

    def verify(token: str) -> None:  # on a connection of this thread's own
        answers.append(s.call("POST", f"{A}/verify", token))

    lock = psycopg.connect(s.owner_url)
    try:
        lock.execute(
            f'LOCK TABLE "{_schema(s, "team-a")}".blobs IN ACCESS EXCLUSIVE MODE'
        )
        threads = [threading.Thread(target=verify, args=(vera,))]
        threads[0].start()
        _wait_until(lambda: _in_use(s, vera, "verifies")["user"] == 1, "a verify")
        threads.append(threading.Thread(target=verify, args=(vera,)))  # same head
        threads[1].start()
        _wait_until(lambda: _in_use(s, vera, "verifies")["sharing"] == 1, "sharing")

        _small_append_and_read(s, "verify-wes")  # the head moves
        for token, status, limit in ((vera, 429, "user"), (walt, 503, "ledger")):
            for _ in range(3):
                code, answer = s.call("POST", f"{A}/verify", token)
                assert code == status, answer
                assert answer["error"]["limit"] == f"verifies_per_{limit}"
        b_auditor = s.token("auditor", "verify-bo", ledger="team-b")
        code, report = s.call("POST", f"{B}/verify", b_auditor)
        assert code == 200, report
        assert _in_use(s, vera, "verifies")["server"] == 1  # the second shares it
    finally:
        lock.rollback()
        lock.close()
    for thread in threads:
        thread.join(60)
    assert [a[0] for a in answers] == [200, 200], answers
    assert answers[0][1] == answers[1][1]
    assert answers[0][1]["ok"] is True, answers[0][1]


def test_one_user_verifying_again_and_again_leaves_the_ledger_share_free(server):
    """A ledger has one verification slot, and a user one: a user asking
    again as soon as each of its verifications ended kept the ledger's slot
    nearly all the time, and its other users were refused 503 whenever they
    asked. Now a user whose verification kept another user out pauses once
    it ends (here 100,000 times as long as it took, at least the refusal's
    ``Retry-After``): its next one is 429 with ``Retry-After``, and the other
    user verifies. A verification nobody waited for brings no pause."""
    import psycopg

    s = server
    pat, quinn = (s.token("auditor", n, ledger="team-b") for n in ("pat", "quinn"))
    writer = s.token("writer", "pat-writer", ledger="team-b")
    blob = b"a blob team-b's verification re-reads"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    assert s.call("PUT", f"{B}/blobs/{digest}", writer, raw=blob)[0] == 201
    attached = s.entry(
        "pat-writer",
        "note",
        {"text": "with a blob", "attachments": [{"blob": digest, "size": len(blob)}]},
        ledger="team-b",
    )
    assert s.call("POST", f"{B}/entries", writer, {"entries": [attached]})[0] == 201
    for _ in range(2):  # nobody waits: no pause
        status, report = s.call("POST", f"{B}/verify", quinn)
        assert status == 200, report
        _small_append_and_read(s, "pat-writer", B)

    answers: list[tuple[int, Any]] = []
    lock = psycopg.connect(s.owner_url)
    try:
        lock.execute(
            f'LOCK TABLE "{_schema(s, "team-b")}".blobs IN ACCESS EXCLUSIVE MODE'
        )
        verify = threading.Thread(
            target=lambda: answers.append(s.call("POST", f"{B}/verify", pat))
        )
        verify.start()
        _wait_until(
            lambda: _in_use(s, pat, "verifies", B)["user"] == 1, "pat's verification"
        )
        _small_append_and_read(s, "pat-writer", B)  # a new head: nothing to share
        status, answer = s.call("POST", f"{B}/verify", quinn)
        assert (status, answer["error"]["limit"]) == (503, "verifies_per_ledger")
    finally:
        lock.rollback()
        lock.close()
    verify.join(60)
    assert [a[0] for a in answers] == [200], answers

    conn = _connect(s)
    conn.request(
        "POST", f"{s.prefix}{B}/verify", headers={"Authorization": f"Bearer {pat}"}
    )
    response = conn.getresponse()
    error = json.loads(response.read())["error"]
    conn.close()
    assert response.status == 429, error
    assert error["limit"] == "verify_pause"
    assert response.getheader("retry-after") == str(error["retry_after"])
    assert int(response.getheader("retry-after")) >= 5
    status, report = s.call("POST", f"{B}/verify", quinn)
    assert status == 200, report
    assert report["ok"] is True, report


def _fail_a_read(server, token: str) -> tuple[int, Any]:
    """A read the database fails: the server's backend serving it, waiting on a
    table lock the test holds, is terminated (503, the store's error)."""
    import psycopg

    answers: list[tuple[int, Any]] = []
    lock = psycopg.connect(server.owner_url)
    try:
        lock.execute(
            f'LOCK TABLE "{_schema(server, "team-a")}".records IN ACCESS EXCLUSIVE MODE'
        )
        reader = threading.Thread(
            target=lambda: answers.append(server.call("GET", f"{A}/records", token))
        )
        reader.start()
        waiting: list[Any] = []
        with psycopg.connect(server.owner_url, autocommit=True) as conn:

            def blocked() -> bool:
                waiting[:] = conn.execute(  # this test's database only
                    "SELECT pid FROM pg_stat_activity WHERE wait_event_type = "
                    "'Lock' AND datname = current_database() AND pid <> %s",
                    (lock.info.backend_pid,),
                ).fetchall()
                return bool(waiting)

            _wait_until(blocked, "the read to wait on the lock")
            for (pid,) in waiting:
                conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
        reader.join(60)
    finally:
        lock.rollback()
        lock.close()
    return answers[0]


@contextlib.contextmanager
def _flooded(s: Any, prefix: str, refusals: int) -> Iterator[None]:
    """Three writers hold the process's live-run holds (``LIMITS``), then a
    fourth is refused ``refusals`` times (503 each); the holds end on leaving."""
    held = []
    try:
        for name in ("a", "b", "c"):
            conn, status, refusal = _open_hold(s, s.token("writer", f"{prefix}-{name}"))
            assert status == 200, refusal
            held.append(conn)
        flooder = s.token("writer", f"{prefix}-d")
        for _ in range(refusals):
            assert _open_hold(s, flooder)[1] == 503
        yield
    finally:
        for conn in held:
            conn.close()


def test_a_flood_of_refusals_leaves_a_few_log_lines(server, tmp_path):
    """Each refusal with 503 was an error line in the server's log: a flood of
    them could fill its disk. At most ``error_lines`` (3) per kind per interval
    now, then one line with the count. A refusal (a warning) is counted
    under its bound, not under its status: before, the
    refusals used up the allowance of every 503, so the database failure that
    came next, whose answer says "the server's log says why", was not logged."""
    from server_fixture import running_server

    options = [o for k, v in LIMITS.items() for o in ("--limit", f"{k}={v}")]
    with running_server(*options) as s:
        with _flooded(s, "flood", 40):
            pass
        status, answer = _fail_a_read(s, s.token("auditor", "flood-e"))
        assert status == 503, answer
        assert "the server's log says why" in answer["error"]["hint"]
        s.stop()
        log = s.log.read_text(errors="replace")
    refusals = [line for line in log.splitlines() if "live-run holds already" in line]
    assert len(refusals) == LIMITS["error_lines"], log[-3000:]
    counted = "37 more log lines (HTTP 503 holds_per_ledger) were not logged"
    assert counted in log, log[-3000:]
    failed = [line for line in log.splitlines() if f"GET /api/v1{A}/records" in line]
    assert len(failed) == 1, log[-3000:]
    assert "terminat" in failed[0], failed  # what the database said


def test_a_user_at_every_share_leaves_others_appending_and_the_admin_in_charge(
    server,
):
    """Mallory (a writer) takes every share she has at once: her hold share,
    a verification kept running (its blob read waits on a table lock the test
    holds), and a large append kept half sent. Meanwhile another user's append
    is answered 201, and the ledger's admin reads the bounds and Mallory's
    use, lists the tokens and revokes hers; her holds then end (a hold checks
    its token each heartbeat) and her next request is 401."""
    import psycopg

    s = server
    _wait_until(lambda: _in_use(s, s.token("admin"), "holds")["ledger"] == 0, "holds")
    made = s.new_token("writer", "mallory")
    mallory, admin = made["token"], s.token("admin")
    blob = b"a blob mallory's verification re-reads"
    digest = "sha256:" + hashlib.sha256(blob).hexdigest()
    assert s.call("PUT", f"{A}/blobs/{digest}", mallory, raw=blob)[0] == 201
    attached = s.entry(
        "mallory",
        "note",
        {"text": "with a blob", "attachments": [{"blob": digest, "size": len(blob)}]},
    )
    assert s.call("POST", f"{A}/entries", mallory, {"entries": [attached]})[0] == 201
    held: list[Any] = []
    verifying: list[tuple[int, Any]] = []
    lock = psycopg.connect(s.owner_url)
    body = _send_head(s, f"{A}/entries", mallory, 4 * 2**20)
    try:
        for _ in range(LIMITS["holds_per_user"]):
            conn, status, refusal = _open_hold(s, mallory)
            assert status == 200, refusal
            held.append(conn)
        assert _open_hold(s, mallory)[1] == 429
        body.sendall(b'{"entries": [' + b" " * 100_000)
        lock.execute(
            f'LOCK TABLE "{_schema(s, "team-a")}".blobs IN ACCESS EXCLUSIVE MODE'
        )
        verify = threading.Thread(
            target=lambda: verifying.append(s.call("POST", f"{A}/verify", mallory))
        )
        verify.start()
        _wait_until(
            lambda: (
                _in_use(s, mallory, "verifies")["user"] == 1
                and _in_use(s, mallory, "large_bodies")["user"] == 1
            ),
            "mallory's verification and large body to take their slots",
        )

        _small_append_and_read(s, "mallory-neighbour")  # another user appends
        status, answer = s.call("GET", f"{A}/limits", admin)
        assert status == 200, answer
        assert answer["in_use"]["verifies"]["ledger"] == 1
        status, answer = s.call("GET", f"{A}/tokens", admin)
        assert status == 200, answer
        assert made["id"] in {t["id"] for t in answer["tokens"]}
        status, answer = s.call("POST", f"{A}/tokens/{made['id']}/revoke", admin)
        assert (status, answer["revoked"]) == (200, True), answer
        _wait_until(
            lambda: _in_use(s, admin, "holds")["ledger"] == 0,
            "the revoked token's holds to end",
        )
        assert s.call("GET", f"{A}/head", mallory)[0] == 401
    finally:
        lock.rollback()
        lock.close()
        body.close()
        for conn in held:
            conn.close()
    verify.join(60)
    assert [v[0] for v in verifying] == [200], verifying  # begun before: it ends


def test_aborted_uploads_leave_no_traceback_in_the_log(server):
    """A blob upload whose client went away mid-body raised Starlette's
    ClientDisconnect: answered 500 and logged twice with its traceback (ours,
    then uvicorn's "Exception in ASGI application", which no throttle held),
    some 80 lines for each aborted upload any writer could repeat. Now it is
    the client's error (400, as on the append route) and logs nothing."""
    s = server
    token = s.token("writer", "aborter")
    digest = "sha256:" + "0" * 64
    for _ in range(5):
        sock = _send_head(s, f"{A}/blobs/{digest}", token, 200_000, method="PUT")
        sock.sendall(b"x" * 1000)
        sock.close()
    _wait_until(
        lambda: _in_use(s, token, "large_bodies")["user"] == 0, "the uploads to end"
    )
    status, answer = s.call("PUT", f"{A}/blobs/{digest}", token, raw=b"x")
    assert status == 400, answer  # the server still answers, and has logged:
    log = s.log.read_text(errors="replace")
    assert "ClientDisconnect" not in log, log[-3000:]
    assert "Exception in ASGI application" not in log, log[-3000:]


def _said(log: str) -> int:
    """Refusal lines of ``log``, and the lines it says it left out."""
    said = 0
    for line in log.splitlines():
        if "live-run holds already" in line:
            said += 1
            if "more like this not logged]" in line:
                said += int(line.split("[", 1)[1].split()[0])
        elif "(HTTP 503 holds_per_ledger) were not logged" in line:
            said += int(line.split(" more log lines", 1)[0].split()[-1])
    return said


def test_the_count_of_left_out_lines_is_logged_each_interval(tmp_path):
    """The count of lines left out came only with the next line let through,
    or when the server stopped: after a flood, the log said nothing of its
    size for as long as the server ran quietly. Now each interval's count is
    a line of its own while the server runs: every refusal is said, by a
    line or by a count, without stopping the server."""
    from server_fixture import running_server

    limits = {**LIMITS, "error_lines": 1, "error_interval": 3}
    options = [o for k, v in limits.items() for o in ("--limit", f"{k}={v}")]
    with running_server(*options) as s, _flooded(s, "tick", 10):
        _wait_until(
            lambda: _said(s.log.read_text(errors="replace")) == 10,
            "every refusal to be said in the log",
        )
        assert s.process is not None
        assert s.process.poll() is None  # still running


def test_limits_are_checked_when_the_server_starts(tmp_path):
    """An unknown or non-positive bound stops `mltrail server` at once."""
    import subprocess
    import sys

    for bad, said in (("holds_per_usr=3", "unknown limit"), ("holds=0", "positive")):
        done = subprocess.run(
            [sys.executable, "-m", "mltrail", "server", "--db", "postgresql://x/y",
             "--limit", bad],
            capture_output=True, text=True, check=False, timeout=60,
        )  # fmt: skip
        assert done.returncode == 2, done.stderr
        assert said in done.stderr


def test_the_client_says_why_its_run_is_not_held(server, caplog):
    """A client refused a hold for want of a slot records its run unheld and
    says so on stderr (a warning of the ``mltrail`` logger), naming the share."""
    import logging

    from mltrail.record.recorder import new_run_id
    from mltrail.storage.http import HttpStore

    s = server
    token = s.token("writer", "client-hal")
    _wait_until(lambda: _in_use(s, token, "holds")["ledger"] == 0, "earlier holds")
    held = [_open_hold(s, token)[0] for _ in range(LIMITS["holds_per_user"])]
    store = HttpStore(f"http://127.0.0.1:{s.port}/ledgers/team-a", token)
    try:
        with caplog.at_level(logging.WARNING, "mltrail"):
            assert store.hold_run(new_run_id()) is None
    finally:
        store.close()
        for conn in held:
            conn.close()
    assert "the server did not hold run" in caplog.text
    assert "'client-hal' has 2 live-run holds already" in caplog.text
    assert "(HTTP 429)" in caplog.text
