"""Dataset hashing: hash_tree against a plain hashlib walk, openssl, and dvc.

Builds (once, under ``benchmarks/.cache/``, git-ignored) the mixed dataset of the
design: 20,000 files of 1-64 KiB in 100 folders plus four 256 MiB files (1.74 GB),
deterministic content (``--quick``: 2,000 files and four 32 MiB files). Then measures,
repetitions interleaved so that machine noise hits both sides alike, medians:

- cold (no hash cache; the files are in the page cache for every contestant):
  ``hash_tree`` with the default workers (all cores) and with one worker, against a
  single-threaded Python walk (``os.walk``, ``open``, ``hashlib.file_digest``).
  Targets: >= 1.6x the walk, and >= 10x ``dvc add``.
- large files: ``hash_tree`` on the four large files, against the single-core
  throughput of ``openssl dgst -sha256`` on the same files, times the cores.
  Target: >= 0.9 x cores x openssl. (Context: ``cores`` openssl processes at once.)
- warm (hash cache filled, nothing changed): ``hash_tree`` in-process, and in a
  fresh interpreter (start-up and imports included, as a CLI would pay), against
  ``dvc status`` and, for context, a bare ``os.walk`` + ``lstat``; and
  ``mltrail data hash DIR`` as a fresh process, after a first one stored the
  folder's whole result (``capture/data/treecache.py``). Targets: >= 60,000 files/s
  and >= 8x ``dvc status``.
- peak memory (VmHWM) of a fresh interpreter hashing the whole dataset cold.
  Target < 200 MB.
- dvc (if found: ``--dvc PATH``, else ``dvc`` on PATH; install it in its own venv,
  never in the project's): ``dvc add`` of a fresh copy of the dataset in a new git
  repository (once: it is slow), then ``dvc status`` interleaved with the warm runs.
- ``--million``: 1,000,000 files of 1 B-4 KiB in 1,000 folders (built once, ~1-3
  min): cold and warm ``hash_tree`` against the hashlib walk and the stat walk
  (``reps // 2`` repetitions), and peak memory. The target there is the warm rate;
  memory grows with the number of files (the entries returned), not their size.

The machine this was written on is shared: before each timed run the script waits
(up to 20 s) until the CPUs have been idle for a moment, and prints the load.

Run: ``python benchmarks/bench_hash.py [--quick] [--reps R] [--dvc PATH] [--million]``
"""

from __future__ import annotations

import argparse
import hashlib
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mltrail.capture.data.hashcache import HashCache
from mltrail.capture.data.hashing import hash_tree

CACHE = Path(__file__).resolve().parent / ".cache"
MB = 1e6
TARGET_COLD_VS_WALK = 1.6
TARGET_COLD_VS_DVC = 10.0
TARGET_LARGE = 0.9
TARGET_WARM_FILES_S = 60_000
TARGET_WARM_VS_DVC = 8.0
TARGET_MEMORY_MB = 200
REFERENCE = {"dvc add": 23.7, "dvc status": 2.5, "hashlib walk": 2.3, "stat walk": 0.24}

MEMORY_SCRIPT = """
import sys, time
from pathlib import Path
from mltrail.capture.data.hashing import hash_tree

def hwm():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024

before = hwm()
start = time.perf_counter()
entries = hash_tree(Path(sys.argv[1]))
print(len(entries), time.perf_counter() - start, before, hwm())
"""
WARM_SCRIPT = """
import sys
from pathlib import Path
from mltrail.capture.data.hashcache import HashCache
from mltrail.capture.data.hashing import hash_tree

with HashCache(Path(sys.argv[2])) as cache:
    print(len(hash_tree(Path(sys.argv[1]), cache=cache)))
"""


# -- datasets -------------------------------------------------------------------------


