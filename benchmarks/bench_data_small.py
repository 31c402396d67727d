"""`mltrail data hash` as users call it (a fresh process), cold and warm, against a
single-threaded hashlib walk and the all-core limit measured in the same run;
and where the fixed cost goes.

Datasets (built once under ``benchmarks/.cache/``, git-ignored), written,
fsync'd, then left to settle (past the hash cache's racy window) so that a warm
run can reuse the folder's stored result:

- ``--size small`` (issue 15): 4,000 files of 1-64 KiB in 40 folders plus
  2 x 128 MiB (400 MB);
- ``--size large`` (issue 16): 20,000 files of 1-64 KiB in 100 folders plus
  4 x 256 MiB (1.7 GB).

The page cache is warm for every contestant (a first untimed read fills it):
cold means "no hash cache database", not "not in memory".

Measured, repetitions interleaved so that the other tenants' load hits every
contestant alike, medians of ``--reps`` (default 5):

- walk: a single-threaded ``hashlib.file_digest`` walk in a fresh process;
- limit: the same walk in one process per core at once, each given an equal
  share of the bytes (what this machine's cores can do right now; on an idle
  machine ~cores x the walk);
- cold: the ``mltrail`` command (the console script next to this Python, else
  ``python -m mltrail``) with the cache database deleted first. Targets >= 1.6x
  the walk (issue 15) and >= 1.8x (issue 16);
- warm: the same command again (cache kept, nothing changed). Target >= 8x;
- with ``--before SRC`` (a ``src`` folder of another checkout, e.g. main's), the
  same cold and warm commands run from it too, interleaved (``PYTHONPATH``);
- with ``--dvc PATH``: ``dvc add`` of a copy of the dataset, once (slow). Target:
  cold >= 10x it;
- breakdown (``--stages``, default on): one fresh process runs the steps of a
  cold and a warm ``data hash`` one at a time and times each: interpreter start
  (``python -c pass``, measured apart), imports, opening (creating) the cache
  database, the walk (``lstat`` of every entry), hashing, the manifest and the
  sha256sum lines, the cache writes, the output; and ``python -X importtime``'s
  modules over 2 ms.

Run: ``python benchmarks/bench_data_small.py [--size small|large] [--reps R]
[--before SRC] [--dvc PATH]``
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CACHE = Path(__file__).resolve().parent / ".cache"
SIZES = {  # name: (folder, small files, folders, large files, MiB each, seed)
    "small": ("small", 4000, 40, 2, 128, 15),
    "large": ("data-large", 20000, 100, 4, 256, 16),
}
SETTLE_S = 3.0
TARGETS = {"cold": (1.6, 1.8), "warm": 8.0, "dvc": 10.0}
WALK = r"""
import hashlib, os, sys
names = sys.argv[2:] if len(sys.argv) > 2 else None
if names is None:
    for top, dirs, files in os.walk(sys.argv[1]):
        dirs.sort()
        for name in sorted(files):
            with open(os.path.join(top, name), "rb") as f:
                hashlib.file_digest(f, "sha256").hexdigest()
else:
    for name in names:
        with open(os.path.join(sys.argv[1], name), "rb") as f:
            hashlib.file_digest(f, "sha256").hexdigest()
"""
STAGES = r"""
import os, sys, time
t0 = time.perf_counter()
from mltrail.cli import main as _entry  # what the console script imports
t_entry = time.perf_counter()
from mltrail.capture.data.files import hash_dataset
from mltrail.capture.data.hashcache import HashCache
from mltrail.capture.data.hashing import hash_tree
from mltrail.capture.data.walk import Folder, Walker
from mltrail.core.manifest import compute_manifest
t_mods = time.perf_counter()
root, db = sys.argv[1], sys.argv[2]
out = {"imports: entry module": t_entry - t0, "imports: hashing, cache, manifest": t_mods - t_entry}
def lap(name, fn):
    t = time.perf_counter(); r = fn(); out[name] = time.perf_counter() - t; return r
cache = lap("cache db: open (made when first written)", lambda: HashCache(db))
def walk():
    raw = os.fsencode(os.path.realpath(root)); st = os.stat(raw)
    w, stack, n = Walker(False), [Folder(raw, b"", (((st.st_dev, st.st_ino), b""),))], 0
    while stack:
        listing = w.list_dir(stack.pop()); stack.extend(listing.dirs); n += len(listing.names)
    return n
lap("walk: list + lstat only", walk)
entries = lap("hashing (no cache)", lambda: hash_tree(__import__("pathlib").Path(root)))
manifest = lap("manifest (sort, leaves, root)", lambda: compute_manifest(entries))
try:
    from mltrail.cli.data_hash import _sum_lines
except ImportError:  # the code before
    from mltrail.cli.data_cmd import _sum_lines
sums = lap("sha256sum lines", lambda: _sum_lines(root, manifest, False))
def writes():  # the rows a cold run writes: every file's key and hash, per folder
    cache._window_ns = 0
    tables = {}
    for top, dirs, files in os.walk(root):
        d = os.stat(top); key = (d.st_dev, d.st_ino)
        rows = tables.setdefault(key, [])
        for f in files:
            s = os.lstat(os.path.join(top, f))
            key = (s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)
            rows.append((key, "0" * 64, time.time_ns()))
    t = time.perf_counter(); cache.save(tables); return time.perf_counter() - t
