"""An auditor's read-only copy of a home: every reading command works on it,
writes nothing into it, and reports what a writable copy would.

Root runs the tests, and root passes permission checks: on a ``chmod -R a-w``
copy only mltrail's own care keeps it from writing (ADR 0012). Every file's and
folder's name, mode, size, mtime, ctime and SHA-256 are compared before and
after each command. tests/e2e/test_read_only_home.py reads `verify`, `log`,
`show`, `runs`, `trace`, `lineage`, `model history`, `keys list`, `prove` and
`diff` four ways; here the rest of what an auditor runs, once each.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from cli_runner import mltrail
from home_setup import (
    TRAIN_DATA,
    read_only_mount,
    trained_base,
    tree_listing,
    triggers_dropped,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


CLEAN_ENV = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
PROMOTE = ("model", "promote", "model.bin", "--stage", "production", "--note", "ok")


@pytest.fixture(scope="module")
def audited(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Path, Path, Path]]:
    """(home, project, key file): a run with data and a model, the model
    promoted, a note; the ledger's public key exported outside the home."""
    if os.geteuid() != 0:
        pytest.skip("needs root: root passes permission checks, which is the point")
    tmp = tmp_path_factory.mktemp("auditor")
    (tmp / "gitconfig").write_text("[init]\n\tdefaultBranch = main\n")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("GIT_CONFIG_GLOBAL", str(tmp / "gitconfig"))
        mp.setenv("GIT_CONFIG_NOSYSTEM", "1")
        mp.setenv("GIT_CEILING_DIRECTORIES", str(tmp))
        for role in ("AUTHOR", "COMMITTER"):
            mp.setenv(f"GIT_{role}_NAME", "Test")
            mp.setenv(f"GIT_{role}_EMAIL", "test@example.com")
        home, project, _ = trained_base(
            tmp, TRAIN_DATA, "test.mltrail.local/auditor",
            "--data", "train=data", "--output", "model.bin",
        )  # fmt: skip
        for args in (PROMOTE, ("append", "--kind", "note", "--body", '{"text": "a"}')):
            done = mltrail(home, *args, cwd=project)
            assert done.returncode == 0, (args, done.stderr)
        key = tmp / "ledger.vkey"
        exported = mltrail(home, "keys", "export", "--format", "vkey", cwd=project)
        assert exported.returncode == 0, exported.stderr
        key.write_text(exported.stdout)
        yield home, project, key


def _read_only_copy(home: Path, copy: Path) -> Path:
    shutil.copytree(home, copy)
    subprocess.run(["chmod", "-R", "a-w", str(copy)], check=True)
    return copy


