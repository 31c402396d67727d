"""What every benchmark prints about the machine, and the limits measured on it.

The goals are ratios against limits measured in the same run on whatever machine
runs it, so each benchmark prints the CPU model, the core count and the load
average beside its figures, and measures the limit itself: bare PyNaCl Ed25519
signing or verification in one process per core, all at once.
"""

from __future__ import annotations

import multiprocessing
import os
import platform
import sqlite3
import time
from pathlib import Path

__all__ = ["all_core_rate", "cpu_model", "describe", "load"]


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what the platform says."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.partition(":")[2].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def load() -> str:
    """The 1/5/15-minute load averages, as text."""
    try:
        return "/".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "n/a"


def describe() -> str:
    """One line: CPU model, cores, load, Python, SQLite."""
    return (
        f"CPU {cpu_model()!r}, {os.cpu_count()} cores, load {load()}; "
        f"python {platform.python_version()}, sqlite {sqlite3.sqlite_version}"
    )


def _bare(task: str, n: int, size: int, start_at: float) -> float:
    """``n`` bare PyNaCl operations; returns the seconds they took."""
    from nacl.signing import SigningKey

    key = SigningKey(bytes(range(32)))
    messages = [os.urandom(size) for _ in range(n)]
    if task == "verify":
        verify = key.verify_key.verify
        pairs = [(m, key.sign(m).signature) for m in messages]
        while time.time() < start_at:  # every process starts together
            time.sleep(0.001)
        start = time.perf_counter()
        for m, s in pairs:
            verify(m, s)
    else:
        sign = key.sign
        while time.time() < start_at:
            time.sleep(0.001)
        start = time.perf_counter()
        for m in messages:
            sign(m)
    return time.perf_counter() - start


def all_core_rate(task: str, n: int, size: int, cores: int | None = None) -> float:
    """Bare PyNaCl ``task`` ("sign" or "verify") operations/s over all cores.

    One process per core, each doing ``n`` operations on ``size``-byte messages,
    started together; the rate is all operations over the slowest one's time.
    """
    cores = cores or os.cpu_count() or 1
    ctx = multiprocessing.get_context("fork")
    with ctx.Pool(cores) as pool:
        start_at = time.time() + 0.3 + 0.0002 * n
        times = pool.starmap(_bare, [(task, n, size, start_at)] * cores)
    return cores * n / max(times)
