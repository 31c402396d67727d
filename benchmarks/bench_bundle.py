"""Proof bundle export and verification: a model with ~1,000 records of lineage.

Builds a real home (SQLite, in a temporary folder) of ``--records`` records
(default 20,000): a chain of ``--steps`` data steps (default 99) and a training
run, 10 records each (run.started, run.data, 6 x run.step-free run.params,
run.artifact, run.ended), so the model's lineage is ~1,000 records; the rest are
unrelated notes and runs. Then times, over ``--reps`` rounds (median):

- ``export``: resolve the lineage through the index (caught up beforehand),
  read the records, make every inclusion proof to the newest checkpoint, read
  the blobs, and write the canonical bundle bytes;
- ``verify``: ``verify_bundle_bytes`` on those bytes (parse, decode, every
  inclusion proof, signature, link, blob; no ledger).

Run: ``python benchmarks/bench_bundle.py [--records N] [--steps S] [--reps R]``
"""

from __future__ import annotations

import argparse
import hashlib
import platform
import statistics
import tempfile
import time
from pathlib import Path

from mltrail.core.bundle import BundlePolicy, verify_bundle_bytes
from mltrail.core.canonical import canonical_bytes
from mltrail.evidence.bundle import export_bundle
from mltrail.index import open_index
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft

BATCH = 2_000


def _id(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def step_drafts(ledger, i: int, *, last: bool) -> list[Draft]:
    run = f"run-{i:04d}"
    manifest = ledger.put_blob(f"manifest of dataset {i}\n".encode())
    out: dict[str, object] = {"path": f"data/{i + 1}", "exists": True,
                              "type": "directory", "dataset": _id(f"d{i + 1}"),
                              "files": 1, "bytes": 10}  # fmt: skip
    if last:
        out = {"path": "model.safetensors", "exists": True, "type": "file",
               "sha256": _id("weights"), "size": 10, "model": _id("model")}  # fmt: skip
    params = [
        Draft("run.params", {"source": "api", "params": {f"p{k}": k * i}}, run)
        for k in range(6)
    ]
    return [
        Draft("run.started", {"source": "api", "name": f"step {i}"}, run),
        Draft("run.data", {"role": "in", "path": f"data/{i}", "dataset": _id(f"d{i}"),
                           "files": 1, "bytes": 10, "manifest": manifest}, run),
        *params,
        Draft("run.artifact", out, run),
        Draft("run.ended", {"status": "succeeded"}, run),
    ]  # fmt: skip


def build(path: Path, records: int, steps: int) -> None:
    init_home(path, origin="bench.mltrail.local/bundle")
    home = open_home(path)
    ledger = home.ledger
    noise = records - 1 - 10 * (steps + 1)
    per_gap = max(noise // (steps + 1), 0)
    for i in range(steps + 1):
        ledger.append_many(step_drafts(ledger, i, last=i == steps))
        pending = [
            Draft("note", {"text": f"unrelated {i}.{j}"}) for j in range(per_gap)
        ]
        for start in range(0, len(pending), BATCH):
            ledger.append_many(pending[start : start + BATCH])
    home.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=20_000)
    parser.add_argument("--steps", type=int, default=99)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "home"
        start = time.perf_counter()
        build(path, args.records, args.steps)
        built = time.perf_counter() - start
        home = open_home(path)
        index = open_index(home)
        node = f"model:{_id('model')}"
        exports, verifies = [], []
        for _ in range(args.reps):
            start = time.perf_counter()
            data = canonical_bytes(export_bundle(home.ledger, index, node))
            (Path(tmp) / "bundle.json").write_bytes(data)
            exports.append(time.perf_counter() - start)
            start = time.perf_counter()
            report = verify_bundle_bytes(data, BundlePolicy())
            verifies.append(time.perf_counter() - start)
            assert report.ok, report.problems
        size = home.ledger.head().size
        index.close()
        home.close()
    n = report.records_checked
    export_s, verify_s = statistics.median(exports), statistics.median(verifies)
    print(f"python {platform.python_version()} on {platform.machine()}")
    print(f"ledger: {size:,} records (built in {built:.1f} s); bundle: {n:,} records, "
          f"{report.blobs_checked} blobs, {len(data):,} bytes")  # fmt: skip
    print(f"export:        {export_s * 1000:8.1f} ms  ({n / export_s:,.0f} records/s)")
    print(f"verify-bundle: {verify_s * 1000:8.1f} ms  ({n / verify_s:,.0f} records/s)")


if __name__ == "__main__":
    main()
