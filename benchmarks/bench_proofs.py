"""Merkle proof latency on a large ledger, against recomputing the root from every leaf.

Builds (once, then reuses from ``benchmarks/.cache/``) a SQLite ledger of
1,000,000 records (``--quick``: 100,000) with ``append_many`` batches of 5,000,
then times 1,000 random RFC 9162 inclusion proofs (``Ledger.prove_inclusion``,
leaf and tree size both random) and 1,000 random consistency proofs
(``Ledger.prove_consistency``, both sizes random). Target: median and p99 latency
< 20 ms each. Every proof is checked with ``verify_inclusion`` /
``verify_consistency`` against roots computed from the stored nodes with
``range_root(0, size, store.node)``, and the leaf hash of the record.

Baseline: what a store without stored Merkle nodes would need for any root or
proof, i.e. reading every record and rehashing all leaves into the root
(measured once; it must agree with the stored-node root).

Latencies are per round of 1,000 proofs; the figures are medians over
``--reps`` rounds (default 5) of each round's median and p99.

Run: ``python benchmarks/bench_proofs.py [--quick] [-n N] [--reps R] [--rebuild]``
"""

from __future__ import annotations

import argparse
import math
import platform
import random
import statistics
import time
from pathlib import Path

from mltrail.core.canonical import compute_leaf_hash
from mltrail.core.merkle import (
    CompactRange,
    range_root,
    verify_consistency,
    verify_inclusion,
)
from mltrail.errors import MltrailError
from mltrail.ledger.ledger import Draft, Ledger
from mltrail.ledger.stored import KIND_ROLES
from mltrail.storage.sqlite import SQLiteStore
from mltrail.testing import fixed_signer

ORIGIN = "bench.example/proofs"
BATCH = 5_000
TARGET_MS = 20.0
CACHE = Path(__file__).resolve().parent / ".cache"


def note_body(i: int) -> dict[str, object]:
    return {"text": f"proof benchmark entry {i}", "refers_to": i}


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def cached_ok(path: Path, n: int) -> bool:
    if not path.exists():
        return False
    try:
        store = SQLiteStore(path, roles=KIND_ROLES)
    except MltrailError:
        return False
    try:
        return store.meta().get("origin") == ORIGIN and store.head().size == n
    except MltrailError:
        return False
    finally:
        store.close()


def build(path: Path, n: int) -> None:
    """Write the ledger to a partial file and move it into place when complete."""
    partial = path.with_name(path.name + ".partial")
    _remove(partial)
    ledger = Ledger.create(
        SQLiteStore(partial, roles=KIND_ROLES, create=True),
        fixed_signer(),
        origin=ORIGIN,
    )
    start = time.perf_counter()
    done = ledger.head().size
    next_report = 100_000
    while done < n:
        count = min(BATCH, n - done)
        ledger.append_many([Draft("note", note_body(done + i)) for i in range(count)])
        done += count
        if done >= next_report or done == n:
            elapsed = time.perf_counter() - start
            print(
                f"  built {done:,} records, {elapsed:.0f} s ({done / elapsed:,.0f}/s)"
            )
            next_report += 100_000
    ledger.checkpoint()
    ledger.close()  # last connection: SQLite folds the WAL back into the file
    _remove(path)
    partial.rename(path)


def open_ledger(path: Path) -> Ledger:
    return Ledger(SQLiteStore(path, roles=KIND_ROLES), None, origin=ORIGIN)


