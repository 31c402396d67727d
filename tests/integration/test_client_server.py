"""Client mode against a real `mltrail server` subprocess (tests/server_fixture.py).

Two people and an auditor, each with their own home and token: alice (writer)
trains with `mltrail run`, bob (approver) approves the model, alice promotes it,
carol (auditor, no key) verifies the ledger and exports and checks a bundle;
every record names its author and is signed by that author's key. Then the
refusals: a token without the role (exit 5, one line), a server that shows a
shrunk or forked log under the same origin and log key (exit 3), and an
idempotent retry that appends nothing.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from mltrail.ledger.stored import KIND_ROLES
from optional_extras import require_extra
from server_fixture import running_server

if TYPE_CHECKING:
    from collections.abc import Callable

require_extra("client", "httpx2")

TRAIN = "import pathlib; pathlib.Path('model.bin').write_bytes(b'weights v1')"


@pytest.fixture(scope="module")
def server():
    with running_server() as running:
        yield running


@pytest.fixture(scope="module")
def people(server, tmp_path_factory):
    """Env of each person: their home, the server URL and their token."""
    base = tmp_path_factory.mktemp("client")
    (base / "project").mkdir()
    url = f"http://127.0.0.1:{server.port}/ledgers/team-a"
    tokens = {
        "alice": server.token("writer", "alice"),
        "bob": server.token("approver", "bob"),
        "carol": server.token("auditor", "carol"),
        "dave": server.token("auditor", "dave"),
    }
    keep = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    return base, {
        name: keep
        | {
            "MLTRAIL_HOME": str(base / name),
            "MLTRAIL_URL": url,
            "MLTRAIL_TOKEN": token,
            "GIT_CEILING_DIRECTORIES": str(base),
        }
        for name, token in tokens.items()
    }


def mltrail(people, user: str, *args: str, code: int = 0, **env: str):
    base, envs = people
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", *args], cwd=base / "project",
        env=envs[user] | env, capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip
    assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    return proc


def js(people, user: str, *args: str, **kw):
    return json.loads(mltrail(people, user, *args, "--json", **kw).stdout)


_JOINED: dict[tuple[str, str], str] = {}


def _joined(people, user: str) -> str:
    """``user``'s key, their home made and the key registered with the server
    once per module, by whichever test needs it first (tests run in any order,
    and on several workers)."""
    base, _ = people
    key = _JOINED.get((str(base), user))
    if key is None:
        key = js(people, user, "init")["key"]
        assert js(people, user, "keys", "register")["identity"] == user
        _JOINED[(str(base), user)] = key
    return key


def test_two_people_and_an_auditor_through_the_server(server, people):
    keys = {user: _joined(people, user) for user in ("alice", "bob")}
    mltrail(people, "alice", "run", "--name", "train", "--output", "model.bin",
            "--", sys.executable, "-c", TRAIN)  # fmt: skip
    (run,) = [r for r in js(people, "alice", "runs") if r["name"] == "train"]
    assert (run["name"], run["status"], run["user"]) == ("train", "succeeded", "alice")
    retrain = TRAIN.replace("model.bin", "model2.bin")
    mltrail(
        people, "alice", "run", "--name", "retrain", "--", sys.executable, "-c", retrain
    )
    changed = js(people, "carol", "diff", "train", "retrain")
    assert any(c["key"] == "command" for c in changed["sections"]["run"]), changed
    assert "train" in mltrail(people, "alice", "show", "train").stdout
    mltrail(people, "bob", "model", "approve", "model.bin", "--stage", "production",
            "--note", "validation report reviewed")  # fmt: skip
    mltrail(people, "alice", "model", "promote", "model.bin", "--stage", "production",
            "--override", "no git in this test")  # fmt: skip
    assert (
        "approve for production by bob"
        in mltrail(people, "carol", "trace", "model.bin").stdout
    )

    report = js(people, "carol", "verify")
    assert report["ok"], report
    records = js(people, "carol", "log")
    authors = {r["entry"]["kind"]: r["entry"] for r in records}
    for kind, user in (("run.started", "alice"), ("run.ended", "alice"),
                       ("model.approved", "bob"), ("model.promoted", "alice")):  # fmt: skip
        assert authors[kind]["actor"]["user"] == user, kind
        assert authors[kind]["sig"]["key"] == keys[user], kind
    seq = next(r["seq"] for r in records if r["entry"]["kind"] == "model.approved")
    assert js(people, "carol", "prove", str(seq))["seq"] == seq

    genesis = next(r["entry"]["sig"]["key"] for r in records if r["seq"] == 0)
    mltrail(people, "carol", "export", "model.bin", "-o", "bundle.json")
    checked = mltrail(people, "carol", "verify-bundle", "bundle.json",
                      "--trust-key", genesis)  # fmt: skip
    assert "bundle intact" in checked.stdout
    base, _ = people
    assert not (base / "carol" / "ledger.db").exists()
    assert not (base / "alice" / "ledger.db").exists()


def test_a_token_without_the_role_is_refused_in_one_line(people):
    js(people, "dave", "init")
    proc = mltrail(people, "dave", "keys", "register", code=5)
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[0].startswith("error:"), proc.stderr
    assert "HTTP 403" in lines[0]
    assert len(lines) <= 2  # the line and its hint
    assert "Traceback" not in proc.stderr
    _, envs = people
    assert envs["dave"]["MLTRAIL_TOKEN"] not in proc.stderr + proc.stdout
    unknown = mltrail(people, "carol", "runs", code=5, MLTRAIL_TOKEN="mlt_0_x")
    assert "HTTP 401" in unknown.stderr


def test_the_same_idempotency_key_twice_appends_once(server):
    from mltrail.storage.http import HttpStore

    url = f"http://127.0.0.1:{server.port}/ledgers/team-a"
    entry = server.entry("erin", "note", {"text": "exactly once"})
    with HttpStore(url, server.token("writer", "erin")) as store:
        before = store.head().size
        key = str(uuid.uuid4())
        first = store.append_entries([entry], key=key)
        again = store.append_entries([entry], key=key)
        assert again == first
        assert store.head().size == before + 1


def _forged_ledger(server, name: str, origin: str, notes: int) -> None:
    """As the database owner: another ledger with the same origin and log key
    as team-a (what a server rewriting its history would show)."""
    import psycopg

    from mltrail.ledger.ledger import Ledger
    from mltrail.server.control import schema_url
    from mltrail.storage.postgres import PostgresStore, init_database

    role = server.app_url.split("://", 1)[1].split("@", 1)[0]
    schema = "ledger_" + name.replace("-", "_")
    with psycopg.connect(server.owner_url, autocommit=True) as owner:
        owner.execute(f'CREATE SCHEMA "{schema}"')
    url = schema_url(server.owner_url, schema)
    init_database(url, roles=KIND_ROLES, role=role)
    shutil.copy(server.keys / "team-a.key", server.keys / f"{name}.key")
    with PostgresStore(url, roles=KIND_ROLES) as store:
        ledger = Ledger.create(store, server.log_signer("team-a"), origin=origin)
        for n in range(notes):
            ledger.append("note", {"text": f"another history {n}"})
    with psycopg.connect(server.owner_url, autocommit=True) as owner:
        owner.execute(
            "INSERT INTO mltrail_server.ledgers (name, schema, origin) "
            "VALUES (%s, %s, %s)",
            (name, schema, origin),
        )


def _pinned_as(trust: Path, url: str) -> None:
    """Make the home's pin of team-a also the pin of ``url`` (what a client sees
    when the server at ``url`` shows team-a's log, rewritten)."""
    from mltrail.ledger.server_trust import server_id

    (pinned,) = trust.glob("team-a@*.json")
    data = json.loads(pinned.read_text())
    data["servers"] = [server_id(url)]
    (trust / f"copy-{uuid.uuid4().hex[:8]}@0.json").write_text(json.dumps(data))