def build_mixed(root: Path, small: int, large_mib: int) -> None:
    """``small`` files of 1-64 KiB in 100 folders and four ``large_mib`` MiB files."""
    marker = root.with_suffix(".done")
    spec = f"{small} {large_mib}"
    if marker.exists() and marker.read_text() == spec:
        return
    shutil.rmtree(root, ignore_errors=True)
    print(f"  building {root} ({small:,} small files, 4 x {large_mib} MiB) ...")
    rng = random.Random(20261124)
    for i in range(small):
        folder = root / "small" / f"d{i % 100:03d}"
        folder.mkdir(parents=True, exist_ok=True)
        (folder / f"f{i:06d}.bin").write_bytes(rng.randbytes(rng.randint(1024, 65536)))
    (root / "large").mkdir(parents=True)
    for k in range(4):
        chunk = random.Random(k).randbytes(1 << 20)
        with (root / "large" / f"part{k}.bin").open("wb") as f:
            for i in range(large_mib):
                f.write(i.to_bytes(8, "little") + chunk[8:])
    marker.write_text(spec)


def build_million(root: Path, folders: int = 1_000, per_folder: int = 1_000) -> None:
    marker = root.with_suffix(".done")
    if marker.exists():
        return
    shutil.rmtree(root, ignore_errors=True)
    print(f"  building {root} ({folders * per_folder:,} files; this takes minutes) ...")
    rng = random.Random(1_000_000)
    start = time.perf_counter()
    for d in range(folders):
        folder = os.fsencode(root / f"d{d:04d}")
        os.makedirs(folder)
        for i in range(per_folder):
            fd = os.open(b"%s/%d.txt" % (folder, i), os.O_WRONLY | os.O_CREAT, 0o644)
            os.write(fd, rng.randbytes(rng.randint(1, 4096)))
            os.close(fd)
    marker.write_text(f"{folders} {per_folder}")
    print(f"  built in {time.perf_counter() - start:.0f} s")


# -- contestants ----------------------------------------------------------------------


def hashlib_walk(root: Path) -> int:
    """The plain single-threaded Python walk-and-hash; returns bytes read."""
    total = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            with open(os.path.join(folder, name), "rb") as f:
                hashlib.file_digest(f, "sha256")
                total += f.tell()
    return total


def stat_walk(root: Path) -> int:
    count = 0
    for folder, _dirs, files in os.walk(root):
        for name in files:
            os.lstat(os.path.join(folder, name))
            count += 1
    return count


def run_timed(
    cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None
) -> float:
    start = time.perf_counter()
    quiet = subprocess.DEVNULL
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=quiet, stderr=quiet)
    return time.perf_counter() - start


def openssl_parallel(files: list[Path], procs: int) -> float:
    start = time.perf_counter()
    running = [
        subprocess.Popen(
            ["openssl", "dgst", "-sha256", *map(str, files[i::procs])],
            stdout=subprocess.DEVNULL,
        )
        for i in range(procs)
    ]
    for p in running:
        p.wait()
    return time.perf_counter() - start


# -- noise ----------------------------------------------------------------------------


def busy_fraction(interval: float = 0.3) -> float:
    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split()[1:9]]
        return sum(fields), fields[3] + fields[4]

    total0, idle0 = sample()
    time.sleep(interval)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(1, total1 - total0)


def settle(noise: list[float], max_wait: float = 20.0) -> None:
    """Wait until the CPUs are nearly idle (other tenants), at most ``max_wait``."""
    if not Path("/proc/stat").exists():
        return
    deadline = time.monotonic() + max_wait
    busy = busy_fraction()
    while busy > 0.1 and time.monotonic() < deadline:
        busy = busy_fraction()
    noise.append(busy)


def measure(noise: list[float], fn, *args, **kwargs) -> float:
    settle(noise)
    start = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - start


# -- reporting ------------------------------------------------------------------------

ROWS: list[tuple[str, str, str, str, str]] = []