def p99(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def inclusion_round(
    ledger: Ledger, n: int, count: int, rng: random.Random
) -> tuple[list[float], list[float]]:
    """(proof latencies, verification latencies) in ms; raises if a proof fails."""
    node = ledger.store.node
    gen, check = [], []
    for _ in range(count):
        size = rng.randint(1, n)
        seq = rng.randrange(size)
        start = time.perf_counter()
        proof = ledger.prove_inclusion(seq, size)
        gen.append((time.perf_counter() - start) * 1e3)
        root = range_root(0, size, node)
        leaf = ledger.leaf_hash(seq)
        start = time.perf_counter()
        verify_inclusion(seq, size, leaf, proof.hashes, root)
        check.append((time.perf_counter() - start) * 1e3)
    return gen, check


def consistency_round(
    ledger: Ledger, n: int, count: int, rng: random.Random
) -> tuple[list[float], list[float]]:
    node = ledger.store.node
    gen, check = [], []
    for _ in range(count):
        old = rng.randint(1, n)
        new = rng.randint(old, n)
        start = time.perf_counter()
        proof = ledger.prove_consistency(old, new)
        gen.append((time.perf_counter() - start) * 1e3)
        root1, root2 = range_root(0, old, node), range_root(0, new, node)
        start = time.perf_counter()
        verify_consistency(old, new, root1, root2, proof.hashes)
        check.append((time.perf_counter() - start) * 1e3)
    return gen, check


def rehash_all(ledger: Ledger, n: int) -> tuple[bytes, float]:
    """Baseline: the root from every record's bytes, no stored nodes."""
    start = time.perf_counter()
    tree = CompactRange()
    for row in ledger.store.rows(0, n):
        tree.append(compute_leaf_hash(row.data))
    return tree.root(), time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100,000 records")
    parser.add_argument("-n", type=int, default=None, help="records in the ledger")
    parser.add_argument("--proofs", type=int, default=1_000, help="proofs per round")
    parser.add_argument("--reps", type=int, default=5, help="rounds (median)")
    parser.add_argument("--rebuild", action="store_true", help="ignore the cache")
    parser.add_argument("--seed", type=int, default=9162)
    args = parser.parse_args()
    n = args.n or (100_000 if args.quick else 1_000_000)

    print(f"bench_proofs: python {platform.python_version()}, {n:,} records")
    CACHE.mkdir(exist_ok=True)
    path = CACHE / f"proofs-{n}.db"
    if args.rebuild or not cached_ok(path, n):
        print(f"  building {path} (append_many batches of {BATCH:,})")
        build(path, n)
    else:
        print(f"  reusing cached {path}")
    print(f"  db file: {path.stat().st_size / 2**20:,.0f} MiB")

    ledger = open_ledger(path)
    node = ledger.store.node
    start = time.perf_counter()
    stored_root = range_root(0, n, node)
    stored_ms = (time.perf_counter() - start) * 1e3
    assert stored_root == ledger.head().root()

    incl_med, incl_p99, incl_chk = [], [], []
    cons_med, cons_p99, cons_chk = [], [], []
    for rep in range(args.reps):
        rng = random.Random(args.seed + rep)
        gen, check = inclusion_round(ledger, n, args.proofs, rng)
        incl_med.append(statistics.median(gen))
        incl_p99.append(p99(gen))
        incl_chk.append(statistics.median(check))
        gen, check = consistency_round(ledger, n, args.proofs, rng)
        cons_med.append(statistics.median(gen))
        cons_p99.append(p99(gen))
        cons_chk.append(statistics.median(check))
        print(
            f"  round {rep + 1}: inclusion median {incl_med[-1]:.3f} ms "
            f"p99 {incl_p99[-1]:.3f} ms | consistency median {cons_med[-1]:.3f} ms "
            f"p99 {cons_p99[-1]:.3f} ms (all {2 * args.proofs} proofs verified)"
        )

    print("  baseline: rehashing every leaf from the records ...")
    rehashed_root, rehash_s = rehash_all(ledger, n)
    if rehashed_root != stored_root:
        raise SystemExit("rehashed root differs from the stored-node root")
    ledger.close()

    im, ip = statistics.median(incl_med), statistics.median(incl_p99)
    cm, cp = statistics.median(cons_med), statistics.median(cons_p99)
    base_ms = rehash_s * 1e3

    def status(value: float) -> str:
        return "PASS" if value < TARGET_MS else "FAIL"

    print(
        f"\n{'latency (ms)':<22}{'median':>9}{'p99':>9}{'verify':>9}"
        f"{'baseline/median':>17}  target < {TARGET_MS:g} ms"
    )
    for label, med, tail, chk in (
        ("inclusion proof", im, ip, statistics.median(incl_chk)),
        ("consistency proof", cm, cp, statistics.median(cons_chk)),
    ):
        print(
            f"{label:<22}{med:>9.3f}{tail:>9.3f}{chk:>9.3f}{base_ms / med:>16,.0f}x"
            f"  median {status(med)}, p99 {status(tail)}"
        )
    print(
        f"baseline: root by rehashing all {n:,} leaves: {rehash_s:.2f} s "
        f"({n / rehash_s:,.0f} leaves/s); from stored nodes: {stored_ms:.3f} ms"
    )


if __name__ == "__main__":
    main()
