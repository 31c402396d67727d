"""A running ``mltrail server`` for tests: throwaway database, ledgers, tokens, HTTP.

``running_server()`` makes a throwaway PostgreSQL database (tests/postgres_db.py:
skip without PostgreSQL, fail under CI), runs ``mltrail db init --ledger`` for
two ledgers (``team-a``, ``team-b``) with an application role of its own, starts
``mltrail server`` as a SUBPROCESS on a free 127.0.0.1 port as that role, waits
for ``/api/v1/health``, and on exit kills the server, drops the database and
the role. Use it at module or session scope (it takes about a second)::

    @pytest.fixture(scope="module")
    def server():
        with running_server() as s:
            yield s

    admin = server.token("admin")                 # name defaults to the role
    status, body = server.call("GET", "/ledgers/team-a/head", admin)
    entry = server.entry("alice", "note", {"text": "hi"})   # signed, see below
    status, body = server.call("POST", "/ledgers/team-a/entries",
                               server.token("writer", "alice"), {"entries": [entry]})

Entries are signed by ``server.signer_for(ledger, name)``: an author key
registered for ``name`` through ``POST /keys`` when this mltrail has per-user
keys (``Ledger.register_key``), else the ledger's log key (read from the key
folder, which only the test can do).
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from postgres_db import admin_connection, throwaway_database, with_database

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = ["LEDGERS", "ROLES", "TestServer", "free_port", "running_server"]

LEDGERS = ("team-a", "team-b")
ROLES = ("writer", "approver", "auditor", "admin")
SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    """A TCP port on 127.0.0.1 nothing listens on now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def answer_before_the_body(sock: socket.socket) -> tuple[int, bytes]:
    """The status and the whole answer (head and body) to a request whose body
    was not sent: the server must answer now. A server that waits for the body
    sends nothing, and the socket's timeout fails the test."""
    answer = b""
    try:
        while b"\r\n\r\n" not in answer:
            chunk = sock.recv(65536)
            if not chunk:
                break
            answer += chunk
        head, _, body = answer.partition(b"\r\n\r\n")
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(body) < length:  # the body may come in a later packet
            chunk = sock.recv(65536)
            if not chunk:
                break
            body += chunk
    except TimeoutError:
        raise AssertionError(
            "the server waited for the body of a request it must refuse"
        ) from None
    return int(answer.split(b" ", 2)[1]), head + b"\r\n\r\n" + body


