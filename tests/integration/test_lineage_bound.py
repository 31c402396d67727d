"""`mltrail lineage` stops at a bound for display, and says so on stderr.

The bound (``MAX_NODES``, 2,000) is patched down to a handful so that a small
real home (runs recorded through the Python API) reaches it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import mltrail
from mltrail.cli import lineage_cmd
from mltrail.cli.main import main


def _lineage(capsys, *args: str) -> tuple[str, str]:
    capsys.readouterr()
    code = 0
    try:
        main(["lineage", *args])
    except SystemExit as e:
        code = e.code or 0
    out, err = capsys.readouterr()
    assert code == 0, (out, err)
    return out, err


@pytest.fixture
def fan_out(monkeypatch, tmp_path):
    """data/clean.csv read by 6 runs, each writing its own model."""
    monkeypatch.setenv("GIT_CEILING_DIRECTORIES", str(tmp_path))
    monkeypatch.delenv("MLTRAIL_RUN_ID", raising=False)
    monkeypatch.setenv("MLTRAIL_HOME", str(tmp_path / "home"))
    monkeypatch.chdir(tmp_path)
    Path("data").mkdir()
    Path("data/clean.csv").write_text("id,income\n1,10\n")
    for i in range(6):
        with mltrail.start_run(f"train-{i}", capture=False) as run:
            run.log_dataset("data/clean.csv", role="train")
            Path(f"m{i}.pt").write_bytes(b"weights %d" % i)
            run.log_artifact(f"m{i}.pt")
    return tmp_path


def test_a_graph_cut_at_the_display_bound_says_so(fan_out, capsys, monkeypatch):
    monkeypatch.setattr(lineage_cmd, "MAX_NODES", 5)
    out, err = _lineage(capsys, "data/clean.csv", "--down", "--json")
    assert 5 <= len(json.loads(out)["nodes"]) < 13  # cut; stdout stays JSON
    assert "bound for display is 5" in err
    assert "mltrail sources check" in err


def test_a_whole_graph_gets_no_note(fan_out, capsys):
    out, err = _lineage(capsys, "data/clean.csv", "--down", "--json")
    assert len(json.loads(out)["nodes"]) == 13  # the data, 6 runs, 6 models
    assert "bound for display" not in err
