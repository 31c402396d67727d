"""Query speed on a ledger of 100,000 runs: runs filters, show, trace.

Builds (once; reused with --home) a ledger of N runs spread over two years, each
with run.started, run.params, run.data (one of 200 datasets), run.artifact (its
own model file) and run.ended, plus a promotion every 100 runs: about 5 records
per run. Then it times, as a user would see them (the `mltrail` CLI as a
subprocess, so Python start-up and imports are included), each question side by
side with the obvious baseline: `python -c pass` (the floor any Python CLI pays)
and a full scan of the ledger's records (what answering without an index costs).

Target (issue 6): `runs` with filters and `trace` answer in under 200 ms.

Run: ``python benchmarks/bench_query.py [--runs 100000] [--reps 7] [--home DIR]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from mltrail.home import init_home, open_home
from mltrail.ledger import Draft, SystemClock

TARGET_MS = 200.0
BATCH = 500


class StepClock:
    """A clock that moves forward by a fixed step on every reading."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        self.now_value, self.step = start, step

    def now(self) -> datetime:
        self.now_value += self.step
        return self.now_value


def _hex(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def build(home: Path, runs: int) -> None:
    # the ledger is dated over two years from 2025-01-01: its clock steps forward
    clock = StepClock(
        datetime(2025, 1, 1, tzinfo=UTC), timedelta(days=730) / (runs * 5)
    )
    SystemClock.now = lambda self: clock.now()  # type: ignore[method-assign]
    init_home(home, origin="bench.mltrail.local/queries")
    opened = open_home(home)
    manifests = {
        d: {
            **opened.ledger.put_blob(f"dataset {d}\n".encode()),
            "media_type": "text/plain",
        }
        for d in range(200)
    }
    started = time.perf_counter()
    for first in range(0, runs, BATCH):
        drafts: list[Draft] = []
        for i in range(first, min(first + BATCH, runs)):
            drafts.extend(_run(i, manifests))
            if i % 100 == 99:
                drafts.append(_promotion(i))
        opened.ledger.append_many(drafts)
        if first % 10_000 == 0:
            print(
                f"  {first:,} runs ({time.perf_counter() - started:.0f}s)", flush=True
            )
    opened.checkpoint()
    opened.close()


def _run(i: int, manifests: dict[int, dict[str, object]]) -> list[Draft]:
    run = f"{i:08x}-0000-7000-8000-{_hex('run', i)[:12]}"
    dataset = i % 200
    return [
        Draft(
            "run.started",
            {
                "source": "api",
                "name": f"train-{i % 50}",
                "command": ["python", "train.py", f"--lr={i % 7}"],
                "cwd": "/srv/project",
                "pid": 1000 + i,
            },
            run,
        ),
        Draft(
            "run.params",
            {
                "source": "api",
                "params": {
                    "lr": [0.1, 0.01, 0.001, 0.05, 0.5, 0.2, 0.02][i % 7],
                    "batch_size": 32 * (1 + i % 4),
                    "seed": i,
                },
            },
            run,
        ),
        Draft(
            "run.data",
            {
                "role": "train",
                "path": f"/data/snapshot-{dataset}",
                "dataset": _hex("dataset", dataset),
                "files": 1000,
                "bytes": 10**9,
                "manifest": manifests[dataset],
            },
            run,
        ),
        Draft(
            "run.artifact",
            {
                "path": "/srv/project/model.bin",
                "exists": True,
                "type": "file",
                "sha256": _hex("model", i),
                "size": 1 << 20,
            },
            run,
        ),
        Draft(
            "run.ended",
            {
                "status": "failed" if i % 97 == 0 else "succeeded",
                "exit_code": 1 if i % 97 == 0 else 0,
                "duration_s": 60.0,
            },
            run,
        ),
    ]


def _promotion(i: int) -> Draft:
    return Draft("model.promoted", {"model": _hex("model", i), "model_type": "file",
                                    "stage": "production", "action": "enter",
                                    "note": f"release {i}"})  # fmt: skip


def timed_ms(cmd: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000


def scan_ms(home: Path, seed: int) -> float:
    """The no-index baseline: read every record to find one run's params."""
    opened = open_home(home, writable=False)
    start = time.perf_counter()
    found = [r for r in opened.ledger.records_of_kinds(["run.params"])
             if r.entry.body["params"].get("seed") == seed]  # fmt: skip
    took = (time.perf_counter() - start) * 1000
    opened.close()
    assert found
    return took


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--home", type=Path)
    args = parser.parse_args()
    env_python = [sys.executable]
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    home = args.home or Path(tempfile.mkdtemp(prefix="mltrail-bench-query-")) / "home"
    if not (home / "ledger.db").exists():
        print(f"building a ledger of {args.runs:,} runs in {home} ...")
        started = time.perf_counter()
        build(home, args.runs)
        print(f"built in {time.perf_counter() - started:.1f}s")
    cli = [*env_python, "-m", "mltrail", "--home", str(home)]
    started = time.perf_counter()
    out = subprocess.run(
        [*cli, "reindex", "--json"], check=True, capture_output=True, text=True
    )
    print(
        f"reindex: {json.loads(out.stdout)} ({time.perf_counter() - started:.1f}s wall)"
    )
    model = _hex("model", args.runs // 2)
    cases = {
        "python -c pass (floor)": [*env_python, "-c", "pass"],
        "runs -n 20": [*cli, "runs", "--json"],
        "runs --param lr=0.05 --week 2025-W40": [
            *cli,
            "runs",
            "--param",
            "lr=0.05",
            "--week",
            "2025-W40",
            "--json",
        ],
        "runs --dataset <id> --status failed -n 0": [
            *cli,
            "runs",
            "--dataset",
            _hex("dataset", 42)[:12],
            "--status",
            "failed",
            "-n",
            "0",
            "--json",
        ],
        "runs --name 'train-4*' --since 2026-06-01": [
            *cli,
            "runs",
            "--name",
            "train-4*",
            "--since",
            "2026-06-01",
            "--json",
        ],
        "trace <model id>": [*cli, "trace", model, "--json"],
        "model history --at 2026-01-01": [
            *cli,
            "model",
            "history",
            "--at",
            "2026-01-01",
            "--json",
        ],
    }
    times: dict[str, list[float]] = {name: [] for name in cases}
    times["full scan of run.params (no index, in-process)"] = []
    for _ in range(args.reps):
        for name, cmd in cases.items():
            times[name].append(timed_ms(cmd))
        times["full scan of run.params (no index, in-process)"].append(
            scan_ms(home, args.runs // 2)
        )
    floor = statistics.median(times["python -c pass (floor)"])
    print(f"\n{args.runs:,} runs, medians of {args.reps} interleaved reps:")
    for name, values in times.items():
        median = statistics.median(values)
        verdict = ""
        if name.startswith(("runs", "trace")):
            verdict = (
                "ok" if median < TARGET_MS else f"over the {TARGET_MS:.0f} ms target"
            )
        print(
            f"  {name:50s} {median:8.1f} ms  ({median - floor:+.1f} over the floor) {verdict}"
        )


if __name__ == "__main__":
    main()
