"""`mltrail show RUN` and `mltrail trace` name the records of a run that another
user than its starter added, and `mltrail verify` warns of them (ADR 0008 and
0027, amendments of 2026-12-07).

A team server now refuses them, but a reader also reads homes several accounts
write to, copied ledgers and ledgers written before that fix: there, Bob's
``run.ended`` (succeeded) and params in Alice's run were shown as the run's
own, and "what made this model?" was answered with another person's records.
The ledger is written in-process (a test cannot log in as two people: the
ledger's actor is set per writer, as in tests/integration/test_governance.py);
it is read through the real command, in subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft

RUN = "run-alice-1"
SHA = "e" * 64
ARTIFACT = {
    "path": "/m/model.bin",
    "exists": True,
    "type": "file",
    "sha256": SHA,
    "size": 3,
}


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("run-owner") / "home"
    init_home(path, origin="test.mltrail.local/run-owner")
    opened = open_home(path)
    try:
        opened.ledger.actor = {"user": "alice", "uid": 1001, "host": "ws-a"}
        opened.ledger.append_many(
            [
                Draft("run.started", {"source": "api", "name": "train"}, RUN),
                Draft("run.params", {"source": "api", "params": {"lr": 0.01}}, RUN),
                Draft("run.artifact", ARTIFACT, RUN),
            ]
        )
        opened.ledger.actor = {"user": "bob", "uid": 1002, "host": "ws-b"}
        opened.ledger.append_many(
            [
                Draft("run.params", {"source": "api", "params": {"lr": 0.5}}, RUN),
                Draft("run.ended", {"status": "succeeded", "exit_code": 0}, RUN),
                Draft("note", {"text": "lr looks high"}, RUN),  # a remark: anyone's
            ]
        )
    finally:
        opened.close()
    return path


def mltrail(home, *args: str) -> str:
    env = {k: v for k, v in os.environ.items() if k != "MLTRAIL_URL"}
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        env=env | {"MLTRAIL_HOME": str(home), "COLUMNS": "200"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc.stdout


def test_show_names_records_another_user_added(home):
    text = mltrail(home, "show", RUN)
    assert "note: 2 record(s) of this run were added by bob, not alice" in text, text
    assert "(run.ended, run.params; seq 4, 5)" in text, text
    assert "by bob  lr looks high" in text, text  # the note, with its author

    found = json.loads(mltrail(home, "show", RUN, "--json"))["added_by_others"]
    assert found == {
        "owner": "alice",
        "count": 2,
        "by": [
            {"user": "bob", "count": 2, "kinds": ["run.ended", "run.params"],
             "seqs": [4, 5]},
        ],
    }  # fmt: skip


def test_trace_names_them_in_what_made_the_model(home):
    text = mltrail(home, "trace", SHA[:12])
    assert "note: 2 record(s) of this run were added by bob, not alice" in text, text

    (made,) = json.loads(mltrail(home, "trace", SHA[:12], "--json"))["made_by"]
    assert made["run"]["id"] == RUN
    assert made["added_by_others"]["by"][0]["user"] == "bob"
    assert made["added_by_others"]["count"] == 2


def test_verify_warns_of_them_and_still_passes(home):
    text = mltrail(home, "verify")  # exit 0: a warning, not a broken ledger
    assert (
        f"run {RUN} was started by alice, but 2 of its records were added by bob "
        "(run.ended, run.params)"
    ) in " ".join(text.split()), text


@pytest.fixture(scope="module")
def baseline(home, tmp_path_factory):
    """``home`` copied, with a baseline run of Alice's to compare RUN with."""
    import shutil

    path = tmp_path_factory.mktemp("run-owner-diff") / "home"
    shutil.copytree(home, path)
    opened = open_home(path)
    try:
        opened.ledger.actor = {"user": "alice", "uid": 1001, "host": "ws-a"}
        opened.ledger.append_many(
            [
                Draft("run.started", {"source": "api", "name": "base"}, "run-alice-0"),
                Draft("run.params", {"source": "api", "params": {"lr": 0.01}},
                      "run-alice-0"),
                Draft("run.ended", {"status": "succeeded", "exit_code": 0},
                      "run-alice-0"),
            ]
        )  # fmt: skip
    finally:
        opened.close()
    return path


def test_diff_names_records_another_user_added(baseline):
    text = mltrail(baseline, "diff", "run-alice-0", RUN)
    assert "0.5" in text, text  # Bob's lr, shown where it was recorded
    assert "note: + 2 record(s) of this run were added by bob, not alice" in text, text

    out = json.loads(mltrail(baseline, "diff", "run-alice-0", RUN, "--json"))
    assert out["added_by_others"]["a"] is None
    assert out["added_by_others"]["b"]["by"][0]["user"] == "bob"


def test_report_names_them_in_the_development_section(home):
    text = mltrail(home, "report", f"file:{SHA}")
    # in section 3, beside the params it concerns, not only among verify's warnings
    development = text.split("## 3.")[1].split("## 4.")[0]
    assert "**Note:** 2 record\\(s\\) of this run were added by bob" in development

    out = json.loads(mltrail(home, "report", f"file:{SHA}", "--json"))
    assert out["development"]["added_by_others"]["by"][0]["user"] == "bob"

    html = subprocess.run(
        [sys.executable, "-m", "mltrail", "report", f"file:{SHA}", "--format", "html"],
        env={**os.environ, "MLTRAIL_HOME": str(home)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    if html.returncode == 0 or "jinja2" not in html.stderr:  # the report extra
        assert html.returncode == 0, html.stderr
        assert "of this run were added by bob, not alice" in html.stdout


def test_exports_name_them_beside_the_starter(home, tmp_path):
    """in-toto provenance (signed with the ledger key) and OpenLineage events
    carry Bob's lr in Alice's run: both say whose records they are (ADR 0024
    amendment), instead of only ``user: alice``."""
    import base64

    out = tmp_path / "p.intoto.json"
    mltrail(home, "export", "intoto", RUN, "-o", str(out))
    envelope = json.loads(out.read_text())
    statement = json.loads(base64.b64decode(envelope["payload"]))
    assert statement["predicate"]["buildDefinition"]["externalParameters"][
        "hyperparameters"
    ] == {"lr": 0.5}
    notes = statement["predicate"]["runDetails"]["byproducts"][0]["annotations"]
    assert notes["user"] == "alice"
    others = notes["addedByOthers"]
    assert others["owner"] == "alice"
    assert [(b["user"], b["kinds"]) for b in others["by"]] == [
        ("bob", ["run.ended", "run.params"])
    ]
    events = mltrail(home, "export", "openlineage", "--run", RUN)
    for line in events.splitlines():
        facet = json.loads(line)["run"]["facets"]["mltrail"]
        assert facet["added_by_others"]["by"][0]["user"] == "bob"
