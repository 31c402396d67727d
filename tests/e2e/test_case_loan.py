"""Case study 1 of the mission article: a loan model fine-tuned every week.

A customer asks why their loan was refused on 14 March. The auditor starts from
the date, not from a model id: which model was deciding then, which run made it,
with which hyperparameters and exactly which snapshot of customer data.

Four weekly fine-tunes are recorded through the CLI from a committed git checkout
(data and weights git-ignored), each described and promoted to production (the
recording runs in-process with the ledger's clock moved week by week; every
question is then asked as a user would, through `mltrail` subprocesses).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from mltrail.cli.main import main
from mltrail.ledger.ledger import SystemClock

FINETUNE = """
import argparse, hashlib, pathlib
p = argparse.ArgumentParser()
p.add_argument("--data"); p.add_argument("--lr", type=float); p.add_argument("--config")
a = p.parse_args()
digest = hashlib.sha256(str(a.lr).encode())
for f in sorted(pathlib.Path(a.data).glob("*.csv")):
    digest.update(f.read_bytes())
out = pathlib.Path("model"); out.mkdir(exist_ok=True)
(out / "weights.bin").write_bytes(digest.digest() * 64)
"""
# Monday 09:00 UTC of ISO weeks 10-13 of 2026: 2, 9, 16 and 23 March
WEEKS = {10: 0.01, 11: 0.01, 12: 0.02, 13: 0.02}


def mltrail_in_process(*args: str) -> None:
    try:
        main(list(args))
    except SystemExit as e:
        code = e.code
    else:
        code = 0
    assert code in (0, None), f"{args} exited {code}"


def mltrail(project: Path, home: Path, *args: str, check: bool = True):
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", "--home", str(home), *args],
        cwd=project, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def weekly(tmp_path_factory):
    base = tmp_path_factory.mktemp("loan")
    project, home = base / "loan-model", base / "ledger"
    project.mkdir()
    (project / "finetune.py").write_text(textwrap.dedent(FINETUNE))
    (project / "finetune.yaml").write_text("epochs: 3\nbatch_size: 64\n")
    (project / ".gitignore").write_text("data/\nmodel/\n")
    now = {"t": datetime(2026, 3, 2, 8, 0, tzinfo=UTC)}
    patch = pytest.MonkeyPatch()
    patch.setattr(SystemClock, "now", lambda self: now["t"])
    patch.setenv("MLTRAIL_HOME", str(home))
    patch.setenv("GIT_CEILING_DIRECTORIES", str(base))
    patch.setenv("GIT_CONFIG_GLOBAL", str(base / "gitconfig"))
    patch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    for role in ("AUTHOR", "COMMITTER"):
        patch.setenv(f"GIT_{role}_NAME", "Loan Team")
        patch.setenv(f"GIT_{role}_EMAIL", "loan-team@bank.example")
    patch.chdir(project)
    snapshots = {}
    try:
        for args in (
            ["init", "-q"],
            ["add", "-A"],
            ["commit", "-qm", "loan fine-tune"],
        ):
            subprocess.run(["git", *args], cwd=project, check=True, capture_output=True)
        mltrail_in_process("init", "--origin", "bank.example/loan-team")
        for week, lr in WEEKS.items():
            now["t"] = datetime.fromisocalendar(2026, week, 1).replace(
                hour=9, tzinfo=UTC
            )
            data = project / "data" / f"week-{week}"
            data.mkdir(parents=True)
            for part in range(3):
                rows = [f"{week}{part}{i},{(i * week) % 7},{i % 2}" for i in range(200)]
                (data / f"customers-{part}.csv").write_text("\n".join(rows) + "\n")
            mltrail_in_process(
                "run", "-q", "--name", "loan-finetune", "--data", f"train={data}",
                "--config", "finetune.yaml", "--output", "model", "--",
                sys.executable, "finetune.py", "--data", str(data), "--lr", str(lr),
                "--config", "finetune.yaml",
            )  # fmt: skip
            now["t"] += timedelta(hours=2)
            mltrail_in_process(
                "model", "describe", "model/weights.bin", "--purpose",
                "retail loan decisions", "--owner", "loan-team", "--risk-tier", "high",
            )  # fmt: skip
            mltrail_in_process(
                "model", "promote", "model/weights.bin", "--stage", "production",
                "--note", f"weekly release {week}",
            )  # fmt: skip
            snapshots[week] = (project / "model" / "weights.bin").read_bytes()
    finally:
        patch.undo()
    return project, home, snapshots


def test_which_model_decided_on_14_march_and_what_made_it(weekly):
    project, home, _ = weekly
    # 1. the decision's date -> the model in production then (week 11's)
    held = json.loads(
        mltrail(
            project,
            home,
            "model",
            "history",
            "--stage",
            "production",
            "--at",
            "2026-03-14T15:00Z",
            "--json",
        ).stdout
    )
    [promotion] = held
    assert promotion["stage"] == "production"
    assert promotion["note"] == "weekly release 11"
    model = promotion["model"]
    # 2. the model -> the run, its hyperparameters and its exact data snapshot
    answer = json.loads(mltrail(project, home, "trace", model, "--json").stdout)
    [made] = answer["made_by"]
    [card] = [g["card"] for g in answer["governance"].values()]
    assert card["risk_tier"]["value"] == "high"
    assert card["purpose"]["value"] == "retail loan decisions"
    assert made["code"]["dirty"] is False
    run = made["run"]
    assert run["name"] == "loan-finetune"
    assert run["started"].startswith("2026-03-09T09:00")
    assert made["params"]["lr"] == 0.01
    assert made["params"]["epochs"] == 3
    [train] = made["data"]
    [snapshot] = json.loads(
        mltrail(project, home, "data", "hash", "data/week-11", "--json").stdout
    )
    assert train["dataset"] == snapshot["dataset"]
    assert train["files"] == 3
    # 3. the same run found from the calendar: what was fine-tuned in week 11?
    week = json.loads(
        mltrail(project, home, "runs", "--week", "2026-W11", "--json").stdout
    )
    assert [r["id"] for r in week] == [run["id"]]
    # 4. and the whole ledger verifies, so the answer can be trusted
    assert "verified" in mltrail(project, home, "verify").stdout.lower()


def test_history_lists_every_weekly_release_in_order(weekly):
    project, home, _ = weekly
    events = json.loads(mltrail(project, home, "model", "history", "--json").stdout)
    assert [e["note"] for e in events] == [f"weekly release {w}" for w in WEEKS]
    assert all(e["action"] == "enter" for e in events)
    before = json.loads(
        mltrail(
            project, home, "model", "history", "--at", "2026-03-01", "--json"
        ).stdout
    )
    assert before == []


def test_the_week_the_learning_rate_changed(weekly):
    project, home, _ = weekly
    changed = json.loads(
        mltrail(project, home, "runs", "--param", "lr=0.02", "--json").stdout
    )
    assert [r["started"][:10] for r in changed] == ["2026-03-16", "2026-03-23"]
    march = json.loads(
        mltrail(
            project,
            home,
            "runs",
            "--since",
            "2026-03-09",
            "--until",
            "2026-03-16",
            "--json",
        ).stdout
    )
    assert len(march) == 2  # weeks 11 and 12 (--until includes its whole day)


def test_the_current_model_file_traces_to_the_latest_week(weekly):
    project, home, snapshots = weekly
    answer = json.loads(
        mltrail(project, home, "trace", "model/weights.bin", "--json").stdout
    )
    assert answer["made_by"][0]["run"]["started"].startswith("2026-03-23")
    assert os.path.exists(project / "model" / "weights.bin")
    assert snapshots[13] == (project / "model" / "weights.bin").read_bytes()


def _held_at(project: Path, home: Path, when: str) -> list[str]:
    held = json.loads(
        mltrail(project, home, "model", "history", "--at", when, "--json").stdout
    )
    return [p["note"] for p in held]


def test_a_day_or_week_given_to_at_means_all_of_it_however_it_is_typed(weekly):
    """Week 11's release is promoted on Monday 9 March: ``--at`` a day or an ISO
    week counts the whole of it, with or without spaces around the text (a day
    with a space was read as its first instant, a week as its Monday's)."""
    project, home, _ = weekly
    for when in ("2026-03-09", " 2026-03-09", "2026-03-09 ", "2026-W11", "2026W11"):
        assert _held_at(project, home, when) == ["weekly release 11"], when
    assert _held_at(project, home, "2026-03-08") == ["weekly release 10"]
    for when in ("20260309", "2026-W11-1", "\u0662\u0660\u0662\u0666-W11"):
        proc = mltrail(project, home, "model", "history", "--at", when, check=False)
        assert proc.returncode == 2, when
        assert "cannot read the time" in proc.stderr
        assert "Traceback" not in proc.stderr
