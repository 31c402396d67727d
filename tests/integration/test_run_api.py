"""The Python API (`mltrail.start_run`) and autolog, on real ledgers and processes."""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import math
import os
import subprocess
import sys
import textwrap

import pytest

import mltrail
from ledger_reading import entries
from mltrail.record import runs as runs_module

pytestmark = pytest.mark.usefixtures("isolated_home")


def bodies(found, kind):
    return [e.body for e in found if e.kind == kind]


def points(home, body):
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        return json.loads(opened.ledger.get_blob(body["points"]["blob"]))
    finally:
        opened.close()


def test_a_run_from_python_is_recorded_and_verifies(tmp_path):
    (tmp_path / "train.csv").write_text("a,b\n1,2\n")
    with mltrail.start_run(
        "api-run",
        params={"lr": 0.1, "optim": {"name": "sgd"}},
        data={"train": "train.csv"},
    ) as run:
        run.log_params(argparse.Namespace(epochs=3, amp=False))
        run.log_metrics({"loss": 0.5, "acc": 0.9})
        run.log_metrics({"loss": 0.25})
        (tmp_path / "model.bin").write_bytes(b"w")
        info = run.log_artifact("model.bin")
        run.note("looks good")
    assert info["sha256"] == hashlib.sha256(b"w").hexdigest()
    home = tmp_path / "home"
    found = entries(home, run.id)
    kinds = [e.kind for e in found]
    assert kinds[0] == "run.started"
    assert kinds[-1] == "run.ended"
    assert {"run.code", "run.environment", "run.hardware"} <= set(kinds)
    params = bodies(found, "run.params")
    assert {"source": "api", "params": {"lr": 0.1, "optim.name": "sgd"}} in params
    assert {"source": "argparse", "params": {"epochs": 3, "amp": False}} in params
    assert bodies(found, "run.data")[0]["role"] == "train"
    (metrics,) = bodies(found, "run.metrics")
    assert points(home, metrics) == {
        "loss": {"steps": [0, 1], "values": [0.5, 0.25]},
        "acc": {"steps": [0], "values": [0.9]},
    }
    assert metrics["series"]["loss"] == {
        "count": 2,
        "first_step": 0,
        "last_step": 1,
        "last": 0.25,
        "min": 0.25,
        "max": 0.5,
    }
    assert bodies(found, "note") == [{"text": "looks good"}]
    assert bodies(found, "run.ended")[0]["status"] == "succeeded"
    assert mltrail.verify(home).ok


def test_an_exception_marks_the_run_failed(tmp_path):
    with pytest.raises(ZeroDivisionError), mltrail.start_run() as run:
        _ = 1 / 0
    ended = bodies(entries(tmp_path / "home", run.id), "run.ended")[0]
    assert ended["status"] == "failed"
    assert ended["error"] == "ZeroDivisionError: division by zero"


def test_metrics_are_written_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(runs_module, "FLUSH_POINTS", 1000)
    with mltrail.start_run(capture=False) as run:
        for step in range(2500):
            run.log_metrics({"loss": 1.0 / (step + 1)})
        run.log_metrics({"odd": math.nan, "big": math.inf, "flag": True})
    home = tmp_path / "home"
    batches = [points(home, b) for b in bodies(entries(home, run.id), "run.metrics")]
    assert [len(b["loss"]["steps"]) for b in batches] == [1000, 1000, 500]
    assert batches[-1]["odd"]["values"] == ["nan"]
    assert batches[-1]["big"]["values"] == ["inf"]
    assert batches[-1]["flag"]["values"] == [1]
    assert [s for b in batches for s in b["loss"]["steps"]] == list(range(2500))
    last = bodies(entries(home, run.id), "run.metrics")[-1]["series"]
    assert last["odd"] == {
        "count": 1,
        "first_step": 0,
        "last_step": 0,
        "last": "nan",
        "min": None,
        "max": None,
    }


@dataclasses.dataclass
class Config:
    lr: float = 0.01
    layers: tuple = (64, 64)


def test_params_from_dataclasses_objects_and_keywords(tmp_path):
    with mltrail.start_run(capture=False) as run:
        run.log_params(Config(), seed=3)
    params = bodies(entries(tmp_path / "home", run.id), "run.params")
    assert params == [
        {"source": "api", "params": {"lr": 0.01, "layers": [64, 64], "seed": 3}}
    ]


def test_a_missing_dataset_records_nothing(tmp_path):
    with pytest.raises(mltrail.InputError, match="does not exist"):
        mltrail.start_run(data={"train": "nope.csv"})
    assert not (tmp_path / "home").exists()


def run_script(tmp_path, code, *args):
    script = tmp_path / "script.py"
    script.write_text(textwrap.dedent(code))
    return subprocess.run(
        [sys.executable, "-m", "mltrail.auto", str(script), *args],
        capture_output=True,
        text=True,
        env={**os.environ},
        timeout=60,
        check=False,
    )


def only_run(home):
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        started = [
            r.entry.run
            for r in opened.ledger.records()
            if r.entry.kind == "run.started"
        ]
    finally:
        opened.close()
    assert len(started) == 1
    return started[0]


ARGPARSE_SCRIPT = """
    import argparse, sys
    parser = argparse.ArgumentParser()
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--epochs", type=int, default=1)
    args = parser.parse_args()
    print("lr", args.lr)
    sys.exit(int(args.epochs == 0))
"""


def test_python_m_mltrail_auto_records_argparse_and_exit_status(tmp_path):
    proc = run_script(tmp_path, ARGPARSE_SCRIPT, "--lr", "0.3", "--epochs", "5")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "lr 0.3\n"
    found = entries(tmp_path / "home", only_run(tmp_path / "home"))
    assert bodies(found, "run.started")[0]["source"] == "autolog"
    assert {"source": "argparse", "params": {"lr": 0.3, "epochs": 5}} in bodies(
        found, "run.params"
    )
    ended = bodies(found, "run.ended")[0]
    assert (ended["status"], ended["exit_code"]) == ("succeeded", 0)


def test_python_m_mltrail_auto_records_a_failure(tmp_path):
    proc = run_script(tmp_path, ARGPARSE_SCRIPT, "--epochs", "0")
    assert proc.returncode == 1
    ended = bodies(entries(tmp_path / "home", only_run(tmp_path / "home")), "run.ended")
    assert (ended[0]["status"], ended[0]["exit_code"]) == ("failed", 1)


def test_autolog_inside_a_script(tmp_path):
    proc = run_script(
        tmp_path,
        """
        import mltrail
        run = mltrail.autolog()
        assert mltrail.autolog() is run
        raise RuntimeError("boom")
        """,
    )
    assert proc.returncode == 1
    assert "RuntimeError: boom" in proc.stderr
    ended = bodies(entries(tmp_path / "home", only_run(tmp_path / "home")), "run.ended")
    assert [(e["status"], e["error"]) for e in ended] == [
        ("failed", "RuntimeError: boom")
    ]


def test_a_run_left_unended_is_closed_at_exit(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-c", "import mltrail; mltrail.start_run(capture=False)"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    ended = bodies(entries(tmp_path / "home", only_run(tmp_path / "home")), "run.ended")
    assert ended[0]["status"] == "aborted"
    assert "without ending the run" in ended[0]["error"]
