"""Masking cost on 1 GiB of stdout: the streaming masker alone, the whole log
capture, and `mltrail run -- cat FILE` against plain `cat FILE`, side by side.

Measures, each in its own process (so that peak memory is its own), medians of
``--reps`` repetitions, interleaved:

(a) ``StreamMasker.feed`` over 1 GiB of log-like text in 64 KiB chunks (what the
    pump thread reads), with a mask set of ``--secrets`` values (as an
    environment with that many secret variables gives): MB/s and peak RSS.
    Nothing matches: that is the common case, and the cost is the search.
(b) ``LogCapture`` (masking, SHA-256, head and tail of 8 MiB, the detector on
    what is kept at the end), same input.
(c) wall time and peak RSS of ``mltrail run -q -- cat FILE > /dev/null`` against
    ``cat FILE > /dev/null`` for a 1 GiB file (page cache warm), with the same
    secret variables in the environment.

Run: ``python benchmarks/bench_mask.py [--reps N] [--size-mib N] [--secrets N]``
"""

from __future__ import annotations

import argparse
import os
import random
import resource
import statistics
import string
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mltrail

CHUNK = 64 * 1024


def log_chunk() -> bytes:
    rng = random.Random(0)
    lines = []
    while sum(map(len, lines)) < CHUNK:
        lines.append(
            f"epoch {rng.randint(0, 99)} step {rng.randint(0, 10**6)} "
            f"loss={rng.random():.5f} lr=0.001 grad_norm={rng.random() * 3:.3f} "
            f"path=/data/shard-{rng.randint(0, 999):04d}.parquet\n"
        )
    return "".join(lines).encode()[:CHUNK]


def secret_env(count: int) -> dict[str, str]:
    rng = random.Random(1)
    alphabet = string.ascii_letters + string.digits
    return {
        f"BENCH_SERVICE_{n}_TOKEN": "".join(rng.choice(alphabet) for _ in range(32))
        for n in range(count)
    }


_WORKER = """
import os, resource, sys, time
from mltrail.capture.run.log_capture import LogCapture, LogMasking
from mltrail.capture.run.mask_sources import collect_mask_set
sys.path.insert(0, {bench!r})
from bench_mask import log_chunk
what, size = sys.argv[1], int(sys.argv[2])
masks = collect_mask_set(env=dict(os.environ))
chunk = log_chunk()
n = size // len(chunk)
start = time.perf_counter()
if what == "masker":
    stream = masks.stream()
    for _ in range(n):
        stream.feed(chunk)
    stream.finish()
else:
    capture = LogCapture(8 * 2**20, LogMasking(masks))
    for _ in range(n):
        capture.update(chunk)
    capture.result()
took = time.perf_counter() - start
rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(n * len(chunk) / took / 1e6, rss / 1024, len(masks))
"""


def in_process(what: str, size: int, env: dict[str, str]) -> tuple[float, float, int]:
    code = _WORKER.format(bench=str(Path(__file__).parent))
    out = subprocess.run(
        [sys.executable, "-c", code, what, str(size)],
        env=env, capture_output=True, text=True, check=True,
    ).stdout.split()  # fmt: skip
    return float(out[0]), float(out[1]), int(out[2])


def timed(cmd: list[str], env: dict[str, str], cwd: Path) -> tuple[float, float]:
    """Wall seconds and the child's peak RSS (MiB) of ``cmd`` with stdout to null."""
    start = time.perf_counter()
    with open(os.devnull, "wb") as null:
        proc = subprocess.Popen(cmd, stdout=null, env=env, cwd=cwd)
        _, status, usage = os.wait4(proc.pid, 0)
    took = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd} failed: {proc.returncode}")
    return took, usage.ru_maxrss / 1024


def bench_components(reps: int, size: int, env: dict[str, str]) -> None:
    for label, what in (
        ("(a) StreamMasker alone", "masker"),
        ("(b) LogCapture", "capture"),
    ):
        runs = [in_process(what, size, env) for _ in range(reps)]
        speed = statistics.median(r[0] for r in runs)
        rss = statistics.median(r[1] for r in runs)
        print(
            f"{label}: {speed:,.0f} MB/s over {size / 2**30:.2f} GiB, peak RSS "
            f"{rss:.0f} MiB ({runs[0][2]} masked forms)"
        )


def bench_cat(reps: int, size: int, env: dict[str, str], scratch: Path) -> None:
    data = scratch / "big.log"
    chunk = log_chunk()
    with data.open("wb") as f:
        for _ in range(size // len(chunk)):
            f.write(chunk)
    home = scratch / "home"
    mltrail.init_home(home, env={})
    env = {**env, "MLTRAIL_HOME": str(home)}
    mltrail_bin = str(Path(sys.executable).parent / "mltrail")
    commands = {
        "cat": ["cat", str(data)],
        "mltrail run -- cat": [mltrail_bin, "run", "-q", "--", "cat", str(data)],
    }
    timed(commands["cat"], env, scratch)  # page cache
    results: dict[str, list[tuple[float, float]]] = {k: [] for k in commands}
    for _ in range(reps):
        for name, cmd in commands.items():
            results[name].append(timed(cmd, env, scratch))
    plain = statistics.median(t for t, _ in results["cat"])
    wrapped = statistics.median(t for t, _ in results["mltrail run -- cat"])
    rss = statistics.median(m for _, m in results["mltrail run -- cat"])
    mb = data.stat().st_size / 1e6
    print(
        f"(c) `cat` {plain:.2f} s ({mb / plain:,.0f} MB/s); `mltrail run -q -- cat` "
        f"{wrapped:.2f} s ({mb / wrapped:,.0f} MB/s, peak RSS {rss:.0f} MiB): "
        f"{wrapped - plain:.2f} s added for {mb:,.0f} MB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--size-mib", type=int, default=1024)
    parser.add_argument("--secrets", type=int, default=10)
    args = parser.parse_args()
    size = args.size_mib * 2**20
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.pop("MLTRAIL_RUN_ID", None)
    env.update(secret_env(args.secrets))
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} cores, "
          f"max RSS unit: {resource.getpagesize()} B pages")  # fmt: skip
    bench_components(args.reps, size, env)
    with tempfile.TemporaryDirectory(prefix="mltrail-bench-mask-") as tmp:
        bench_cat(args.reps, size, env, Path(tmp))


if __name__ == "__main__":
    main()
