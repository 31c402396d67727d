"""The code a run used, beyond git: the program it runs and untracked files it
names, by content and hash (issue 15, part 2). Real git repos, real subprocesses."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.ledger_reading import entries

import mltrail

pytestmark = pytest.mark.usefixtures("isolated_git")

TRAIN = "import sys\nprint('training', *sys.argv[1:])\n"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return done.stdout.decode().strip()


def cli(
    home: Path, cwd: Path, *args: str, env=None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        cwd=cwd, env={**os.environ, "MLTRAIL_HOME": str(home), **(env or {})},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def code_of(home: Path) -> dict:
    return [e for e in entries(home) if e.kind == "run.code"][-1].body


def check(home: Path, cwd: Path) -> list[dict]:
    proc = cli(home, cwd, "reproduce", "base", "--check", "--no-env", "--json")
    return json.loads(proc.stdout)["mismatches"]


@pytest.fixture
def repo(tmp_path):
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    (project / "README").write_text("a project\n")
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first")
    mltrail.init_home(home, origin="test.mltrail.local/code", env={})
    return project, home


def test_an_untracked_script_is_recorded_and_an_edit_is_found(repo):
    project, home = repo
    (project / "train.py").write_text(TRAIN)
    (project / "helpers.py").write_text("X = 1\n")
    proc = cli(home, project, "run", "-q", "--name", "base", "--",
               sys.executable, "train.py", "--lib", "helpers.py")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    code = code_of(home)
    assert code["dirty"] is True
    assert code["diff_size"] == 0  # git's diff cannot see untracked files
    files = {Path(f["path"]).name: f for f in code["files"]}
    assert set(files) == {"train.py", "helpers.py"}
    assert files["train.py"]["tracked"] is False
    assert files["train.py"]["size"] == len(TRAIN)
    assert files["train.py"]["content"]["blob"].startswith("sha256:")
    assert check(home, project) == []
    shown = cli(home, project, "show", "base").stdout
    assert "train.py (untracked)" in shown.replace("\n", " ") or "untracked" in shown
    (project / "train.py").write_text(TRAIN + "print('changed')\n")
    found = {
        (m["kind"], Path(m["what"].split()[-1]).name) for m in check(home, project)
    }
    assert found == {("code", "train.py")}


def test_a_tracked_program_is_recorded_and_named_tracked_files_are_not(repo):
    project, home = repo
    (project / "train.py").write_text(TRAIN)
    (project / "lib.py").write_text("Y = 2\n")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "code")
    proc = cli(home, project, "run", "-q", "--name", "base", "--",
               sys.executable, "train.py", "lib.py")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    files = code_of(home)["files"]
    assert [(Path(f["path"]).name, f["tracked"]) for f in files] == [("train.py", True)]


def test_python_dash_m_resolves_the_module_file(repo):
    project, home = repo
    (project / "pkg").mkdir()
    (project / "pkg" / "__init__.py").write_text("")
    (project / "pkg" / "train.py").write_text(TRAIN)
    proc = cli(home, project, "run", "-q", "--name", "base", "--",
               sys.executable, "-m", "pkg.train")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (file,) = code_of(home)["files"]
    assert Path(file["path"]) == (project / "pkg" / "train.py").resolve()


def test_outside_git_the_program_is_the_code_record_and_a_warning_says_so(tmp_path):
    project, home = tmp_path / "plain", tmp_path / "home"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    mltrail.init_home(home, origin="test.mltrail.local/code", env={})
    proc = cli(home, project, "run", "--name", "base", "--",
               sys.executable, "train.py")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "warning: the code is not in a git repository" in proc.stderr
    code = code_of(home)
    assert code["vcs"] is None
    assert "not in a git repository" in code["warning"]
    assert [Path(f["path"]).name for f in code["files"]] == ["train.py"]
    assert "tracked" not in code["files"][0]
    assert check(home, project) == []
    (project / "train.py").write_text("print('other')\n")
    assert [m["kind"] for m in check(home, project)] == ["code"]


def test_a_secret_in_the_script_is_masked_and_check_still_matches(repo):
    project, home = repo
    secret = "hunter2-very-secret-value-42"
    (project / "train.py").write_text(f"PASSWORD = '{secret}'\n")
    proc = cli(home, project, "run", "-q", "--name", "base", "--",
               sys.executable, "train.py", env={"DB_PASSWORD": secret})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (file,) = code_of(home)["files"]
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        stored = opened.ledger.get_blob(file["content"]["blob"])
    finally:
        opened.close()
    assert secret.encode() not in stored
    assert isinstance(file["sha256_original"], dict)
    assert check(home, project) == []
    (project / "train.py").write_text("PASSWORD = 'another'\n")
    assert [m["kind"] for m in check(home, project)] == ["code"]


def test_the_api_records_the_script_it_runs_in(repo):
    project, home = repo
    script = "import mltrail\nwith mltrail.start_run('base'):\n    pass\n"
    (project / "job.py").write_text(script)
    proc = subprocess.run(
        [sys.executable, "job.py"], cwd=project, capture_output=True, text=True,
        env={**os.environ, "MLTRAIL_HOME": str(home)}, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (file,) = code_of(home)["files"]
    assert (Path(file["path"]).name, file["tracked"]) == ("job.py", False)