def test_a_shrunk_or_forked_log_is_refused(server, people):
    from mltrail.storage import http

    _, envs = people
    # team-a holds more than its first record whichever tests ran before (alone,
    # or first on an xdist worker, it would hold one, as the forged log below)
    url = f"http://127.0.0.1:{server.port}/ledgers/team-a"
    with http.HttpStore(url, server.token("writer", "bea")) as remote:
        remote.append_entries([server.entry("bea", "note", {"text": "grown"})])
    js(people, "carol", "runs")  # carol has pinned team-a and kept its checkpoint
    size = js(people, "carol", "verify")["size"]
    origin = "test.example/team-a"
    _forged_ledger(server, "team-c", origin, notes=0)
    trust = Path(envs["carol"]["MLTRAIL_HOME"]) / "server-trust"
    forged = envs["carol"]["MLTRAIL_URL"].replace("team-a", "team-c")
    _pinned_as(trust, forged)
    token = server.token("auditor", "carol", ledger="team-c")
    shrunk = mltrail(people, "carol", "runs", code=3, MLTRAIL_URL=forged,
                     MLTRAIL_TOKEN=token)  # fmt: skip
    assert "shrank or was rolled back" in shrunk.stderr
    _forged_ledger(server, "team-d", origin, notes=size + 2)
    _pinned_as(trust, forged.replace("team-c", "team-d"))
    forked = mltrail(
        people, "carol", "runs", code=3,
        MLTRAIL_URL=forged.replace("team-c", "team-d"),
        MLTRAIL_TOKEN=server.token("auditor", "carol", ledger="team-d"),
    )  # fmt: skip
    assert "forked or rewritten" in forked.stderr


