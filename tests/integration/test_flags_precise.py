"""Upstream flags name exactly the models whose runs read a file that changed.

A source folder holds one sub-folder per week; each weekly training reads only its
own week and writes a model (``model.bin``) and its metrics (``metrics.json``).
Recorded through the real CLI (in-process, the training command a real subprocess).
"""

from __future__ import annotations

import json
import sqlite3
import sys
import textwrap
from pathlib import Path

import pytest

from cli_in_process import in_process_cli
from mltrail.ledger.home import open_home

TRAIN = """
import hashlib, json, pathlib, sys
data = pathlib.Path(sys.argv[1])
digest = hashlib.sha256(sys.argv[1].encode())
for f in sorted(data.glob("*.csv")):
    digest.update(f.read_bytes())
pathlib.Path("model.bin").write_bytes(digest.digest() * 8)
pathlib.Path("metrics.json").write_text(json.dumps({"auc": digest.digest()[0] / 255}))
"""
WEEKS = (1, 2, 3)


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    return in_process_cli(capsys, monkeypatch, tmp_path)


@pytest.fixture
def weekly(cli, tmp_path, monkeypatch):
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    (project / "train.py").write_text(textwrap.dedent(TRAIN))
    for week in WEEKS:
        folder = project / "data" / f"week-{week}"
        folder.mkdir(parents=True)
        (folder / "customers.csv").write_text(f"id,week\n1,{week}\n2,{week}\n")
    cli("init", "--origin", "test.mltrail.local/flags")
    cli("sources", "add", "customers", "data")
    for week in WEEKS:
        cli("run", "-q", "--name", f"train-w{week}", "--data", f"train=data/week-{week}",
            "--output", "model.bin", "--output", "metrics.json", "--",
            sys.executable, "train.py", f"data/week-{week}")  # fmt: skip
    return project


def check(cli) -> dict:
    [result] = json.loads(cli("sources", "check", "customers", "--json", code=1))
    assert result["changed"] is True
    return result


def open_flags(cli) -> list[dict]:
    return json.loads(cli("flags", "--json"))


def flagged(cli) -> set[tuple[str, str]]:
    """(run name, output file name) of each open flag, read from the runs' records."""
    runs = {r["id"]: r["name"] for r in json.loads(cli("runs", "--json"))}
    found = set()
    for flag in open_flags(cli):
        outputs = json.loads(cli("show", flag["run"], "--json"))["outputs"]
        [path] = [o["path"] for o in outputs if flag["model"].endswith(o.get("sha256"))]
        found.add((runs[flag["run"]], Path(path).name))
    return found


def test_a_file_only_week_3_read_flags_week_3_alone(cli, weekly):
    (weekly / "data" / "week-3" / "customers.csv").write_text("id,week\n1,3\n2,99\n")
    check(cli)
    assert {run for run, _ in flagged(cli)} == {"train-w3"}


def test_a_new_file_nobody_read_flags_nothing(cli, weekly):
    (weekly / "data" / "week-4").mkdir()
    (weekly / "data" / "week-4" / "customers.csv").write_text("id,week\n1,4\n")
    (weekly / "data" / "README.md").write_text("weekly customer extracts\n")
    result = check(cli)
    assert result["changes"]["added"] == 2
    assert result["flagged"] == []
    assert open_flags(cli) == []


def test_metrics_files_are_not_models(cli, weekly):
    (weekly / "data" / "week-2" / "customers.csv").unlink()  # removed: week 2 read it
    check(cli)
    assert {name for _, name in flagged(cli)} == {"model.bin"}


def test_flags_show_names_and_a_cleared_flag_is_not_raised_again(cli, weekly):
    (weekly / "data" / "week-1" / "customers.csv").write_text("id,week\n1,1\n2,0\n")
    check(cli)
    text = cli("flags")
    assert "train-w1" in text
    assert "model.bin" in text
    [flag] = open_flags(cli)
    assert (flag["run_name"], flag["name"], flag["source"]) == (
        "train-w1",
        "model.bin",
        "customers",
    )
    assert flag["path"].endswith("model.bin")
    cli("flags", "clear", flag["model"], "--note", "re-validated on the corrected rows")
    assert open_flags(cli) == []
    (weekly / "data" / "week-3" / "customers.csv").write_text("id,week\n1,3\n2,0\n")
    check(cli)
    assert flagged(cli) == {("train-w3", "model.bin")}


