"""Does run.code say truthfully what ran? Repositories prepared to make a run look
clean while other code runs, and to run programs when an auditor checks them
(ADR 0008, amendment 2026-12-07). Real git repos, real CLI subprocesses."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from tests.ledger_reading import entries

import mltrail

pytestmark = pytest.mark.usefixtures("isolated_git")

GOOD = "import helpers\nprint('good', helpers.X)\n"
EVIL = "import helpers\nprint('EVIL', helpers.X)\n"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return done.stdout.decode().strip()


def cli(home: Path, cwd: Path, *args: str, env=None) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        cwd=cwd, env={**os.environ, "MLTRAIL_HOME": str(home), **(env or {})},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def record(home: Path, cwd: Path, env=None) -> tuple[dict, str]:
    proc = cli(home, cwd, "run", "--name", "base", "--", sys.executable, "train.py",
               env=env)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return [e for e in entries(home) if e.kind == "run.code"][-1].body, proc.stderr


def check(home: Path, cwd: Path) -> list[dict]:
    proc = cli(home, cwd, "reproduce", "base", "--check", "--no-env", "--json",
               "--cwd", str(cwd))  # fmt: skip
    return json.loads(proc.stdout)["mismatches"]


@pytest.fixture
def repo(tmp_path):
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    (project / "train.py").write_text(GOOD)
    (project / "helpers.py").write_text("X = 1\n")
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first")
    mltrail.init_home(home, origin="test.mltrail.local/honesty", env={})
    return project, home


@pytest.mark.parametrize("flag", ["--assume-unchanged", "--skip-worktree"])
def test_an_edit_hidden_from_git_status_is_recorded_and_found(repo, tmp_path, flag):
    project, home = repo
    git(project, "update-index", flag, "train.py")
    (project / "train.py").write_text(EVIL)
    assert git(project, "status", "--porcelain") == ""  # git itself shows nothing

    code, stderr = record(home, project)

    assert code["dirty"] is True
    assert code["describe"].endswith("-dirty")
    [hidden] = code["hidden"]
    assert hidden["path"] == "train.py"
    assert hidden["flag"] == flag.removeprefix("--")
    assert hidden["size"] == len(EVIL)
    assert "train.py" in code["warning"]
    assert "train.py" in stderr
    shown = cli(home, project, "show", "base").stdout
    assert "hidden" in shown
    assert "train.py" in shown
    clone = tmp_path / "clone"
    git(tmp_path, "clone", "-q", str(project), str(clone))
    found = check(home, clone)
    assert [m["what"] for m in found] == [
        "file git was told not to look at train.py"
    ], found


def test_a_sparse_checkout_alone_is_clean(repo):
    project, home = repo
    (project / "data").mkdir()
    (project / "data" / "big.csv").write_text("a\n")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "data")
    git(project, "update-index", "--skip-worktree", "data/big.csv")
    (project / "data" / "big.csv").unlink()

    code, _ = record(home, project)

    assert code["dirty"] is False
    assert "hidden" not in code
    assert "warning" not in code


def test_an_ignored_module_the_program_imports_is_named_by_hash(repo):
    project, home = repo
    git(project, "rm", "-q", "--cached", "helpers.py")
    (project / ".gitignore").write_text("helpers.py\n.venv/\n")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "ignore helpers")
    (project / ".venv").mkdir()
    (project / ".venv" / "site.py").write_text("")  # a wholly ignored folder

    code, stderr = record(home, project)

    assert code["dirty"] is False  # git's word, kept
    [ignored] = code["ignored_sources"]
    assert ignored["path"] == "helpers.py"
    assert ignored["size"] == len("X = 1\n")
    assert ignored["content"]["size"] == len("X = 1\n")
    assert "helpers.py" in stderr
    (project / "helpers.py").write_text("X = 2\n")
    [found] = check(home, project)
    assert found["what"] == "ignored source file helpers.py"


def test_a_replaced_commit_is_read_as_it_is_stored(repo):
    project, home = repo
    good = git(project, "rev-parse", "HEAD")
    (project / "train.py").write_text(EVIL)
    git(project, "commit", "-qam", "evil")
    evil = git(project, "rev-parse", "HEAD")
    git(project, "reset", "-q", "--soft", good)
    git(project, "replace", good, evil)  # good now reads as evil's tree

    code, _ = record(home, project)

    assert code["commit"] == good
    assert code["dirty"] is True
    assert b"EVIL" in mltrail_diff(home, code)


def mltrail_diff(home: Path, code: dict) -> bytes:
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        return opened.ledger.get_blob(code["diff"]["blob"])
    finally:
        opened.close()


def test_git_variables_of_the_environment_cannot_point_at_another_repository(
    repo, tmp_path
):
    project, home = repo
    other = tmp_path / "other"
    other.mkdir()
    git(other, "init", "-q")
    (other / "x").write_text("x\n")
    git(other, "add", "-A")
    git(other, "commit", "-qm", "other")

    code, _ = record(
        home, project, env={"GIT_DIR": str(other / ".git"), "GIT_WORK_TREE": str(other)}
    )

    assert code["commit"] == git(project, "rev-parse", "HEAD")
    assert Path(code["root"]) == project.resolve()


def test_checking_a_prepared_repository_runs_none_of_its_programs(repo, tmp_path):
    project, home = repo
    record(home, project)
    ran = tmp_path / "ran"
    git(project, "config", "core.fsmonitor", f"touch {ran / 'fsmonitor'}; false #")
    git(project, "config", "filter.x.clean", f"touch {ran / 'filter'}; cat")
    git(project, "config", "filter.x.required", "true")
    (project / ".git" / "info" / "attributes").write_text("* filter=x\n")
    ran.mkdir()
    os.utime(project / "train.py", (1, 1))  # git must read it again

    assert check(home, project) == []
    cli(home, project, "run", "--", sys.executable, "-c", "pass")

    assert list(ran.iterdir()) == []


def test_a_clean_filter_cannot_hide_an_edit(repo):
    project, home = repo
    git(project, "config", "filter.x.clean", "git show HEAD:train.py")
    (project / ".git" / "info" / "attributes").write_text("train.py filter=x\n")
    (project / "train.py").write_text(EVIL)

    code, _ = record(home, project)

    assert code["dirty"] is True
    assert b"EVIL" in mltrail_diff(home, code)


def test_a_submodule_set_to_be_ignored_still_makes_the_tree_dirty(repo, tmp_path):
    project, home = repo
    sub = tmp_path / "sub"
    sub.mkdir()
    (sub / "lib.py").write_text("X = 1\n")
    git(sub, "init", "-q")
    git(sub, "add", "-A")
    git(sub, "commit", "-qm", "lib")
    git(project, "-c", "protocol.file.allow=always", "submodule", "add", "-q",
        str(sub), "sub")  # fmt: skip
    git(project, "config", "-f", ".gitmodules", "submodule.sub.ignore", "all")
    git(project, "commit", "-qam", "sub")
    (project / "sub" / "lib.py").write_text("X = 666\n")
    assert git(project, "status", "--porcelain") == ""  # git itself shows nothing

    code, _ = record(home, project)

    assert code["dirty"] is True
    assert b"Subproject commit" in mltrail_diff(home, code)


def test_an_edit_with_its_mtime_put_back_is_not_taken_for_the_commit(repo):
    project, home = repo
    train = project / "train.py"
    committed = train.stat()
    os.utime(train, ns=(committed.st_atime_ns, committed.st_mtime_ns - 5 * 10**9))
    git(project, "update-index", "--really-refresh")  # index stat = the file's
    before = train.stat()
    git(project, "config", "core.trustctime", "false")
    git(project, "config", "core.checkStat", "minimal")
    train.write_text(GOOD.replace("good", "EVIL"))  # the same size
    os.utime(train, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert git(project, "status", "--porcelain") == ""  # git itself shows nothing

    code, _ = record(home, project)

    assert code["dirty"] is True
    if code.get("hidden"):  # the edit fell in the second git recorded: unseen by git
        [hidden] = code["hidden"]
        assert (hidden["path"], hidden["flag"]) == ("train.py", "stat-unchanged")
        assert hidden["sha256"] == hashlib.sha256(train.read_bytes()).hexdigest()
    else:  # a later second: git, made to trust ctime, saw it
        assert b"EVIL" in mltrail_diff(home, code)


def test_an_untracked_module_shadowing_a_package_is_recorded_by_hash(repo):
    project, home = repo
    (project / "sklearn.py").write_text("FIT = None\n")
    shadow = project / "sklearn.py"

    code, _ = record(home, project)

    assert code["untracked"] == ["sklearn.py"]
    [loose] = code["untracked_sources"]
    assert loose["sha256"] == hashlib.sha256(shadow.read_bytes()).hexdigest()
    shadow.write_text("FIT = 1\n")
    [found] = check(home, project)
    assert found["what"] == "untracked source file sklearn.py"


def test_a_secret_in_an_ignored_file_is_masked_and_check_still_matches(repo):
    project, home = repo
    secret = "hunter2-very-secret-value-42"
    (project / ".gitignore").write_text("settings.py\n")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "ignore settings")
    (project / "settings.py").write_text(f"PASSWORD = '{secret}'\n")

    code, _ = record(home, project, env={"DB_PASSWORD": secret})

    [ignored] = code["ignored_sources"]
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        stored = opened.ledger.get_blob(ignored["content"]["blob"])
    finally:
        opened.close()
    assert secret.encode() not in stored
    plain = hashlib.sha256((project / "settings.py").read_bytes()).hexdigest()
    assert ignored["sha256"] != plain  # a bare digest would let guesses be tested
    assert isinstance(ignored["sha256_original"], dict)
    assert check(home, project) == []
    (project / "settings.py").write_text("PASSWORD = 'another'\n")
    [found] = check(home, project)
    assert found["what"] == "ignored source file settings.py"


def test_the_recorded_diff_keeps_its_prefixes_whatever_the_config(repo):
    project, home = repo
    git(project, "config", "diff.noprefix", "true")
    (project / "train.py").write_text(EVIL)

    code, _ = record(home, project)

    diff = mltrail_diff(home, code)
    assert b"--- a/train.py\n+++ b/train.py\n" in diff
    clone = project.parent / "clone"
    git(project.parent, "clone", "-q", str(project), str(clone))
    (clone / "code.diff").write_bytes(diff)
    git(clone, "apply", "code.diff")
    assert (clone / "train.py").read_text() == EVIL


def test_a_file_git_converts_on_checkout_is_not_taken_for_an_edit(repo):
    """Line endings (eol=crlf), $Id$ expansion: the bytes on disk are not the
    index's blob, yet git would store them as that blob: no edit, no warning."""
    project, home = repo
    (project / ".gitattributes").write_text("*.py text eol=crlf ident\n")
    (project / "train.py").write_text("# $Id$\n" + GOOD)
    git(project, "add", "-A")
    git(project, "commit", "-qm", "crlf")
    (project / "train.py").unlink()
    git(project, "checkout", "--", "train.py")  # written with CRLF, $Id$ expanded
    assert b"\r\n" in (project / "train.py").read_bytes()
    assert git(project, "status", "--porcelain") == ""

    code, stderr = record(home, project)

    assert "hidden" not in code
    assert code["dirty"] is False
    assert "warning" not in code
    assert "differ from the commit" not in stderr


def test_a_hidden_edit_of_a_converted_file_is_still_found(repo):
    project, home = repo
    (project / ".gitattributes").write_text("*.py text eol=crlf\n")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "crlf")
    git(project, "update-index", "--assume-unchanged", "train.py")
    (project / "train.py").write_bytes(EVIL.replace("\n", "\r\n").encode())

    code, _ = record(home, project)

    [hidden] = code["hidden"]
    assert (hidden["path"], hidden["flag"]) == ("train.py", "assume-unchanged")
    assert code["dirty"] is True