def row(metric: str, ours: str, base: str, ratio: float | None, target: str) -> None:
    ROWS.append((metric, ours, base, "-" if ratio is None else f"{ratio:.2f}", target))


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def print_rows() -> None:
    widths = [max(len(r[i]) for r in ROWS) for i in range(5)]
    header = ("metric", "mltrail (median)", "baseline (median)", "ratio", "target")
    widths = [max(w, len(h)) for w, h in zip(widths, header, strict=True)]
    for r in (header, *ROWS):
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)))


# -- benchmarks -----------------------------------------------------------------------


def bench_cold(root: Path, reps: int, noise: list[float]) -> tuple[float, float]:
    """Cold hash_tree (all cores, one core) against the hashlib walk."""
    times: dict[str, list[float]] = {"all": [], "one": [], "walk": []}
    for rep in range(reps):
        times["walk"].append(measure(noise, hashlib_walk, root))
        times["all"].append(measure(noise, hash_tree, root))
        times["one"].append(measure(noise, lambda: hash_tree(root, workers=1)))
        print(
            f"  cold rep {rep + 1}: hash_tree {times['all'][-1]:.2f} s, workers=1 "
            f"{times['one'][-1]:.2f} s | hashlib walk {times['walk'][-1]:.2f} s"
        )
    ours, one, walk = (statistics.median(times[k]) for k in ("all", "one", "walk"))
    row(
        "cold, default workers",
        f"{ours:.2f} s",
        f"hashlib walk {walk:.2f} s",
        walk / ours,
        f">= {TARGET_COLD_VS_WALK}x {verdict(walk / ours >= TARGET_COLD_VS_WALK)}",
    )
    row(
        "cold, workers=1", f"{one:.2f} s", f"hashlib walk {walk:.2f} s", walk / one, "-"
    )
    return ours, walk


def bench_large(root: Path, reps: int, noise: list[float], cores: int) -> None:
    files = sorted((root / "large").iterdir())
    size = sum(f.stat().st_size for f in files)
    cmd = ["openssl", "dgst", "-sha256", *map(str, files)]
    ours, single, parallel = [], [], []
    for rep in range(reps):
        ours.append(size / measure(noise, hash_tree, root / "large") / MB)
        single.append(size / measure(noise, run_timed, cmd) / MB)
        parallel.append(size / measure(noise, openssl_parallel, files, cores) / MB)
        print(
            f"  large rep {rep + 1}: hash_tree {ours[-1]:,.0f} MB/s | openssl 1 core "
            f"{single[-1]:,.0f} MB/s, {cores} processes {parallel[-1]:,.0f} MB/s"
        )
    rate, one, par = (statistics.median(x) for x in (ours, single, parallel))
    bound = cores * one
    row(
        f"large files ({len(files)} x {size // len(files) >> 20} MiB), MB/s",
        f"{rate:,.0f}",
        f"{cores} x openssl 1 core ({one:,.0f}) = {bound:,.0f}",
        rate / bound,
        f">= {TARGET_LARGE} {verdict(rate >= TARGET_LARGE * bound)}",
    )
    row("", "", f"{cores} openssl processes: {par:,.0f}", rate / par, "(context)")


