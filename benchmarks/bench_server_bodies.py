"""Memory of a team server while one user sends many large appends at once.

Starts ``mltrail server`` on 127.0.0.1 (a throwaway database, as
tests/server_fixture.py makes), opens ``--uploads`` connections of one writer,
each declaring a 16 MiB append and sending 15 MiB of it, then keeping it open;
prints the server process's RSS before and while they are held, how many were
refused (429, ``large_bodies_per_user``), and whether another user's small
append still lands (docs/server.md#limits). Run it from the repository root
with PostgreSQL reachable (MLTRAIL_TEST_POSTGRES)::

    python benchmarks/bench_server_bodies.py --uploads 16
"""

from __future__ import annotations

import argparse
import contextlib
import json
import socket
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from server_fixture import running_server

DECLARED = 16 * 2**20
SENT = 15 * 2**20


def _rss_mib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS"):
            return int(line.split()[1]) // 1024
    return -1


def _upload(server, token: str, socks: list[socket.socket]) -> None:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=20)
    socks.append(sock)
    sock.sendall(
        f"POST {server.prefix}/ledgers/team-a/entries HTTP/1.1\r\nHost: x\r\n"
        f"Authorization: Bearer {token}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {DECLARED}\r\n\r\n".encode()
    )
    with contextlib.suppress(OSError):  # refused and closed: nothing more is read
        sock.sendall(b" " * SENT)


def _refused(socks: list[socket.socket]) -> int:
    count = 0
    for sock in socks:
        sock.settimeout(0.5)
        with contextlib.suppress(OSError):
            count += b" 429 " in sock.recv(200)
    return count


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--uploads", type=int, default=16)
    args = parser.parse_args()
    with running_server() as s:
        alice, bob = s.token("writer", "mem-alice"), s.token("writer", "mem-bob")
        note = s.entry("mem-bob", "note", {"text": "before"})
        s.call("POST", "/ledgers/team-a/entries", bob, {"entries": [note]})
        pid = s.process.pid
        before = _rss_mib(pid)
        socks: list[socket.socket] = []
        threads = [
            threading.Thread(target=_upload, args=(s, alice, socks))
            for _ in range(args.uploads)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        time.sleep(3)  # the server reads what was sent
        held = _rss_mib(pid)
        note = s.entry("mem-bob", "note", {"text": "during"})
        status = s.call("POST", "/ledgers/team-a/entries", bob, {"entries": [note]})[0]
        answer = {
            "uploads": args.uploads,
            "rss_before_mib": before,
            "rss_held_mib": held,
            "refused_429": _refused(socks),
            "other_users_small_append": status,
        }
        print(json.dumps(answer))
        for sock in socks:
            sock.close()


if __name__ == "__main__":
    main()
