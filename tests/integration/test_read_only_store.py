"""Reading a SQLite ledger that may not be written, writing nothing: the store level.

The CLI end to end, as an unprivileged account and through a read-only mount, is
in tests/e2e/test_read_only_home.py. Here, real files as root (who passes every
permission check, so nothing but mltrail's own care keeps it from writing): a
``chmod -R a-w`` copy of a home taken while a writer had it open, with its log
(``-wal``) and wal-index (``-shm``), or with the log alone. Records that are only
in the log must be read, and no file may change.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from home_setup import tree_listing
from mltrail.ledger.home import init_home, open_home
from mltrail.storage.readonly import can_write

ENV: dict[str, str] = {}  # never pick up the caller's MLTRAIL_* settings
NOTES = 5


@pytest.fixture
def live_copy(tmp_path: Path) -> Path:
    """A copy of a home taken while its writer is connected, then ``chmod -R a-w``:
    the last records are only in ``ledger.db-wal``."""
    original, copy = tmp_path / "home", tmp_path / "copy"
    init_home(original, origin="test.mltrail.local/live", env=ENV)
    home = open_home(original, env=ENV)
    try:
        for i in range(NOTES):
            home.ledger.append("note", {"text": f"n{i}"})
        assert (original / "ledger.db-wal").stat().st_size > 0
        shutil.copytree(original, copy)
    finally:
        home.close()
    subprocess.run(["chmod", "-R", "a-w", str(copy)], check=True)
    yield copy
    subprocess.run(["chmod", "-R", "u+w", str(copy)], check=True)


def _read_all(path: Path) -> int:
    home = open_home(path, writable=False, env=ENV)
    try:
        assert home.ledger.store.read_only
        report = home.verify()
        assert report.ok, report.verdict()
        texts = [r.entry.body.get("text") for r in home.ledger.records()]
        assert texts[-NOTES:] == [f"n{i}" for i in range(NOTES)]
        return report.records_checked
    finally:
        home.close()


@pytest.fixture
def as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root: root passes permission checks, which is the point")


@pytest.mark.usefixtures("as_root")
def test_a_copy_with_its_log_and_wal_index_is_read_whole(live_copy: Path) -> None:
    before = tree_listing(live_copy)
    assert _read_all(live_copy) == NOTES + 1
    assert tree_listing(live_copy) == before


@pytest.mark.usefixtures("as_root")
def test_a_copy_with_its_log_but_no_wal_index_is_read_whole(live_copy: Path) -> None:
    subprocess.run(["chmod", "u+w", str(live_copy)], check=True)
    (live_copy / "ledger.db-shm").unlink()
    subprocess.run(["chmod", "a-w", str(live_copy)], check=True)
    before = tree_listing(live_copy)
    assert _read_all(live_copy) == NOTES + 1
    assert tree_listing(live_copy) == before


KILLED_WRITER = r"""
import os, shutil, signal, sys
from mltrail.ledger.home import open_home

home = open_home(sys.argv[1], env={})
home.ledger.append("note", {"text": "n0"})
db = home.path / "ledger.db"
shutil.copyfile(f"{db}-shm", f"{db}-shm.old")
for i in range(1, 4):
    home.ledger.append("note", {"text": f"n{i}"})
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_a_killed_writers_stale_wal_index_does_not_hide_its_commits(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The auditor's view of a home someone may write, after its writer was killed:
    the ``-wal`` holds commits the ``-shm`` left behind does not index (here an
    older copy of it put back). With no connection attached, SQLite reads the log
    itself rather than trust that wal-index (``readonly_shm``), so every commit
    is read, and nothing is written. (The ctime aside: ``can_write`` is made to
    say no here, and SQLite run by root ``fchown``s the ``-wal`` and ``-shm`` it
    opens; a root reader takes this path only where that fails, a read-only mount.)
    """
    home_dir = tmp_path / "home"
    init_home(home_dir, origin="test.mltrail.local/killed", env=ENV)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    done = subprocess.run(
        [sys.executable, "-c", KILLED_WRITER, str(home_dir)],
        env=env,
        capture_output=True,
        check=False,
    )
    assert done.returncode == -signal.SIGKILL, done.stderr
    db = home_dir / "ledger.db"
    stale = Path(f"{db}-shm.old")
    assert stale.read_bytes() != Path(f"{db}-shm").read_bytes()  # it lags the log
    os.replace(stale, f"{db}-shm")
    monkeypatch.setattr("mltrail.ledger.home.can_write", lambda _: False)
    before = _contents(home_dir)
    home = open_home(home_dir, writable=False, env=ENV)
    try:
        assert home.ledger.store.read_only
        assert home.verify().ok
        texts = [r.entry.body.get("text") for r in home.ledger.records(1)]
    finally:
        home.close()
    assert texts == ["n0", "n1", "n2", "n3"]
    assert _contents(home_dir) == before


def _contents(root: Path) -> dict[str, tuple[object, ...]]:
    """``_listing`` without the ctime."""
    return {name: (*v[:3], v[4]) for name, v in tree_listing(root).items()}


def test_can_write_tries(tmp_path: Path) -> None:
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "file").write_text("x")
    assert can_write(folder)
    assert can_write(folder / "file")
    assert can_write(folder / "not" / "yet")  # made in a folder we may write
    (folder / "file").chmod(0o444)
    assert not can_write(folder / "file")  # root too: no one may write it
    folder.chmod(0o555)
    try:
        assert not can_write(folder)
        assert not can_write(folder / "new")
    finally:
        folder.chmod(0o755)


def test_can_write_takes_relative_and_str_paths(tmp_path: Path, monkeypatch) -> None:
    """Written with os alone (a warm `data hash` imports no pathlib): a relative
    `str` gets the answers its Path gets."""
    folder = tmp_path / "f"
    folder.mkdir()
    (folder / "file").write_text("x")
    monkeypatch.chdir(tmp_path)
    for name in ("f", "f/", "f/file", "f/not/yet", "f/./not", "new", "./new"):
        assert can_write(name), name
        assert can_write(Path(name)), name
    (folder / "file").chmod(0o444)
    folder.chmod(0o555)
    try:
        for name in ("f", "f/file", "f/new", "f/new/deeper", "f//new/"):
            assert not can_write(name), name
            assert not can_write(Path(name)), name
    finally:
        folder.chmod(0o755)