def test_the_http_store_reads_what_the_database_holds(server, monkeypatch):
    """The read contract, differentially: HttpStore over the API and the
    PostgreSQL store under it give the same answers (small pages, to page)."""
    from mltrail.server.control import schema_url
    from mltrail.storage import http
    from mltrail.storage.postgres import PostgresStore

    monkeypatch.setattr(http, "PAGE", 7)
    url = f"http://127.0.0.1:{server.port}/ledgers/team-a"
    blob = b"a blob through the API"
    digest = "sha256:" + __import__("hashlib").sha256(blob).hexdigest()
    with (
        http.HttpStore(url, server.token("writer", "bea")) as remote,
        PostgresStore(
            schema_url(server.owner_url, "ledger_team_a"), roles=KIND_ROLES
        ) as local,
    ):
        assert remote.put_blob(digest, blob) in (True, False)
        notes = [server.entry("bea", "note", {"text": f"page {n}"}) for n in range(9)]
        remote.append_entries(notes)
        size = local.head().size
        assert remote.head() == local.head()
        assert list(remote.rows()) == list(local.rows())
        assert list(remote.rows(3, size - 2)) == list(local.rows(3, size - 2))
        kinds = ("key.added", "note")
        assert list(remote.rows_of_kinds(kinds)) == list(local.rows_of_kinds(kinds))
        assert remote.node_range(0, 0, size) == local.node_range(0, 0, size)
        assert remote.node(1, 0) == local.node(1, 0)
        assert [c.text for c in remote.checkpoints()] == [
            c.text for c in local.checkpoints()
        ]
        assert remote.latest_checkpoint().text == local.latest_checkpoint().text
        assert remote.time_floor() == local.time_floor()
        assert remote.meta() == local.meta()
        assert remote.get_blob(digest) == blob == local.get_blob(digest)
        assert remote.find_blobs(digest[:15]) == local.find_blobs(digest[:15])
        assert remote.get_blob("sha256:" + "0" * 64) is None
        assert remote.purges() == local.purges()


