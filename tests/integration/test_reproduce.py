"""`mltrail reproduce`: the folder it writes, and `--check` against a changed tree."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import mltrail

TRAIN = "import sys\nprint('training', *sys.argv[1:])\n"


pytestmark = pytest.mark.usefixtures("isolated_git")


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return done.stdout.decode().strip()


def mltrail_cli(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mltrail", "--home", str(home), *args],
        cwd=cwd, env={**os.environ, "MLTRAIL_HOME": str(home)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def recorded(tmp_path):
    """A git project with a config and a data folder, and one recorded run of it."""
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    (project / "conf.yaml").write_text("lr: 0.01\nbatch: 32\n")
    data = project / "data"
    data.mkdir()
    for i in range(20):
        (data / f"part-{i:02d}.csv").write_text(f"x,y\n{i},{i % 2}\n")
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first")
    mltrail.init_home(home, origin="test.mltrail.local/repro", env={})
    proc = mltrail_cli(
        home, project, "run", "-q", "--name", "base", "--data", "train=data", "--",
        sys.executable, "train.py", "--config", "conf.yaml", "--api-key", "sk-live-abc123XYZ789",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return project, home


def test_reproduce_writes_the_config_requirements_data_lists_and_script(
    recorded, tmp_path
):
    project, home = recorded
    out = tmp_path / "repro"
    proc = mltrail_cli(home, project, "reproduce", "base", "--out", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    assert (out / "configs" / "conf.yaml").read_text() == "lr: 0.01\nbatch: 32\n"
    (config,) = plan["configs"]
    assert config["file"] == "configs/conf.yaml"
    assert config["recorded"] == str(project / "conf.yaml")
    assert config["ready"] is True
    assert config["argument"] == 3  # python train.py --config conf.yaml: rewritten
    assert not (project / "configs").exists()
    assert any(
        line.startswith("mltrail==")
        for line in (out / "requirements.txt").read_text().splitlines()
    )
    sums = (out / "data-train.sha256").read_text().splitlines()
    assert len(sums) == 20
    assert sums[0].endswith("  data/part-00.csv")
    checked = subprocess.run(["sha256sum", "-c", str(out / "data-train.sha256")], cwd=project,
                             capture_output=True, check=False)  # fmt: skip
    assert checked.returncode == 0, checked.stdout
    assert (out / "data-train.manifest.jsonl").read_bytes().count(b"\n") == 20
    run = json.loads((out / "run.json").read_text())
    assert run["origin"] == "test.mltrail.local/repro"
    assert run["commit"] == git(project, "rev-parse", "HEAD")
    assert json.loads((out / "params.json").read_text())["lr"] == {
        "value": 0.01,
        "source": str(project / "conf.yaml"),
    }
    script = (out / "command.sh").read_text()
    assert f"commit={run['commit']}" in script
    assert plan["code"]["commit"] == run["commit"]
    assert plan["code"]["copy"] == str(out / "src")
    assert "sk-live" not in script
    assert [(s["name"], s["what"], s["set"]) for s in plan["secrets"]] == [
        ("MLTRAIL_SECRET_1", "argument 5 of the command (--api-key)", False)
    ]
    assert '"${MLTRAIL_SECRET_1}"' in script
    assert '--config "$here"/configs/conf.yaml' in script
    assert "README.md" in plan["files"]


def test_reproduce_refuses_a_folder_with_files_unless_forced(recorded, tmp_path):
    project, home = recorded
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    proc = mltrail_cli(home, project, "reproduce", "base", "--out", str(out))
    assert proc.returncode == 2
    assert "not empty" in proc.stderr
    assert not (out / "command.sh").exists()
    proc = mltrail_cli(home, project, "reproduce", "base", "--out", str(out), "--force")
    assert proc.returncode == 0, proc.stderr
    assert (out / "command.sh").exists()


def test_the_script_needs_the_redacted_secret(recorded, tmp_path):
    project, home = recorded
    out = tmp_path / "repro"
    assert (
        mltrail_cli(home, project, "reproduce", "base", "--out", str(out)).returncode
        == 0
    )
    env = {k: v for k, v in os.environ.items() if k != "MLTRAIL_SECRET_1"}
    ran = subprocess.run(["sh", str(out / "command.sh")], capture_output=True, text=True,
                         env=env, check=False)  # fmt: skip
    assert ran.returncode != 0
    assert "MLTRAIL_SECRET_1" in ran.stderr
    env["MLTRAIL_SECRET_1"] = "sk-live-abc123XYZ789"
    ran = subprocess.run(["sh", str(out / "command.sh")], capture_output=True, text=True,
                         env=env, check=False)  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    config = out / "configs" / "conf.yaml"
    assert ran.stdout == f"training --config {config} --api-key sk-live-abc123XYZ789\n"


def test_check_passes_on_the_unchanged_tree(recorded):
    project, home = recorded
    proc = mltrail_cli(home, project, "reproduce", "base", "--check")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.startswith("OK")


def test_check_finds_a_changed_data_file_a_new_commit_and_a_changed_config(recorded):
    project, home = recorded
    (project / "data" / "part-07.csv").write_text("x,y\n7,1\ncontaminated,1\n")
    (project / "data" / "part-99.csv").write_text("x,y\n99,0\n")
    (project / "conf.yaml").write_text("lr: 0.5\nbatch: 32\n")
    git(project, "commit", "-qam", "tweak")
    proc = mltrail_cli(
        home, project, "reproduce", "base", "--check", "--no-env", "--json"
    )
    assert proc.returncode == 1, proc.stderr
    found = {(m["kind"], m["what"]) for m in json.loads(proc.stdout)["mismatches"]}
    assert found == {
        ("code", "commit"),
        ("config", str(project / "conf.yaml")),
        ("data", "train dataset id"),
        ("data", "train part-07.csv"),
        ("data", "train part-99.csv"),
    }
    text = mltrail_cli(home, project, "reproduce", "base", "--check", "--no-env")
    assert text.returncode == 1
    assert "train part-07.csv" in text.stdout


def test_check_a_fresh_clone_elsewhere_with_cwd(recorded, tmp_path):
    project, home = recorded
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    (project / "conf.yaml").write_text(
        "lr: 9\n"
    )  # the original tree changes, not the clone
    proc = mltrail_cli(
        home, tmp_path, "reproduce", "base", "--check", "--no-env", "--cwd", str(clone)
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    proc = mltrail_cli(home, tmp_path, "reproduce", "base", "--check", "--no-env")
    assert proc.returncode == 1
    assert "config" in proc.stdout


def test_check_reports_a_changed_package(recorded, monkeypatch):
    from mltrail.audit.query import load_run, resolve_run
    from mltrail.index import open_index
    from mltrail.reproduce import check as check_module
    from mltrail.reproduce import check_reproduction

    _, home = recorded
    real = check_module.capture_environment

    def older_numpy(**kwargs):
        body = real(**kwargs)
        lines = body["packages"]["list"].data + b"numpy-from-the-future==99.0\n"
        body["packages"]["list"] = type(body["packages"]["list"])(lines)
        return body

    monkeypatch.setattr(check_module, "capture_environment", older_numpy)
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        index = open_index(opened)
        view = load_run(opened, index, resolve_run(index, "base"))
        found = check_reproduction(opened, view)
    finally:
        opened.close()
    assert [(m.kind, m.what, m.recorded, m.current) for m in found] == [
        ("environment", "package numpy-from-the-future", "missing", "99.0")
    ]


def test_diff_caps_the_file_listing_and_json_lists_every_file(recorded):
    project, home = recorded
    for i in (3, 4, 5):
        (project / "data" / f"part-{i:02d}.csv").write_text(f"x,y\n{i},9\n")
    (project / "data" / "part-00.csv").unlink()
    proc = mltrail_cli(
        home, project, "run", "-q", "--name", "second", "--data", "train=data", "--",
        sys.executable, "train.py", "--config", "conf.yaml",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    text = mltrail_cli(home, project, "diff", "base", "second", "--files", "2")
    assert text.returncode == 0, text.stderr
    assert "3 changed, 0 added, 1 removed, 16 unchanged" in text.stdout
    assert "-    part-00.csv" in text.stdout
    assert "... and 2 more" in text.stdout
    assert "part-05.csv" not in text.stdout
    assert "-  api-key: <redacted>  (argv)" in text.stdout  # a parameter only run A had
    data = json.loads(
        mltrail_cli(home, project, "diff", "base", "second", "--json").stdout
    )
    (train,) = data["sections"]["data"]
    assert [f["path"] for f in train["files"]["files"]] == [
        "part-00.csv", "part-03.csv", "part-04.csv", "part-05.csv",
    ]  # fmt: skip
    assert data["names"] == {"a": "base", "b": "second"}


def test_check_finds_uncommitted_changes_and_a_missing_tree(recorded, tmp_path):
    project, home = recorded
    (project / "train.py").write_text(TRAIN + "# local tweak\n")
    proc = mltrail_cli(
        home, project, "reproduce", "base", "--check", "--no-env", "--json"
    )
    assert proc.returncode == 1
    (found,) = json.loads(proc.stdout)["mismatches"]
    assert (found["kind"], found["what"], found["recorded"]) == (
        "code", "uncommitted changes (diff sha256)", "none",
    )  # fmt: skip
    empty = tmp_path / "elsewhere"
    empty.mkdir()
    proc = mltrail_cli(home, tmp_path, "reproduce", "base", "--check", "--no-env", "--json",
                       "--cwd", str(empty))  # fmt: skip
    found = {(m["kind"], m["current"]) for m in json.loads(proc.stdout)["mismatches"]}
    assert ("config", "missing") in found
    assert ("data", "missing") in found
    assert any(kind == "code" and current.startswith("none") for kind, current in found)
