"""Full-ledger verification throughput against the bare Ed25519 verification rate.

Builds a SQLite ledger of N note records (default 100,000; ``--quick`` 20,000)
with about 300 bytes of JSON body each, through ``append_many`` batches of
``--batch`` records (default 1,000; every batch stores a signed checkpoint, so
``--batch 1`` is a ledger of single appends, one checkpoint per record, the
worst case for verification), then times ``Ledger.verify()`` with ``workers=1`` and
``workers=2`` (the default uses all cores on ledgers of 20,000 records or more).
Goal (issue 16): the default workers >= 0.8x the limit, bare PyNaCl Ed25519
verification on all cores (one process per core, at once, over messages as long
as the records' signed bytes), measured in the same run.

Context: the bare single-core Ed25519 verification rate of N signatures over
messages as long as the records' signed bytes, with PyNaCl (what mltrail
verifies with) and with ``cryptography``; the ratio says how close full
verification (parse, canonical check, schema, signature, hash chain, Merkle
root, checkpoints) gets to being signature-bound. It also checks the design's
claim that PyNaCl verifies ~1.9x faster than ``cryptography``.

Medians of 3 repetitions (verification of a large ledger is slow), interleaved.

With ``--before SRC`` (the ``src`` folder of another checkout, e.g. main's), each
repetition also verifies the same ledger with all cores in a child process
running that code and another running this code, alternated: an A/B of CPU per
record (the child and its workers) and records/s beside the same limit.

Run: ``python benchmarks/bench_verify.py [--quick] [-n N] [--reps R] [--profile]
[--before SRC]``
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from machine import all_core_rate, describe
from nacl.signing import SigningKey

from mltrail.core.codec import decode_record
from mltrail.ledger.ledger import Draft, Ledger
from mltrail.ledger.stored import KIND_ROLES
from mltrail.storage.sqlite import SQLiteStore
from mltrail.testing import fixed_signer

ORIGIN = "bench.example/x"
BATCH = 1_000
GOAL = 0.8


def note_body(i: int) -> dict[str, object]:
    """A note body of about 300 bytes of JSON."""
    text = f"run {i} finished: " + "loss went down as expected, nothing odd; " * 6
    return {"text": text, "refers_to": i}


def build_ledger(path: Path, n: int, batch: int) -> tuple[Ledger, float]:
    """A ledger of ``n`` records (genesis included), in batches of ``batch``."""
    ledger = Ledger.create(
        SQLiteStore(path, roles=KIND_ROLES, create=True), fixed_signer(), origin=ORIGIN
    )
    start = time.perf_counter()
    done = ledger.head().size
    while done < n:
        count = min(batch, n - done)
        ledger.append_many([Draft("note", note_body(done + i)) for i in range(count)])
        done += count
    return ledger, time.perf_counter() - start


def sample_sizes(ledger: Ledger) -> tuple[int, int]:
    """(stored bytes, signed bytes) of the newest record."""
    size = ledger.head().size
    data = next(iter(ledger.store.rows(size - 1, size))).data
    return len(data), len(decode_record(data).signing_bytes)


CPU_US: dict[str, list[float]] = {}
"""CPU time per record (this process and its workers) or per signature, by figure."""


def _cpu() -> float:
    """CPU seconds of this process and its finished children (the workers)."""
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + children.ru_utime + children.ru_stime


def time_verify(ledger: Ledger, workers: int) -> float:
    cpu = _cpu()
    start = time.perf_counter()
    report = ledger.verify(workers=workers)
    elapsed = time.perf_counter() - start
    cpu = _cpu() - cpu
    if not report.ok:
        raise SystemExit(f"verification failed: {report.verdict()}")
    CPU_US.setdefault(f"w={workers}", []).append(cpu / report.records_checked * 1e6)
    return report.records_checked / elapsed


_CHILD = """
import json, resource, sys, time
from pathlib import Path
from mltrail.ledger.ledger import Ledger
from mltrail.ledger.stored import KIND_ROLES
from mltrail.storage.sqlite import SQLiteStore
from mltrail.testing import fixed_signer

