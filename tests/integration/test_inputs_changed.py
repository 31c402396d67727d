"""Inputs and outputs that are not what their path suggests: an input dataset
changed while the command ran, a declared path that is a symbolic link; the
record says so (ADR 0020, amendments 2026-12-07). Real CLI subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.ledger_reading import entries

import mltrail


def run(home: Path, cwd: Path, code: str, *options: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mltrail", "run", "--data", "train=data", *options,
         "--", sys.executable, "-c", code],
        cwd=cwd, env={**os.environ, "MLTRAIL_HOME": str(home)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def project(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "a.csv").write_text("x,y\n1,2\n")
    mltrail.init_home(tmp_path / "home", origin="test.mltrail.local/inputs", env={})
    return tmp_path


def ended_warnings(home: Path) -> list[str]:
    [ended] = [e for e in entries(home) if e.kind == "run.ended"][-1:]
    return ended.body.get("warnings") or []


def test_an_input_rewritten_during_the_run_is_named(project):
    home = project / "home"
    proc = run(home, project, "open('data/a.csv', 'a').write('3,4\\n')")
    assert proc.returncode == 0, proc.stderr
    said = [w for w in ended_warnings(home) if "changed while the command ran" in w]
    assert len(said) == 1
    assert "input train" in said[0]
    assert "changed while the command ran" in proc.stderr


def test_an_input_left_alone_gives_no_warning(project):
    home = project / "home"
    proc = run(home, project, "print(open('data/a.csv').read())")
    assert proc.returncode == 0, proc.stderr
    assert not [w for w in ended_warnings(home) if "changed while" in w]


def test_a_declared_path_that_is_a_link_names_its_target(project, tmp_path_factory):
    home = project / "home"
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    (elsewhere / "weights.bin").write_bytes(b"w" * 10)
    (project / "model.bin").symlink_to(elsewhere / "weights.bin")
    (project / "data").rename(elsewhere / "data")
    (project / "data").symlink_to(elsewhere / "data")

    proc = run(home, project, "pass", "--output", "model.bin")

    assert proc.returncode == 0, proc.stderr
    [artifact] = [e.body for e in entries(home) if e.kind == "run.artifact"]
    [data] = [e.body for e in entries(home) if e.kind == "run.data"]
    assert artifact["link"] == str(elsewhere / "weights.bin")
    assert data["link"] == str(elsewhere / "data")
    assert "is a symbolic link to" in proc.stderr
