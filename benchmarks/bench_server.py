"""Team server appends: concurrent writers over HTTP against a single-client baseline.

Starts ``mltrail server`` (a subprocess, 127.0.0.1 only) on a throwaway database
of the PostgreSQL at $MLTRAIL_TEST_POSTGRES (default
postgresql://postgres@127.0.0.1:5432/test), makes W writer tokens (each writer
its own registered author key), signs every entry beforehand (signing is the client's cost, not
the server's), then:

(a) baseline: one client, one entry per ``POST /entries``, one after another;
(b) W concurrent clients (threads, keep-alive connections), one entry per
    request: the server's appender group-commits what arrives together.

Prints appends/s, p50 and p99 latency of both, the ratio, the server's
transactions (groups) per request, the machine, and verifies the ledger
afterwards (``POST /verify`` and the size). Target (issue 14): (b) >= 1,000
appends/s with p99 < 100 ms for 16 writers on 2 cores.

Run: ``python benchmarks/bench_server.py [--quick] [--writers 16] [--each 150]``
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from machine import describe

from mltrail.core.codec import format_time
from mltrail.core.entry import Entry, sign_entry
from mltrail.core.keyring import make_key_proof
from mltrail.core.signing import encode_b64
from mltrail.ledger.keystore import generate_signer
from mltrail.server.control import Control, init_ledger

PG = os.environ.get(
    "MLTRAIL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)
SRC = Path(__file__).resolve().parents[1] / "src"
LEDGER = "bench"
ORIGIN = "bench.example/server"


def with_db(url: str, name: str, user: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = (
        parts.netloc if user is None else f"{user}@{parts.netloc.rpartition('@')[2]}"
    )
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{name}"))


class Client:
    """Keep-alive HTTP to the server (one per thread)."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)

    def call(
        self, method: str, path: str, token: str | None, body: bytes | None = None
    ):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.conn.request(method, "/api/v1" + path, body=body, headers=headers)
        response = self.conn.getresponse()
        return response.status, json.loads(response.read() or b"null")


def start_server(
    app_url: str, keys: Path, port: int, log: Path, workers: int, src: Path = SRC
) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(src))
    with log.open("ab") as out:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "mltrail",
                "server",
                "--db",
                app_url,
                "--keys",
                str(keys),
                "--port",
                str(port),
                "--workers",
                str(workers),
            ],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if Client(port).call("GET", "/health", None)[0] == 200:
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise SystemExit(f"server did not start: {log.read_text()[-2000:]}")


def signer_for(client: Client, admin: str, name: str):
    signer = generate_signer()
    body = {
        "public_key": encode_b64(signer.public_key),
        "identity": name,
        "proof": encode_b64(make_key_proof(signer, ORIGIN, name)),
    }
    status, answer = client.call(
        "POST", f"/ledgers/{LEDGER}/keys", admin, json.dumps(body).encode()
    )
    assert status == 201, answer
    return signer


def signed_bodies(name: str, signer, n: int, in_run: bool = False) -> list[bytes]:
    """``n`` one-entry append bodies: notes; with ``in_run``, a ``run.started``
    then ``run.params`` of that one run (each checked against the run's owner)."""
    out = []
    run = str(uuid.uuid4())
    for i in range(n):
        kind, body = "note", {"text": f"{name} note {i}", "refers_to": i}
        if in_run:
            kind = "run.params" if i else "run.started"
            body = {"source": "api", "params": {"i": i}} if i else {"source": "api"}
        entry = Entry(
            kind=kind,
            time=format_time(datetime.now(UTC)),
            actor={"user": name},
            body=body,
            run=run if in_run else None,
        )
        out.append(
            json.dumps({"entries": [sign_entry(entry, signer).to_dict()]}).encode()
        )
    return out


