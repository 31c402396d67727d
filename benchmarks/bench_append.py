"""Append throughput: signed durable appends against the limits measured in the same run.

Measures, on SQLite files in a scratch directory (WAL, ``synchronous=FULL``), as
users get it: a real home made by ``init_home`` and opened by ``open_home`` (its
own key, the actor of this process put into every entry), and beside it the bare
``Ledger.create(..., fixed_signer())`` figure:

(a) ``ledger.append``: one validated, signed, hash-chained, durable append per
    call. Goal (issue 16): >= 0.5x the limit, raw ``sqlite3`` single-row
    ``INSERT`` transactions (``BEGIN IMMEDIATE`` / ``INSERT`` / ``COMMIT``) of a
    blob as large as one stored record, on a database in the same mode.
(b) ``ledger.append_many`` with batches of 1,000 drafts (one atomic transaction
    each). Goal: >= 0.5x the limit, bare PyNaCl Ed25519 signing on all cores (one
    process per core, at once), and never below the raw single-row rate.
    Context: raw ``executemany`` batches of 1,000 rows, one transaction each.

The CPU model, cores and load are printed with the figures. Ledger and baseline
repetitions are interleaved so that machine noise hits both alike; figures are
medians of the repetitions.

Run: ``python benchmarks/bench_append.py [--quick] [--reps N] [--profile]``;
``--threads`` measures only batch signing on one thread against several (the
threshold of ``core.signing.PARALLEL_MIN``).
"""

from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from machine import all_core_rate, describe
from nacl.signing import SigningKey

from mltrail.core.codec import decode_record
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft, Ledger
from mltrail.ledger.stored import KIND_ROLES
from mltrail.storage.sqlite import SQLiteStore
from mltrail.testing import fixed_signer

ORIGIN = "bench.example/x"
BATCH = 1_000


def note_body(i: int) -> dict[str, object]:
    """A note body of about 300 bytes of JSON, like a short human remark."""
    text = f"entry {i}: " + "the quick brown fox jumps over the lazy dog " * 6
    return {"text": text, "refers_to": i}


def new_ledger(directory: Path, name: str, home: bool = False) -> Ledger:
    """A bare ledger, or (``home``) the ledger of a real home as users open it."""
    if home:
        init_home(directory / name, origin=ORIGIN)
        return open_home(directory / name).ledger
    return Ledger.create(
        SQLiteStore(directory / name, roles=KIND_ROLES, create=True),
        fixed_signer(),
        origin=ORIGIN,
    )


def record_sizes(ledger: Ledger) -> tuple[int, int]:
    """(stored record bytes, signed bytes) of the newest record."""
    size = ledger.head().size
    data = next(iter(ledger.store.rows(size - 1, size))).data
    return len(data), len(decode_record(data).signing_bytes)


def raw_db(path: Path) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    mode = conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]
    assert mode.lower() == "wal", mode
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE t (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)")
    return conn


def time_ledger_single(
    directory: Path, n: int, rep: int, home: bool = False
) -> tuple[float, tuple[int, int]]:
    ledger = new_ledger(directory, f"single-{rep}{'-home' * home}.db", home)
    for i in range(20):  # warm-up: statement cache, schema validators, page cache
        ledger.append("note", note_body(i))
    bodies = [note_body(i) for i in range(n)]
    start = time.perf_counter()
    for body in bodies:
        ledger.append("note", body)
    elapsed = time.perf_counter() - start
    sizes = record_sizes(ledger)
    ledger.close()
    return n / elapsed, sizes


