"""Append throughput on PostgreSQL: the PostgreSQL store against raw psycopg writes.

Measures, on a throwaway database of the server at $MLTRAIL_TEST_POSTGRES
(default postgresql://postgres@127.0.0.1:5432/test; created and dropped here):

(a) ``Ledger.append`` over :class:`~mltrail.storage.postgres.PostgresStore`:
    one validated, signed, hash-chained, durable append per call (advisory lock,
    head, records, nodes and checkpoint in one transaction). Baseline: raw
    psycopg single-row ``INSERT`` transactions (``BEGIN`` / ``INSERT`` /
    ``COMMIT``) of a ``bytea`` as large as one stored record.
(b) ``Ledger.append_many`` with batches of 1,000 drafts (one transaction each).
    Baseline: raw ``executemany`` batches of 1,000 rows, one transaction each.

Both sides commit with ``synchronous_commit = on`` (a WAL flush per commit).
Ledger and baseline repetitions are interleaved; figures are medians.

Run: ``python benchmarks/bench_postgres.py [--quick] [--reps N]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from urllib.parse import urlsplit, urlunsplit

import psycopg

from mltrail.core.codec import decode_record
from mltrail.ledger.ledger import Draft, Ledger
from mltrail.ledger.stored import KIND_ROLES
from mltrail.storage.postgres import PostgresStore
from mltrail.testing import fixed_signer

ORIGIN = "bench.example/pg"
BATCH = 1_000
SERVER = os.environ.get(
    "MLTRAIL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def note_body(i: int) -> dict[str, object]:
    """A note body of about 300 bytes of JSON, like a short human remark."""
    text = f"entry {i}: " + "the quick brown fox jumps over the lazy dog " * 6
    return {"text": text, "refers_to": i}


def database_url(name: str) -> str:
    return urlunsplit(urlsplit(SERVER)._replace(path=f"/{name}"))


def schema_url(db: str, schema: str) -> str:
    return urlunsplit(urlsplit(db)._replace(query=f"options=-csearch_path%3D{schema}"))


def new_ledger(db: str, schema: str) -> Ledger:
    with psycopg.connect(db, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{schema}"')
    store = PostgresStore(schema_url(db, schema), roles=KIND_ROLES, create=True)
    return Ledger.create(store, fixed_signer(), origin=ORIGIN)


def record_size(ledger: Ledger) -> int:
    size = ledger.head().size
    data = next(iter(ledger.store.rows(size - 1, size))).data
    decode_record(data)
    return len(data)


def raw_table(db: str, name: str) -> psycopg.Connection:
    conn = psycopg.connect(db, autocommit=True)
    conn.execute(f"CREATE TABLE {name} (seq bigint PRIMARY KEY, data bytea NOT NULL)")
    return conn


def time_ledger_single(db: str, n: int, rep: int) -> tuple[float, int]:
    ledger = new_ledger(db, f"single_{rep}")
    for i in range(20):  # warm-up
        ledger.append("note", note_body(i))
    start = time.perf_counter()
    for i in range(n):
        ledger.append("note", note_body(i))
    rate = n / (time.perf_counter() - start)
    size = record_size(ledger)
    ledger.close()
    return rate, size


def time_raw_single(db: str, n: int, size: int, rep: int) -> float:
    conn = raw_table(db, f"raw_single_{rep}")
    blob = os.urandom(size)
    start = time.perf_counter()
    for i in range(n):
        with conn.transaction():
            conn.execute(
                f"INSERT INTO raw_single_{rep} (seq, data) VALUES (%s, %s)", (i, blob)
            )
    rate = n / (time.perf_counter() - start)
    conn.close()
    return rate


def time_ledger_batch(db: str, batches: int, rep: int) -> float:
    ledger = new_ledger(db, f"batch_{rep}")
    ledger.append_many([Draft("note", note_body(i)) for i in range(100)])  # warm-up
    start = time.perf_counter()
    for b in range(batches):
        ledger.append_many(
            [Draft("note", note_body(b * BATCH + i)) for i in range(BATCH)]
        )
    rate = batches * BATCH / (time.perf_counter() - start)
    ledger.close()
    return rate


def time_raw_batch(db: str, batches: int, size: int, rep: int) -> float:
    conn = raw_table(db, f"raw_batch_{rep}")
    blob = os.urandom(size)
    start = time.perf_counter()
    for b in range(batches):
        with conn.transaction(), conn.cursor() as cur:
            cur.executemany(
                f"INSERT INTO raw_batch_{rep} (seq, data) VALUES (%s, %s)",
                [(b * BATCH + i, blob) for i in range(BATCH)],
            )
    rate = batches * BATCH / (time.perf_counter() - start)
    conn.close()
    return rate


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer appends")
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    n, batches = (300, 3) if args.quick else (1_000, 10)
    name = f"mltrail_bench_{uuid.uuid4().hex[:8]}"
    admin = psycopg.connect(SERVER, autocommit=True)
    admin.execute(f'CREATE DATABASE "{name}"')
    db = database_url(name)
    results: dict[str, list[float]] = {
        k: [] for k in ("single", "raw1", "many", "rawN")
    }
    try:
        for rep in range(args.reps):
            rate, size = time_ledger_single(db, n, rep)
            results["single"].append(rate)
            results["raw1"].append(time_raw_single(db, n, size, rep))
            results["many"].append(time_ledger_batch(db, batches, rep))
            results["rawN"].append(time_raw_batch(db, batches, size, rep))
            print(
                f"rep {rep}: append {rate:,.0f}/s raw {results['raw1'][-1]:,.0f}/s; "
                f"append_many {results['many'][-1]:,.0f}/s "
                f"raw {results['rawN'][-1]:,.0f}/s (record {size} B)"
            )
    finally:
        admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        admin.close()
    med = {k: statistics.median(v) for k, v in results.items()}
    version = psycopg.connect(SERVER).execute("SHOW server_version").fetchone()[0]
    print(f"\nPostgreSQL {version} at {urlsplit(SERVER).hostname}, {args.reps} reps")
    print(
        f"single appends/s   {med['single']:>10,.0f}   raw psycopg single-row txn "
        f"{med['raw1']:>10,.0f}/s   ratio {med['single'] / med['raw1']:.2f}"
    )
    print(
        f"append_many x{BATCH} {med['many']:>10,.0f}   raw executemany x{BATCH}     "
        f"{med['rawN']:>10,.0f}/s   ratio {med['many'] / med['rawN']:.2f}"
    )


if __name__ == "__main__":
    main()
