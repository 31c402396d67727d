"""Attacks on a running team server (real ``mltrail server`` subprocess, real
PostgreSQL) that found weaknesses, each kept as a regression test.

- An append's body was read (up to 16 MiB, buffered) before its token was
  checked: anyone who could reach the port could hold that much memory per
  connection with ``Authorization: Bearer x``.
- A store error's text went to the client as is: the database URL (with a
  ``?password=`` parameter, which ``display_url`` kept) reached any token
  holder and the server's log.
- A database rolled back under the running server (its owner deleting the
  last batch) was appended to: the log key signed two checkpoints of one size.
"""

from __future__ import annotations

import socket
import uuid

import pytest

from optional_extras import require_extra

require_extra("server", "fastapi", "uvicorn", "psycopg")

A = "/ledgers/team-a"
UNKNOWN = "mlt_0123456789abcdef_" + "A" * 43


def _status_before_the_body(server, token: str | None, ledger: str = "team-a") -> int:
    """Send an append's headers (a 4 MiB body declared) and none of its body;
    the status the server answers with. A server that waits for the body first
    sends nothing, and the read times out."""
    from server_fixture import answer_before_the_body

    auth = f"Authorization: Bearer {token}\r\n" if token is not None else ""
    head = (
        f"POST {server.prefix}/ledgers/{ledger}/entries HTTP/1.1\r\n"
        f"Host: 127.0.0.1\r\n{auth}Content-Type: application/json\r\n"
        f"Content-Length: {4 * 2**20}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=10) as sock:
        sock.sendall(head.encode())
        return answer_before_the_body(sock)[0]


@pytest.mark.parametrize(
    ("caller", "want"),
    [
        ("unknown", 401),
        ("revoked", 401),
        ("expired", 401),
        ("auditor", 403),
        ("other-ledger-writer", 403),
    ],
)
def test_an_append_is_refused_before_its_body_is_read(team_server, caller, want):
    s = team_server
    token = {
        "unknown": lambda: UNKNOWN,
        "revoked": lambda: s.revoked_token("writer"),
        "expired": lambda: s.expired_token("writer"),
        "auditor": lambda: s.token("auditor"),
        "other-ledger-writer": lambda: s.token("writer", ledger="team-b"),
    }[caller]()
    assert _status_before_the_body(s, token) == want
    # twice: the second check of a known token comes from the server's cache
    assert _status_before_the_body(s, token) == want


def test_a_writer_still_appends_after_the_early_check(team_server):
    s = team_server
    token = s.token("writer", "early-check")
    entry = s.entry("early-check", "note", {"text": "after the early check"})
    for _ in range(2):  # the first authenticates, the second uses the cache
        status, answer = s.call("POST", f"{A}/entries", token, {"entries": [entry]})
        assert status == 201, answer
        entry = s.entry("early-check", "note", {"text": "again"})


def test_a_database_password_reaches_neither_clients_nor_the_log(tmp_path):
    """A second server on the same database, its URL carrying a password both
    ways libpq takes one (trust authentication ignores it); its role then may
    not connect again, so the next requests that need a connection fail."""
    from postgres_db import admin_connection
    from server_fixture import TestServer, free_port, running_server

    secret_user, secret_query = "pw-in-user-" + uuid.uuid4().hex, uuid.uuid4().hex
    with running_server() as s:
        base, _, database = s.app_url.rpartition("/")
        scheme, _, rest = base.partition("://")
        role, _, host = rest.partition("@")
        url = (
            f"{scheme}://{role}:{secret_user}@{host}/{database}?password={secret_query}"
        )
        other = TestServer(s.owner_url, url, s.keys, free_port(), tmp_path / "b.log")
        entry = s.entry("writer", "note", {"text": "x"}, ledger="team-b")
        writer_a, writer_b = s.token("writer"), s.token("writer", ledger="team-b")
        auditor_a = s.token("auditor")
        other.start()
        conn = admin_connection()
        try:
            assert other.call("GET", f"{A}/head", auditor_a)[0] == 200
            conn.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT 0')
            answers = [
                other.call("POST", f"{A}/runs/r-1/hold?lease=0.2", writer_a),
                other.call("GET", "/ledgers/team-b/head", s.token("auditor", ledger="team-b")),
                other.call("POST", "/ledgers/team-b/entries", writer_b, {"entries": [entry]}),
            ]  # fmt: skip
        finally:
            conn.execute(f'ALTER ROLE "{role}" CONNECTION LIMIT -1')
            conn.close()
            other.stop()
    for status, answer in answers:
        assert status == 503, answer
        text = str(answer)
        for leak in (secret_user, secret_query, database, "postgresql://"):
            assert leak not in text, answer
    log = (tmp_path / "b.log").read_text(errors="replace")
    assert "too many connections" in log  # the reason is logged ...
    assert secret_user not in log  # ... never the password
    assert secret_query not in log


def _hold(server, run: str, token: str, lease: float = 0.2) -> tuple[int, bytes]:
    """Hold ``run`` for ``lease`` seconds: (status, the whole answer)."""
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    try:
        conn.request(
            "POST",
            f"{server.prefix}{A}/runs/{run}/hold?lease={lease}",
            headers={"Authorization": f"Bearer {token}"},
        )
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def test_a_writer_holds_only_runs_it_started(team_server):
    """Bob held Alice's started run: it looked live after Alice's recorder
    died, and Alice's own hold (a lease renewed) was refused, 409."""
    from mltrail.record.recorder import new_run_id

    s = team_server
    alice, bob = s.token("writer", "hold-alice"), s.token("writer", "hold-bob")
    run = new_run_id()
    started = s.entry("hold-alice", "run.started", {"source": "wrapper"}, run=run)
    status, answer = s.call("POST", f"{A}/entries", alice, {"entries": [started]})
    assert status == 201, answer

    status, answer = _hold(s, run, bob)
    assert status == 403, answer
    assert b"hold-alice" in answer
    assert s.call("GET", f"{A}/runs/live?runs={run}", bob)[1] == {"live": []}
    assert _hold(s, run, alice)[0] == 200  # its recorder
    assert _hold(s, run, s.token("admin"))[0] == 200  # the ledger's admin
    assert _hold(s, new_run_id(), bob)[0] == 200  # a run not started yet


def test_a_writer_holds_no_run_another_user_wrote_first(team_server):
    """The hold checked only the run's ``run.started``: a rank above 0 of
    Alice's distributed run writes before rank 0 starts it, and Bob held that
    run then (200), so it looked live after her processes died and her
    recorder's own hold was refused, 409. A hold now follows the rule appends
    follow: while not started, a run is the user's who wrote its first
    record."""
    from mltrail.record.recorder import new_run_id

    s = team_server
    alice, bob = s.token("writer", "rank-alice"), s.token("writer", "rank-bob")
    rank1 = {"cpu": {}, "memory": {}, "gpus": [], "rank": {"rank": 1, "world_size": 2}}
    run = new_run_id()
    hardware = s.entry("rank-alice", "run.hardware", rank1, run=run)
    status, answer = s.call("POST", f"{A}/entries", alice, {"entries": [hardware]})
    assert status == 201, answer

    status, answer = _hold(s, run, bob)
    assert status == 403, answer
    assert b"rank-alice" in answer
    assert _hold(s, run, alice)[0] == 200


def test_a_token_put_in_the_url_is_refused_and_never_logged(team_server, tmp_path):
    """``?token=`` is no way to authenticate (401), and the access log of a
    server at ``--log-level info`` must not keep the secret of such a URL."""
    from server_fixture import TestServer, free_port

    s = team_server
    log = tmp_path / "info.log"
    other = TestServer(s.owner_url, s.app_url, s.keys, free_port(), log)
    other.start("--log-level", "info")
    token = s.new_token("writer", "url-token")
    try:
        for query in ("token", "access_token"):
            status, _ = other.call("GET", f"{A}/head?{query}={token['token']}")
            assert status == 401
        assert other.call("GET", f"{A}/head", token["token"])[0] == 200
    finally:
        other.stop()
    text = log.read_text(errors="replace")
    assert "401" in text  # the access log is on
    assert token["token"].removeprefix(f"mlt_{token['id']}_") not in text
    assert f"mlt_{token['id']}_***" in text


def test_no_secret_of_a_query_string_reaches_the_access_log(team_server, tmp_path):
    """The access log line is the request's path and query as sent: a caller
    that put any other credential in the URL (``?api_key=``, a presigned
    ``X-Amz-Signature``, ``?password=``) left it in the server's log in clear;
    only mltrail's own token shape was redacted."""
    from server_fixture import TestServer, free_port

    s = team_server
    log = tmp_path / "info.log"
    other = TestServer(s.owner_url, s.app_url, s.keys, free_port(), log)
    other.start("--log-level", "info")
    values = {
        name: "Qv" + uuid.uuid4().hex[:16]
        for name in ("api_key", "X-Amz-Signature", "password", "sig")
    }
    try:
        query = "&".join(f"{name}={value}" for name, value in values.items())
        status, _ = other.call("GET", f"{A}/head?page=2&{query}")
        assert status == 401
    finally:
        other.stop()
    text = log.read_text(errors="replace")
    assert "page=2" in text  # the access log is on, and keeps what is not secret
    assert "api_key=***" in text
    assert [v for v in values.values() if v in text] == []


def test_a_revoked_tokens_hold_ends_within_a_heartbeat(team_server):
    """A hold is one long request: revoking its token must end it, not leave
    the run held (and a database connection taken) for the rest of its lease
    (up to a day)."""
    import http.client

    from mltrail.record.recorder import new_run_id

    s = team_server
    made, run = s.new_token("writer", "hold-revoked"), new_run_id()
    conn = http.client.HTTPConnection("127.0.0.1", s.port, timeout=30)
    try:
        conn.request(
            "POST",
            f"{s.prefix}{A}/runs/{run}/hold?lease=120",
            headers={"Authorization": f"Bearer {made['token']}"},
        )
        response = conn.getresponse()
        assert response.status == 200
        assert response.readline() == b"held\n"
        auditor = s.token("auditor")
        assert s.call("GET", f"{A}/runs/live?runs={run}", auditor)[1]["live"] == [run]
        path = f"{A}/tokens/{made['id']}/revoke"
        assert s.call("POST", path, s.token("admin"))[0] == 200
        for _ in range(3):  # heartbeats, 5 s apart: the stream must end first
            if not response.readline():
                break
        else:
            pytest.fail("the hold outlived its token's revocation")
    finally:
        conn.close()
    assert s.call("GET", f"{A}/runs/live?runs={run}", auditor)[1]["live"] == []


def _size(s, ledger: str = "team-a") -> int:
    status, head = s.call("GET", f"/ledgers/{ledger}/head", s.token("auditor"))
    assert status == 200, head
    return head["size"]


@pytest.mark.parametrize(
    ("field", "value"),
    [("alg", "rsa"), ("alg", "ED25519"), ("key", 1), ("value", 7)],
)
def test_an_entry_whose_sig_verify_refuses_is_not_stored(team_server, field, value):
    """A writer sent a correctly signed entry with ``sig.alg`` "rsa": the server
    checked the entry without its ``sig`` against the schemas, the signature
    itself with Ed25519, and stored it (201). Verify reads every record's
    envelope with its sig and refused it ("malformed"): one writer made the
    team's ledger fail verification for good. A ``sig.key`` that was not a
    string got 503 (the database "failed") instead of 400. Now both are 400
    and nothing is stored."""
    s = team_server
    token = s.token("writer", "sig-shape")
    entry = s.entry("sig-shape", "note", {"text": "signed, then re-labelled"})
    entry["sig"][field] = value
    before = _size(s)
    status, answer = s.call("POST", f"{A}/entries", token, {"entries": [entry]})
    assert status == 400, answer
    assert "sig" in answer["error"]["message"]
    assert _size(s) == before
    status, report = s.call("POST", f"{A}/verify", s.token("auditor", "sig-shape"))
    assert status == 200, report
    assert report["ok"], report["errors"][:3]


def test_a_nul_in_a_query_or_path_is_a_client_error(team_server):
    """An auditor's ``?kinds=note%00`` reached PostgreSQL, which refuses NUL in
    text: 503, the server's database "failed" (and an error line in its log);
    an admin's ``/tokens/%00/revoke`` was a 500. Both are the caller's error."""
    s = team_server
    status, answer = s.call("GET", f"{A}/records?kinds=note%00", s.token("auditor"))
    assert status == 400, answer
    status, answer = s.call(
        "GET", f"{A}/records?kinds=note,run.started", s.token("auditor")
    )
    assert status == 200, answer
    for token_id in ("%00", "0123456789abcde%00"):
        status, answer = s.call(
            "POST", f"{A}/tokens/{token_id}/revoke", s.token("admin")
        )
        assert status == 404, answer


def test_a_page_of_records_is_bounded_in_bytes(team_server):
    """Pages were bounded in records only (up to 5,000, each up to 4 MiB), and
    the store fetched 2,000 rows at a time: once a writer had filled the ledger
    with large entries, every reader's page (``mltrail verify`` asks for 1,000)
    made the server hold gigabytes. A page now ends once it holds 16 MiB, and
    ``next`` says where the rest starts; a client paging on reads every record."""
    s = team_server
    b = "/ledgers/team-b"
    token = s.token("writer", "page-w", ledger="team-b")
    auditor = s.token("auditor", ledger="team-b")
    pad = "x" * (7 * 2**19)  # 3.5 MiB
    first = None
    for n in range(2):
        entries = [
            s.entry("page-w", "note", {"text": f"large {n}.{i}", "pad": pad},
                    ledger="team-b")
            for i in range(3)
        ]  # fmt: skip
        status, answer = s.call("POST", f"{b}/entries", token, {"entries": entries})
        assert status == 201, answer
        first = answer["records"][0]["seq"] if first is None else first
    last = answer["records"][-1]["seq"]

    seen, start, pages = [], first, 0
    while start is not None and start <= last:
        status, page = s.call("GET", f"{b}/records?start={start}&limit=1000", auditor)
        assert status == 200, page
        sizes = [len(r["data"]) * 3 // 4 for r in page["records"]]
        assert sum(sizes[:-1]) < 16 * 2**20, sizes
        seen += [r["seq"] for r in page["records"]]
        start, pages = page["next"], pages + 1
    assert pages >= 2
    assert [q for q in seen if q <= last] == list(range(first, last + 1))


def test_a_writer_cannot_date_entries_ahead_to_refuse_everyone_elses(team_server):
    """The format lets an append be dated up to its tolerance (5 minutes) after
    the appending machine's clock, and refuses one dated more than that before
    the ledger's newest time. Bob dated his notes 4 min 59 s ahead of the
    server's clock: from then on every other user's entry that was more than
    a second old when it reached the server (a recorder's batched records, a
    slow link, a clock a second behind) was refused, for as long as he kept
    doing it. The server now refuses an entry dated more than 30 s after its
    own clock (a stricter bound than the format's), so an entry must be
    4.5 minutes old to be refused."""
    from datetime import UTC, datetime, timedelta

    from mltrail.core.codec import format_time
    from mltrail.core.entry import Entry, sign_entry

    s = team_server
    bob, alice = s.token("writer", "ahead-bob"), s.token("writer", "ahead-alice")

    def dated(user: str, shift: timedelta, text: str) -> dict:
        when = format_time(datetime.now(UTC) + shift)
        entry = Entry("note", when, {"user": user}, {"text": text})
        return sign_entry(entry, s.signer_for("team-a", user)).to_dict()

    ahead = dated("ahead-bob", timedelta(minutes=4, seconds=59), "from the future")
    status, answer = s.call("POST", f"{A}/entries", bob, {"entries": [ahead]})
    assert status == 422, answer
    assert "after the server's clock" in answer["error"]["message"]
    slightly = dated("ahead-bob", timedelta(seconds=20), "a clock a little ahead")
    assert s.call("POST", f"{A}/entries", bob, {"entries": [slightly]})[0] == 201
    late = dated("ahead-alice", timedelta(seconds=-10), "recorded 10 s ago")
    status, answer = s.call("POST", f"{A}/entries", alice, {"entries": [late]})
    assert status == 201, answer


def test_a_database_rolled_back_under_the_server_is_not_signed_again():
    """The database's owner deleted the last batch (triggers disabled) while
    the server ran: the server appended the next entry at the same seq and
    signed a second checkpoint of that size with another root, a fork of
    its own log (the first writer's receipt names a record no longer there)."""
    import psycopg

    from server_fixture import running_server

    with running_server() as server:
        writer = server.token("writer")
        first = server.entry("writer", "note", {"text": "A"})
        second = server.entry("writer", "note", {"text": "B"})
        status, body = server.call("POST", f"{A}/entries", writer, {"entries": [first]})
        assert status == 201, body
        size = body["size"]
        tables = ("records", "merkle_nodes", "checkpoints")
        with psycopg.connect(server.owner_url, autocommit=True) as conn:
            conn.execute("SET search_path = ledger_team_a")
            for table in tables:
                conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
            conn.execute("DELETE FROM records WHERE seq >= %s", (size - 1,))
            conn.execute(
                "DELETE FROM merkle_nodes WHERE ((idx + 1) << level) > %s", (size - 1,)
            )
            conn.execute("DELETE FROM checkpoints WHERE size >= %s", (size,))
            for table in tables:
                conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")
        status, body = server.call(
            "POST", f"{A}/entries", writer, {"entries": [second]}
        )
        assert status == 500, body
        assert "rolled back" in body["error"]["message"]
        assert server.call("GET", f"{A}/head", writer)[1]["size"] == size - 1
