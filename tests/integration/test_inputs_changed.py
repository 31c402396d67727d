"""An input dataset changed while the command ran: the record says so (ADR 0020,
amendment 2026-12-07). Real CLI subprocesses."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.ledger_reading import entries

import mltrail


def run(home: Path, cwd: Path, code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mltrail", "run", "--data", "train=data", "--",
         sys.executable, "-c", code],
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
