"""The audit API's lineage answers read a dataset's manifest blob to check the
index's ``contains`` edges against it, and to tell which runs read a folder's
files: a manifest replaced in ``ledger.db`` (by someone who can write the
home) is refused (IntegrityError), never read as the dataset's files
(ADR 0010, amendment of 2026-12-08). ``mltrail reproduce`` refuses a replaced
blob too, rather than call it not recorded (ADR 0014, amendment of
2026-12-08)."""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
from typing import TYPE_CHECKING, Any

import pytest

import mltrail
from cli_runner import mltrail as run_cli
from home_setup import TRAIN_OUT, trained_base, triggers_dropped, values
from mltrail.errors import InputError, IntegrityError

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("isolated_git")

SHA_A = hashlib.sha256(b"a").hexdigest()
SHA_EVIL = hashlib.sha256(b"evil").hexdigest()


def cli(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(home, *args, cwd=cwd)


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path, str]:
    """(home, project, the digest of the manifest of the folder run ``base``
    wrote: out/a.bin, out/b.bin)."""
    return trained_base(tmp_path, {"train.py": TRAIN_OUT},
                        "test.mltrail.local/audit-blobs", "--output", "out")  # fmt: skip


def _blob(home: Path, digest: str) -> bytes:
    """Blob ``digest``'s bytes as stored in ledger.db (read behind the home)."""
    conn = sqlite3.connect(home / "ledger.db")
    try:
        (data,) = conn.execute(
            "SELECT data FROM blobs WHERE digest = ?", (digest,)
        ).fetchone()
    finally:
        conn.close()
    return bytes(data)


def _replace_file_in_manifest(home: Path, digest: str) -> None:
    """out/a.bin's sha256 in the manifest blob swapped for another file's (a
    manifest still, canonical and sorted), triggers dropped."""
    data = _blob(home, digest)
    assert SHA_A.encode() in bytes(data)
    _set_blob(home, digest, bytes(data).replace(SHA_A.encode(), SHA_EVIL.encode()))


def _set_blob(home: Path, digest: str, data: bytes) -> None:
    """Blob ``digest``'s bytes in ledger.db set to ``data``, triggers dropped."""
    with triggers_dropped(home / "ledger.db") as conn:
        conn.execute("UPDATE blobs SET data = ? WHERE digest = ?", (data, digest))


def _files(graph: Any) -> set[str]:
    return {n.removeprefix("file:") for n in graph.nodes if n.startswith("file:")}


def test_lineage_lists_the_manifests_files(trained):
    home, project, _ = trained
    os.chdir(project)
    with mltrail.audit(home) as audit:
        assert "run:" in " ".join(audit.lineage(f"file:{SHA_A}").nodes)


def test_lineage_refuses_a_replaced_manifest(trained):
    """Before: the index's edge to out/a.bin was checked against the replaced
    bytes, which do not list it, so the index was rebuilt and out/a.bin's
    lineage answered empty, nothing said."""
    home, project, digest = trained
    _replace_file_in_manifest(home, digest)
    os.chdir(project)
    with mltrail.audit(home) as audit, pytest.raises(IntegrityError, match=digest):
        audit.lineage(f"file:{SHA_A}")


def test_a_fresh_index_reads_no_replaced_manifest(trained):
    """A guard: an index derived anew (an auditor's copy, ``mltrail
    reindex``) takes nothing from bytes that do not hash to their address, so
    the forged file is no file of the run's."""
    home, project, digest = trained
    _replace_file_in_manifest(home, digest)
    (home / "index.db").unlink()
    os.chdir(project)
    with mltrail.audit(home) as audit, pytest.raises(InputError, match="no model"):
        audit.lineage(f"file:{SHA_EVIL}")


def test_folder_reads_refuse_a_replaced_manifest(trained):
    """A run that read a folder holding one another run wrote (``big``, which
    holds ``big/feat``) is downstream of that run because the manifest of its
    read lists the written files. Before: that manifest, replaced by one that
    lists none of them, was read as it was, and the writer dropped out of the
    reader's lineage, nothing said."""
    home, project, _ = trained
    (project / "big").mkdir()
    (project / "big" / "c.txt").write_text("c")
    (project / "feat.py").write_text(
        "import pathlib\n"
        "pathlib.Path('big/feat').mkdir()\n"
        "pathlib.Path('big/feat/a.bin').write_text('fa')\n"
    )
    (project / "use.py").write_text("print('used')\n")
    for args in (
        ("--name", "feat", "--output", "big/feat", "--", sys.executable, "feat.py"),
        ("--name", "next", "--data", "train=big", "--", sys.executable, "use.py"),
    ):
        proc = cli(home, project, "run", "-q", *args)
        assert proc.returncode == 0, proc.stderr
    shown = json.loads(cli(home, project, "show", "next", "--json").stdout)
    (read,) = {d["blob"] for d in values(shown, "manifest") if isinstance(d, dict)}
    os.chdir(project)
    with mltrail.audit(home) as audit:
        writer = audit.lineage("feat").root
        assert writer in audit.lineage("next").nodes
    data = _blob(home, read)
    sha = hashlib.sha256(b"fa").hexdigest().encode()
    assert sha in bytes(data)
    _set_blob(home, read, bytes(data).replace(sha, SHA_EVIL.encode()))
    with mltrail.audit(home) as audit, pytest.raises(IntegrityError, match=read):
        audit.lineage("next")


def test_reproduce_refuses_a_replaced_blob(trained, tmp_path):
    """``mltrail reproduce`` (and the audit API's ``diff``, through the same
    reader) read the run's package list blob through ``Ledger.get_blob``, which
    checks its hash; before, the IntegrityError was swallowed into "no
    package list recorded", exit 0."""
    home, project, _ = trained
    shown = json.loads(cli(home, project, "show", "base", "--json").stdout)
    (digest,) = {
        d["list"]["blob"]
        for d in values(shown, "packages")
        if isinstance(d, dict) and isinstance(d.get("list"), dict)
    }
    _set_blob(home, digest, b"numpy==0.0.1\n")
    out = tmp_path / "repro"
    proc = cli(home, project, "reproduce", "base", "--out", str(out))
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert digest in proc.stderr
    assert "no package list recorded" not in proc.stdout + proc.stderr