class RawClient:
    """A minimal keep-alive HTTP/1.1 client over a socket: requests are built
    beforehand, so the load generator costs the 2 cores little."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port))
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.buffer = b""

    @staticmethod
    def request(path: str, token: str, body: bytes | None) -> bytes:
        if body is None:
            return f"GET /api/v1{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()
        head = (
            f"POST /api/v1{path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
            f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        )
        return head.encode() + body

    def send(self, data: bytes) -> tuple[int, bytes]:
        self.sock.sendall(data)
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self._recv()
        head, _, rest = self.buffer.partition(b"\r\n\r\n")
        status = int(head.split(b" ", 2)[1])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        while len(rest) < length:
            rest += self._recv()
        self.buffer = rest[length:]
        return status, rest[:length]

    def _recv(self) -> bytes:
        chunk = self.sock.recv(65536)
        if not chunk:
            raise ConnectionError("server closed the connection")
        return chunk


def run_writers(
    port: int,
    jobs: list[tuple[str, list[bytes | None]]],
    path: str = f"/ledgers/{LEDGER}/entries",
    ok: int = 201,
) -> tuple[float, list[float]]:
    latencies: list[float] = []
    lock = threading.Lock()
    barrier = threading.Barrier(len(jobs) + 1)
    errors: list[str] = []

    def work(token: str, bodies: list[bytes | None]) -> None:
        client = RawClient(port)
        requests = [RawClient.request(path, token, body) for body in bodies]
        mine = []
        barrier.wait()
        for request in requests:
            t0 = time.perf_counter()
            status, answer = client.send(request)
            mine.append(time.perf_counter() - t0)
            if status != ok:
                errors.append(f"{status} {answer[:300]!r}")
        with lock:
            latencies.extend(mine)

    threads = [threading.Thread(target=work, args=job) for job in jobs]
    for t in threads:
        t.start()
    barrier.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    if errors:
        raise SystemExit(f"{len(errors)} appends failed, e.g. {errors[0]}")
    return elapsed, latencies


def process_cpu(pid: int) -> float:
    """CPU seconds (user + system) of a process and its worker processes (Linux)."""
    total, tick = 0.0, os.sysconf("SC_CLK_TCK")
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if proc.name == str(pid) or fields[1] == str(pid):
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer appends")
    parser.add_argument("--writers", type=int, default=16)
    parser.add_argument("--each", type=int, default=150, help="appends per writer")
    parser.add_argument(
        "--baseline", type=int, default=300, help="single-client appends"
    )
    parser.add_argument(
        "--server-workers", type=int, default=1, help="mltrail server --workers"
    )
    parser.add_argument(
        "--in-runs",
        action="store_true",
        help="each client appends to a run of its own (run.started, then "
        "run.params), not notes: the run-owner check's path",
    )
    args = parser.parse_args()
    if args.quick:
        args.each, args.baseline = 40, 100
    print(describe())
    admin_conn = psycopg.connect(PG, autocommit=True)
    name = f"mltrail_bench_{uuid.uuid4().hex[:8]}"
    role = f"mltrail_app_{uuid.uuid4().hex[:8]}"
    admin_conn.execute(f'CREATE DATABASE "{name}"')
    process = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            keys = Path(tmp) / "keys"
            owner = with_db(PG, name)
            init_ledger(owner, LEDGER, ORIGIN, keys, role=role)
            control = Control(owner)

            def make(n, r):
                return control.create_token(
                    LEDGER, n, r, expires_days=1, created_by="bench"
                )

            admin = make("bench-admin", "admin")["token"]
            writers = [
                (f"w{i}", make(f"w{i}", "writer")["token"]) for i in range(args.writers)
            ]
            solo = make("solo", "writer")["token"]
            control.close()
            port = _free_port()
            process = start_server(
                with_db(PG, name, role),
                keys,
                port,
                Path(tmp) / "server.log",
                args.server_workers,
            )
            print(
                f"server pid {process.pid}, {args.server_workers} workers", flush=True
            )
            client = Client(port)
            solo_bodies = signed_bodies(
                "solo", signer_for(client, admin, "solo"), args.baseline, args.in_runs
            )
            jobs = [
                (
                    token,
                    signed_bodies(
                        w, signer_for(client, admin, w), args.each, args.in_runs
                    ),
                )
                for w, token in writers
            ]
            groups0 = client.call("GET", f"/ledgers/{LEDGER}/head", admin)[1]["size"]
            base_s, base_lat = run_writers(port, [(solo, solo_bodies)])
            cpu0 = process_cpu(process.pid)
            conc_s, conc_lat = run_writers(port, jobs)
            server_cpu = process_cpu(process.pid) - cpu0
            n = args.writers * args.each
            base_rate, conc_rate = args.baseline / base_s, n / conc_s
            print(f"(a) 1 client:  {base_rate:8.0f} appends/s  p50 {pct(base_lat, .5):6.1f} ms  "
                  f"p99 {pct(base_lat, .99):6.1f} ms  ({args.baseline} appends)")  # fmt: skip
            print(f"(b) {args.writers} clients: {conc_rate:7.0f} appends/s  p50 "
                  f"{pct(conc_lat, .5):6.1f} ms  p99 {pct(conc_lat, .99):6.1f} ms  ({n} appends)  "
                  f"= {conc_rate / base_rate:.1f}x (a)")  # fmt: skip
            client = Client(
                port
            )  # the idle one was closed by the server's keep-alive limit
            health_s, health_lat = run_writers(
                port,
                [("", [None] * args.each) for _ in range(args.writers)],
                "/health",
                200,
            )
            print(f"(c) {args.writers} clients, GET /health (the HTTP stack alone): "
                  f"{n / health_s:.0f} requests/s, p99 {pct(health_lat, .99):.1f} ms; "
                  f"(b) is {conc_rate / (n / health_s):.2f}x that")  # fmt: skip
            print(f"    server CPU {server_cpu / n * 1000:.2f} ms per append "
                  f"({server_cpu / conc_s * 100:.0f}% of one core)")  # fmt: skip
            status, report = client.call("POST", f"/ledgers/{LEDGER}/verify", admin)
            size = client.call("GET", f"/ledgers/{LEDGER}/head", admin)[1]["size"]
            want = groups0 + args.baseline + n
            ok = status == 200 and report["ok"] and size == want
            requests = args.baseline + n
            checked = report.get("checkpoints_checked")
            print(f"verify: {'OK' if ok else 'FAILED'} ({size} records, expected {want}); "
                  f"{checked} checkpoints for {requests} requests")  # fmt: skip
            target = conc_rate >= 1000 and pct(conc_lat, 0.99) < 100
            print(
                f"target >= 1,000 appends/s and p99 < 100 ms: {'PASS' if target else 'FAIL'}"
            )
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
        admin_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin_conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin_conn.close()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


if __name__ == "__main__":
    main()