def bench_warm(
    root: Path, reps: int, noise: list[float], dvc_repo: Path | None, dvc: str | None
) -> None:
    with tempfile.TemporaryDirectory(prefix="mltrail-bench-") as tmp:
        db = Path(tmp) / "cache" / "hashes.db"  # the cache of home `tmp`
        with HashCache(db) as cache:
            files = sum(e.is_file for e in hash_tree(root, cache=cache))
        script = [sys.executable, "-c", WARM_SCRIPT, str(root), str(db)]
        command = [sys.executable, "-m", "mltrail", "data", "hash", str(root)]
        env = {**os.environ, "MLTRAIL_HOME": tmp}
        env.pop("PYTHONDONTWRITEBYTECODE", None)  # as a user's, with .pyc files
        run_timed(command, None, env)  # a first `data hash` stores the tree result
        times: dict[str, list[float]] = {
            k: [] for k in ("in", "script", "cli", "stat", "dvc")
        }
        for rep in range(reps * 2):  # cheap, and noisier than the rest: twice as many
            with HashCache(db) as cache:
                times["in"].append(measure(noise, hash_tree, root, cache=cache))
            times["script"].append(measure(noise, run_timed, script))
            times["cli"].append(measure(noise, run_timed, command, None, env))
            times["stat"].append(measure(noise, stat_walk, root))
            if dvc_repo is not None and dvc is not None:
                status = [dvc, "status", "-q"]
                times["dvc"].append(measure(noise, run_timed, status, dvc_repo))
            print(
                f"  warm rep {rep + 1}: hash_tree {times['in'][-1]:.3f} s, in a fresh "
                f"interpreter {times['script'][-1]:.3f} s, `mltrail data hash` "
                f"{times['cli'][-1]:.3f} s | stat walk {times['stat'][-1]:.3f} s"
                + (f", dvc status {times['dvc'][-1]:.2f} s" if times["dvc"] else "")
            )
    ours, cli, walk = (statistics.median(times[k]) for k in ("in", "cli", "stat"))
    script_s = statistics.median(times["script"])
    rate = files / ours
    row(
        "warm, nothing changed, files/s",
        f"{rate:,.0f} ({ours:.3f} s)",
        f"stat walk {files / walk:,.0f} ({walk:.3f} s)",
        walk / ours,
        f">= {TARGET_WARM_FILES_S:,} {verdict(rate >= TARGET_WARM_FILES_S)}",
    )
    if times["dvc"]:
        status = statistics.median(times["dvc"])
        for label, value in (
            ("in-process", ours),
            ("hash_tree, fresh interpreter", script_s),
            ("`mltrail data hash`, fresh process", cli),
        ):
            ratio = status / value
            row(
                f"warm vs dvc status ({label})",
                f"{value:.3f} s",
                f"dvc status {status:.2f} s",
                ratio,
                f">= {TARGET_WARM_VS_DVC}x {verdict(ratio >= TARGET_WARM_VS_DVC)}",
            )
    else:
        row("warm, `mltrail data hash`", f"{cli:.3f} s", "(no dvc)", None, "-")


