"""Run capture overhead: `mltrail run -- true` vs `true`, `import mltrail`, log_metrics.

Measures, each side by side with its baseline, repetitions interleaved:

(a) wall time of ``mltrail run -q -- true`` (a full run: run.started, code,
    environment, hardware, params, run.ended, a signed checkpoint, all fsync'd)
    against ``true`` itself. Target: under 300 ms added per run. Measured in a
    git repository (the usual case: git is asked for commit, status and diff).
(b) ``python -c "import mltrail"`` against ``python -c pass``. Target: under
    150 ms added. ``import mlflow`` is measured too when mlflow is installed.
(c) ``Run.log_metrics`` calls per second from a loop (batched, signed and
    written every 10,000 points) against appending the same tuples to a list.

Children run with bytecode caching on (``PYTHONDONTWRITEBYTECODE`` removed), as on
a user's machine; one warm-up run fills the caches first.

Run: ``python benchmarks/bench_run.py [--reps N]``
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import mltrail

TARGET_RUN_MS = 300.0
TARGET_IMPORT_MS = 150.0


def timed(cmd: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, cwd=cwd, env=env, check=True, stdout=subprocess.DEVNULL)
    return (time.perf_counter() - start) * 1000


def interleaved(
    pairs: dict[str, list[str]], reps: int, cwd: Path, env: dict[str, str]
) -> dict[str, float]:
    times: dict[str, list[float]] = {name: [] for name in pairs}
    for cmd in pairs.values():
        timed(cmd, cwd, env)  # warm-up: bytecode caches, page cache
    for _ in range(reps):
        for name, cmd in pairs.items():
            times[name].append(timed(cmd, cwd, env))
    return {name: statistics.median(values) for name, values in times.items()}


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def bench_run(reps: int, scratch: Path, env: dict[str, str]) -> None:
    project = scratch / "project"
    project.mkdir()
    (project / "train.py").write_text("print('hi')\n")
    git = ["git", "-c", "user.name=b", "-c", "user.email=b@example.com"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "x"]):
        subprocess.run([*git, *args], cwd=project, check=True)
    mltrail.init_home(scratch / "home", env={})
    env = {**env, "MLTRAIL_HOME": str(scratch / "home")}
    mltrail_bin = str(Path(sys.executable).parent / "mltrail")
    medians = interleaved(
        {"true": ["true"], "mltrail run": [mltrail_bin, "run", "-q", "--", "true"]},
        reps,
        project,
        env,
    )
    added = medians["mltrail run"] - medians["true"]
    print(
        f"(a) `true` {medians['true']:.1f} ms, `mltrail run -q -- true` "
        f"{medians['mltrail run']:.1f} ms: {added:.1f} ms added per run "
        f"(target < {TARGET_RUN_MS:.0f}) {verdict(added < TARGET_RUN_MS)}"
    )


def bench_import(reps: int, scratch: Path, env: dict[str, str]) -> None:
    python = sys.executable
    pairs = {
        "pass": [python, "-c", "pass"],
        "import mltrail": [python, "-c", "import mltrail"],
    }
    probe = subprocess.run(
        [python, "-c", "import mlflow"], capture_output=True, check=False
    )
    if probe.returncode == 0:
        pairs["import mlflow"] = [python, "-c", "import mlflow"]
    medians = interleaved(pairs, reps, scratch, env)
    added = medians["import mltrail"] - medians["pass"]
    print(
        f"(b) `python -c pass` {medians['pass']:.1f} ms, `import mltrail` "
        f"{medians['import mltrail']:.1f} ms: {added:.1f} ms added "
        f"(target < {TARGET_IMPORT_MS:.0f}) {verdict(added < TARGET_IMPORT_MS)}"
    )
    if "import mlflow" in medians:
        print(f"    `import mlflow` {medians['import mlflow']:.1f} ms, same machine")
    else:
        print(
            "    (mlflow not installed: `pip install mlflow` to time its import here)"
        )


def bench_metrics(scratch: Path, points: int = 1_000_000) -> None:
    os.environ.pop("MLTRAIL_RUN_ID", None)
    with mltrail.start_run(home=scratch / "metrics-home", capture=False) as run:
        start = time.perf_counter()
        for step in range(points):
            run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
        logged = time.perf_counter() - start
    baseline: list[tuple[int, float]] = []
    start = time.perf_counter()
    for step in range(points):
        baseline.append((step, 1.0 / (step + 1)))
    plain = time.perf_counter() - start
    print(
        f"(c) log_metrics: {points / logged:,.0f} calls/s ({logged / points * 1e6:.2f} "
        f"us/call, incl. {points // 10_000} signed batches) vs list.append "
        f"{points / plain:,.0f}/s: {logged / plain:.1f}x the cost of a bare append"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=21)
    args = parser.parse_args()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env.pop("MLTRAIL_RUN_ID", None)
    with tempfile.TemporaryDirectory(prefix="mltrail-bench-") as tmp:
        scratch = Path(tmp)
        bench_run(args.reps, scratch, env)
        bench_import(args.reps, scratch, env)
        bench_metrics(scratch)


if __name__ == "__main__":
    main()
