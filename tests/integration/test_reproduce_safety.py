"""`mltrail reproduce` and its `command.sh` leave the user's files and repository alone.

The reported failure: `reproduce --out` then `sh command.sh` copied the redacted
config (password replaced by a placeholder) over the live config holding the real
password, with no backup, and left the repository on a detached HEAD without saying
so. Every test here runs the CLI and the generated script as a user would, on real
git repositories.
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.usefixtures("isolated_git")

PASSWORD = "hunter2-Live-9f3k"
CONFIG = f"lr: 0.01\ndb:\n  host: db.internal\n  password: {PASSWORD}\n"
TRAIN = """\
import hashlib, pathlib, sys
config = pathlib.Path(sys.argv[sys.argv.index("--config") + 1])
text = config.read_text()
print("config", config)
print("lr", [l for l in text.splitlines() if l.startswith("lr:")][0])
print("password sha256", hashlib.sha256(text.split("password: ")[1].strip().encode()).hexdigest())
print("data", pathlib.Path("data/rows.csv").read_text().splitlines()[-1])
"""


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return done.stdout.decode().strip()


def mltrail_cli(
    home: Path, cwd: Path, *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mltrail", "--home", str(home), *args],
        cwd=cwd, env={**(os.environ if env is None else env), "MLTRAIL_HOME": str(home)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def clean_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_SECRET_")}
    return {**env, **extra}


def sh(
    script: Path, *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
):
    return subprocess.run(
        ["sh", str(script), *args], capture_output=True, text=True, cwd=cwd,
        env=clean_env() if env is None else env, timeout=120, check=False,
    )  # fmt: skip


def repo_state(repo: Path) -> tuple[str, str, str]:
    """The branch, the commit and `git status` of a repository."""
    return (
        git(repo, "symbolic-ref", "-q", "HEAD"),
        git(repo, "rev-parse", "HEAD"),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
    )


@pytest.fixture
def recorded(tmp_path):
    """A git project whose live config (not committed) holds a real password, its
    data (not committed either), and one recorded run that read both."""
    project, home = tmp_path / "the team's project", tmp_path / "home"
    (project / "data").mkdir(parents=True)
    (project / "train.py").write_text(TRAIN)
    (project / "db.yaml").write_text(CONFIG)
    (project / "data" / "rows.csv").write_text("x,y\n1,0\n")
    (project / ".gitignore").write_text("db.yaml\ndata/\n")
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first")
    proc = mltrail_cli(home, project, "init", "--origin", "test.mltrail.local/safety")
    assert proc.returncode == 0, proc.stderr
    proc = mltrail_cli(
        home, project, "run", "-q", "--name", "base", "--data", "train=data", "--",
        sys.executable, "train.py", "--config", "db.yaml",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return project, home


def password_sha256() -> str:
    import hashlib

    return hashlib.sha256(PASSWORD.encode()).hexdigest()


def test_the_live_config_and_the_repository_are_untouched(recorded, tmp_path):
    """The reported failure, end to end."""
    project, home = recorded
    live = (project / "db.yaml").read_bytes()
    git(project, "switch", "-q", "-c", "feature")
    (project / "train.py").write_text(TRAIN + "# work in progress\n")
    before = repo_state(project)
    out = tmp_path / "repro"
    proc = mltrail_cli(home, project, "reproduce", "base", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (project / "db.yaml").read_bytes() == live
    # no file in the folder is the config with its placeholder in it
    assert not (out / "configs" / "db.yaml").exists()
    assert PASSWORD not in "".join(
        p.read_text(errors="replace") for p in out.rglob("*") if p.is_file()
    )
    assert "db.password" in proc.stdout
    assert "MLTRAIL_SECRET_1" in proc.stdout

    refused = sh(out / "command.sh")
    assert refused.returncode != 0
    assert "MLTRAIL_SECRET_1" in refused.stderr
    assert "db.password" in refused.stderr
    assert refused.stdout == ""  # the command did not run
    assert (project / "db.yaml").read_bytes() == live
    assert repo_state(project) == before

    ran = sh(out / "command.sh", env=clean_env(MLTRAIL_SECRET_1=PASSWORD))
    assert ran.returncode == 0, ran.stderr
    assert f"config {out / 'configs' / 'db.yaml'}\n" in ran.stdout
    assert f"password sha256 {password_sha256()}\n" in ran.stdout
    assert "data 1,0" in ran.stdout  # untracked data, linked into the copy
    assert (project / "db.yaml").read_bytes() == live
    assert repo_state(project) == before
    assert (project / "train.py").read_text().endswith("# work in progress\n")
    commit = json.loads((out / "run.json").read_text())["commit"]
    assert git(out / "src", "rev-parse", "HEAD") == commit
    assert "# work in progress" not in (out / "src" / "train.py").read_text()


def test_a_wrong_value_is_refused_before_anything_runs(recorded, tmp_path):
    project, home = recorded
    out = tmp_path / "repro"
    assert (
        mltrail_cli(home, project, "reproduce", "base", "--out", str(out)).returncode
        == 0
    )
    ran = sh(out / "command.sh", env=clean_env(MLTRAIL_SECRET_1="hunter3"))
    assert ran.returncode != 0
    assert "does not match" in ran.stderr
    assert "hunter3" not in ran.stderr
    assert ran.stdout == ""
    assert not (out / "configs" / "db.yaml").exists()
    assert not (out / "src").exists()


def test_reproduce_checks_a_supplied_value_against_the_commitment(recorded, tmp_path):
    from mltrail.capture.run.commitment import check_commitment
    from mltrail.ledger.keystore import load_commitment_key

    project, home = recorded
    shown = json.loads(mltrail_cli(home, project, "show", "base", "--json").stdout)
    (config,) = [p for p in shown["params"] if p.get("file")]
    commitment = config["params"]["db.password"]
    assert not check_commitment(PASSWORD, commitment)  # keyed: not without the key
    key = load_commitment_key(home, create=False)
    assert check_commitment(PASSWORD, commitment, key)

    for value, matches in ((PASSWORD, True), ("hunter3", False)):
        out = tmp_path / f"repro-{matches}"
        proc = mltrail_cli(home, project, "reproduce", "base", "--out", str(out), "--json",
                           env=clean_env(MLTRAIL_SECRET_1=value))  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        plan = json.loads(proc.stdout)
        (secret,) = plan["secrets"]
        assert secret["name"] == "MLTRAIL_SECRET_1"
        assert secret["what"] == "db.password in configs/db.yaml"
        assert (secret["set"], secret["matches"]) == (True, matches)
        assert value not in proc.stdout
        text = mltrail_cli(home, project, "reproduce", "base", "--out", str(out), "--force",
                           env=clean_env(MLTRAIL_SECRET_1=value))  # fmt: skip
        assert ("matches the record" in text.stdout) is matches
        assert ("does NOT match" in text.stdout) is not matches


def test_the_printed_undo_removes_the_copy(recorded, tmp_path):
    project, home = recorded
    out = tmp_path / "repro"
    proc = mltrail_cli(home, project, "reproduce", "base", "--out", str(out), "--json")
    plan = json.loads(proc.stdout)
    assert plan["code"]["copy"] == str(out / "src")
    ran = sh(out / "command.sh", env=clean_env(MLTRAIL_SECRET_1=PASSWORD))
    assert ran.returncode == 0, ran.stderr
    (undo,) = [line for line in ran.stderr.splitlines() if "worktree remove" in line]
    command = undo.split(": ", 1)[1]
    assert command == plan["undo"][0]
    done = subprocess.run(
        command, shell=True, capture_output=True, text=True, check=False
    )
    assert done.returncode == 0, done.stderr
    assert not (out / "src").exists()
    assert len(git(project, "worktree", "list").splitlines()) == 1
    assert (project / "data" / "rows.csv").exists()  # the link went, not the data


def test_a_clone_elsewhere_with_repo(recorded, tmp_path):
    import shutil

    project, home = recorded
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    shutil.copytree(project / "data", clone / "data")  # not in git: brought along
    out = tmp_path / "repro"
    assert (
        mltrail_cli(home, project, "reproduce", "base", "--out", str(out)).returncode
        == 0
    )
    ran = sh(
        out / "command.sh",
        "--repo",
        str(clone),
        env=clean_env(MLTRAIL_SECRET_1=PASSWORD),
    )
    assert ran.returncode == 0, ran.stderr
    assert "data 1,0" in ran.stdout
    assert f"linked from {clone}/data" in ran.stderr
    assert len(git(clone, "worktree", "list").splitlines()) == 2
    assert len(git(project, "worktree", "list").splitlines()) == 1


def test_in_place_refuses_a_dirty_tree_and_says_how_to_get_back(recorded, tmp_path):
    project, home = recorded
    out = tmp_path / "repro"
    assert (
        mltrail_cli(home, project, "reproduce", "base", "--out", str(out)).returncode
        == 0
    )
    recorded_commit = git(project, "rev-parse", "HEAD")
    (project / "notes.txt").write_text("later\n")
    git(project, "add", "notes.txt")
    git(project, "commit", "-qm", "later")
    later = repo_state(project)
    (project / "train.py").write_text(TRAIN + "# uncommitted\n")
    env = clean_env(MLTRAIL_SECRET_1=PASSWORD)
    refused = sh(out / "command.sh", "--in-place", env=env)
    assert refused.returncode != 0
    assert "uncommitted changes" in refused.stderr
    assert refused.stdout == ""
    assert (project / "train.py").read_text().endswith("# uncommitted\n")
    git(project, "checkout", "-q", "train.py")
    assert repo_state(project) == later

    ran = sh(out / "command.sh", "--in-place", env=env)
    assert ran.returncode == 0, ran.stderr
    assert git(project, "rev-parse", "HEAD") == recorded_commit
    assert f"checked out commit {recorded_commit}" in ran.stderr
    (back,) = [
        line for line in ran.stderr.splitlines() if line.startswith("to get back: ")
    ]
    assert back == f"to get back: git -C {shlex.quote(str(project))} switch main"
    done = subprocess.run(back.removeprefix("to get back: "), shell=True,
                          capture_output=True, text=True, check=False)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert repo_state(project) == later
    assert (project / "db.yaml").read_text() == CONFIG


def test_the_recorded_diff_is_applied_to_the_copy_only_on_request(recorded, tmp_path):
    project, home = recorded
    (project / "train.py").write_text(TRAIN + "print('edited')\n")
    proc = mltrail_cli(
        home, project, "run", "-q", "--name", "edited", "--data", "train=data", "--",
        sys.executable, "train.py", "--config", "db.yaml",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    env = clean_env(MLTRAIL_SECRET_1=PASSWORD)
    for args, edited in (((), False), (("--apply-diff",), True)):
        out = tmp_path / f"repro-{edited}"
        assert (
            mltrail_cli(
                home, project, "reproduce", "edited", "--out", str(out)
            ).returncode
            == 0
        )
        assert (out / "code.diff").exists()
        ran = sh(out / "command.sh", *args, env=env)
        assert ran.returncode == 0, ran.stderr
        assert ("edited\n" in ran.stdout) is edited
        assert ("print('edited')" in (out / "src" / "train.py").read_text()) is edited
        if not edited:
            assert "--apply-diff" in ran.stderr
    assert (project / "train.py").read_text() == TRAIN + "print('edited')\n"
    refused = sh(
        tmp_path / "repro-False" / "command.sh", "--in-place", "--apply-diff", env=env
    )
    assert refused.returncode != 0
    assert "copy" in refused.stderr


@pytest.fixture
def fixed_path(tmp_path):
    """A project outside git whose program reads settings.yaml from a fixed path."""
    project, home = tmp_path / "plain", tmp_path / "home"
    project.mkdir()
    (project / "settings.yaml").write_text(
        f"lr: 0.01\nepochs: 3\napi_key: {PASSWORD}\n"
    )
    program = "import pathlib; print(pathlib.Path('settings.yaml').read_text().splitlines()[0])"
    proc = mltrail_cli(home, project, "init", "--origin", "test.mltrail.local/fixed")
    assert proc.returncode == 0, proc.stderr
    proc = mltrail_cli(home, project, "run", "-q", "--name", "fixed", "--config", "settings.yaml",
                       "--", sys.executable, "-c", program)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return project, home


def test_a_differing_file_is_not_overwritten_unless_forced_with_a_backup(
    fixed_path, tmp_path
):
    project, home = fixed_path
    changed = f"lr: 0.5\nepochs: 3\napi_key: {PASSWORD}\n"
    (project / "settings.yaml").write_text(changed)
    out = tmp_path / "repro"
    proc = mltrail_cli(home, project, "reproduce", "fixed", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (project / "settings.yaml").read_text() == changed
    env = clean_env(MLTRAIL_SECRET_1=PASSWORD)
    refused = sh(out / "command.sh", env=env)
    assert refused.returncode != 0
    assert "differs" in refused.stderr
    assert "  lr\n" in refused.stderr  # the key, never the values
    assert "0.5" not in refused.stderr
    assert PASSWORD not in refused.stderr
    assert "--force-config" in refused.stderr
    assert refused.stdout == ""
    assert (project / "settings.yaml").read_text() == changed

    forced = sh(out / "command.sh", "--force-config", env=env)
    assert forced.returncode == 0, forced.stderr
    assert forced.stdout == "lr: 0.01\n"
    (line,) = [x for x in forced.stderr.splitlines() if "backup" in x]
    backup = Path(line.split("backup: ", 1)[1])
    assert backup.parent == project
    assert backup.read_text() == changed
    assert (project / "settings.yaml").read_text() == (
        f"lr: 0.01\nepochs: 3\napi_key: {PASSWORD}\n"
    )
    again = sh(out / "command.sh", env=env)  # now the same: nothing to overwrite
    assert again.returncode == 0, again.stderr
    assert "backup" not in again.stderr


def test_a_missing_file_is_written_and_an_identical_one_left_alone(
    fixed_path, tmp_path
):
    project, home = fixed_path
    out = tmp_path / "repro"
    assert (
        mltrail_cli(home, project, "reproduce", "fixed", "--out", str(out)).returncode
        == 0
    )
    env = clean_env(MLTRAIL_SECRET_1=PASSWORD)
    mtime = (project / "settings.yaml").stat().st_mtime_ns
    ran = sh(out / "command.sh", env=env)
    assert ran.returncode == 0, ran.stderr
    assert (project / "settings.yaml").stat().st_mtime_ns == mtime
    (project / "settings.yaml").unlink()
    ran = sh(out / "command.sh", env=env)
    assert ran.returncode == 0, ran.stderr
    assert PASSWORD in (project / "settings.yaml").read_text()
    assert "written" in ran.stderr


def test_secrets_from_a_file_the_user_points_to(fixed_path, tmp_path):
    project, home = fixed_path
    out = tmp_path / "repro"
    assert (
        mltrail_cli(home, project, "reproduce", "fixed", "--out", str(out)).returncode
        == 0
    )
    secrets = tmp_path / "secrets.env"
    secrets.write_text(f"MLTRAIL_SECRET_1='{PASSWORD}'\n")
    ran = sh(out / "command.sh", "--secrets", "secrets.env", cwd=tmp_path)
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "lr: 0.01\n"
