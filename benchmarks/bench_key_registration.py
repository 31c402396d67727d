"""Registering an author key on a team server, as the ledger holds more keys.

Starts ``mltrail server`` (a subprocess, 127.0.0.1 only) on a throwaway
database of the PostgreSQL at $MLTRAIL_TEST_POSTGRES (default
postgresql://postgres@127.0.0.1:5432/test), then for each level (100, 500,
1,000, 1,500 author keys): adds author keys up to the level with the ledger's
log key, straight into the database (``Ledger.register_key`` on the served
ledger, as ``mltrail keys revoke --db`` writes), lets the server take them up
(one registration and one entry, not timed), then times ``--each``
registrations (``POST /keys``, one writer's token registering keys of its own
identity) and, after each, one other writer's ``POST /entries`` of one note
(the append that waits on the appender after a key record).

``--src DIR`` (repeatable) runs the server from another tree's ``src`` (e.g.
``git archive main | tar -x -C /tmp/main``): the trees take turns, alternated
each repetition, each on a fresh database. Prints the median of each level per
tree and the machine.

Run: ``python benchmarks/bench_key_registration.py [--each 15] [--reps 2]
[--src /tmp/main/src --src src]``
"""

from __future__ import annotations

import argparse
import json
import signal
import statistics
import tempfile
import time
import uuid
from pathlib import Path

import psycopg
from bench_server import (
    LEDGER,
    ORIGIN,
    PG,
    SRC,
    Client,
    _free_port,
    signed_bodies,
    signer_for,
    start_server,
    with_db,
)
from machine import describe

from mltrail.core.keyring import make_key_proof
from mltrail.core.signing import encode_b64
from mltrail.ledger.keystore import generate_signer
from mltrail.server.control import (
    Control,
    _served_ledger,
    _served_row,
    init_ledger,
    load_log_key,
)


def add_keys(owner: str, keys: Path, count: int, first: int) -> None:
    """``count`` author keys registered with the log key, straight into the database."""
    row = _served_row(owner, LEDGER)
    with _served_ledger(owner, row, load_log_key(keys, LEDGER)) as served:
        for i in range(first, first + count):
            signer, identity = generate_signer(), f"ci-job-{i}"
            proof = make_key_proof(signer, ORIGIN, identity)
            served.register_key(signer.public_key, identity, proof)


def register_body(identity: str) -> bytes:
    signer = generate_signer()
    body = {
        "public_key": encode_b64(signer.public_key),
        "identity": identity,
        "proof": encode_b64(make_key_proof(signer, ORIGIN, identity)),
    }
    return json.dumps(body).encode()


def one_tree(
    src: Path, levels: list[int], each: int
) -> dict[int, tuple[list[float], list[float]]]:
    """{level: (registration seconds, next entry's seconds)} for the server of ``src``."""
    admin_conn = psycopg.connect(PG, autocommit=True)
    name = f"mltrail_bench_{uuid.uuid4().hex[:8]}"
    role = f"mltrail_app_{uuid.uuid4().hex[:8]}"
    admin_conn.execute(f'CREATE DATABASE "{name}"')
    process = None
    out: dict[int, tuple[list[float], list[float]]] = {}
    try:
        with tempfile.TemporaryDirectory() as tmp:
            keys = Path(tmp) / "keys"
            owner = with_db(PG, name)
            init_ledger(owner, LEDGER, ORIGIN, keys, role=role)
            control = Control(owner)
            tokens = {
                n: control.create_token(
                    LEDGER, n, r, expires_days=1, created_by="bench"
                )["token"]
                for n, r in (("admin", "admin"), ("flood", "writer"), ("w", "writer"))
            }
            control.close()
            port = _free_port()
            process = start_server(
                with_db(PG, name, role), keys, port, Path(tmp) / "server.log", 1, src
            )
            client = Client(port)
            writer = signer_for(client, tokens["admin"], "w")
            notes = iter(signed_bodies("w", writer, len(levels) * (each + 1)))
            registered = 2  # the genesis log key and the writer's author key

            calls = {"client": client}  # a new one after each level's adding

            def register() -> float:
                body = register_body("flood")
                t0 = time.perf_counter()
                status, answer = calls["client"].call(
                    "POST", f"/ledgers/{LEDGER}/keys", tokens["flood"], body
                )
                elapsed = time.perf_counter() - t0
                assert status == 201, answer
                return elapsed

            def append() -> float:
                t0 = time.perf_counter()
                status, answer = calls["client"].call(
                    "POST", f"/ledgers/{LEDGER}/entries", tokens["w"], next(notes)
                )
                elapsed = time.perf_counter() - t0
                assert status == 201, answer
                return elapsed

            for level in levels:
                add_keys(owner, keys, max(level - registered, 0), registered)
                registered = max(level, registered)
                calls["client"] = Client(port)  # the idle one may have been closed
                register(), append()  # the server takes up the keys added
                registered += 1
                times: tuple[list[float], list[float]] = ([], [])
                for _ in range(each):
                    times[0].append(register())
                    times[1].append(append())
                    registered += 1
                out[level] = times
    finally:
        if process is not None:
            process.send_signal(signal.SIGTERM)
            process.wait(timeout=15)
        admin_conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin_conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        admin_conn.close()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--each", type=int, default=15, help="timed per level")
    parser.add_argument("--reps", type=int, default=1)
    parser.add_argument("--levels", default="100,500,1000,1500")
    parser.add_argument(
        "--src", type=Path, action="append", help="a tree's src (repeatable)"
    )
    args = parser.parse_args()
    levels = [int(x) for x in args.levels.split(",")]
    trees = [p.resolve() for p in args.src or [SRC]]
    print(describe())
    found: dict[Path, dict[int, tuple[list[float], list[float]]]] = {
        t: {lv: ([], []) for lv in levels} for t in trees
    }
    for rep in range(args.reps):
        order = trees if rep % 2 == 0 else trees[::-1]
        for tree in order:
            t0 = time.perf_counter()
            for level, (reg, app) in one_tree(tree, levels, args.each).items():
                found[tree][level][0].extend(reg)
                found[tree][level][1].extend(app)
            print(f"rep {rep + 1} {tree}: {time.perf_counter() - t0:.0f} s", flush=True)
    print("median ms: POST /keys (registration) / the next POST /entries")
    print("keys  " + "  ".join(f"{t!s:>30}" for t in trees))
    for level in levels:
        cells = []
        for tree in trees:
            reg, app = found[tree][level]
            cells.append(
                f"{statistics.median(reg) * 1000:>14.1f} / "
                f"{statistics.median(app) * 1000:>11.1f}"
            )
        print(f"{level:>5} " + "  ".join(f"{c:>30}" for c in cells))


if __name__ == "__main__":
    main()