def time_raw_single(directory: Path, n: int, blob: bytes, rep: int) -> float:
    conn = raw_db(directory / f"raw-single-{rep}.db")
    for i in range(20):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (seq, data) VALUES (?, ?)", (i, blob))
        conn.execute("COMMIT")
    start = time.perf_counter()
    for i in range(20, 20 + n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (seq, data) VALUES (?, ?)", (i, blob))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def time_schema_single(directory: Path, n: int, blob: bytes, rep: int) -> float:
    """Context: the same transactions with mltrail's schema and precomputed rows.

    Each commit writes one ``records`` row (two indexes) and its Merkle nodes,
    exactly as ``SQLiteStore._append`` does, but no hashing, signing or
    validation: the gap to ``Ledger.append`` is mltrail's Python work.
    """
    path = directory / f"schema-single-{rep}.db"
    SQLiteStore(path, roles=KIND_ROLES, create=True).close()
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    digest, when = bytes(32), "2026-01-01T00:00:00.000000Z"
    start = time.perf_counter()
    for i in range(n):
        nodes, level, index = [(0, i, digest)], 0, i
        while index & 1:
            level, index = level + 1, index >> 1
            nodes.append((level, index, digest))
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("SELECT max(seq) FROM records").fetchone()
        conn.execute(
            "INSERT INTO records (seq, hash, kind, run, time, record) "
            "VALUES (?,?,?,?,?,?)",
            (i, digest, "note", None, when, blob),
        )
        conn.executemany(
            "INSERT INTO merkle_nodes (level, idx, hash) VALUES (?,?,?)", nodes
        )
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def time_ledger_batch(
    directory: Path, batches: int, rep: int, home: bool = False
) -> float:
    ledger = new_ledger(directory, f"batch-{rep}{'-home' * home}.db", home)
    ledger.append_many([Draft("note", note_body(i)) for i in range(BATCH)])  # warm-up
    drafts = [
        [Draft("note", note_body(b * BATCH + i)) for i in range(BATCH)]
        for b in range(batches)
    ]
    start = time.perf_counter()
    for batch in drafts:
        ledger.append_many(batch)
    elapsed = time.perf_counter() - start
    ledger.close()
    return batches * BATCH / elapsed


def time_raw_batch(directory: Path, batches: int, blob: bytes, rep: int) -> float:
    conn = raw_db(directory / f"raw-batch-{rep}.db")
    start = time.perf_counter()
    for b in range(batches):
        rows = [(b * BATCH + i, blob) for i in range(BATCH)]
        conn.execute("BEGIN IMMEDIATE")
        conn.executemany("INSERT INTO t (seq, data) VALUES (?, ?)", rows)
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return batches * BATCH / elapsed


def sign_rates(n: int, message_size: int) -> tuple[float, float]:
    """(cryptography, PyNaCl) Ed25519 signatures/s over messages of this size."""
    seed = bytes(range(32))
    messages = [os.urandom(message_size) for _ in range(n)]
    ckey = Ed25519PrivateKey.from_private_bytes(seed)
    start = time.perf_counter()
    for m in messages:
        ckey.sign(m)
    crypto = n / (time.perf_counter() - start)
    nkey = SigningKey(seed)
    start = time.perf_counter()
    for m in messages:
        nkey.sign(m)
    nacl = n / (time.perf_counter() - start)
    return crypto, nacl


def threshold(directory: Path, reps: int) -> None:
    """``sign_many`` on one thread against several, by batch size (the threshold
    ``PARALLEL_MIN`` rests on), and ``append_many`` of 1,000 entries through a
    home both ways; alternated, medians of ``reps``; wall and process CPU."""
    from mltrail.core import signing

    signer = fixed_signer()
    real = signing._signing_threads
    one = lambda n, cores: 1  # noqa: E731
    cores = len(os.sched_getaffinity(0))
    print("\nsign_many, one thread vs several (us per message: wall / process CPU)")
    for n in (32, 64, 128, 256, 1000):
        messages = [os.urandom(420) for _ in range(n)]
        figures: dict[str, list[tuple[float, float]]] = {"one": [], "several": []}
        for _ in range(reps):
            for name, choose in (("one", one), ("several", real)):
                signing._signing_threads = choose
                wall, cpu = time.perf_counter(), time.process_time()
                signer.sign_many(messages, cores)
                figures[name].append(
                    (
                        (time.perf_counter() - wall) / n * 1e6,
                        (time.process_time() - cpu) / n * 1e6,
                    )
                )
        signing._signing_threads = real
        shown = "  ".join(
            f"{name} {statistics.median(w for w, _ in v):5.1f} / "
            f"{statistics.median(c for _, c in v):5.1f}"
            for name, v in figures.items()
        )
        print(f"  n={n:<5} threads {real(n, cores)}: {shown}")
    ledger = new_ledger(directory, "threshold-home", home=True)
    ledger.append_many([Draft("note", note_body(i)) for i in range(BATCH)])
    figures = {"one": [], "several": []}
    for rep in range(reps):
        for name, choose in (("one", one), ("several", real)):
            signing._signing_threads = choose
            drafts = [Draft("note", note_body(rep * BATCH + i)) for i in range(BATCH)]
            wall, cpu = time.perf_counter(), time.process_time()
            ledger.append_many(drafts)
            figures[name].append(
                (
                    (time.perf_counter() - wall) / BATCH * 1e6,
                    (time.process_time() - cpu) / BATCH * 1e6,
                )
            )
    signing._signing_threads = real
    ledger.close()
    shown = "  ".join(
        f"{name} {statistics.median(w for w, _ in v):5.1f} / "
        f"{statistics.median(c for _, c in v):5.1f}"
        for name, v in figures.items()
    )
    print(f"  append_many x{BATCH}, home, us per entry: {shown}")


def profile_single(directory: Path, n: int) -> None:
    ledger = new_ledger(directory, "profile-home", home=True)
    for i in range(20):
        ledger.append("note", note_body(i))
    bodies = [note_body(i) for i in range(n)]
    profiler = cProfile.Profile()
    profiler.enable()
    for body in bodies:
        ledger.append("note", body)
    profiler.disable()
    ledger.close()
    print(f"\ncProfile of {n} appends to an opened home (times inflated by profiling):")
    stats = pstats.Stats(profiler)
    stats.sort_stats("cumulative").print_stats(30)


def ratio_line(label: str, rate: float, limit: float, goal: float) -> str:
    ratio = rate / limit
    verdict = "PASS" if ratio >= goal else "FAIL"
    return f"{label:<40}{rate:>10,.0f}{limit:>12,.0f}{ratio:>8.2f}  >= {goal} {verdict}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="smaller run (~5 s)")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (median)")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory")
    parser.add_argument("--profile", action="store_true", help="cProfile appends")
    parser.add_argument(
        "--threads",
        action="store_true",
        help="batch signing on one thread vs several, by batch size (only that)",
    )
    args = parser.parse_args()
    singles = 400 if args.quick else 2_000
    batches = 3 if args.quick else 10

    print(f"bench_append: {describe()}")
    print(
        f"  {args.reps} reps x ({singles} single appends, {batches} batches of {BATCH})"
    )
    runs: dict[str, list[float]] = {
        k: []
        for k in ("home", "single", "raw", "schema", "home_b", "batch", "raw_b", "sign")
    }
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="mltrail-bench-") as tmp:
        directory = Path(tmp)
        if args.threads:
            print(f"bench_append --threads: {describe()}")
            threshold(directory, args.reps)
            print(describe())
            return
        print(f"  scratch dir: {directory}")
        for rep in range(args.reps):
            rate, (size, signed) = time_ledger_single(directory, singles, rep, True)
            runs["home"].append(rate)
            blob = os.urandom(size)
            runs["raw"].append(time_raw_single(directory, singles, blob, rep))
            runs["single"].append(time_ledger_single(directory, singles, rep)[0])
            runs["schema"].append(time_schema_single(directory, singles, blob, rep))
            runs["home_b"].append(time_ledger_batch(directory, batches, rep, True))
            runs["sign"].append(all_core_rate("sign", 2_000 * batches, signed))
            runs["batch"].append(time_ledger_batch(directory, batches, rep))
            runs["raw_b"].append(time_raw_batch(directory, batches, blob, rep))
            print(
                f"  rep {rep + 1}: home append {runs['home'][-1]:,.0f}/s"
                f" (bare {runs['single'][-1]:,.0f}/s, raw {runs['raw'][-1]:,.0f}/s)"
                f"  home append_many {runs['home_b'][-1]:,.0f}/s"
                f" (bare {runs['batch'][-1]:,.0f}/s,"
                f" all-core sign {runs['sign'][-1]:,.0f}/s)"
            )
        crypto_sign, nacl_sign = sign_rates(5_000 if args.quick else 20_000, signed)
        if args.profile:
            profile_single(directory, singles)

    m = {k: statistics.median(v) for k, v in runs.items()}
    s, rs, b, rb = m["home"], m["raw"], m["home_b"], m["raw_b"]
    print(f"\n{describe()}")
    print(f"record size: {size} bytes stored (baseline blob size), {signed} signed")
    print(f"{'figure':<40}{'rate/s':>10}{'limit/s':>12}{'ratio':>8}  goal")
    print(ratio_line("(a) single durable appends, home", s, rs, 0.5))
    print(ratio_line("    bare Ledger.append", m["single"], rs, 0.5))
    print(ratio_line("(b) append_many x1000, home", b, m["sign"], 0.5))
    print(ratio_line("    bare Ledger.append_many", m["batch"], m["sign"], 0.5))
    print(ratio_line("    home append_many vs raw single txn", b, rs, 1.0))
    print(
        "limits: (a) raw sqlite single-row WAL+FULL transactions; (b) bare PyNaCl "
        f"Ed25519 signing, {os.cpu_count()} processes at once"
    )
    print(
        f"per-append cost: {1e6 / s:.0f} us (raw sqlite txn {1e6 / rs:.0f} us, "
        f"so {1e6 / s - 1e6 / rs:.0f} us is mltrail's own work)"
    )
    ss = m["schema"]
    print(
        f"context: raw sqlite with mltrail's schema (records + indexes + Merkle "
        f"nodes, precomputed): {ss:,.0f} txn/s = {1e6 / ss:.0f} us, so storage "
        f"layout costs {1e6 / ss - 1e6 / rs:.0f} us and Python work "
        f"{1e6 / s - 1e6 / ss:.0f} us per append"
    )
    print(
        f"per-entry cost in batches: {1e6 / b:.1f} us (raw executemany row "
        f"{1e6 / rb:.1f} us: {rb:,.0f}/s)"
    )
    print(
        f"context: Ed25519 sign rate on {signed}-byte messages, one core: "
        f"cryptography {crypto_sign:,.0f}/s, PyNaCl {nacl_sign:,.0f}/s (used by mltrail)"
    )


if __name__ == "__main__":
    main()
