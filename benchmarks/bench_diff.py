"""`mltrail diff` of two runs whose training data has 100,000 files each.

Builds a ledger (in a temporary home) with two runs whose `run.data` manifests list
N files (100,000) differing in a few (changed, added, removed), plus params, code
and environment entries with a package list. Then times, side by side:

- `mltrail diff A B --json` as a subprocess (start-up, index, reading both
  manifests, the diff, JSON out), against `python -c pass`;
- the pure manifest diff (`diff_manifests`) in-process, against parsing both
  manifests strictly (`parse_manifest`, what a diff over entry objects would
  start with).

Targets (issue 6): the manifest diff well under 1 s; the whole `mltrail diff`
under 2 s.

Run: ``python benchmarks/bench_diff.py [--files 100000] [--reps 5]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mltrail.core.diff_data import diff_manifests
from mltrail.core.manifest import (
    MANIFEST_MEDIA_TYPE,
    FileEntry,
    compute_manifest,
    parse_manifest,
)
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft

MANIFEST_TARGET_S = 1.0
CLI_TARGET_S = 2.0
CHANGED = (17, 4_217, 55_555)


def _hex(*parts: object) -> str:
    return hashlib.sha256("/".join(map(str, parts)).encode()).hexdigest()


def manifests(n: int) -> tuple[bytes, bytes]:
    """Two manifests of ``n`` files: three changed, one removed, one added."""
    files = {f"shard-{i // 1000:03d}/chat-{i:06d}.jsonl": (_hex("f", i), 100 + i % 900)
             for i in range(n)}  # fmt: skip
    old = compute_manifest(FileEntry(p, s, h) for p, (h, s) in files.items()).data
    for i in CHANGED:
        path = f"shard-{i // 1000:03d}/chat-{i:06d}.jsonl"
        files[path] = (_hex("contaminated", i), files[path][1] + 7)
    files.pop(f"shard-000/chat-{1:06d}.jsonl")
    files["shard-new/chat-extra.jsonl"] = (_hex("extra"), 321)
    new = compute_manifest(FileEntry(p, s, h) for p, (h, s) in files.items()).data
    return old, new


def _run(name: str, temperature: float, manifest: bytes, home_ledger) -> list[Draft]:
    run = f"0193a0c4-0000-7000-8000-{_hex('run', name)[:12]}"
    ref = {**home_ledger.put_blob(manifest), "media_type": MANIFEST_MEDIA_TYPE}
    packages = {**home_ledger.put_blob(b"numpy==1.26.4\ntorch==2.1.0\n"),
                "media_type": "text/plain"}  # fmt: skip
    parsed = parse_manifest(manifest)
    return [
        Draft("run.started", {"source": "api", "name": name, "command": ["python", "ft.py"],
                              "cwd": "/srv/chatbot", "pid": 1}, run),
        Draft("run.code", {"vcs": "git", "commit": _hex("commit", name)[:40], "dirty": False,
                           "branch": "main"}, run),
        Draft("run.environment", {"python": {"version": "3.11.7", "implementation": "CPython"},
                                  "packages": {"count": 2, "list": packages,
                                               "sha256": _hex("p")}}, run),
        Draft("run.params", {"source": "api", "params": {"temperature": temperature}}, run),
        Draft("run.data", {"role": "train", "path": "/srv/chatbot/data",
                           "dataset": parsed.dataset_id, "files": parsed.file_count,
                           "bytes": parsed.total_bytes, "manifest": ref}, run),
        Draft("run.ended", {"status": "succeeded", "exit_code": 0, "duration_s": 60.0}, run),
    ]  # fmt: skip


def build(home: Path, old: bytes, new: bytes) -> None:
    init_home(home, origin="bench.mltrail.local/diff")
    opened = open_home(home)
    opened.ledger.append_many(_run("stable", 0.7, old, opened.ledger))
    opened.ledger.append_many(_run("regressed", 1.2, new, opened.ledger))
    opened.close()


def _time(argv: list[str]) -> tuple[float, bytes]:
    start = time.perf_counter()
    done = subprocess.run(argv, capture_output=True, check=True)
    return time.perf_counter() - start, done.stdout


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=100_000)
    parser.add_argument("--reps", type=int, default=5)
    args = parser.parse_args()
    old, new = manifests(args.files)
    print(f"manifests: {args.files:,} files, {len(old) / 2**20:.1f} MiB each")
    pure, strict = [], []
    for _ in range(args.reps):
        start = time.perf_counter()
        result = diff_manifests(old, new)
        pure.append(time.perf_counter() - start)
        start = time.perf_counter()
        parse_manifest(old), parse_manifest(new)
        strict.append(time.perf_counter() - start)
    print(f"  differing files: {len(result.changes)} ({result.unchanged:,} unchanged)")
    _report(
        "diff_manifests (in-process)",
        pure,
        "parse_manifest x2",
        strict,
        MANIFEST_TARGET_S,
    )
    with tempfile.TemporaryDirectory(prefix="mltrail-bench-diff-") as tmp:
        home = Path(tmp) / "home"
        build(home, old, new)
        cli = [sys.executable, "-m", "mltrail", "--home", str(home), "diff", "stable",
               "regressed", "--json"]  # fmt: skip
        _time(cli)  # builds the index once, as the first query after recording does
        took, floor = [], []
        for _ in range(args.reps):
            seconds, out = _time(cli)
            took.append(seconds)
            floor.append(_time([sys.executable, "-c", "pass"])[0])
        (train,) = json.loads(out)["sections"]["data"]
        print(f"  CLI lists {len(train['files']['files'])} differing files")
        _report("mltrail diff A B --json", took, "python -c pass", floor, CLI_TARGET_S)


def _report(what: str, times: list[float], base: str, base_times: list[float],
            target: float) -> None:  # fmt: skip
    median, baseline = statistics.median(times), statistics.median(base_times)
    verdict = "PASS" if median < target else "FAIL"
    print(f"{what}: median {median * 1000:.0f} ms (min {min(times) * 1000:.0f}) | "
          f"{base}: {baseline * 1000:.0f} ms | target < {target:.0f} s: {verdict}")  # fmt: skip


if __name__ == "__main__":
    main()