out["cache writes: folder rows (creating the db)"] = writes()
from mltrail.capture.data.treecache import TreeProbe
probe = TreeProbe(cache, os.fsencode(os.path.realpath(root)) + b"\0", look=False)
probe.started = time.time_ns() + 10**12; probe.listed = True; probe.newest = 0
m = manifest
lap("cache writes: tree result",
    lambda: probe.save(m.data, m.dataset_id, m.file_count, m.total_bytes, (b"k", sums)))
lap("cache db: close", cache.close)
with open(os.devnull, "wb") as f:
    lap("output (write the lines)", lambda: (f.write(sums), f.flush()))
for k, v in out.items():
    print(f"{k}\t{v}")
"""


def build(size: str) -> Path:
    folder, count, folders, large, mib, seed = SIZES[size]
    root = CACHE / folder
    done = root / ".complete"
    if done.exists():
        return root
    print(f"building {root} ({count:,} files of 1-64 KiB, {large} x {mib} MiB) ...")
    rng = random.Random(seed)
    for i in range(count):
        sub = root / f"d{i % folders:03d}"
        sub.mkdir(parents=True, exist_ok=True)
        _write(sub / f"f{i:05d}.bin", rng.randbytes(rng.randint(1024, 65536)))
    for i in range(large):
        with (root / f"large{i}.bin").open("wb") as f:
            for _ in range(mib):  # randbytes takes at most 256 MiB at once
                f.write(rng.randbytes(2**20))
            os.fsync(f.fileno())
    os.sync()
    time.sleep(SETTLE_S)
    done.touch()
    return root


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


def timed_together(cmds: list[list[str]], env: dict[str, str]) -> float:
    """Wall time of ``cmds`` run at once (the all-core limit)."""
    quiet = subprocess.DEVNULL
    start = time.perf_counter()
    running = [subprocess.Popen(c, env=env, stdout=quiet, stderr=quiet) for c in cmds]
    for p in running:
        if p.wait():
            raise subprocess.CalledProcessError(p.returncode, p.args)
    return time.perf_counter() - start


def shares(root: Path, cores: int) -> list[list[str]]:
    """The files under ``root`` in ``cores`` lists of about equal bytes."""
    files = sorted(
        (p.stat().st_size, str(p.relative_to(root)))
        for p in root.rglob("*")
        if p.is_file()
    )
    parts: list[list[str]] = [[] for _ in range(cores)]
    loads = [0] * cores
    for size, name in reversed(files):  # largest first, to the lightest share
        i = loads.index(min(loads))
        parts[i].append(name)
        loads[i] += size
    return parts


def command() -> list[str]:
    """``mltrail`` as a user runs it: the console script beside this Python."""
    script = Path(sys.executable).parent / "mltrail"
    return [str(script)] if script.exists() else [sys.executable, "-m", "mltrail"]


def cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def stages(data: Path, env: dict[str, str]) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        out = subprocess.run(
            [sys.executable, "-c", STAGES, str(data), f"{tmp}/hashes.db"],
            check=True, env=env, capture_output=True, text=True,
        )  # fmt: skip
    return {
        k: float(v) for k, v in (line.split("\t") for line in out.stdout.splitlines())
    }


def importtime(cmd: list[str], env: dict[str, str]) -> list[tuple[float, str]]:
    """Modules whose import took over 2 ms (cumulative) in ``cmd``."""
    env = {**env, "PYTHONPROFILEIMPORTTIME": "1"}
    err = subprocess.run(
        cmd, env=env, capture_output=True, text=True, check=False
    ).stderr
    found = []
    for line in err.splitlines():
        if line.startswith("import time:") and "|" in line:
            _, cumulative, name = line[12:].split("|")
            if cumulative.strip().isdigit() and int(cumulative) > 2000:
                found.append((int(cumulative) / 1000, name.rstrip()))
    return found


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", choices=sorted(SIZES), default="small")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--before", type=Path, help="src folder of the code before")
    parser.add_argument("--dvc", default=shutil.which("dvc"), help="dvc executable")
    parser.add_argument("--no-stages", action="store_true")
    args = parser.parse_args()
    data = build(args.size)
    cores = len(os.sched_getaffinity(0))
    home = Path(tempfile.mkdtemp(prefix="mltrail-bench-"))
    # Bytecode caches as an installed package has them: with PYTHONDONTWRITEBYTECODE
    # set, every fresh process compiled ~70 modules again (~27 ms of each run).
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["MLTRAIL_HOME"] = str(home / "after")
    contestants = {"after": env}
    if args.before is not None:
        before = {**env, "MLTRAIL_HOME": str(home / "before")}
        before["PYTHONPATH"] = str(args.before.resolve())
        contestants = {"before": before, "after": env}
    nfiles = sum(1 for p in data.rglob("*") if p.is_file())
    size = sum(p.stat().st_size for p in data.rglob("*") if p.is_file())
    print(
        f"CPU: {cpu_model()}, {cores} cores, load {_load()}; "
        f"{nfiles:,} files, {size / 1e6:,.0f} MB"
    )
    walk = [sys.executable, "-c", WALK, str(data)]
    limit = [[*walk, *part] for part in shares(data, cores)]
    mltrail = [*command(), "data", "hash", str(data)]
    timed(walk, env)  # fill the page cache
    for e in contestants.values():
        timed(mltrail, e)  # write the bytecode caches
    results: dict[str, list[float]] = {}

    def add(name: str, value: float) -> None:
        results.setdefault(name, []).append(value)

    loads = [os.getloadavg()[0]]
    for rep in range(args.reps):
        add("walk", timed(walk, env))
        add("limit", timed_together(limit, env))
        for name, e in contestants.items():
            # cold: no cache at all (the database and the tree results beside it)
            shutil.rmtree(Path(e["MLTRAIL_HOME"]) / "cache", ignore_errors=True)
            add(f"{name}: cold", timed(mltrail, e))
            add(f"{name}: warm", timed(mltrail, e))
        add("python -c pass", timed([sys.executable, "-c", "pass"], env))
        loads.append(os.getloadavg()[0])
        line = ", ".join(f"{k} {v[-1]:.3f}" for k, v in results.items())
        print(f"  rep {rep + 1}: {line}", flush=True)
    med = {k: statistics.median(v) for k, v in results.items()}
    walk_s, limit_s = med["walk"], med["limit"]
    print(
        f"\nmedians of {args.reps}, load average during the runs "
        f"{min(loads):.2f}-{max(loads):.2f}:"
    )
    print(f"  single-threaded hashlib walk        {walk_s:7.3f} s")
    print(
        f"  limit: {cores} walks at once, 1/{cores} each  {limit_s:7.3f} s"
        f"  = {walk_s / limit_s:.2f}x the walk (ideal {cores}x)"
    )
    for name in contestants:
        cold, warm = med[f"{name}: cold"], med[f"{name}: warm"]
        print(
            f"  {name:6s} cold {cold:7.3f} s = {walk_s / cold:5.2f}x the walk "
            f"({walk_s / cold / (walk_s / limit_s):.2f} of the limit); "
            f"warm {warm:7.3f} s = {walk_s / warm:5.2f}x"
        )
    cold_x = walk_s / med["after: cold"]
    warm_x = walk_s / med["after: warm"]
    lo, hi = TARGETS["cold"]
    print(
        f"cold: {cold_x:.2f}x the walk (>= {lo}x: {_ok(cold_x >= lo)}; "
        f">= {hi}x: {_ok(cold_x >= hi)})"
    )
    print(f"warm: {warm_x:.2f}x the walk (>= {TARGETS['warm']}x: "
          f"{_ok(warm_x >= TARGETS['warm'])})")  # fmt: skip
    if args.dvc:
        add_s = _dvc_add(data, args.dvc)
        ratio = add_s / med["after: cold"]
        print(f"dvc add {add_s:.1f} s: cold is {ratio:.1f}x faster "
              f"(>= {TARGETS['dvc']}x: {_ok(ratio >= TARGETS['dvc'])})")  # fmt: skip
    else:
        print("dvc: not found (install it in its own venv and pass --dvc)")
    if not args.no_stages:
        _breakdown(data, env, mltrail, med["python -c pass"])
    shutil.rmtree(home, ignore_errors=True)


def _breakdown(
    data: Path, env: dict[str, str], mltrail: list[str], start_s: float
) -> None:
    print(
        "\nwhere a cold run's time goes (one fresh process, step by step, medians of 3):"
    )
    runs = [stages(data, env) for _ in range(3)]
    print(f"  {'interpreter start (python -c pass)':44s} {start_s * 1000:8.1f} ms")
    for key in runs[0]:
        value = statistics.median(r[key] for r in runs)
        print(f"  {key:44s} {value * 1000:8.1f} ms")
    home = tempfile.mkdtemp(prefix="mltrail-bench-")
    e = {**env, "MLTRAIL_HOME": home}
    timed(mltrail, e)
    timed(mltrail, e)
    print("imports of a warm `data hash` over 2 ms (python -X importtime, cumulative):")
    for ms, name in importtime(mltrail, e):
        print(f"  {ms:6.1f} ms {name}")
    shutil.rmtree(home, ignore_errors=True)


def _dvc_add(data: Path, dvc: str) -> float:
    repo = Path(tempfile.mkdtemp(prefix="mltrail-bench-dvc-"))
    try:
        shutil.copytree(data, repo / "data")
        for cmd in (["git", "init", "-q"], [dvc, "init", "-q"]):
            subprocess.run(cmd, cwd=repo, check=True, stdout=subprocess.DEVNULL)
        start = time.perf_counter()
        subprocess.run([dvc, "add", "-q", "data"], cwd=repo, check=True)
        return time.perf_counter() - start
    finally:
        shutil.rmtree(repo, ignore_errors=True)


def _load() -> str:
    return "/".join(f"{x:.2f}" for x in os.getloadavg())


def _ok(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


if __name__ == "__main__":
    main()