def peak_memory(root: Path) -> tuple[int, float, int, int]:
    out = subprocess.run(
        [sys.executable, "-c", MEMORY_SCRIPT, str(root)],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()
    return int(out[0]), float(out[1]), int(out[2]), int(out[3])


def bench_memory(root: Path, label: str, *, target: bool = True) -> None:
    count, seconds, before, peak = peak_memory(root)
    growth = (peak - before) / max(1, count)
    row(
        f"peak RSS, cold, {label}",
        f"{peak / MB:.0f} MB (+{(peak - before) / MB:.0f} MB)",
        f"{count:,} entries in {seconds:.1f} s",
        None,
        f"< {TARGET_MEMORY_MB} MB {verdict(peak < TARGET_MEMORY_MB * MB)}"
        if target
        else f"({growth:,.0f} B per entry returned)",
    )


def dvc_add(root: Path, dvc: str, noise: list[float]) -> tuple[Path, float]:
    """A git + dvc repository holding a copy of ``root``; the time of ``dvc add``."""
    repo = CACHE / f"dvc-{root.name}"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir(parents=True)
    shutil.copytree(root, repo / "data")
    env = {**os.environ, "GIT_AUTHOR_NAME": "b", "GIT_AUTHOR_EMAIL": "b@example.com"}
    env.update(GIT_COMMITTER_NAME="b", GIT_COMMITTER_EMAIL="b@example.com")
    for cmd in (
        ["git", "init", "-q"],
        [dvc, "init", "-q"],
        [dvc, "config", "core.analytics", "false"],
        ["git", "commit", "-qm", "init"],
    ):
        subprocess.run(cmd, cwd=repo, check=True, env=env, stdout=subprocess.DEVNULL)
    seconds = measure(noise, run_timed, [dvc, "add", "-q", "data"], repo)
    print(f"  dvc add (cold, once): {seconds:.1f} s")
    return repo, seconds


def bench_million(reps: int, noise: list[float]) -> None:
    root = CACHE / "hash-million"
    build_million(root)
    stat_walk(root)
    hashlib_walk(root)  # into the page cache (other runs may have pushed it out)
    cold, walk, warm, stat = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="mltrail-bench-") as tmp:
        db = Path(tmp) / "hashes.db"
        with HashCache(db) as cache:
            hash_tree(root, cache=cache)
        for rep in range(reps):
            walk.append(measure(noise, hashlib_walk, root))
            cold.append(measure(noise, hash_tree, root))
            with HashCache(db) as cache:
                warm.append(measure(noise, hash_tree, root, cache=cache))
            stat.append(measure(noise, stat_walk, root))
            print(
                f"  1M rep {rep + 1}: cold {cold[-1]:.1f} s, warm {warm[-1]:.1f} s | "
                f"hashlib walk {walk[-1]:.1f} s, stat walk {stat[-1]:.1f} s"
            )
    n = 1_000_000
    cold_s, walk_s, warm_s, stat_s = map(statistics.median, (cold, walk, warm, stat))
    row(
        "1M files, cold",
        f"{cold_s:.1f} s",
        f"hashlib walk {walk_s:.1f} s",
        walk_s / cold_s,
        "-",
    )
    row(
        "1M files, warm, files/s",
        f"{n / warm_s:,.0f} ({warm_s:.1f} s)",
        f"stat walk {n / stat_s:,.0f} ({stat_s:.1f} s)",
        stat_s / warm_s,
        f">= {TARGET_WARM_FILES_S:,} {verdict(n / warm_s >= TARGET_WARM_FILES_S)}",
    )
    bench_memory(root, "1M files", target=False)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2,000 + 4 x 32 MiB")
    parser.add_argument("--reps", type=int, default=5, help="repetitions (median)")
    parser.add_argument("--dvc", default=shutil.which("dvc"), help="dvc executable")
    parser.add_argument("--no-dvc", action="store_true", help="skip dvc")
    parser.add_argument("--million", action="store_true", help="1,000,000 files too")
    args = parser.parse_args()
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    dvc = None if args.no_dvc else args.dvc
    root = CACHE / ("hash-mixed-quick" if args.quick else "hash-mixed")
    print(
        f"bench_hash: python {platform.python_version()}, {cores} cores, "
        f"{'quick' if args.quick else 'full'}, dvc: {dvc or 'not found'}"
    )
    build_mixed(root, *((2_000, 32) if args.quick else (20_000, 256)))
    size = sum(f.stat().st_size for f in root.rglob("*") if f.is_file())
    print(f"  dataset {root}: {size / 1e9:.2f} GB")
    hashlib_walk(root)  # into the page cache
    noise: list[float] = []
    dvc_repo = None
    ours_cold, _ = bench_cold(root, args.reps, noise)
    if dvc is not None:
        dvc_repo, add_s = dvc_add(root, dvc, noise)
        ratio = add_s / ours_cold
        row(
            "cold vs dvc add",
            f"{ours_cold:.2f} s",
            f"dvc add {add_s:.1f} s (1 run)",
            ratio,
            f">= {TARGET_COLD_VS_DVC}x {verdict(ratio >= TARGET_COLD_VS_DVC)}",
        )
    bench_large(root, args.reps, noise, cores)
    bench_warm(root, args.reps, noise, dvc_repo, dvc)
    bench_memory(root / "large", "4 large files")
    bench_memory(root, "mixed dataset")
    if args.million:
        bench_million(max(1, args.reps // 2), noise)
    if dvc_repo is not None:
        shutil.rmtree(dvc_repo)
    print()
    print_rows()
    print(
        f"\nCPU busy (others) before the timed runs: median {statistics.median(noise):.0%}"
        f", max {max(noise):.0%}; reference machine figures: {REFERENCE}"
    )


if __name__ == "__main__":
    main()
