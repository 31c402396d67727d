"""The team server under load while its process or PostgreSQL is restarted.

W writers (threads) append one note per request through a real ``mltrail
server`` on 127.0.0.1 (a throwaway database, as tests/server_fixture.py makes),
each request under an Idempotency-Key that a writer reuses until it gets an
answer, as the client does. After ``--after`` seconds the chosen fault happens:

- ``--fault server``: the server is killed (SIGKILL) and started again;
- ``--fault postgres --restart-command "pg_ctlcluster 15 main restart"``: the
  database restarts under the running server (needs the rights to run that).

Then, after as much load again: every append the server acknowledged (201) is in
the ledger at the seq and with the hash it was told, no note is stored twice,
and ``POST /verify`` passes. Prints appends acknowledged, requests that failed
during the fault, the longest time without an acknowledgement, and the verdict.

Run by hand (not in CI): ``python benchmarks/chaos_server.py --fault postgres
--restart-command "pg_ctlcluster 15 main restart"``.
"""

from __future__ import annotations

import argparse
import http.client
import shlex
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from server_fixture import running_server

A = "/ledgers/team-a"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fault", choices=("server", "postgres"), default="server")
    parser.add_argument("--restart-command", default="", help="restarts PostgreSQL")
    parser.add_argument("--writers", type=int, default=8)
    parser.add_argument(
        "--after", type=float, default=3.0, help="seconds of load first"
    )
    args = parser.parse_args()
    if args.fault == "postgres" and not args.restart_command:
        parser.error("--fault postgres needs --restart-command")
    with running_server() as server:
        result = run(server, args)
    print(
        f"fault {args.fault}: {result['acked']} appends acknowledged, "
        f"{result['failed']} requests failed and were retried, longest gap "
        f"{result['gap']:.2f} s; acknowledged appends all present: "
        f"{result['present']}; stored twice: {result['twice']}; verify ok: "
        f"{result['ok']}"
    )
    return 0 if result["present"] and not result["twice"] and result["ok"] else 1


def run(server, args) -> dict:
    names = [f"chaos-{n}" for n in range(args.writers)]
    tokens = {name: server.token("writer", name) for name in names}
    for name in names:
        server.signer_for("team-a", name)
    acked: dict[str, tuple[int, str]] = {}
    times: list[float] = []
    failed: list[str] = []
    lock, stop = threading.Lock(), threading.Event()

    def write(name: str) -> None:
        count = 0
        while not stop.is_set():
            text = f"{name} {count}"
            entry = server.entry(name, "note", {"text": text})
            key = uuid.uuid4().hex
            while not stop.is_set():
                try:
                    status, answer = server.call(
                        "POST", f"{A}/entries", tokens[name], {"entries": [entry]},
                        headers={"Idempotency-Key": key},
                    )  # fmt: skip
                except (OSError, http.client.HTTPException):
                    server._local.conn = None
                    failed.append(text)
                    time.sleep(0.1)
                    continue
                if status == 201:
                    (record,) = answer["records"]
                    with lock:
                        acked[text] = (record["seq"], record["hash"])
                        times.append(time.monotonic())
                    break
                failed.append(text)
                time.sleep(0.1)
            count += 1

    threads = [threading.Thread(target=write, args=(n,)) for n in names]
    for thread in threads:
        thread.start()
    time.sleep(args.after)
    if args.fault == "server":
        server.process.kill()
        server.process.wait()
        server.start()
    else:
        subprocess.run(shlex.split(args.restart_command), check=True)
    time.sleep(args.after * 2)
    stop.set()
    for thread in threads:
        thread.join()
    stored, texts = server.stored_notes()
    status, report = server.call("POST", f"{A}/verify", server.token("admin"))
    gaps = [b - a for a, b in zip(sorted(times), sorted(times)[1:], strict=False)]
    return {
        "acked": len(acked),
        "failed": len(failed),
        "gap": max(gaps, default=0.0),
        "present": all(stored.get(seq) == h for seq, h in acked.values()),
        "twice": len(texts) - len(set(texts)),
        "ok": status == 200 and report.get("ok") is True,
    }


if __name__ == "__main__":
    raise SystemExit(main())
