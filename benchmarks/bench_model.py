"""Model fingerprint and weight-delta throughput, against `openssl dgst -sha256`.

Writes a pair of bf16 safetensors checkpoints of SIZE GB each (32 MiB tensors like a
7B model's, every tensor of the second slightly changed: the worst case for the
delta), then measures, medians of --reps runs, side by side in one run:

- baseline: `openssl dgst -sha256` of the base file on one core, times the cores;
- fingerprint: `capture_fingerprint` of the base (all cores);
- delta: `capture_delta` of the pair (the math; fingerprints already known);
- end to end: `finetune_body(base=, model=)` in a child process (two fingerprints
  and the delta), with its peak RSS, to compare with the largest tensor.

Run by hand (files are cached in memory after the first pass: the numbers are
CPU throughput, not disk):

    python benchmarks/bench_model.py --sizes 1 10 --reps 3
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from mltrail.capture.model.delta import capture_delta
from mltrail.capture.model.fingerprint import (
    _MEMO,
    capture_fingerprint,
    default_workers,
)
from mltrail.capture.model.model_files import locate_model

ROWS, COLS = 4096, 4096  # 32 MiB per bf16 tensor


def _bf16(values: np.ndarray) -> np.ndarray:
    return (values.astype(np.float32).view(np.uint32) >> 16).astype(np.uint16)


def write_pair(folder: Path, gigabytes: float) -> tuple[Path, Path]:
    """Two safetensors files, written one tensor at a time (bounded memory)."""
    count = max(1, round(gigabytes * 2**30 / (ROWS * COLS * 2)))
    size = ROWS * COLS * 2
    header = {
        f"model.layers.{i}.weight": {
            "dtype": "BF16",
            "shape": [ROWS, COLS],
            "data_offsets": [i * size, (i + 1) * size],
        }
        for i in range(count)
    }
    text = json.dumps(header).encode()
    paths = folder / "base.safetensors", folder / "tuned.safetensors"
    rng = np.random.default_rng(0)
    with paths[0].open("wb") as base, paths[1].open("wb") as tuned:
        for f in (base, tuned):
            f.write(struct.pack("<Q", len(text)) + text)
        for _ in range(count):
            w = rng.standard_normal(ROWS * COLS, dtype=np.float32)
            base.write(_bf16(w).tobytes())
            noise = rng.standard_normal(ROWS * COLS, dtype=np.float32) * np.float32(
                1e-2
            )
            tuned.write(_bf16(w + noise).tobytes())
    return paths


def median_time(work, reps: int) -> float:
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        work()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def openssl_time(path: Path, reps: int) -> float:
    openssl = shutil.which("openssl")
    if openssl is None:
        sys.exit("openssl is needed for the baseline")
    return median_time(
        lambda: subprocess.run(
            [openssl, "dgst", "-sha256", str(path)], check=True, capture_output=True
        ),
        reps,
    )


# peak RSS from VmHWM: ru_maxrss survives exec, so a child would report the
# benchmark's own peak (it held the generated tensors)
CHILD = """
import re, sys, time
from pathlib import Path
from mltrail.record.finetune import finetune_body
start = time.perf_counter()
body = finetune_body(base=Path(sys.argv[1]), model=Path(sys.argv[2]))
took = time.perf_counter() - start
status = Path("/proc/self/status").read_text()
rss = int(re.search(r"VmHWM:\\s+(\\d+) kB", status).group(1)) * 1024
print(took, rss, body["delta"]["tensors_changed"])
"""


def end_to_end(base: Path, tuned: Path) -> tuple[float, int]:
    done = subprocess.run(
        [sys.executable, "-c", CHILD, str(base), str(tuned)],
        check=True,
        capture_output=True,
        text=True,
    )
    took, rss, _ = done.stdout.split()
    return float(took), int(rss)


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def bench(gigabytes: float, reps: int, root: Path) -> None:
    folder = Path(tempfile.mkdtemp(dir=root))
    try:
        base, tuned = write_pair(folder, gigabytes)
        size = base.stat().st_size
        mb = size / 1e6
        cores = default_workers()
        sources = locate_model(base), locate_model(tuned)
        prints = [capture_fingerprint(s) for s in sources]  # also warms the cache
        ssl = openssl_time(base, reps)
        target = 0.8 * cores * mb / ssl

        def fingerprint_base() -> None:
            _MEMO.clear()  # measure hashing, not the in-process memo
            capture_fingerprint(sources[0])

        fp = median_time(fingerprint_base, reps)
        delta = median_time(lambda: capture_delta(*sources, *prints), reps)
        e2e, rss = end_to_end(base, tuned)
        print(f"== {mb:,.0f} MB per checkpoint, {cores} cores, bf16 32 MiB tensors")
        print(f"openssl dgst -sha256 (1 core)  {mb / ssl:8.0f} MB/s")
        print(
            f"fingerprint                    {mb / fp:8.0f} MB/s  "
            f"ratio {mb / fp / (cores * mb / ssl):.2f} of cores x openssl "
            f"(target 0.8: {target:.0f} MB/s) {_verdict(mb / fp >= target)}"
        )
        ok = mb / delta >= 300
        print(
            f"delta (math)                   {mb / delta:8.0f} MB/s  (target 300) {_verdict(ok)}"
        )
        print(
            f"end to end (2 prints + delta)  {mb / e2e:8.0f} MB/s  "
            f"peak RSS {rss / 2**20:,.0f} MiB (largest tensor 32 MiB)"
        )
    finally:
        shutil.rmtree(folder)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1.0], help="GB")
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()))
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)
    for gigabytes in args.sizes:
        free = shutil.disk_usage(args.dir).free
        if free < 2.2 * gigabytes * 2**30:
            print(f"skipping {gigabytes} GB: {free / 2**30:.0f} GiB free in {args.dir}")
            continue
        bench(gigabytes, args.reps, args.dir)


if __name__ == "__main__":
    main()
