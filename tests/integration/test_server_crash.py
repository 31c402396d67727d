"""Faults under load: every acknowledged append survives, nothing is stored twice.

Four writers append notes through the real server (tests/server_fixture.py)
while, in the middle, the server process is killed with SIGKILL and started
again, or the database ends every connection the server holds (what a
PostgreSQL restart does to them; benchmarks/chaos_server.py restarts the real
one by hand). A writer whose request failed retries it under the same
Idempotency-Key, as the client does. Afterwards every append the server
acknowledged (201) is in the ledger at the seq and with the hash it was told,
no note was stored twice, and the ledger verifies.
"""

from __future__ import annotations

import http.client
import threading
import time
import uuid

import pytest

from optional_extras import require_extra
from server_fixture import running_server

require_extra("server", "fastapi", "uvicorn", "psycopg")

A = "/ledgers/team-a"
WRITERS = 4


@pytest.fixture(scope="module")
def server():
    with running_server() as running:
        yield running


def _kill_and_restart(server) -> None:
    server.process.kill()
    server.process.wait()
    time.sleep(0.3)
    server.start()


def _drop_connections(server) -> None:
    import psycopg

    database = server.owner_url.rsplit("/", 1)[1].split("?")[0]
    with psycopg.connect(server.owner_url, autocommit=True) as conn:
        ended = conn.execute(
            "SELECT count(*) FILTER (WHERE pg_terminate_backend(pid)) FROM "
            "pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            (database,),
        ).fetchone()[0]
    assert ended > 0
    time.sleep(0.2)  # the ended sessions' last words reach the server
    # Readers lent from the pool after that are new connections, not errors.
    admin = server.token("admin")
    for path in ("/head", "/records?start=0&limit=5", "/checkpoints/latest"):
        status, answer = server.call("GET", A + path, admin)
        assert status == 200, (path, answer)


@pytest.mark.parametrize("fault", [_kill_and_restart, _drop_connections])
def test_every_acknowledged_append_survives(server, fault):
    prefix = fault.__name__.strip("_")
    tokens = {
        f"{prefix}-{n}": server.token("writer", f"{prefix}-{n}") for n in range(WRITERS)
    }
    for name in tokens:
        server.signer_for("team-a", name)  # keys registered before the load
    acked: dict[str, tuple[int, str]] = {}
    lock, stop = threading.Lock(), threading.Event()
    failed = []  # requests that got no answer: the kill landed under load

    def write(name: str) -> None:
        count = 0
        while not stop.is_set():
            text = f"{name} {count}"
            entry = server.entry(name, "note", {"text": text})
            key = uuid.uuid4().hex
            for _ in range(200):  # retried under the same key until answered
                try:
                    status, answer = server.call(
                        "POST", f"{A}/entries", tokens[name], {"entries": [entry]},
                        headers={"Idempotency-Key": key},
                    )  # fmt: skip
                except (OSError, http.client.HTTPException):
                    server._local.conn = None  # a fresh connection next time
                    failed.append(text)
                    time.sleep(0.05)
                    continue
                if status == 201:
                    (record,) = answer["records"]
                    with lock:
                        acked[text] = (record["seq"], record["hash"])
                    break
                if status >= 500:
                    time.sleep(0.05)
                    continue
                raise AssertionError((status, answer))
            count += 1

    threads = [threading.Thread(target=write, args=(n,)) for n in tokens]
    for thread in threads:
        thread.start()
    try:
        _wait_for(lambda: len(acked) >= 40)
        before = len(acked)
        fault(server)
        _wait_for(lambda: len(acked) >= before + 40)
    finally:
        stop.set()
        for thread in threads:
            thread.join(timeout=120)

    stored, texts = server.stored_notes()
    for text, (seq, digest) in acked.items():
        assert stored.get(seq) == digest, (text, seq)
    if fault is _kill_and_restart:
        assert failed, "the kill did not interrupt any request"
    assert len(texts) == len(set(texts)), "a note was stored twice"
    status, report = server.call("POST", f"{A}/verify", server.token("admin"))
    assert status == 200, report
    assert report["ok"], report


def _wait_for(condition, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "the writers made no progress"
        time.sleep(0.05)