def test_a_run_through_the_server_is_running_for_others_until_it_dies(server, people):
    """Liveness over HTTP (ADR 0029): alice's recorder keeps a hold request
    open; carol, on her own home, sees the run running, then stale once the
    recorder was killed."""
    import signal

    base, envs = people
    _joined(people, "alice")
    proc = subprocess.Popen(
        [sys.executable, "-m", "mltrail", "run", "--name", "held-elsewhere", "--",
         sys.executable, "-c", "import time; time.sleep(120)"],
        cwd=base / "project", env=envs["alice"], stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        assert _status_of(people, "held-elsewhere", "running") == "running"
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert _status_of(people, "held-elsewhere", "stale") == "stale"
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=30)


def _status_of(people, name: str, wanted: str, until: float = 45.0) -> str | None:
    import time

    deadline, status = time.monotonic() + until, None
    while time.monotonic() < deadline:
        runs = js(people, "carol", "runs")
        status = next((r["status"] for r in runs if r["name"] == name), None)
        if status == wanted:
            return status
        time.sleep(0.5)
    return status


def test_a_client_hold_is_asked_again_when_its_lease_ends(server):
    """The server ends a hold's stream when its lease ends (an hour by default)
    and the client is to ask again (ADR 0029): it did not, so a run recorded
    for longer than the lease looked stale to every other host."""
    import time

    import httpx2

    from mltrail.storage.http_hold import HttpRunHold

    token = server.token("writer", "alice")
    run, lease = f"leased-{uuid.uuid4().hex[:8]}", 0.3
    client = httpx2.Client(
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx2.Timeout(10.0, read=None),
    )
    url = f"{server.base}/ledgers/team-a/runs/{run}/hold?lease={lease}"
    hold = HttpRunHold.start(client, url)
    try:
        assert hold.held, hold.problem
        time.sleep(10 * lease)  # several leases end meanwhile
        assert _held_soon(server, token, run, wanted=True)
    finally:
        hold.release()
    assert _held_soon(server, token, run, wanted=False)


def _held_soon(server, token: str, run: str, *, wanted: bool) -> bool:
    """Whether the server says ``run`` is held (as ``wanted``) within 15 s: a
    renewed hold is briefly free between two leases."""
    import time

    deadline = time.monotonic() + 15.0
    while time.monotonic() < deadline:
        status, body = server.call(
            "GET", f"/ledgers/team-a/runs/live?runs={run}", token
        )
        assert status == 200, body
        if (run in body["live"]) == wanted:
            return True
        time.sleep(0.1)
    return False


def test_a_client_hold_is_asked_again_after_a_409_once_it_held_the_run(server):
    """A network break the server has not noticed yet leaves it holding the run
    for the cut stream (until a write fails, minutes), so the client's next
    request is refused with 409; the client took that 409 as another process's
    hold and never asked again, and its live run looked stale for the rest of
    its life (ADR 0029). Once the old stream goes, the client is to hold the
    run again."""
    from mltrail.storage.http_hold import HttpRunHold

    token = server.token("writer", "alice")
    run = f"cut-{uuid.uuid4().hex[:8]}"
    with _BreakableProxy(server.port) as proxy:
        hold = HttpRunHold.start(_hold_client(token), proxy.hold_url(run))
        try:
            assert hold.held, hold.problem
            proxy.cut()  # the server still holds the run for the cut stream
            assert _soon(lambda: hold.status == 409), hold.problem
            refused = proxy.answers.index(409)
            proxy.mend()  # the server sees the old stream go and lets the run go
            assert _soon(lambda: 200 in proxy.answers[refused:], until=60.0), (
                proxy.answers,
                hold.problem,
            )
            assert _held_soon(server, token, run, wanted=True)
        finally:
            hold.release()
        assert not hold._thread.is_alive()
    assert _held_soon(server, token, run, wanted=False)


