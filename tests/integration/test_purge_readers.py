"""After a purge of recorded runs' blobs: every reader says so, no copy is left.

Two recorded runs (a `mltrail run` with a config, data, output and logs, and a
`mltrail step` writing a folder) have every blob purged; then `show`, `diff`,
`reproduce`, `trace`, `lineage`, `runs`, `log` and `sources check` run as a user
types them: clear messages, never a traceback. The hash cache and the derived
index held copies of purged content, and must not any more.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from cli_runner import mltrail as run_cli
from mltrail.capture.data.hashcache import HashCache, default_cache_path
from mltrail.capture.data.treefiles import trees_folder
from mltrail.cli import data_cmd
from mltrail.ledger.home import init_home

pytestmark = pytest.mark.usefixtures("isolated_git")

PATIENT = "patient-XYZZY-4711.csv"


def mltrail(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(home, *args, cwd=cwd)


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


def raw(*paths: Path) -> bytes:
    """The bytes of SQLite files and their WALs, as a disk reader sees them, and
    of the hash cache's tree files beside them."""
    out = b""
    for path in paths:
        for name in (path, Path(f"{path}-wal")):
            out += name.read_bytes() if name.exists() else b""
        trees = Path(trees_folder(str(path)))
        if trees.is_dir():
            out += b"".join(f.read_bytes() for f in sorted(trees.iterdir()))
    return out


@pytest.fixture
def recorded(tmp_path: Path) -> tuple[Path, Path]:
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    (project / "train.py").write_text("import sys\nprint('training', sys.argv[1:])\n")
    (project / "clean.py").write_text(
        "import pathlib\npathlib.Path('clean').mkdir(exist_ok=True)\n"
        "pathlib.Path('clean/rows.csv').write_text('x\\n1\\n')\n"
    )
    (project / "conf.yaml").write_text("lr: 0.01\n")
    data = project / "data"
    data.mkdir()
    (data / PATIENT).write_text("x,y\n1,0\n")
    (data / "other.csv").write_text("x,y\n2,1\n")
    git(project, "init", "-q")
    git(project, "add", "-A")  # the data too: untracked paths are listed inline
    git(project, "commit", "-qm", "first")
    init_home(home, origin="test.mltrail.local/purge-readers", env={})
    for args in (
        ["run", "-q", "--name", "base", "--data", "train=data", "--", sys.executable,
         "train.py", "--config", "conf.yaml"],
        ["step", "-q", "--name", "clean", "--in", "data", "--out", "clean", "--",
         sys.executable, "clean.py"],
        ["run", "-q", "--name", "again", "--data", "train=data", "--", sys.executable,
         "train.py", "--config", "conf.yaml"],
    ):  # fmt: skip
        proc = mltrail(home, project, *args)
        assert proc.returncode == 0, proc.stderr
    return project, home


def _blobs(home: Path, project: Path) -> list[str]:
    records = json.loads(mltrail(home, project, "log", "--json").stdout)
    found = re.findall(r'"blob": "(sha256:[0-9a-f]{64})"', json.dumps(records))
    return list(dict.fromkeys(found))


def test_every_reader_copes_with_purged_blobs(recorded: tuple[Path, Path]) -> None:
    project, home = recorded
    runs = json.loads(mltrail(home, project, "runs", "--json").stdout)
    first, last = runs[0]["id"], runs[-1]["id"]
    blobs = _blobs(home, project)
    assert len(blobs) >= 6  # diff, packages, config, manifests, logs, script
    for blob in blobs:
        proc = mltrail(
            home, project, "purge", blob, "--reason", "audit", "--policy", "p"
        )
        assert proc.returncode == 0, proc.stderr
    report = json.loads(mltrail(home, project, "verify", "--json").stdout)
    assert report["ok"], report["problems"]
    assert report["verdict"].endswith(f"; {len(blobs)} blobs purged by policy")
    record = json.loads(mltrail(home, project, "show", "2", "--json").stdout)
    assert all(v.startswith("<purged by policy") for v in record["blobs"].values())
    out = project.parent / "repro"
    for args in (
        ["show", first], ["show", "2"], ["show", first, "--json"],
        ["diff", first, last], ["diff", first, last, "--json"],
        ["reproduce", first, "--out", str(out)], ["reproduce", first, "--check"],
        ["lineage", "clean", "--up"], ["runs"], ["log"], ["sources", "list"],
    ):  # fmt: skip
        proc = mltrail(home, project, *args)
        assert "Traceback" not in proc.stderr, (args, proc.stderr)
        assert proc.returncode in (0, 1), (args, proc.stderr)
    warned = mltrail(home, project, "reproduce", first, "--out", str(out / "2"))
    assert "not in the ledger" in warned.stdout + warned.stderr
    # a file known only from a purged manifest cannot be traced any more
    traced = mltrail(home, project, "trace", "clean/rows.csv")
    assert traced.returncode == 2
    assert "was the manifest listing it purged?" in traced.stderr


def test_the_hash_cache_and_the_index_keep_no_purged_content(
    recorded: tuple[Path, Path],
) -> None:
    project, home = recorded
    cache = default_cache_path(home)
    # `mltrail data hash` keeps the folder's whole manifest in the cache
    with HashCache(cache, racy_window_s=0) as opened:
        data_cmd._hash_one(str(project / "data"), opened, False)
    assert PATIENT.encode() in raw(cache)  # the checks below can fail
    assert mltrail(home, project, "runs").returncode == 0  # the index is built
    index = home / "index.db"
    data = json.loads(
        mltrail(home, project, "log", "--kind", "run.data", "--json").stdout
    )
    manifest = data[0]["entry"]["body"]["manifest"]["blob"]
    step = json.loads(
        mltrail(home, project, "log", "--kind", "run.step", "--json").stdout
    )
    written = step[0]["entry"]["body"]["outputs"][0]
    assert _output_files(index, written["dataset"]) == 1

    proc = mltrail(home, project, "purge", manifest, "--reason", "a name", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["purged"][0]["cache_entries_erased"] == 1
    assert PATIENT.encode() not in raw(cache, home / "ledger.db")
    proc = mltrail(home, project, "purge", written["manifest"]["blob"], "--reason", "x")
    assert proc.returncode == 0, proc.stderr
    assert _output_files(index, written["dataset"]) == 0
    wal = Path(f"{index}-wal")
    assert not wal.exists() or wal.stat().st_size == 0
    # hashing the folder again puts its manifest back; --resume clears it
    with HashCache(cache, racy_window_s=0) as opened:
        data_cmd._hash_one(str(project / "data"), opened, False)
    assert PATIENT.encode() in raw(cache)
    assert mltrail(home, project, "purge", "--resume").returncode == 0
    assert PATIENT.encode() not in raw(cache)


def _output_files(index: Path, dataset: str) -> int:
    conn = sqlite3.connect(index)
    try:
        query = "SELECT count(*) FROM output_files WHERE dataset = ?"
        return int(conn.execute(query, (dataset,)).fetchone()[0])
    finally:
        conn.close()
