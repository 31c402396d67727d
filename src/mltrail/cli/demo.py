"""``mltrail demo``: record a small training project end to end, then catch tampering.

In a temporary folder it builds a credit-default project (generated data, a
preparation script, a trainer, a YAML config, a git repository), records a data
preparation and two trainings through ``mltrail run`` (the second after someone
edits the training data and raises the learning rate), lists the runs, shows what
changed between the trainings (`mltrail diff`), traces the promoted model back to
the raw data (`mltrail trace`), verifies the ledger, and shows that an edit made
directly in the SQLite file is caught. It finishes in seconds and touches nothing
outside the temporary folder, unless ``--home`` names a ledger to record into.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import click

from mltrail.cli.demo_project import write_project
from mltrail.cli.output import console
from mltrail.errors import MltrailError
from mltrail.ledger.home import init_home

__all__ = ["demo"]

_GIT_ID = ["-c", "user.name=Demo", "-c", "user.email=demo@example.com"]


def _step(text: str) -> None:
    console.print(f"\n== {text}", style="bold")


def _python() -> str:
    """``python`` when it is this interpreter (as in an activated venv), else its path."""
    found = shutil.which("python")
    if found and Path(found).resolve() == Path(sys.executable).resolve():
        return "python"
    return sys.executable


def _git(project: Path, *args: str) -> None:
    if shutil.which("git") is None:
        return
    subprocess.run(  # noqa: S603 - fixed arguments, the demo's own repository
        ["git", *_GIT_ID, *args],  # noqa: S607 - git from PATH, as a user runs it
        cwd=project,
        check=True,
        capture_output=True,
    )


def _mltrail(project: Path, home: Path, *args: str) -> None:
    shown = " ".join(shlex.quote(a) for a in args)
    console.print(f"[dim]$[/dim] mltrail {shown}", markup=True, highlight=False)
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    env.pop("MLTRAIL_RUN_ID", None)
    sys.stdout.flush()
    done = subprocess.run(  # noqa: S603 - this interpreter, fixed arguments
        [sys.executable, "-m", "mltrail", *args], cwd=project, env=env, check=False
    )
    if done.returncode not in (0, 3):
        raise MltrailError(f"the demo's `mltrail {args[0]}` exited {done.returncode}")


def _export_key(project: Path, home: Path, target: Path) -> Path:
    """``mltrail keys export --format vkey > target``, shown as the user would type it."""
    console.print(
        f"[dim]$[/dim] mltrail keys export --format vkey > {target.parent.name}/"
        f"{target.name}",
        markup=True,
        highlight=False,
    )
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    done = subprocess.run(
        [sys.executable, "-m", "mltrail", "keys", "export", "--format", "vkey"],
        cwd=project,
        env=env,
        check=False,
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise MltrailError(f"the demo's `mltrail keys export` failed: {done.stderr}")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(done.stdout)
    return target


def _train(project: Path, home: Path, name: str, lr: str) -> None:
    _mltrail(
        project,
        home,
        "run",
        "--name",
        name,
        "--data",
        "train=data/prepared/train.csv",
        "--data",
        "validation=data/prepared/validation.csv",
        "--output",
        "model.json",
        "--",
        _python(),
        "train.py",
        "--config",
        "config.yaml",
        "--lr",
        lr,
    )


def _edit_training_data(project: Path) -> None:
    path = project / "data/prepared/train.csv"
    lines = path.read_text().splitlines()
    for i in (17, 404, 1203):
        fields = lines[i].split(",")
        fields[-1] = "1" if fields[-1] == "0" else "0"
        lines[i] = ",".join(fields)
    path.write_text("\n".join(lines) + "\n")
    console.print("3 labels flipped in data/prepared/train.csv (rows 17, 404, 1203)")


def _tamper(source: Path, target: Path) -> str:
    """Copy the ledger and change the baseline's learning rate in its record."""
    shutil.copytree(source, target)
    conn = sqlite3.connect(target / "ledger.db")
    conn.execute("DROP TRIGGER records_no_UPDATE")
    rows = conn.execute(
        "SELECT seq, record FROM records WHERE kind = 'run.params' ORDER BY seq"
    ).fetchall()
    seq, data = next((s, bytes(r)) for s, r in rows if b'"lr":0.5' in bytes(r))
    forged = data.replace(b'"lr":0.5', b'"lr":0.1')
    conn.execute("UPDATE records SET record = ? WHERE seq = ?", (forged, seq))
    conn.commit()
    conn.close()
    return f"seq {seq}: the baseline's lr 0.5 -> 0.1"


@click.command()
@click.option(
    "--keep", is_flag=True, help="Keep the demo folder and print where it is."
)
@click.option(
    "--home",
    "home_path",
    type=click.Path(path_type=Path, file_okay=False),
    help="Record the demo runs into this ledger home instead of a throwaway one.",
)
def demo(keep: bool, home_path: Path | None) -> None:
    """Record a small training project end to end, then catch a forged record.

    Builds a credit-default project in a temporary folder (data, a preparation
    script, a trainer, a config, a git repository), records a preparation and two
    trainings with `mltrail run`, lists them, shows what changed between them,
    verifies the ledger and shows tampering caught. Takes seconds; your own ledger
    is not touched unless you pass --home.
    """
    workdir = Path(tempfile.mkdtemp(prefix="mltrail-demo-"))
    try:
        _run(workdir, (home_path or workdir / "home").resolve())
        if keep:
            console.print(f"\ndemo project kept at {workdir}")
    finally:
        if not keep:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(workdir: Path, home: Path) -> None:
    project = workdir / "credit-model"
    _step("1. a credit-default project (generated data, scripts, config, git)")
    write_project(project)
    _git(project, "init", "-q")
    _git(project, "add", "-A")
    _git(project, "commit", "-qm", "credit model: logistic regression")
    result = init_home(home, origin="demo.mltrail.local/credit-team", env={})
    console.print(f"project {project}\nledger {result.home} ({result.origin})")
    _step("2. prepare the data, recorded")
    _mltrail(
        project,
        home,
        "run",
        "--name",
        "prepare",
        "--data",
        "raw=data/raw",
        "--output",
        "data/prepared",
        "--",
        _python(),
        "prepare.py",
        "data/raw/applications.csv",
        "data/prepared",
    )
    _step("3. train a baseline, recorded (no log calls in train.py)")
    _train(project, home, "baseline", "0.5")
    _step("4. someone edits the training data and raises the learning rate: worse")
    _edit_training_data(project)
    _train(project, home, "retrain", "8.0")
    _step("5. the runs")
    _mltrail(project, home, "runs")
    _step("6. why did it get worse? what changed between baseline and retrain")
    _mltrail(project, home, "diff", "baseline", "retrain")
    _step("7. what exactly made the model in production? back to the raw data")
    _mltrail(project, home, "model", "promote", "model.json", "--stage", "production",
             "--note", "release 2 (the demo's)")  # fmt: skip
    _mltrail(project, home, "trace", "model.json")
    console.print(
        "validation.csv comes from the `prepare` run; the edited train.csv was "
        "written by no recorded run: that is where to look."
    )
    _step("8. an auditor verifies, trusting only the key they were given")
    vkey = _export_key(project, home, workdir / "auditor" / "ledger.vkey")
    _mltrail(project, home, "verify", "--trust-key", str(vkey))
    _step("9. someone edits a record in the SQLite file directly")
    console.print(_tamper(home, workdir / "tampered"))
    _mltrail(project, workdir / "tampered", "verify", "--trust-key", str(vkey))
