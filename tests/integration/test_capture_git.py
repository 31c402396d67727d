"""capture_code against real git repositories in tmp_path, and strip_credentials."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mltrail.capture.run import git as git_capture
from mltrail.capture.run import gitcmd
from mltrail.capture.run.blob import Blob
from mltrail.capture.run.git import capture_code, strip_credentials

EMPTY_SHA256 = hashlib.sha256(b"").hexdigest()
TOKEN = "ghp_s3cretT0ken"


pytestmark = pytest.mark.usefixtures("isolated_git")


def git(repo: Path, *args: str) -> bytes:
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True
    ).stdout


def git_text(repo: Path, *args: str) -> str:
    return git(repo, *args).decode().strip()


@pytest.fixture
def repo(tmp_path) -> Path:
    """A repository with one commit: a text file and a binary file."""
    path = tmp_path / "repo"
    path.mkdir()
    git(path, "init", "-q")
    (path / "train.py").write_text("print('hello')\n")
    (path / "weights.bin").write_bytes(bytes(range(256)))
    git(path, "add", ".")
    git(path, "commit", "-q", "-m", "first")
    return path


def diff_bytes(body: dict) -> bytes:
    assert isinstance(body["diff"], Blob)
    assert body["diff"].media_type == "text/x-diff"
    return body["diff"].data


def test_outside_a_repository(tmp_path):
    plain = tmp_path / "plain"
    plain.mkdir()
    assert capture_code(plain) == {"vcs": None, "reason": "not inside a git repository"}


def test_missing_directory(tmp_path):
    body = capture_code(tmp_path / "gone")
    assert body["vcs"] is None
    assert "does not exist" in body["reason"]


def test_git_not_installed(tmp_path, monkeypatch):
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    assert capture_code(tmp_path) == {"vcs": None, "reason": "git is not installed"}


def test_clean_repository(repo):
    body = capture_code(repo)
    head = git_text(repo, "rev-parse", "HEAD")
    assert body == {
        "vcs": "git",
        "root": str(repo),
        "commit": head,
        "branch": "main",
        "detached": False,
        "describe": head[:7],
        "remote": None,
        "remotes": {},
        "dirty": False,
        "diff": None,
        "diff_sha256": EMPTY_SHA256,
        "diff_size": 0,
        "diff_truncated": False,
        "untracked": [],
        "untracked_count": 0,
    }
    assert re.fullmatch(r"[0-9a-f]{40}", body["commit"])


def test_repository_without_commits(tmp_path):
    path = tmp_path / "new"
    path.mkdir()
    git(path, "init", "-q")
    body = capture_code(path)
    assert body["commit"] is None
    assert body["branch"] == "main"
    assert body["detached"] is False
    assert body["describe"] is None
    assert body["dirty"] is False
    assert body["diff"] is None
    assert "reason" not in body


def test_repository_without_commits_diffs_against_the_empty_tree(tmp_path):
    path = tmp_path / "new"
    path.mkdir()
    git(path, "init", "-q")
    (path / "a.py").write_text("x = 1\n")
    git(path, "add", "a.py")
    (path / "a.py").write_text("x = 2\n")  # unstaged change of an added file
    body = capture_code(path)
    empty_tree = git_text(path, "hash-object", "-t", "tree", "/dev/null")
    expected = git(path, "diff", empty_tree, "--binary")
    assert diff_bytes(body) == expected
    assert b"new file mode" in expected
    assert b"+x = 2" in expected
    assert body["dirty"] is True
    assert body["commit"] is None


def test_modified_tracked_files(repo):
    (repo / "train.py").write_text("print('changed')\n")
    (repo / "weights.bin").write_bytes(bytes(reversed(range(256))))
    body = capture_code(repo)
    expected = git(repo, "diff", "HEAD", "--binary")
    assert diff_bytes(body) == expected
    assert b"GIT binary patch" in expected
    assert body["diff_sha256"] == hashlib.sha256(expected).hexdigest()
    assert body["diff_size"] == len(expected)
    assert body["diff_truncated"] is False
    assert body["dirty"] is True
    assert body["describe"] == git_text(
        repo, "describe", "--tags", "--always", "--dirty"
    )
    assert body["describe"].endswith("-dirty")


def test_staged_only_change(repo):
    (repo / "train.py").write_text("print('staged')\n")
    git(repo, "add", "train.py")
    body = capture_code(repo)
    assert diff_bytes(body) == git(repo, "diff", "HEAD", "--binary")
    assert b"+print('staged')" in body["diff"].data
    assert git(repo, "diff") == b""  # nothing unstaged: the change is in the index only
    assert body["dirty"] is True
    assert body["untracked"] == []


def test_staged_rename_is_parsed_as_one_change(repo):
    git(repo, "mv", "train.py", "renamed.py")
    (repo / "after rename.txt").write_text("new\n")
    body = capture_code(repo)
    assert body["untracked"] == ["after rename.txt"]
    assert body["untracked_count"] == 1
    assert b"rename from train.py" in diff_bytes(body)


def test_untracked_files_with_spaces_and_non_ascii_names(repo):
    (repo / "with space.txt").write_text("a")
    (repo / "données_é.csv").write_text("b")
    (repo / "sub").mkdir()
    (repo / "sub" / "nested file.txt").write_text("c")
    (repo / ".gitignore").write_text("ignored.log\n")
    (repo / "ignored.log").write_text("not listed")
    body = capture_code(repo)
    assert body["untracked"] == [
        ".gitignore",
        "données_é.csv",
        "sub/nested file.txt",
        "with space.txt",
    ]
    assert body["untracked_count"] == 4
    assert body["dirty"] is True
    assert body["diff"] is None  # untracked files are listed, not diffed
    assert body["describe"] == git_text(
        repo, "describe", "--tags", "--always", "--dirty"
    )


def test_undecodable_file_name_becomes_a_backslash_escape(repo):
    name = os.fsencode(repo) + b"/raw\xff.bin"
    try:
        with open(name, "wb") as f:
            f.write(b"x")
    except OSError:
        pytest.skip("this filesystem refuses names that are not UTF-8")
    body = capture_code(repo)
    assert body["untracked"] == ["raw\\xff.bin"]
    json.dumps(body["untracked"], ensure_ascii=False).encode("utf-8")


def test_untracked_list_is_capped(repo, monkeypatch):
    monkeypatch.setattr(git_capture, "_UNTRACKED_CAP", 3)
    for i in range(5):
        (repo / f"extra{i}.txt").write_text(str(i))
    body = capture_code(repo)
    assert body["untracked"] == ["extra0.txt", "extra1.txt", "extra2.txt"]
    assert body["untracked_count"] == 5


def test_detached_head(repo):
    (repo / "train.py").write_text("print('second')\n")
    git(repo, "commit", "-q", "-am", "second")
    first = git_text(repo, "rev-parse", "HEAD~1")
    git(repo, "checkout", "-q", "--detach", first)
    body = capture_code(repo)
    assert body["commit"] == first
    assert body["branch"] is None
    assert body["detached"] is True
    assert body["dirty"] is False


def test_tag_in_describe(repo):
    git(repo, "tag", "v1.0")
    assert capture_code(repo)["describe"] == "v1.0"


def test_remote_credentials_are_stripped(repo):
    git(
        repo, "remote", "add", "origin", f"https://user:{TOKEN}@github.com/org/repo.git"
    )
    git(repo, "remote", "add", "mirror", f"https://{TOKEN}@gitlab.com/org/repo.git")
    git(repo, "remote", "add", "backup", "ssh://git:hunter2@backup.example/repo.git")
    body = capture_code(repo)
    assert body["remote"] == "https://github.com/org/repo.git"
    assert body["remotes"] == {
        "backup": "ssh://git@backup.example/repo.git",
        "mirror": "https://gitlab.com/org/repo.git",
        "origin": "https://github.com/org/repo.git",
    }
    text = json.dumps(body, default=repr)
    assert TOKEN not in text
    assert "hunter2" not in text


def test_remote_without_origin_uses_the_first(repo):
    git(repo, "remote", "add", "zeta", "git@github.com:org/z.git")
    git(repo, "remote", "add", "alpha", "/srv/git/a.git")
    body = capture_code(repo)
    assert body["remote"] == "/srv/git/a.git"
    assert list(body["remotes"]) == ["alpha", "zeta"]


def test_diff_over_the_limit_is_truncated(repo):
    (repo / "train.py").write_text("".join(f"line {i}\n" for i in range(5000)))
    expected = git(repo, "diff", "HEAD", "--binary")
    body = capture_code(repo, diff_limit=1000)
    assert len(expected) > 1000
    assert diff_bytes(body) == expected[:1000]
    assert body["diff_truncated"] is True
    assert body["diff_size"] == len(expected)
    assert body["diff_sha256"] == hashlib.sha256(expected).hexdigest()


def test_cwd_in_a_subdirectory(repo):
    sub = repo / "src" / "deep"
    sub.mkdir(parents=True)
    (sub / "new.py").write_text("")
    (repo / "train.py").write_text("print('sub')\n")
    body = capture_code(sub)
    assert body["root"] == str(repo)
    assert body["untracked"] == ["src/deep/new.py"]
    assert diff_bytes(body) == git(repo, "diff", "HEAD", "--binary")


def test_capture_never_rewrites_the_index(repo):
    index = repo / ".git" / "index"
    os.utime(repo / "train.py", ns=(0, 0))  # stat-dirty: same content, other mtime
    before = (index.read_bytes(), index.stat().st_mtime_ns)
    body = capture_code(repo)
    assert (index.read_bytes(), index.stat().st_mtime_ns) == before
    assert body["dirty"] is False
    assert body["diff"] is None


def test_capture_works_while_another_process_holds_the_index_lock(repo):
    (repo / ".git" / "index.lock").write_bytes(b"")
    (repo / "train.py").write_text("print('locked')\n")
    body = capture_code(repo)
    assert "reason" not in body
    assert body["dirty"] is True


def test_failing_git_command_gives_a_reason_and_keeps_what_was_read(repo):
    (repo / ".git" / "index").write_bytes(b"not an index")
    body = capture_code(repo)
    assert body["vcs"] == "git"
    assert body["commit"] == git_text(repo, "rev-parse", "HEAD")
    assert body["reason"].startswith("`git status` failed (exit 128):")


def test_git_timeout_gives_a_reason(tmp_path, monkeypatch):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "git"
    fake.write_text(f"#!/bin/sh\nexec {shutil.which('sleep')} 5\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", str(bin_dir))
    monkeypatch.setattr(gitcmd, "TIMEOUT_S", 0.2)
    body = capture_code(tmp_path)
    assert body == {"vcs": "git", "reason": "`git rev-parse` timed out after 0.2 s"}


def test_body_is_json_safe(repo):
    (repo / "train.py").write_text("print('json')\n")
    body = capture_code(repo)
    body["diff"] = {"blob": "sha256:" + "0" * 64, "size": len(body["diff"].data)}
    json.dumps(body, allow_nan=False)


# --- strip_credentials ------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        ("https://user:token@host/x", "https://host/x"),
        ("https://token@host/x", "https://host/x"),
        ("http://u:p@host:8080/a/b.git", "http://host:8080/a/b.git"),
        ("https://u:p@ss:w@rd@host/x", "https://host/x"),
        ("ssh://git:pw@host/x", "ssh://git@host/x"),
        ("ssh://git@host/x", "ssh://git@host/x"),
        ("git+ssh://me:pw@host:22/x", "git+ssh://me@host:22/x"),
        ("git@github.com:org/repo.git", "git@github.com:org/repo.git"),
        ("/srv/git/repo.git", "/srv/git/repo.git"),
        ("../relative/repo", "../relative/repo"),
        ("file:///srv/git/repo.git", "file:///srv/git/repo.git"),
        ("https://host/x.git", "https://host/x.git"),
        ("https://host/x?token=abc", "https://host/x"),
        ("https://host/x?ref=main&private_token=abc", "https://host/x?ref=main"),
        ("https://host/x?access_token=a&b=1#frag", "https://host/x?b=1#frag"),
        ("https://host/x?Password=a&X-Amz-Signature=b&keep=1", "https://host/x?keep=1"),
        ("https://u:p@host", "https://host"),
        ("https://u:p@host?token=t", "https://host"),
        ("", ""),
    ],
)
def test_strip_credentials(url, expected):
    assert strip_credentials(url) == expected


USERINFO = (
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~!$&'()*+,;=%"
)
hosts = st.from_regex(r"[a-z0-9][a-z0-9.-]{0,20}(:[0-9]{1,5})?", fullmatch=True)
paths = st.from_regex(r"(/[A-Za-z0-9._~@-]{0,8}){0,4}", fullmatch=True)
schemes = st.sampled_from(["https", "http", "ftp", "git", "ssh", "git+ssh", "HTTPS"])


@settings(max_examples=300)
@given(
    scheme=schemes,
    user=st.text(USERINFO, min_size=1, max_size=12),
    password=st.text(USERINFO + ":@", min_size=1, max_size=24),
    host=hosts,
    path=paths,
)
def test_strip_credentials_never_leaves_the_password(
    scheme, user, password, host, path
):
    out = strip_credentials(f"{scheme}://{user}:{password}@{host}{path}")
    keep_user = scheme.lower() in {"ssh", "git+ssh"}
    assert out == f"{scheme}://{user + '@' if keep_user else ''}{host}{path}"
    assert f":{password}@" not in out


@settings(max_examples=200)
@given(
    name=st.sampled_from(["token", "private_token", "access_token", "password", "key"]),
    secret=st.text("abcXYZ0123456789-_.~%", min_size=8, max_size=20),
    other=st.from_regex(r"[a-e]{1,4}=[a-z0-9]{0,5}", fullmatch=True),
)
def test_strip_credentials_drops_secret_query_parameters(name, secret, other):
    out = strip_credentials(f"https://host/repo.git?{other}&{name}={secret}")
    assert out == f"https://host/repo.git?{other}"
    assert secret not in out


def fake_git(tmp_path: Path, script: str) -> Path:
    bin_dir = tmp_path / "fake-bin"
    bin_dir.mkdir()
    fake = bin_dir / "git"
    fake.write_text(f"#!/bin/sh\n{script}\n")
    fake.chmod(0o755)
    return bin_dir


def test_streamed_diff_times_out(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "PATH", str(fake_git(tmp_path, f"exec {shutil.which('sleep')} 5"))
    )
    monkeypatch.setattr(gitcmd, "TIMEOUT_S", 0.2)
    with pytest.raises(gitcmd.GitError, match=r"`git diff` timed out after 0.2 s"):
        gitcmd.Git(tmp_path).stream(("diff", "HEAD"), 100)


def test_streamed_diff_failure_names_the_error(tmp_path, monkeypatch):
    monkeypatch.setenv(
        "PATH", str(fake_git(tmp_path, "echo 'fatal: bad revision' >&2; exit 128"))
    )
    with pytest.raises(
        gitcmd.GitError, match=r"failed \(exit 128\): fatal: bad revision"
    ):
        gitcmd.Git(tmp_path).stream(("diff", "HEAD"), 100)