def test_a_failed_check_in_an_old_ledger_is_not_a_change(cli, weekly, tmp_path):
    """A check that could not read the source recorded no fingerprint, and the
    index took that as the source's fingerprint: the next check said "changed"
    (previous null) though no byte had. A ledger holding such a check, with the
    index the old code built from it, now compares with the last check that
    read the source; and a folder gone (a mount down), which stopped the whole
    check, is a failed check (ADR 0010, amendment 2026-12-08)."""
    [ok] = json.loads(cli("sources", "check", "customers", "--json"))
    home = open_home(tmp_path / "home", env={})
    try:  # what the old code wrote for a check that failed, body for body
        error = "access denied to http://data.example/customers/"
        home.ledger.append("source.checked", {"name": "customers",
            "fingerprint": None, "previous": ok["fingerprint"], "changed": False,
            "error": error})  # fmt: skip
    finally:
        home.close()
    db = sqlite3.connect(tmp_path / "home" / "index.db")
    with db:  # and what its ingest made of it
        db.execute("UPDATE sources SET fingerprint = NULL")
        db.execute("UPDATE meta SET value = '10' WHERE key = 'version'")
    db.close()
    [listed] = json.loads(cli("sources", "list", "--json"))
    assert listed["fingerprint"] == ok["fingerprint"]
    assert listed["error"] == error
    [back] = json.loads(cli("sources", "check", "customers", "--json"))
    assert back["changed"] is False
    assert back["previous"] == ok["fingerprint"]
    (weekly / "data").rename(weekly / "data.off")
    [failed] = json.loads(cli("sources", "check", "customers", "--json", code=1))
    assert "no such file or folder" in failed["error"]
    (weekly / "data.off").rename(weekly / "data")
    [again] = json.loads(cli("sources", "check", "customers", "--json"))
    assert again["changed"] is False
    assert open_flags(cli) == []


def test_a_failed_checks_error_prints_on_its_own_line(cli, tmp_path, monkeypatch):
    """The error of a failed check is recorded text (a store's answer, or any
    writer's record): `sources list` and `flags` printed it with its line
    breaks, so a record could add lines of its own ("other: ok") under them."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "a.csv").write_text("id\n1\n")
    monkeypatch.chdir(project)
    cli("init", "--origin", "test.mltrail.local/flags")
    cli("sources", "add", "customers", "data")
    home = open_home(tmp_path / "home", env={})
    try:
        home.ledger.append("source.checked", {"name": "customers",
            "fingerprint": None, "previous": None, "changed": False,
            "error": "denied\nsource other: ok\x1b[2J"})  # fmt: skip
    finally:
        home.close()
    for command in (("sources", "list"), ("flags",)):
        lines = cli(*command).splitlines()
        assert not any(line.startswith("source other") for line in lines), lines
        assert not any("\x1b" in line for line in lines), lines
        [said] = [line for line in lines if "denied" in line]
        assert "source other: ok" in said


def test_a_failure_cleared_from_the_index_is_seen(cli, tmp_path, monkeypatch):
    """`sources_differ` rebuilt the index's row from the seqs the row named: an
    index edited to forget the failed checks (their four columns emptied)
    agreed with it, and `sources list` said the source was fine. A check the
    index lacks is now looked for in the records."""
    project = tmp_path / "project"
    (project / "data").mkdir(parents=True)
    (project / "data" / "a.csv").write_text("id\n1\n")
    monkeypatch.chdir(project)
    cli("init", "--origin", "test.mltrail.local/flags")
    cli("sources", "add", "customers", "data")
    cli("sources", "check", "customers")
    home = open_home(tmp_path / "home", env={})
    try:
        home.ledger.append("source.checked", {"name": "customers",
            "fingerprint": None, "previous": None, "changed": False,
            "error": "denied"})  # fmt: skip
    finally:
        home.close()
    [listed] = json.loads(cli("sources", "list", "--json"))
    assert listed["failing_since"]
    db = sqlite3.connect(tmp_path / "home" / "index.db")
    with db:
        db.execute("UPDATE sources SET failing_seq = NULL, failing = NULL, "
                   "failed_seq = NULL, error = NULL")  # fmt: skip
    db.close()
    [again] = json.loads(cli("sources", "list", "--json"))
    assert again == listed