signer = fixed_signer()
ledger = Ledger(SQLiteStore(Path(sys.argv[1]), roles=KIND_ROLES), signer,
                origin=sys.argv[2], trusted_key=signer.key_id)
workers = int(sys.argv[3])
cpu = time.process_time()
start = time.perf_counter()
report = ledger.verify(workers=workers)
elapsed = time.perf_counter() - start
parent = time.process_time() - cpu
children = resource.getrusage(resource.RUSAGE_CHILDREN)
print(json.dumps({"ok": report.ok, "n": report.records_checked, "wall": elapsed,
                  "parent": parent, "children": children.ru_utime + children.ru_stime}))
"""


def time_verify_child(path: Path, workers: int, src: Path) -> dict[str, float]:
    """Verify ``path`` in a child process running the code in ``src``: records/s,
    and CPU per record of the walk (parent) and of its workers, in us."""
    env = {**os.environ, "PYTHONPATH": str(src.resolve())}
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, str(path), ORIGIN, str(workers)],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    got = json.loads(out.strip().splitlines()[-1])
    if not got["ok"]:
        raise SystemExit(f"verification failed in the child running {src}")
    n = got["n"]
    return {
        "rate": n / got["wall"],
        "parent": got["parent"] / n * 1e6,
        "workers": got["children"] / n * 1e6,
    }


def make_signatures(n: int, size: int) -> tuple[bytes, list[tuple[bytes, bytes]]]:
    key = SigningKey(bytes(range(32)))
    pairs = []
    for _ in range(n):
        message = os.urandom(size)
        pairs.append((message, key.sign(message).signature))
    return bytes(key.verify_key), pairs


def time_nacl(public_key: bytes, pairs: list[tuple[bytes, bytes]]) -> float:
    from nacl.signing import VerifyKey

    key = VerifyKey(public_key)
    cpu = time.process_time()
    start = time.perf_counter()
    for message, signature in pairs:
        key.verify(message, signature)
    elapsed = time.perf_counter() - start
    CPU_US.setdefault("bare", []).append((time.process_time() - cpu) / len(pairs) * 1e6)
    return len(pairs) / elapsed


def time_cryptography(public_key: bytes, pairs: list[tuple[bytes, bytes]]) -> float:
    key = Ed25519PublicKey.from_public_bytes(public_key)
    start = time.perf_counter()
    for message, signature in pairs:
        try:
            key.verify(signature, message)
        except InvalidSignature:
            raise SystemExit("cryptography rejected a valid signature") from None
    return len(pairs) / (time.perf_counter() - start)


def profile_verify(ledger: Ledger, records: int) -> None:
    profiler = cProfile.Profile()
    profiler.enable()
    ledger.verify(workers=1)
    profiler.disable()
    print(f"\ncProfile of verify(workers=1) over {records} records (inflated):")
    stats = pstats.Stats(profiler)
    stats.sort_stats("tottime").print_stats(25)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="20,000 records")
    parser.add_argument("-n", type=int, default=None, help="records in the ledger")
    parser.add_argument("--reps", type=int, default=3, help="repetitions (median)")
    parser.add_argument("--dir", type=Path, default=None, help="scratch directory")
    parser.add_argument("--profile", action="store_true", help="cProfile workers=1")
    parser.add_argument(
        "--batch", type=int, default=BATCH, help="records per append (one checkpoint)"
    )
    parser.add_argument(
        "--before", type=Path, default=None, help="src folder of the code before"
    )
    args = parser.parse_args()
    n = args.n or (20_000 if args.quick else 100_000)
    cores = os.cpu_count() or 1

    print(f"bench_verify: {describe()}")
    with tempfile.TemporaryDirectory(dir=args.dir, prefix="mltrail-bench-") as tmp:
        ledger, build_s = build_ledger(Path(tmp) / "verify.db", n, args.batch)
        stored, signed = sample_sizes(ledger)
        checkpoints = len(ledger.store.checkpoints())
        print(
            f"  built {n:,} records in {build_s:.1f} s ({n / build_s:,.0f}/s), "
            f"batches of {args.batch} ({checkpoints:,} checkpoints); "
            f"{stored} bytes stored, {signed} bytes signed per record"
        )
        public_key, pairs = make_signatures(n, signed)
        w1, w2, nacl, crypto, allcore = [], [], [], [], []
        ab: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
        here = Path(__file__).resolve().parent.parent / "src"
        for rep in range(args.reps):
            if args.before is not None:
                order = [("before", args.before), ("after", here)]
                for name, src in order if rep % 2 == 0 else order[::-1]:
                    got = time_verify_child(Path(tmp) / "verify.db", cores, src)
                    ab[name].append(got)
                    print(
                        f"  rep {rep + 1}: {name:<6} w={cores} {got['rate']:,.0f}/s, "
                        f"CPU per record: walk {got['parent']:.1f} us, workers "
                        f"{got['workers']:.1f} us"
                    )
            w1.append(time_verify(ledger, 1))
            w2.append(time_verify(ledger, cores))
            allcore.append(all_core_rate("verify", max(2_000, n // cores), signed))
            nacl.append(time_nacl(public_key, pairs))
            crypto.append(time_cryptography(public_key, pairs))
            print(
                f"  rep {rep + 1}: verify w=1 {w1[-1]:,.0f}/s  w={cores} {w2[-1]:,.0f}/s"
                f"  | bare PyNaCl all cores {allcore[-1]:,.0f}/s"
                f"  | bare Ed25519 PyNaCl {nacl[-1]:,.0f}/s"
                f"  cryptography {crypto[-1]:,.0f}/s"
            )
        if args.profile:
            profile_verify(ledger, n)
        ledger.close()

    v1, v2 = statistics.median(w1), statistics.median(w2)
    rn, rc = statistics.median(nacl), statistics.median(crypto)
    limit = statistics.median(allcore)
    print(f"\n{describe()}")
    print(f"{'figure (records/s)':<36}{'rate':>10}{'limit':>10}{'ratio':>8}  goal")
    ratio = v2 / limit
    print(
        f"{f'verify(workers={cores}) [default]':<36}{v2:>10,.0f}{limit:>10,.0f}"
        f"{ratio:>8.2f}  >= {GOAL} {'PASS' if ratio >= GOAL else 'FAIL'}"
    )
    print(f"{'verify(workers=1)':<36}{v1:>10,.0f}{rn:>10,.0f}{v1 / rn:>8.2f}  (1 core)")
    print(
        f"limit: bare PyNaCl Ed25519 verify, {cores} processes at once; "
        f"one core: PyNaCl {rn:,.0f}/s, cryptography {rc:,.0f}/s"
    )
    print(
        f"PyNaCl / cryptography verify speed: {rn / rc:.2f}x "
        f"(design claim ~1.9x: {'confirmed' if rn / rc >= 1.7 else 'not confirmed'})"
    )
    bare, c1, c2 = (statistics.median(CPU_US[k]) for k in ("bare", "w=1", f"w={cores}"))
    print(
        f"CPU per record (this process and its workers): w=1 {c1:.0f} us, "
        f"w={cores} {c2:.0f} us; bare PyNaCl {bare:.0f} us per signature: "
        f"{bare / c2:.2f} of the limit if every core is kept busy (load-robust)"
    )
    print(
        f"per record, 1 worker: {1e6 / v1:.0f} us, of which ~{1e6 / rn:.0f} us is the "
        f"Ed25519 verify ({v1 / rn:.0%} signature-bound); "
        f"{cores} workers speed-up {v2 / v1:.2f}x"
    )
    if args.before is not None:
        print(f"A/B, w={cores}, child processes in alternation (medians):")
        for name, runs in ab.items():
            rate = statistics.median(r["rate"] for r in runs)
            walk = statistics.median(r["parent"] for r in runs)
            work = statistics.median(r["workers"] for r in runs)
            total = statistics.median(r["parent"] + r["workers"] for r in runs)
            print(
                f"  {name:<6} {rate:>8,.0f}/s ({rate / limit:.2f} of the limit); CPU "
                f"per record {total:.1f} us (walk {walk:.1f}, workers {work:.1f}): "
                f"{bare / total:.2f} of the limit by CPU"
            )


if __name__ == "__main__":
    main()
