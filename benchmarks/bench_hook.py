"""Start-up cost of the ``mltrail hook`` .pth hook where it records nothing.

In a fresh virtual environment (no pip, this interpreter's packages visible
through a path file), measures the wall time of a whole ``python`` process, with
the hook installed for a project folder and without it, interleaved:

(a) ``python -c pass``;
(b) ``python elsewhere/script.py`` (a script outside the chosen folder).

Goal (issue 15): the hook adds < 30 ms; the aim is about 1 ms, since the hook
imports nothing but ``os`` and ``sys`` before it knows the script is in a
chosen folder. For context it also times (c) a hooked script (in the folder,
recorded as a run) against the same script unhooked, and (d) the hook module's
own import time from ``python -X importtime``. Figures are medians.

Run: ``python benchmarks/bench_hook.py [--reps N]`` (default 30)
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
import venv
from pathlib import Path

from machine import describe

SRC = str(Path(__file__).resolve().parents[1] / "src")


def _time(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
    return time.perf_counter() - start


def _make_venv(root: Path) -> str:
    venv.create(root, system_site_packages=True, with_pip=False, symlinks=True)
    python = str(root / "bin" / "python")
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True, capture_output=True, text=True,
    ).stdout.strip()  # fmt: skip
    ours = [p for p in sys.path if p.endswith("-packages") and Path(p).is_dir()]
    Path(purelib, "deps.pth").write_text("\n".join(ours) + "\n")
    return python


def _hook(python: str, env: dict[str, str], *args: str) -> None:
    subprocess.run([python, "-m", "mltrail", "hook", *args], check=True, env=env,
                   stdout=subprocess.DEVNULL)  # fmt: skip


def _compare(label: str, cmd: list[str], python: str, env: dict, project: Path,
             reps: int) -> None:  # fmt: skip
    without, with_hook = [], []
    for _ in range(reps):
        _hook(python, env, "remove")
        without.append(_time(cmd, env))
        _hook(python, env, "install", "--project", str(project))
        with_hook.append(_time(cmd, env))
    a, b = statistics.median(without), statistics.median(with_hook)
    print(f"{label:34} without {a * 1e3:7.1f} ms   with hook {b * 1e3:7.1f} ms   "
          f"added {(b - a) * 1e3:+6.1f} ms  (medians of {reps})")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=30)
    args = parser.parse_args()
    print(describe())
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        python = _make_venv(root / "venv")
        project, elsewhere = root / "project", root / "elsewhere"
        project.mkdir()
        elsewhere.mkdir()
        (elsewhere / "script.py").write_text("x = 1\n")
        (project / "train.py").write_text("x = 1\n")
        env = {**os.environ, "PYTHONPATH": SRC, "MLTRAIL_HOME": str(root / "home")}
        env.pop("MLTRAIL_RUN_ID", None)
        _compare("(a) python -c pass", [python, "-c", "pass"], python, env, project,
                 args.reps)  # fmt: skip
        _compare("(b) script outside the folder", [python, str(elsewhere / "script.py")],
                 python, env, project, args.reps)  # fmt: skip
        _compare("(c) script inside (recorded run)", [python, str(project / "train.py")],
                 python, env, project, max(5, args.reps // 4))  # fmt: skip
        _import_time(python, env, project, args.reps)
        _hook(python, env, "remove")


def _import_time(python: str, env: dict, project: Path, reps: int) -> None:
    """(d) the hook module's own import time, as ``-X importtime`` reports it."""
    _hook(python, env, "install", "--project", str(project))
    cumulative = []
    for _ in range(reps):
        err = subprocess.run([python, "-X", "importtime", "-c", "pass"], env=env,
                             capture_output=True, text=True, check=True).stderr  # fmt: skip
        line = next(x for x in err.splitlines() if x.endswith("_mltrail_hook"))
        cumulative.append(int(line.split("|")[1]))
    print(f"(d) import _mltrail_hook (-X importtime, cumulative): "
          f"{statistics.median(cumulative)} us  (median of {reps})")  # fmt: skip


if __name__ == "__main__":
    main()
