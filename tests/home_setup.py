"""Setting up and editing homes for tests: a git project trained once through
the CLI, the values of a key in ``show --json``, a home's ledger.db edited
behind its triggers' back (as an attacker with write access to the home can).

from home_setup import trained_base, triggers_dropped
home, project, digest = trained_base(tmp_path, {"train.py": TRAIN}, "test.x/y")
with triggers_dropped(home / "ledger.db") as conn:
    conn.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from cli_runner import mltrail
from mltrail.ledger.home import init_home

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

__all__ = [
    "FOLDER_TRAIN",
    "TRAIN_OUT",
    "checked_cli",
    "committed_project",
    "read_only_mount",
    "trained_base",
    "trained_folder",
    "triggers_dropped",
    "values",
]


def values(value: Any, key: str) -> Iterator[Any]:
    """Every value of ``key`` anywhere in ``value`` (nested dicts and lists)."""
    if isinstance(value, dict):
        for k, v in value.items():
            if k == key:
                yield v
            yield from values(v, key)
    elif isinstance(value, list):
        for v in value:
            yield from values(v, key)


def committed_project(project: Path, files: Mapping[str, str]) -> None:
    """``project`` made with ``files`` (names relative to it) and committed as
    its first commit, by the git of the test's environment."""
    project.mkdir()
    for name, text in files.items():
        path = project / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "first"]):
        subprocess.run(["git", *args], cwd=project, check=True)


TRAIN_DATA = {
    "data/a.csv": "x,y\n1,0\n",
    "data/b.csv": "x,y\n2,1\n",
    "train.py": "open('model.bin', 'w').write('m')\n",
}
"""A project of two data files whose ``train.py`` writes ``model.bin``: with
``--data train=data --output model.bin``, a run with one manifest and one model."""


def trained_base(
    tmp_path: Path, files: Mapping[str, str], origin: str, *run_args: str
) -> tuple[Path, Path, str]:
    """(home, project, digest): ``tmp_path/project`` committed with ``files``, a
    home ``tmp_path/home`` of ``origin``, ``mltrail run -q --name base RUN_ARGS
    -- python train.py`` through the CLI (exit 0), and the digest of the one
    manifest blob ``show base --json`` names."""
    project, home = tmp_path / "project", tmp_path / "home"
    committed_project(project, files)
    init_home(home, origin=origin, env={})
    proc = mltrail(home, "run", "-q", "--name", "base", *run_args, "--",
                   sys.executable, "train.py", cwd=project)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    shown = json.loads(mltrail(home, "show", "base", "--json", cwd=project).stdout)
    (digest,) = {d["blob"] for d in values(shown, "manifest") if isinstance(d, dict)}
    return home, project, digest


TRAIN_OUT = (
    "import pathlib\n"
    "pathlib.Path('out').mkdir()\n"
    "pathlib.Path('out/a.bin').write_text('a')\n"
    "pathlib.Path('out/b.bin').write_text('b')\n"
)
"""A ``train.py`` that writes the folder ``out``: a.bin ("a") and b.bin ("b")."""

FOLDER_TRAIN = (
    "import pathlib\nd = pathlib.Path('ckpt'); d.mkdir(exist_ok=True)\n"
    "(d / 'model.safetensors').write_bytes(b'weights' * 100)\n"
    "(d / 'config.json').write_text('{}')\n"
)
"""A ``train.py`` that writes the checkpoint folder ``ckpt``."""


def checked_cli(
    project: Path, env: Mapping[str, str], *args: object, code: int = 0
) -> subprocess.CompletedProcess[str]:
    """``python -m mltrail ARGS`` in ``project`` with exactly ``env``; asserts
    the exit code is ``code``."""
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", *map(str, args)], cwd=project,
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    return proc


def trained_folder(tmp_path: Path) -> tuple[Path, Path, dict[str, str]]:
    """(project, home, env): a git project whose ``train.py`` writes the
    checkpoint folder ``ckpt`` (ignored by git), committed, ``mltrail init``
    and trained once under ``mltrail run --name train --output ckpt`` by this OS
    account; ``env`` is what the CLI ran with (no inherited ``MLTRAIL_*``)."""
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    (project / "train.py").write_text(FOLDER_TRAIN)
    (project / ".gitignore").write_text("ckpt/\n")
    keep = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    env = keep | {
        "MLTRAIL_HOME": str(home), "GIT_CEILING_DIRECTORIES": str(tmp_path),
        "GIT_CONFIG_GLOBAL": str(tmp_path / "gitconfig"), "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Dev", "GIT_AUTHOR_EMAIL": "dev@example.com",
        "GIT_COMMITTER_NAME": "Dev", "GIT_COMMITTER_EMAIL": "dev@example.com",
    }  # fmt: skip
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "train"]):
        subprocess.run(["git", *args], cwd=project, env=env, check=True,
                       capture_output=True)  # fmt: skip
    checked_cli(project, env, "init")
    checked_cli(project, env, "run", "--name", "train", "--output", "ckpt", "--",
                sys.executable, "train.py")  # fmt: skip
    return project, home, env


@contextmanager
def triggers_dropped(db: Path) -> Iterator[sqlite3.Connection]:
    """A connection to the SQLite file ``db`` with its triggers dropped; when the
    block ends they are put back and the change committed (an exception rolls
    it all back)."""
    conn = sqlite3.connect(db)
    try:
        triggers = conn.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"
        ).fetchall()
        for name, _ in triggers:
            conn.execute(f'DROP TRIGGER "{name}"')
        yield conn
        for _, text in triggers:
            conn.execute(text)
        conn.commit()
    finally:
        conn.close()


def read_only_mount(folder: Path, target: Path) -> tuple[str, ...]:
    """A command prefix running the rest with ``folder`` bind-mounted read-only
    on ``target`` (made here) in a private mount namespace, gone when it exits;
    skips the test where that is not allowed (it needs CAP_SYS_ADMIN)."""
    target.mkdir()
    script = 'mount --bind "$1" "$2" && mount -o remount,ro,bind "$2" && shift 2 && exec "$@"'
    prefix = ("unshare", "--mount", "--propagation", "private", "sh", "-c", script,
              "sh", str(folder), str(target))  # fmt: skip
    try:
        probe = subprocess.run([*prefix, "true"], capture_output=True, check=False)
    except FileNotFoundError:
        pytest.skip("cannot bind-mount read-only here: unshare is not installed")
    if probe.returncode != 0:
        pytest.skip("cannot bind-mount read-only here (needs CAP_SYS_ADMIN)")
    return prefix


def tree_listing(root: Path) -> dict[str, tuple[object, ...]]:
    """Every entry under ``root`` (itself included) with its mode, size, mtime,
    ctime and, for a file, the SHA-256 of its bytes: equal before and after a
    command means the command wrote nothing there."""
    found = {}
    for path in [root, *sorted(root.rglob("*"))]:
        st = path.lstat()
        digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
        found[str(path.relative_to(root))] = (
            st.st_mode, st.st_size, st.st_mtime_ns, st.st_ctime_ns, digest
        )  # fmt: skip
    return found