def test_a_client_hold_asking_again_after_a_409_ends_when_released(server):
    """The client asking again after a 409 (above) stops when its run is
    released: its thread ends and the server holds nothing for it afterwards."""
    from mltrail.storage.http_hold import HttpRunHold

    token = server.token("writer", "alice")
    run = f"cut-{uuid.uuid4().hex[:8]}"
    with _BreakableProxy(server.port) as proxy:
        hold = HttpRunHold.start(_hold_client(token), proxy.hold_url(run))
        try:
            assert hold.held, hold.problem
            proxy.cut()
            assert _soon(lambda: hold.status == 409), hold.problem
        finally:
            hold.release()
        assert not hold._thread.is_alive()
        asked = len(proxy.answers)
        proxy.mend()
        assert _held_soon(server, token, run, wanted=False)
        assert len(proxy.answers) == asked  # nothing asked after the release


def _hold_client(token: str) -> Any:
    import httpx2

    return httpx2.Client(
        headers={"Authorization": f"Bearer {token}"},
        timeout=httpx2.Timeout(10.0, read=None),
    )


def _soon(check: Callable[[], bool], until: float = 15.0) -> bool:
    """Whether ``check()`` holds within ``until`` seconds."""
    import time

    deadline = time.monotonic() + until
    while time.monotonic() < deadline:
        if check():
            return True
        time.sleep(0.05)
    return check()


class _BreakableProxy:
    """A TCP proxy to the server whose network breaks one way: ``cut()`` closes
    the client's side of every open connection and keeps the server's side open
    (a break the server has not noticed yet: its writes still succeed), and
    ``mend()`` closes the server's side of those, so the server sees them go.
    ``answers`` are the statuses of the server's answers, in order."""

    def __init__(self, port: int) -> None:
        self._port = port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._open: list[_Pair] = []
        self._cut: list[_Pair] = []
        self.answers: list[int] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def hold_url(self, run: str) -> str:
        return f"http://127.0.0.1:{self.port}/api/v1/ledgers/team-a/runs/{run}/hold"

    def __enter__(self) -> _BreakableProxy:
        return self

    def __exit__(self, *exc: object) -> None:
        _close(self._listener)
        self.mend()
        with self._lock:
            pairs, self._open = self._open, []
        for pair in pairs:
            _close(pair.client)
            _close(pair.upstream)

    def cut(self) -> None:
        with self._lock:
            pairs, self._open = self._open, []
            self._cut.extend(pairs)
            for pair in pairs:
                pair.cut = True
        for pair in pairs:
            _close(pair.client)

    def mend(self) -> None:
        with self._lock:
            pairs, self._cut = self._cut, []
        for pair in pairs:
            _close(pair.upstream)

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            pair = _Pair(client, socket.create_connection(("127.0.0.1", self._port)))
            with self._lock:
                self._open.append(pair)
            for source, answers in ((pair.client, False), (pair.upstream, True)):
                threading.Thread(
                    target=self._pump, args=(pair, source, answers), daemon=True
                ).start()

    def _pump(self, pair: _Pair, source: socket.socket, answers: bool) -> None:
        target = pair.upstream if source is pair.client else pair.client
        while True:
            try:
                data = source.recv(65536)
                if not data:
                    break
                if answers and data.startswith(b"HTTP/1.1 "):
                    with self._lock:
                        self.answers.append(int(data[9:12]))
                target.sendall(data)
            except (OSError, ValueError):
                break
        with self._lock:
            if pair.cut:  # the server's side stays open until mend()
                return
            with contextlib.suppress(ValueError):
                self._open.remove(pair)
        _close(pair.client)
        _close(pair.upstream)


class _Pair:
    def __init__(self, client: socket.socket, upstream: socket.socket) -> None:
        self.client = client
        self.upstream = upstream
        self.cut = False


def _close(sock: socket.socket) -> None:
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
    sock.close()
