"""`mltrail data hash` on a small dataset, fresh processes: cold, warm, and where
the fixed cost goes.

Dataset (built once under ``benchmarks/.cache/small``, git-ignored): 4,000 files
of 1-64 KiB in 40 folders plus 2 x 128 MiB, written, fsync'd, then left to settle
(past the hash cache's racy window) so that a warm run can reuse the folder's
stored result. The page cache is warm for every contestant (a first untimed read
fills it): cold means "no hash cache database", not "not in memory".

Measured, repetitions interleaved, medians of ``--reps`` (default 5):

- cold: ``mltrail data hash DIR`` in a fresh process with the cache database
  deleted first, against a single-threaded ``hashlib`` walk in a fresh process.
  Target >= 1.6x.
- warm: the same ``mltrail data hash DIR`` again (cache database kept). Target
  >= 8x the walk.
- parts: interpreter start-up (``python -c pass``), importing the CLI
  (``python -c "import mltrail.cli.main"``), opening and creating the cache
  database (``HashCache`` on a new file), and ``--no-cache`` (hashing without any
  database).

Run: ``python benchmarks/bench_data_small.py [--reps R]``
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parent / ".cache" / "small"
SETTLE_S = 3.0
WALK = r"""
import hashlib, os, sys
for top, dirs, files in os.walk(sys.argv[1]):
    dirs.sort()
    for name in sorted(files):
        with open(os.path.join(top, name), "rb") as f:
            hashlib.file_digest(f, "sha256").hexdigest()
"""


def build() -> Path:
    done = DATA / ".complete"
    if done.exists():
        return DATA
    rng = random.Random(15)
    for i in range(4000):
        folder = DATA / f"d{i % 40:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / f"f{i:05d}.bin", rng.randbytes(rng.randint(1024, 65536)))
    for i in range(2):
        _write(DATA / f"large{i}.bin", rng.randbytes(128 * 2**20))
    os.sync()
    time.sleep(SETTLE_S)
    done.touch()
    return DATA


def _write(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(
        cmd, check=True, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=5)
    reps = parser.parse_args().reps
    data = build()
    home = Path(tempfile.mkdtemp(prefix="mltrail-bench-"))
    # Bytecode caches as an installed package has them: with PYTHONDONTWRITEBYTECODE
    # set, every fresh process compiled ~70 modules again (~27 ms of each run).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["MLTRAIL_HOME"] = str(home)
    print(f"CPU: {_cpu_model()}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    db = home / "cache" / "hashes.db"
    mltrail = [sys.executable, "-m", "mltrail", "data", "hash", str(data)]
    walk = [sys.executable, "-c", WALK, str(data)]
    timed(walk, env)  # fill the page cache
    timed(mltrail, env)  # write the bytecode caches
    results: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    for _ in range(reps):
        add("hashlib walk, 1 thread", timed(walk, env))
        for suffix in ("", "-wal", "-shm"):
            Path(f"{db}{suffix}").unlink(missing_ok=True)
        add("mltrail data hash, cold", timed(mltrail, env))
        add("mltrail data hash, warm", timed(mltrail, env))
        add("  part: python -c pass", timed([sys.executable, "-c", "pass"], env))
        add("  part: import click", timed([sys.executable, "-c", "import click"], env))
        add("  part: import mltrail.cli.main",
            timed([sys.executable, "-c", "import mltrail.cli.main"], env))  # fmt: skip
        add("  part: create the cache database", _create_db(env))
        add("  part: --no-cache (no database)", timed([*mltrail, "--no-cache"], env))
    print(f"load average {os.getloadavg()[0]:.2f} at the end")
    print(f"{sum(1 for _ in data.rglob('*.bin'))} files; {reps} runs; medians (s):")
    med = {k: statistics.median(v) for k, v in results.items()}
    for name, value in med.items():
        print(f"  {name:40s} {value:8.3f}")
    walk_s = med["hashlib walk, 1 thread"]
    cold = walk_s / med["mltrail data hash, cold"]
    warm = walk_s / med["mltrail data hash, warm"]
    print(f"cold: {cold:.2f}x the walk (target >= 1.6x)")
    print(f"warm: {warm:.2f}x the walk (target >= 8x)")


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def _create_db(env: dict[str, str]) -> float:
    code = (
        "import sys, time; t = time.perf_counter()\n"
        "from mltrail.capture.data.hashcache import HashCache\n"
        "HashCache(sys.argv[1]).close()\n"
        "print(time.perf_counter() - t)"
    )
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", code, f"{tmp}/hashes.db"],
            check=True, env=env, capture_output=True, text=True,
        )  # fmt: skip
    return float(out.stdout)


if __name__ == "__main__":
    main()