class TestServer:
    """A running server and what a test needs to talk to it."""

    __test__ = False  # not a test class

    def __init__(
        self, owner_url: str, app_url: str, keys: Path, port: int, log: Path
    ) -> None:
        self.owner_url = owner_url
        self.app_url = app_url
        self.keys = keys
        self.port = port
        self.base = f"http://127.0.0.1:{port}/api/v1"
        self.prefix = "/api/v1"
        self.log = log
        self.process: subprocess.Popen[bytes] | None = None
        self._connections: list[http.client.HTTPConnection] = []
        self._tokens: dict[tuple[str, str, str], str] = {}
        self._signers: dict[tuple[str, str], Any] = {}
        self._local = threading.local()
        self._lock = threading.Lock()

    # -- tokens -----------------------------------------------------------------

    def token(self, role: str, name: str | None = None, ledger: str = "team-a") -> str:
        """A valid token (made once per role, name and ledger, then reused)."""
        name = name or role
        key = (ledger, role, name)
        with self._lock:
            if key not in self._tokens:
                self._tokens[key] = self._control(
                    lambda c: c.create_token(
                        ledger, name, role, expires_days=1, created_by="tests"
                    )
                )["token"]
            return self._tokens[key]

    def new_token(
        self, role: str, name: str | None = None, ledger: str = "team-a"
    ) -> dict[str, Any]:
        """A fresh token: {"id", "token", ...}."""
        return self._control(
            lambda c: c.create_token(
                ledger, name or role, role, expires_days=1, created_by="tests"
            )
        )

    def expired_token(self, role: str = "admin", ledger: str = "team-a") -> str:
        """A token whose expiry has passed (inserted directly as the owner)."""
        from mltrail.server.tokens import new_token

        token_id, text, digest = new_token()
        with _owner(self.owner_url) as conn:
            conn.execute(
                "INSERT INTO mltrail_server.tokens (id, ledger, name, role, "
                "secret_sha256, expires, created_by) VALUES (%s, %s, %s, %s, %s, "
                "now() - interval '1 minute', 'tests')",
                (token_id, ledger, role, role, digest),
            )
        return text

    def revoked_token(self, role: str = "admin", ledger: str = "team-a") -> str:
        """A token that was revoked."""
        made = self.new_token(role, ledger=ledger)
        self._control(lambda c: c.revoke_token(made["id"], "tests"))
        return made["token"]

    def _control(self, fn: Any) -> Any:
        from mltrail.server.control import Control

        control = Control(self.owner_url)
        try:
            return fn(control)
        finally:
            control.close()

    # -- signing ----------------------------------------------------------------

    def log_signer(self, ledger: str = "team-a") -> Any:
        """The ledger's log key (the server's key file)."""
        from mltrail.ledger.keystore import load_signer

        return load_signer(self.keys / f"{ledger}.key")

    def signer_for(self, ledger: str, name: str) -> Any:
        """The key ``name``'s entries are signed with (registered once, see module doc)."""
        with self._lock:
            found = self._signers.get((ledger, name))
        if found is not None:
            return found
        signer = self._register(ledger, name)
        with self._lock:
            return self._signers.setdefault((ledger, name), signer)

    def _register(self, ledger: str, name: str) -> Any:
        from mltrail.core.keyring import make_key_proof
        from mltrail.core.signing import encode_b64
        from mltrail.ledger.keystore import generate_signer

        signer = generate_signer()
        origin = self.call(
            "GET", f"/ledgers/{ledger}", self.token("admin", ledger=ledger)
        )[1]["origin"]
        body = {
            "public_key": encode_b64(signer.public_key),
            "identity": name,
            "proof": encode_b64(make_key_proof(signer, origin, name)),
        }
        status, answer = self.call(
            "POST", f"/ledgers/{ledger}/keys", self.token("admin", ledger=ledger), body
        )
        assert status == 201, answer
        return signer

    def entry(
        self,
        user: str,
        kind: str,
        body: Mapping[str, Any],
        *,
        run: str | None = None,
        ledger: str = "team-a",
        signer: Any = None,
    ) -> dict[str, Any]:
        """A signed entry of ``user`` as JSON values, ready to POST."""
        from mltrail.core.codec import format_time
        from mltrail.core.entry import Entry, sign_entry

        entry = Entry(
            kind=kind,
            time=format_time(datetime.now(UTC)),
            actor={"user": user},
            body=dict(body),
            run=run,
        )
        return sign_entry(entry, signer or self.signer_for(ledger, user)).to_dict()

    # -- HTTP -------------------------------------------------------------------

    def stored_notes(self, ledger: str = "team-a") -> tuple[dict[int, str], list[str]]:
        """Every record read back through the API: (seq -> record hash, the text of
        every note in seq order), as an auditor sees them."""
        from mltrail.core.canonical import compute_record_hash
        from mltrail.core.codec import decode_record

        admin = self.token("admin", ledger=ledger)
        stored: dict[int, str] = {}
        texts: list[str] = []
        start: int | None = 0
        while start is not None:
            status, page = self.call(
                "GET", f"/ledgers/{ledger}/records?start={start}&limit=1000", admin
            )
            assert status == 200, page
            for row in page["records"]:
                data = base64.b64decode(row["data"])
                stored[row["seq"]] = compute_record_hash(data).hex()
                entry = decode_record(data).record.entry
                if entry.kind == "note" and entry.body.get("text"):
                    texts.append(entry.body["text"])
            start = page["next"]
        return stored, texts

    def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        body: Any = None,
        *,
        raw: bytes | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> tuple[int, Any]:
        """One request on this thread's keep-alive connection: (status, JSON or bytes)."""
        sent = dict(headers or {})
        if token is not None:
            sent["Authorization"] = f"Bearer {token}"
        data = raw
        if body is not None:
            data = json.dumps(body).encode()
            sent.setdefault("Content-Type", "application/json")
        for attempt in range(2):
            conn = self._connection()
            try:
                conn.request(method, self.prefix + path, body=data, headers=sent)
                response = conn.getresponse()
                payload = response.read()
                break
            except (http.client.HTTPException, ConnectionError):
                conn.close()
                self._local.conn = None
                if attempt:
                    raise
        if response.getheader("connection", "").lower() == "close":
            conn.close()
            self._local.conn = None
        kind = response.getheader("content-type", "")
        if kind.startswith("application/json") and payload:
            return response.status, json.loads(payload)
        return response.status, payload

    def _connection(self) -> http.client.HTTPConnection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = http.client.HTTPConnection(
                "127.0.0.1", self.port, timeout=60
            )
            with self._lock:
                self._connections.append(conn)
        return conn

    # -- life -------------------------------------------------------------------

    def start(self, *extra: str) -> None:
        """Start ``mltrail server`` and wait until /health answers (30 s at most)."""
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(SRC), env.get("PYTHONPATH", "")) if p
        )
        env.pop("MLTRAIL_KEY_PASSWORD", None)
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "mltrail",
                    "server",
                    "--db",
                    self.app_url,
                    "--keys",
                    str(self.keys),
                    "--port",
                    str(self.port),
                    *extra,
                ],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.log.read_text(errors="replace")[-2000:]
                raise RuntimeError(f"mltrail server exited: {err}")
            try:
                if self.call("GET", "/health")[0] == 200:
                    return
            except OSError:
                self._local.conn = None
            time.sleep(0.1)
        raise RuntimeError("mltrail server did not answer /health within 30 s")

    def stop(self) -> None:
        """Stop the server (SIGTERM, then SIGKILL)."""
        with self._lock:
            for conn in self._connections:
                conn.close()
            self._connections.clear()
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@contextmanager
def _owner(url: str) -> Iterator[Any]:
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        yield conn