@pytest.fixture(scope="module")
def auditor_copy(
    audited: tuple[Path, Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Path]:
    """A ``chmod -R a-w`` copy of the audited home, shared by the reads (none
    may change it; each is checked)."""
    copy = _read_only_copy(audited[0], tmp_path_factory.mktemp("copy") / "home")
    yield copy
    subprocess.run(["chmod", "-R", "u+w", str(copy)], check=True)


# (arguments, exit code); {key} is the exported key, {out} a folder outside
READS = [
    (("verify", "--trust-key", "{key}", "--json"), 0),
    (("logs", "base"), 0),
    (("flags", "--all"), 0),
    (("sources", "list"), 0),
    (("report", "model.bin", "-o", "{out}/report.md", "--trust-key", "{key}"), 0),
    (("export", "bundle", "model.bin", "-o", "{out}/bundle.json"), 0),
    (("export", "intoto", "base", "-o", "{out}/intoto.json"), 0),
    (("reproduce", "base", "--check"), 0),
    # it only writes index.db: refused as every writer is (it wrote it as root)
    (("reindex",), 4),
]


@pytest.mark.parametrize(
    ("args", "code"), [pytest.param(a, c, id=" ".join(a[:2])) for a, c in READS]
)
def test_an_auditor_command_writes_nothing_into_a_read_only_copy(
    audited: tuple[Path, Path, Path],
    auditor_copy: Path,
    tmp_path: Path,
    args: tuple[str, ...],
    code: int,
) -> None:
    """Each command works on a ``chmod -R a-w`` copy read by root and changes
    nothing in it. ``reindex`` rewrote ``index.db`` there (exit 0)."""
    _, project, key = audited
    before = tree_listing(auditor_copy)
    filled = [a.format(key=key, out=tmp_path) for a in args]
    done = mltrail(auditor_copy, *filled, cwd=project)
    assert done.returncode == code, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    if code == 4:
        assert "the ledger home is read-only" in done.stderr
    assert tree_listing(auditor_copy) == before


def test_verify_of_a_read_only_copy_reports_an_edited_index(
    audited: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A row edited in the copy's ``index.db``: ``verify --trust-key`` warns of
    it on a writable copy, and said nothing on a read-only one (the comparison
    was skipped where the index is built in memory). Nothing is written."""
    home, project, key = audited
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    conn = sqlite3.connect(copy / "index.db")
    try:
        assert conn.execute("UPDATE runs SET user = 'mallory'").rowcount == 1
        conn.commit()
    finally:
        conn.close()
    subprocess.run(["chmod", "-R", "a-w", str(copy)], check=True)
    try:
        before = tree_listing(copy)
        done = mltrail(copy, "verify", "--trust-key", str(key), cwd=project)
        assert done.returncode == 0, (done.stdout, done.stderr)
        assert "the derived index index.db disagrees with the records" in done.stdout
        assert "(runs: 1 row(s) no record gives" in done.stdout
        assert tree_listing(copy) == before
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(copy)], check=True)


@pytest.mark.parametrize(
    "pipes", [("ledger.db",), ("ledger.db-wal", "ledger.db-shm")], ids=["db", "wal"]
)
def test_a_named_pipe_as_the_store_hangs_no_auditor_command(
    audited: tuple[Path, Path, Path], tmp_path: Path, pipes: tuple[str, ...]
) -> None:
    """Whoever could write the home left named pipes for ``ledger.db`` (read as
    root on a ``chmod -R a-w`` copy), or for its ``-wal`` and ``-shm`` (through a
    read-only mount of a copy that keeps its write bits): SQLite opened them
    without ``O_NONBLOCK`` and ``runs`` and ``verify`` waited for a writer for
    good. They now refuse the file (exit 4) and write nothing."""
    home, project, key = audited
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    for name in pipes:
        (copy / name).unlink(missing_ok=True)
        os.mkfifo(copy / name)
    if pipes == ("ledger.db",):
        subprocess.run(["chmod", "-R", "a-w", str(copy)], check=True)
        read, prefix = copy, ()
    else:
        read, prefix = tmp_path / "mnt", read_only_mount(copy, tmp_path / "mnt")
    try:
        before = tree_listing(copy)
        for args in (("runs",), ("verify", "--trust-key", str(key))):
            done = subprocess.run(
                [*prefix, sys.executable, "-m", "mltrail", *args], cwd=project,
                env={**CLEAN_ENV, "MLTRAIL_HOME": str(read)},
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            assert done.returncode == 4, (args, done.stdout, done.stderr)
            assert f"{pipes[0]}: not a regular file" in done.stderr
        assert tree_listing(copy) == before
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(copy)], check=True)


def test_a_read_that_meets_tampering_verifies_without_writing(
    audited: tuple[Path, Path, Path], tmp_path: Path
) -> None:
    """A read that meets a store error opens the home again and verifies it
    (``raise_if_tampered``): on a read-only copy missing its frontier Merkle
    node it says TAMPERED (exit 3) and writes nothing."""
    home, project, _ = audited
    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    with triggers_dropped(copy / "ledger.db") as conn:
        conn.execute(
            "DELETE FROM merkle_nodes WHERE level = "
            "(SELECT max(level) FROM merkle_nodes) AND idx = 0"
        )
    subprocess.run(["chmod", "-R", "a-w", str(copy)], check=True)
    try:
        before = tree_listing(copy)
        for args in (("show", "base"), ("runs", "--json")):
            done = mltrail(copy, *args, cwd=project)
            assert done.returncode == 3, (args, done.stdout, done.stderr)
            assert "TAMPERED" in done.stderr
        assert tree_listing(copy) == before
    finally:
        subprocess.run(["chmod", "-R", "u+w", str(copy)], check=True)
