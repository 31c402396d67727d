"""Read commands on a ledger of 100,000 runs: runs, show, trace, model history, prove.

Builds (once; reused with --home) a ledger of N runs spread over two years, each
with run.started, run.params, run.data (one of 200 datasets), run.artifact (its
own model file) and run.ended, plus a promotion every 100 runs: about 5 records
per run. Then it times, as a user would see them (the `mltrail` CLI as a
subprocess, so Python start-up and imports are included), each question side by
side with the obvious baseline: `python -c pass` (the floor any Python CLI pays)
and a full scan of the ledger's records (what answering without an index costs).

Goal (issue 16): every read command answers in < 80 ms over `python -c pass`,
medians of interleaved repetitions. Then, three times, it appends 1,000 more runs
through ``open_home`` (timed) and times the first `mltrail runs` after them against
the same command right after it: catching the index up must cost less than the
writes did (incremental, not a rescan; the median of the three). Each benchmark
run so grows the cached ledger by 3,000 runs.

The ledger is built once (~2 min, ~750 MB with its index) into
``$TMPDIR/mltrail-bench-query-<runs>`` (a home may not live inside the git work
tree) and reused; ``--home`` picks another place.

Run: ``python benchmarks/bench_query.py [--runs 100000] [--reps 7] [--home DIR]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from machine import describe

from mltrail.core.codec import parse_time
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft, SystemClock

TARGET_MS = 80.0
BATCH = 500
BURST = 1_000


class StepClock:
    """A clock that moves forward by a fixed step on every reading."""

    def __init__(self, start: datetime, step: timedelta) -> None:
        self.now_value, self.step = start, step

    def now(self) -> datetime:
        self.now_value += self.step
        return self.now_value


def _hex(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def build(
    home: Path, runs: int, first_run: int = 0, start: datetime | None = None
) -> None:
    """Append ``runs`` runs (from number ``first_run``), creating the home if needed."""
    # the ledger is dated over two years from 2025-01-01: its clock steps forward
    # (a later burst goes on from ``start``, one second per record)
    clock = StepClock(
        start or datetime(2025, 1, 1, tzinfo=UTC),
        timedelta(seconds=1) if start else timedelta(days=730) / (runs * 5),
    )
    SystemClock.now = lambda self: clock.now()  # type: ignore[method-assign]
    if not first_run:
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
    for first in range(first_run, first_run + runs, BATCH):
        drafts: list[Draft] = []
        for i in range(first, min(first + BATCH, first_run + runs)):
            drafts.extend(_run(i, manifests))
            if i % 100 == 99:
                drafts.append(_promotion(i))
        opened.ledger.append_many(drafts)
        if first % 10_000 == 0 and not first_run:
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


CPU_MS: dict[str, list[float]] = {}
"""CPU time (user + system) of each timed command: on a loaded machine wall time
also counts the waits for a core, so both are printed."""


def timed_ms(cmd: list[str], name: str = "") -> float:
    start = time.perf_counter()
    child = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(child.pid, 0)
    took = (time.perf_counter() - start) * 1000
    if status:
        raise SystemExit(f"{cmd} failed ({status})")
    CPU_MS.setdefault(name, []).append((usage.ru_utime + usage.ru_stime) * 1000)
    return took


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


def catch_up(home: Path, cli: list[str], bursts: int = 3) -> None:
    """Append a burst of runs, then time the first read that catches the index up
    against the same read right after (caught up); ``bursts`` times, medians
    (one burst is one sample: a WAL checkpoint or the disk can land in it)."""
    ratios, wrote_ms, extra_ms = [], [], []
    for _ in range(bursts):
        opened = open_home(home, writable=False)
        size = opened.ledger.head().size
        last = parse_time(opened.ledger.record(size - 1).entry.time)
        opened.close()
        started = time.perf_counter()
        build(home, BURST, first_run=size + 1_000_000, start=last)
        wrote = (time.perf_counter() - started) * 1000
        first = timed_ms([*cli, "runs", "--json"])
        caught_up = timed_ms([*cli, "runs", "--json"])
        wrote_ms.append(wrote)
        extra_ms.append(first - caught_up)
        ratios.append((first - caught_up) / wrote)
    ratio = statistics.median(ratios)
    print(
        f"\nbursts of {BURST:,} runs (~{BURST * 5:,} records) through open_home, "
        f"medians of {bursts}: the writes {statistics.median(wrote_ms):,.0f} ms; the "
        f"first `runs` after a burst {statistics.median(extra_ms):,.0f} ms more than "
        f"the same `runs` right after it: catching up costs {ratio:.2f}x the writes "
        f"(each burst: {', '.join(f'{r:.2f}' for r in ratios)}; "
        f"{'ok' if ratio < 1 else 'over'}: goal < 1)"
    )


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--home", type=Path)
    parser.add_argument(
        "--no-burst", action="store_true", help="skip the catch-up measurement"
    )
    args = parser.parse_args()
    env_python = [sys.executable]
    os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
    home = args.home or Path(tempfile.gettempdir()) / f"mltrail-bench-query-{args.runs}"
    print(f"bench_query: {describe()}")
    if not (home / "ledger.db").exists():
        print(f"building a ledger of {args.runs:,} runs in {home} ...")
        started = time.perf_counter()
        build(home, args.runs)
        print(f"built in {time.perf_counter() - started:.1f}s")
    cli = [*env_python, "-m", "mltrail", "--home", str(home)]
    started = time.perf_counter()  # the index is built (or caught up) here
    subprocess.run([*cli, "runs", "-n", "1"], check=True, stdout=subprocess.DEVNULL)
    print(f"index ready in {time.perf_counter() - started:.1f}s")
    model = _hex("model", args.runs // 2)
    cases = {
        "python -c pass (floor)": [*env_python, "-c", "pass"],
        "runs -n 20": [*cli, "runs", "--json"],
        "runs -n 20 (text)": [*cli, "runs"],
        "runs --param lr=0.05 --week 2025-W40": [
            *cli, "runs", "--param", "lr=0.05", "--week", "2025-W40", "--json"
        ],
        "runs --dataset <id> --status failed -n 0": [
            *cli, "runs", "--dataset", _hex("dataset", 42)[:12], "--status", "failed",
            "-n", "0", "--json",
        ],
        "runs --name 'train-4*' --since 2026-06-01": [
            *cli, "runs", "--name", "train-4*", "--since", "2026-06-01", "--json"
        ],
        "show <run name>": [*cli, "show", "train-7", "--json"],
        "show <run name> (text)": [*cli, "show", "train-7"],
        "trace <model id>": [*cli, "trace", model, "--json"],
        "trace <model id> (text)": [*cli, "trace", model],
        "model history --at 2026-01-01": [
            *cli, "model", "history", "--at", "2026-01-01", "--json"
        ],
        "model history --at 2026-01-01 (text)": [
            *cli, "model", "history", "--at", "2026-01-01"
        ],
        "prove <seq>": [*cli, "prove", str(args.runs * 5 // 2), "--json"],
    }  # fmt: skip
    times: dict[str, list[float]] = {name: [] for name in cases}
    times["full scan of run.params (no index, in-process)"] = []
    for rep in range(args.reps):
        for name, cmd in cases.items():
            times[name].append(timed_ms(cmd, name))
        if rep == 0:  # slow (seconds): once is enough
            times["full scan of run.params (no index, in-process)"].append(
                scan_ms(home, args.runs // 2)
            )
    floor = statistics.median(times["python -c pass (floor)"])
    cpu_floor = statistics.median(CPU_MS["python -c pass (floor)"])
    print(f"\n{describe()}")
    print(f"{args.runs:,} runs, medians of {args.reps} interleaved reps (wall; CPU):")
    for name, values in times.items():
        median = statistics.median(values)
        verdict, cpu = "", ""
        if name in CPU_MS:
            cpu_median = statistics.median(CPU_MS[name])
            cpu = f"CPU {cpu_median:6.1f} ms ({cpu_median - cpu_floor:+.1f})"
        if not name.startswith(("python", "full")):
            verdict = "PASS" if median - floor < TARGET_MS else "FAIL"
            verdict += f" (goal < {TARGET_MS:.0f} ms over the floor)"
        print(
            f"  {name:44s} {median:8.1f} ms ({median - floor:+6.1f})  {cpu}  {verdict}"
        )
    if not args.no_burst:
        catch_up(home, cli)


if __name__ == "__main__":
    main()
