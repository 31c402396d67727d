"""`mltrail report` of a model that more than one run says it wrote.

Any writer can record, in a run of its own, an output with the same bytes as
another person's model (the run-owner check of ADR 0027 stops entries in the
other's run, not claims in one's own). The report described only the latest
claimant: its parameters and data stood as "what made the model", and the run
that made it was in no section but the lineage picture. Several people share
one ledger here; the ledger's actor is set per writer, as in
tests/integration/test_governance.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft

SHA = "e" * 64


def _train(home, user: str, run: str, lr: float) -> None:
    home.ledger.actor = {"user": user, "uid": 1000, "host": "bank-ws"}
    home.ledger.append_many([
        Draft("run.started", {"source": "api", "name": f"train-{user}"}, run),
        Draft("run.params", {"source": "api", "params": {"lr": lr}}, run),
        Draft("run.artifact", {"path": "/m/weights.bin", "exists": True,
                               "type": "file", "sha256": SHA, "size": 3}, run),
        Draft("run.ended", {"status": "succeeded"}, run),
    ])  # fmt: skip


def _report(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    env.pop("MLTRAIL_RUN_ID", None)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", "report", f"file:{SHA}", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def test_a_report_names_every_run_that_says_it_wrote_the_model(tmp_path):
    path = tmp_path / "home"
    init_home(path, origin="test.mltrail.local/claims")
    home = open_home(path)
    try:
        _train(home, "alice", "run-alice", 0.1)
        _train(home, "mallory", "run-mallory", 9.0)
    finally:
        home.close()

    md = _report(path)
    assert md.returncode == 0, md.stderr
    assert "2 runs say they wrote this model" in md.stdout
    assert "run-alice" in md.stdout
    assert "alice@bank-ws" in md.stdout
    assert "mallory@bank-ws" in md.stdout

    html = _report(path, "--format", "html")
    if html.returncode == 0 or "jinja2" not in html.stderr:  # the report extra
        assert html.returncode == 0, html.stderr
        assert 'id="claims"' in html.stdout
        assert "alice@bank-ws" in html.stdout

    js = _report(path, "--json")
    assert js.returncode == 0, js.stderr
    made_by = json.loads(js.stdout)["model"]["made_by"]
    assert [(c["id"], c["user"]) for c in made_by] == [
        ("run-alice", "alice"),
        ("run-mallory", "mallory"),
    ]


def test_many_claimants_are_named_up_to_a_cap_and_counted(tmp_path):
    """25 runs claim the model: the report names the oldest and the latest 10 and
    counts the rest; promote still checks each run's code (none has a git
    commit) and its refusal names 20 of them and counts the rest."""
    path = tmp_path / "home"
    init_home(path, origin="test.mltrail.local/claims-many")
    home = open_home(path)
    try:
        for i in range(25):
            _train(home, f"user{i:02d}", f"run-{i:02d}", 0.1)
    finally:
        home.close()

    js = _report(path, "--json")
    assert js.returncode == 0, js.stderr
    model = json.loads(js.stdout)["model"]
    assert model["made_by_count"] == 25
    ids = [c["id"] for c in model["made_by"]]
    assert ids == [f"run-{i:02d}" for i in (*range(10), *range(15, 25))]

    md = _report(path)
    assert md.returncode == 0, md.stderr
    assert "25 runs say they wrote this model" in md.stdout
    assert "5 more" in md.stdout
    assert "run-12" not in md.stdout.split("## 4.")[0]

    html = _report(path, "--format", "html")
    if html.returncode == 0 or "jinja2" not in html.stderr:  # the report extra
        assert html.returncode == 0, html.stderr
        claims = html.stdout.split('id="claims"')[1].split("</table>")[0]
        assert "25 runs say they wrote this model" in claims
        assert "... 5 more" in claims
        assert "run-12" not in claims
        assert "run-09" in claims
        assert "run-15" in claims

    env = {**os.environ, "MLTRAIL_HOME": str(path)}
    env.pop("MLTRAIL_RUN_ID", None)
    promote = subprocess.run(
        [sys.executable, "-m", "mltrail", "model", "promote", f"file:{SHA}",
         "--stage", "production", "--note", "checked"],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert promote.returncode == 2, promote.stdout + promote.stderr
    err = " ".join(promote.stderr.split())
    assert "run run-00 that made" in err, err
    assert "run run-19 that made" in err, err
    assert "run run-20 that made" not in err, err
    assert "5 more run(s) that say they made" in err, err
