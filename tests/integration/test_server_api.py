"""The team server's API against a real ``mltrail server`` subprocess and PostgreSQL.

Every route x every kind of caller (no token, malformed, expired, revoked,
another ledger's writer, each role) answers as docs/server.md says; oversized
and too-deep bodies store nothing; hostile query and path strings give 4xx;
concurrent appends neither fork nor leave gaps; an idempotent retry adds nothing.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import threading
import uuid

import pytest

from mltrail.core.limits import run_id_problem
from optional_extras import require_extra

require_extra("server", "fastapi", "uvicorn", "psycopg")

from mltrail.core.canonical import compute_record_hash  # noqa: E402

A = "/ledgers/team-a"
BLOB = b"server test blob"
BLOB_DIGEST = "sha256:" + hashlib.sha256(BLOB).hexdigest()


@pytest.fixture(scope="module")
def server(team_server):
    s = team_server
    status, _ = s.call("PUT", f"{A}/blobs/{BLOB_DIGEST}", s.token("admin"), raw=BLOB)
    assert status == 201
    return s


def _size(server) -> int:
    return server.call("GET", f"{A}/head", server.token("auditor"))[1]["size"]


# -- the access table -----------------------------------------------------------

READ = ("writer", "approver", "auditor", "admin")
UPLOAD = ("writer", "approver", "admin")
ADMIN = ("admin",)


def _note(server, name):
    return {"entries": [server.entry(name, "note", {"text": f"from {name}"})]}


def _key(server, name):
    from mltrail.core.signing import encode_b64
    from mltrail.ledger.keystore import generate_signer

    signer = generate_signer()
    message = f"mltrail-key-register/1\ntest.example/team-a\n{name}\n{signer.key_id}\n"
    return {
        "public_key": encode_b64(signer.public_key),
        "identity": name,
        "proof": encode_b64(signer.sign(message.encode())),
    }


def _revoke_path(server, name):
    return f"{A}/tokens/{server.new_token('auditor', 'to-revoke')['id']}/revoke"


ROUTES = [
    # (method, path or path(server, name), body(server, name) or None, roles, status)
    ("GET", A, None, READ, 200),
    ("GET", f"{A}/head", None, READ, 200),
    ("GET", f"{A}/records?start=0&limit=2", None, READ, 200),
    ("GET", f"{A}/records?kinds=key.added", None, READ, 200),
    ("GET", f"{A}/nodes?level=0&start=0&stop=10", None, READ, 200),
    ("GET", f"{A}/nodes/0/0", None, READ, 200),
    ("GET", f"{A}/checkpoints", None, READ, 200),
    ("GET", f"{A}/checkpoints/latest", None, READ, 200),
    ("GET", f"{A}/time-floor", None, READ, 200),
    ("GET", f"{A}/meta", None, READ, 200),
    ("GET", f"{A}/evidence", None, READ, 200),
    ("GET", f"{A}/purges", None, READ, 200),
    ("GET", f"{A}/blobs/{BLOB_DIGEST}", None, READ, 200),
    ("HEAD", f"{A}/blobs/{BLOB_DIGEST}", None, READ, 200),
    ("GET", f"{A}/blobs?prefix=sha256:&limit=5", None, READ, 200),
    ("GET", f"{A}/proofs/inclusion?seq=0&size=1", None, READ, 200),
    ("GET", f"{A}/proofs/consistency?old=1&new=1", None, READ, 200),
    ("POST", f"{A}/verify", None, READ, 200),
    ("GET", f"{A}/keys", None, READ, 200),
    ("GET", f"{A}/limits", None, READ, 200),
    ("PUT", f"{A}/blobs/{BLOB_DIGEST}", "blob", UPLOAD, 201),
    ("POST", f"{A}/entries", _note, UPLOAD, 201),
    ("POST", f"{A}/keys", _key, UPLOAD, 201),
    (
        "POST",
        f"{A}/tokens",
        lambda s, n: {"name": "new", "role": "auditor"},
        ADMIN,
        201,
    ),
    ("GET", f"{A}/tokens", None, ADMIN, 200),
    ("POST", _revoke_path, None, ADMIN, 200),
    ("POST", f"{A}/runs/r-1/hold?lease=0.2", None, UPLOAD, 200),
    ("GET", f"{A}/runs/live?runs=r-1,r-2", None, READ, 200),
]
CALLERS = (
    "anonymous", "malformed", "wrong-secret", "expired", "revoked",
    "other-ledger-writer", "writer", "approver", "auditor", "admin",
)  # fmt: skip


def _token(server, caller):
    if caller == "anonymous":
        return None
    if caller == "malformed":
        return "mlt_nothex_" + "x" * 43
    if caller == "wrong-secret":
        return server.token("admin")[:-4] + "AAAA"
    if caller == "expired":
        return server.expired_token("admin")
    if caller == "revoked":
        return server.revoked_token("admin")
    if caller == "other-ledger-writer":
        return server.token("writer", ledger="team-b")
    return server.token(caller)


def _route_id(route):
    path = route[1] if isinstance(route[1], str) else "/tokens/{id}/revoke"
    return f"{route[0]} {path.removeprefix(A) or '/'}"


@pytest.mark.parametrize("route", ROUTES, ids=_route_id)
def test_every_route_answers_each_caller_as_the_contract_says(server, route):
    method, path, body, roles, ok = route
    problems = []
    for caller in CALLERS:
        token = _token(server, caller)
        name = caller if caller in READ else "writer"
        where = path(server, name) if callable(path) else path
        raw, payload = None, None
        if body == "blob":
            raw = BLOB
        elif body is not None:
            payload = body(server, name)
        status, answer = server.call(method, where, token, payload, raw=raw)
        if caller in ("anonymous", "malformed", "wrong-secret", "expired", "revoked"):
            want = 401
        elif caller == "other-ledger-writer":
            want = 403
        else:
            want = ok if caller in roles else 403
        if status != want:
            problems.append(f"{caller}: {status} (want {want}) {answer!r:.200}")
        elif status >= 400 and method != "HEAD":
            assert set(answer["error"]) >= {"code", "message"}, answer
    assert not problems, "\n".join(problems)


def test_health_needs_no_token_and_the_spec_is_served(server):
    assert server.call("GET", "/health") == (200, {"status": "ok", "version": "0.1.0"})
    status, spec = server.call("GET", "/openapi.json")
    assert status == 200
    assert "/api/v1/ledgers/{ledger}/entries" in spec["paths"]
    # no interactive docs page (it loaded Swagger UI's JavaScript from a CDN)
    assert server.call("GET", "/docs")[0] == 404
    for path in ("/docs", "/docs/oauth2-redirect", "/redoc"):
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
        conn.request("GET", path)
        assert conn.getresponse().status == 404, path
        conn.close()


# -- appends --------------------------------------------------------------------


def test_an_append_returns_seqs_hashes_and_a_checkpoint_that_match_the_ledger(server):
    token = server.token("writer", "alice")
    entries = [server.entry("alice", "note", {"text": f"n{i}"}) for i in range(3)]
    status, answer = server.call("POST", f"{A}/entries", token, {"entries": entries})
    assert status == 201, answer
    seqs = [r["seq"] for r in answer["records"]]
    assert seqs == list(range(seqs[0], seqs[0] + 3))
    assert answer["size"] >= seqs[-1] + 1
    assert answer["checkpoint"].startswith("test.example/team-a\n")
    _, page = server.call("GET", f"{A}/records?start={seqs[0]}&limit=3", token)
    for record, stored in zip(answer["records"], page["records"], strict=True):
        data = base64.b64decode(stored["data"])
        assert compute_record_hash(data) == bytes.fromhex(record["hash"])
        assert json.loads(data)["prev"] == record["prev"]
    assert answer["records"][1]["prev"] == answer["records"][0]["hash"]


def test_a_request_of_many_entries_lands_whole_and_verifies(server):
    token = server.token("writer", "alice")
    entries = [server.entry("alice", "note", {"text": f"bulk {i}"}) for i in range(300)]
    before = _size(server)
    status, answer = server.call("POST", f"{A}/entries", token, {"entries": entries})
    assert status == 201, answer
    assert [r["seq"] for r in answer["records"]] == list(range(before, before + 300))
    status, report = server.call("POST", f"{A}/verify", server.token("auditor"))
    assert report["ok"], report


@pytest.mark.parametrize(
    ("role", "kind", "body", "why"),
    [
        ("writer", "model.approved", None, "may not append"),
        ("approver", "run.started", None, "may not append"),
        ("writer", "key.added", None, "may not append"),
        ("admin", "blob.purged", None, "may not append"),
        ("writer", "blob.purged", None, "may not append"),
    ],
)
def test_a_role_appends_only_its_kinds(server, role, kind, body, why):
    entry = server.entry(role, kind, body or {"x": 1})
    before = _size(server)
    status, answer = server.call(
        "POST", f"{A}/entries", server.token(role), {"entries": [entry]}
    )
    assert status == 403
    assert why in answer["error"]["message"]
    assert _size(server) == before


def test_an_entry_of_another_user_is_refused(server):
    entry = server.entry("mallory", "note", {"text": "as someone else"})
    status, answer = server.call(
        "POST", f"{A}/entries", server.token("writer", "alice"), {"entries": [entry]}
    )
    assert status == 403
    assert "actor.user" in answer["error"]["message"]


def test_an_entry_signed_by_another_users_key_is_refused(server):
    server.token("writer", "gina")
    bobs_key = server.signer_for("team-a", "bob")
    entry = server.entry("gina", "note", {"text": "signed by bob"}, signer=bobs_key)
    before = _size(server)
    status, answer = server.call(
        "POST", f"{A}/entries", server.token("writer", "gina"), {"entries": [entry]}
    )
    assert status == 422, answer
    assert _size(server) == before


def test_a_registered_key_is_listed_with_its_identity(server):
    signer = server.signer_for("team-a", "alice")
    _, listed = server.call("GET", f"{A}/keys", server.token("auditor"))
    found = {k["key"]: k for k in listed["keys"]}
    assert found[signer.key_id]["identity"] == "alice"
    assert found[signer.key_id]["revoked_seq"] is None
    _, info = server.call("GET", A, server.token("auditor"))
    assert signer.key_id not in info["log_keys"]


def test_a_bad_signature_is_refused_and_stores_nothing(server):
    entry = server.entry("alice", "note", {"text": "signed"})
    entry["body"]["text"] = "changed after signing"
    before = _size(server)
    status, answer = server.call(
        "POST", f"{A}/entries", server.token("writer", "alice"), {"entries": [entry]}
    )
    assert status == 422, answer
    assert _size(server) == before


def test_one_bad_request_among_concurrent_ones_fails_alone(server):
    token = server.token("writer", "alice")
    before = _size(server)
    results = {}

    def post(i):
        entry = server.entry("alice", "note", {"text": f"c{i}"})
        if i == 3:
            entry["body"]["text"] = "tampered"
        results[i] = server.call("POST", f"{A}/entries", token, {"entries": [entry]})[0]

    threads = [threading.Thread(target=post, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results.pop(3) == 422
    assert set(results.values()) == {201}
    assert _size(server) == before + 7


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (b"{", 400),
        (b"[]", 400),
        (b'{"entries": []}', 400),
        (b'{"entries": [1]}', 400),
        (b'{"entries": [{"kind": "note"}]}', 400),
        (b'{"entries": [], "entries": []}', 400),
        (b'{"entries": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", 400),
        (b'{"entries": ["' + b"x" * (16 * 2**20) + b'"]}', 413),
    ],
    ids=[
        "truncated",
        "list",
        "empty",
        "number",
        "no-sig",
        "duplicate-key",
        "deep",
        "huge",
    ],
)
def test_bad_bodies_are_refused_before_anything_is_stored(server, body, status):
    before = _size(server)
    got, answer = server.call(
        "POST", f"{A}/entries", server.token("writer"), raw=body,
        headers={"Content-Type": "application/json"},
    )  # fmt: skip
    assert got == status, answer
    assert _size(server) == before


def test_a_declared_oversized_blob_is_refused_before_its_bytes_are_read(server):
    digest = "sha256:" + "1" * 64
    head = (
        f"PUT /api/v1{A}/blobs/{digest} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
        f"Authorization: Bearer {server.token('writer')}\r\n"
        f"Content-Length: {257 * 2**20}\r\n\r\n"
    )
    with socket.create_connection(("127.0.0.1", server.port), timeout=30) as sock:
        sock.sendall(head.encode() + b"x" * 10)  # and never the rest
        assert sock.recv(200).startswith(b"HTTP/1.1 413 ")
    assert server.call("GET", f"{A}/blobs/{digest}", server.token("writer"))[0] == 404


def test_a_blob_whose_bytes_do_not_match_the_digest_is_refused(server):
    digest = "sha256:" + "0" * 64
    status, _ = server.call(
        "PUT", f"{A}/blobs/{digest}", server.token("writer"), raw=b"x"
    )
    assert status == 400
    assert server.call("GET", f"{A}/blobs/{digest}", server.token("writer"))[0] == 404


def test_an_idempotent_retry_adds_nothing_and_a_changed_body_is_a_conflict(server):
    token = server.token("writer", "alice")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"entries": [server.entry("alice", "note", {"text": "once"})]}
    first = server.call("POST", f"{A}/entries", token, body, headers=key)
    assert first[0] == 201
    size = _size(server)
    again = server.call("POST", f"{A}/entries", token, body, headers=key)
    assert again == first
    assert _size(server) == size
    other = {"entries": [server.entry("alice", "note", {"text": "twice"})]}
    status, answer = server.call("POST", f"{A}/entries", token, other, headers=key)
    assert status == 409, answer
    assert _size(server) == size


def test_an_idempotency_key_of_another_token_is_a_conflict(server):
    key = {"Idempotency-Key": uuid.uuid4().hex}
    alice = {"entries": [server.entry("alice", "note", {"text": "alice's"})]}
    first = server.call(
        "POST", f"{A}/entries", server.token("writer", "alice"), alice, headers=key
    )
    assert first[0] == 201
    other = server.new_token("writer", "alice")["token"]
    status, _ = server.call("POST", f"{A}/entries", other, alice, headers=key)
    assert status == 409


def test_an_idempotency_key_is_each_users_own(server):
    """bob sends first, under the key alice's next request will use (``mltrail
    push`` derives its keys from what every reader sees in her headers). Keys
    were one namespace per ledger: her request was then refused, 409, for good.
    Each user's keys are now its own: bob gets his own answer, never hers, and
    she gets hers, once."""
    key = {"Idempotency-Key": "mltrail-push-" + uuid.uuid4().hex}
    bob_token, alice_token = (
        server.token("writer", "bob"),
        server.token("writer", "alice"),
    )
    bob = {"entries": [server.entry("bob", "note", {"text": "bob took the key"})]}
    taken = server.call("POST", f"{A}/entries", bob_token, bob, headers=key)
    assert taken[0] == 201
    alice = {"entries": [server.entry("alice", "note", {"text": "alice's batch"})]}
    status, answer = server.call(
        "POST", f"{A}/entries", alice_token, alice, headers=key
    )
    assert status == 201, answer
    assert answer["records"] != taken[1]["records"]
    size = _size(server)
    assert server.call("POST", f"{A}/entries", alice_token, alice, headers=key) == (
        status,
        answer,
    )
    assert server.call("POST", f"{A}/entries", bob_token, bob, headers=key) == taken
    assert _size(server) == size


def test_ledgers_are_apart(server):
    b = "/ledgers/team-b"
    before = _size(server)
    token = server.token("writer", "erin", ledger="team-b")
    entry = server.entry("erin", "note", {"text": "in b"}, ledger="team-b")
    status, answer = server.call("POST", f"{b}/entries", token, {"entries": [entry]})
    assert status == 201, answer
    assert answer["checkpoint"].startswith("test.example/team-b\n")
    assert _size(server) == before
    status, report = server.call(
        "POST", f"{b}/verify", server.token("auditor", ledger="team-b")
    )
    assert report["ok"], report


def test_only_an_admin_registers_a_key_for_another_identity(server):
    status, answer = server.call(
        "POST", f"{A}/keys", server.token("writer"), _key(server, "somebody-else")
    )
    assert status == 403
    assert "another identity" in answer["error"]["message"]
    status, _ = server.call(
        "POST", f"{A}/keys", server.token("admin"), _key(server, "frank")
    )
    assert status == 201


def test_records_of_kinds_page_on(server):
    token = server.token("auditor")
    status, first = server.call(
        "GET", f"{A}/records?kinds=note,key.added&limit=2", token
    )
    assert status == 200
    assert len(first["records"]) == 2
    assert first["next"] == first["records"][1]["seq"] + 1
    _, second = server.call(
        "GET", f"{A}/records?kinds=note,key.added&limit=2&start={first['next']}", token
    )
    kinds = {
        json.loads(base64.b64decode(r["data"]))["entry"]["kind"]
        for r in second["records"]
    }
    assert kinds <= {"note", "key.added"}
    assert second["records"][0]["seq"] >= first["next"]


def test_concurrent_identical_retries_append_once(server):
    token = server.token("writer", "alice")
    key = {"Idempotency-Key": uuid.uuid4().hex}
    body = {"entries": [server.entry("alice", "note", {"text": "racing"})]}
    before = _size(server)
    answers = []

    def post():
        answers.append(server.call("POST", f"{A}/entries", token, body, headers=key))

    threads = [threading.Thread(target=post) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({json.dumps(a, sort_keys=True) for a in answers}) == 1
    assert answers[0][0] == 201
    assert _size(server) == before + 1


def test_concurrent_writers_make_no_fork_or_gap_and_the_ledger_verifies(server):
    writers = [f"w{i}" for i in range(6)]
    tokens = {w: server.token("writer", w) for w in writers}
    for w in writers:  # with per-user keys, registering one appends a key.added
        server.signer_for("team-a", w)
    before = _size(server)
    seqs: list[int] = []
    lock = threading.Lock()

    def write(name):
        for i in range(10):
            entry = server.entry(name, "note", {"text": f"{name}-{i}"})
            status, answer = server.call(
                "POST", f"{A}/entries", tokens[name], {"entries": [entry]}
            )
            assert status == 201, answer
            with lock:
                seqs.extend(r["seq"] for r in answer["records"])

    threads = [threading.Thread(target=write, args=(w,)) for w in writers]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(seqs) == list(range(before, before + 60))
    status, report = server.call("POST", f"{A}/verify", server.token("auditor"))
    assert status == 200
    assert report["ok"], report
    assert report["size"] == before + 60


# -- hostile parameters -----------------------------------------------------------

INJECTIONS = (
    "'; DROP TABLE records; --",
    "1 OR 1=1",
    "team-a' --",
    "%00",
    "../../etc/passwd",
    "sha256:' UNION SELECT 1 --",
    "-1",
    "99999999999999999999999",
)


@pytest.mark.parametrize("evil", INJECTIONS)
def test_hostile_query_and_path_strings_give_4xx_and_change_nothing(server, evil):
    from urllib.parse import quote

    token = server.token("admin")
    q = quote(evil, safe="")
    before = server.call("GET", f"{A}/head", token)[1]
    paths = [
        ("GET", f"/ledgers/{q}"),
        ("GET", f"/ledgers/{q}/head"),
        ("GET", f"{A}/records?start={q}"),
        ("GET", f"{A}/records?kinds={q}"),
        ("GET", f"{A}/records?limit={q}"),
        ("GET", f"{A}/nodes?level={q}&start=0&stop=1"),
        ("GET", f"{A}/nodes/{q}/0"),
        ("GET", f"{A}/nodes/0/{q}"),
        ("GET", f"{A}/blobs/{q}"),
        ("GET", f"{A}/blobs?prefix={q}"),
        ("GET", f"{A}/proofs/inclusion?seq={q}&size=1"),
        ("GET", f"{A}/proofs/consistency?old={q}&new=1"),
        ("POST", f"{A}/tokens/{q}/revoke"),
        ("POST", f"{A}/runs/{q}/hold?lease=0.2"),
        ("GET", f"{A}/runs/live?runs={q}"),
    ]
    for method, path in paths:
        status, answer = server.call(method, path, token)
        assert status < 500, (path, status, answer)
        run_path = "/runs/" in path and run_id_problem(evil) is None  # a real id
        if "kinds=" not in path and not run_path:
            assert 400 <= status < 500, (path, status, answer)
    assert server.call("GET", f"{A}/head", token)[1] == before


def test_a_held_run_cannot_be_held_twice_and_holds_are_bounded(server):
    import http.client

    token = server.token("writer")
    first = http.client.HTTPConnection("127.0.0.1", server.port, timeout=30)
    first.request(
        "POST", f"{server.prefix}{A}/runs/twice-1/hold?lease=30",
        headers={"Authorization": f"Bearer {token}"},
    )  # fmt: skip
    response = first.getresponse()
    try:
        assert response.status == 200
        assert response.readline().strip() == b"held"
        status, answer = server.call("POST", f"{A}/runs/twice-1/hold?lease=0.2", token)
        assert status == 409, answer
        live = server.call("GET", f"{A}/runs/live?runs=twice-1", token)[1]
        assert live == {"live": ["twice-1"]}
    finally:
        first.close()