def _cli(*args: str) -> dict[str, Any]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(SRC), env.get("PYTHONPATH", "")) if p
    )
    env.pop("MLTRAIL_KEY_PASSWORD", None)
    done = subprocess.run(
        [sys.executable, "-m", "mltrail", *args, "--json"],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@contextmanager
def running_server(*extra: str) -> Iterator[TestServer]:
    """A server with ledgers team-a and team-b in a throwaway database (see module
    doc); ``extra`` are more ``mltrail server`` options."""
    import tempfile

    role = f"mltrail_app_{uuid.uuid4().hex[:8]}"
    try:
        with tempfile.TemporaryDirectory() as tmp, throwaway_database() as owner_url:
            keys = Path(tmp) / "keys"
            for ledger in LEDGERS:
                _cli("db", "init", "--db", owner_url, "--ledger", ledger,
                     "--origin", f"test.example/{ledger}", "--keys", str(keys),
                     "--role", role)  # fmt: skip
            database = owner_url.rsplit("/", 1)[1]
            app_url = with_database(owner_url, database, user=role)
            server = TestServer(
                owner_url, app_url, keys, free_port(), Path(tmp) / "server.log"
            )
            try:
                server.start(*extra)
                yield server
            finally:
                server.stop()
    finally:
        conn = admin_connection()
        try:
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        finally:
            conn.close()


def encode(data: bytes) -> str:
    """Base64 text (for blob and record bodies in tests)."""
    return base64.b64encode(data).decode()
