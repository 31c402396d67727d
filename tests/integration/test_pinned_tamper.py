"""Commands that verify, then read what they verified (``verify_pinned``), say
tampering (exit 3) when the home was tampered with, never only "run it again"
or "the store is corrupt" (exit 4) where ``mltrail verify`` says 3.

The attacker writes the home: a manifest blob deleted by hand (triggers
dropped), and a purge record naming it appended at the end of ``ledger.db``,
unsigned by the ledger key, to pass the deletion off as a purge by policy
(``PurgedSinceVerifiedError`` is picked by a purge record beyond the records
verified). The next verification reads that record: it is not one, and each
command says so.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
from typing import TYPE_CHECKING

import pytest

from cli_runner import mltrail as run_cli
from home_setup import TRAIN_DATA, trained_base, triggers_dropped
from mltrail.core.canonical import (
    canonical_bytes,
    compute_leaf_hash,
    compute_record_hash,
)
from mltrail.core.merkle import hash_children

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("isolated_git")

COMMANDS = (
    ("verify",),
    ("report", "model.bin", "--json"),
    ("export", "openlineage"),
)


def mltrail(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return run_cli(home, *args, cwd=cwd)


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path, str]:
    """(home, project, the digest of the training data's manifest blob)."""
    home, project, digest = trained_base(
        tmp_path, TRAIN_DATA, "test.mltrail.local/pinned-tamper",
        "--data", "train=data", "--output", "model.bin",
    )  # fmt: skip
    for args in COMMANDS:
        proc = mltrail(home, project, *args)
        assert proc.returncode == 0, (args, proc.stderr)
    return home, project, digest


def _forge(home: Path, digest: str, *, nodes: bool) -> None:
    """Delete blob ``digest`` and append an unsigned purge record naming it
    (with the Merkle nodes it completes when ``nodes``), triggers dropped."""
    with triggers_dropped(home / "ledger.db") as conn:
        conn.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
        seq, last = conn.execute(
            "SELECT seq, CAST(record AS BLOB) FROM records ORDER BY seq DESC LIMIT 1"
        ).fetchone()
        entry = dict(json.loads(last)["entry"])
        entry.pop("run", None)
        entry["kind"] = "blob.purged"
        entry["body"] = {"digest": digest, "size": 10, "reason": "retention",
                         "policy": "p", "referenced_by": []}  # fmt: skip
        data = canonical_bytes(
            {"entry": entry, "prev": compute_record_hash(last).hex(), "seq": seq + 1}
        )
        conn.execute(
            "INSERT INTO records (seq, hash, kind, run, time, record) "
            "VALUES (?, ?, 'blob.purged', NULL, ?, ?)",
            (seq + 1, compute_record_hash(data), entry["time"], data),
        )
        if nodes:  # the leaf, and each node it completes
            leaf, level, index = compute_leaf_hash(data), 0, seq + 1
            while True:
                conn.execute(
                    "INSERT INTO merkle_nodes VALUES (?, ?, ?)", (level, index, leaf)
                )
                if index % 2 == 0:
                    break
                (left,) = conn.execute(
                    "SELECT hash FROM merkle_nodes WHERE level = ? AND idx = ?",
                    (level, index - 1),
                ).fetchone()
                leaf, level, index = (
                    hash_children(bytes(left), leaf),
                    level + 1,
                    index // 2,
                )


@pytest.mark.parametrize("nodes", [True, False], ids=["with-nodes", "no-nodes"])
def test_a_forged_purge_of_a_deleted_blob_is_tampering(trained, nodes):
    """Every command exits 3 and names the record. Without the Merkle nodes
    the forged record completes, ``report`` and ``export`` said "Merkle node
    ... is missing: the store is corrupt" (exit 4) on every run, where
    ``verify`` said TAMPERED (its walk reports such rows)."""
    home, project, digest = trained
    _forge(home, digest, nodes=nodes)
    for args in COMMANDS:
        proc = mltrail(home, project, *args)
        assert proc.returncode == 3, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
    shown = mltrail(home, project, "verify", "--json")
    problems = json.loads(shown.stdout)["problems"]
    assert any(f"{digest} referenced" in str(p) for p in problems), problems


def _delete_frontier_node(home: Path) -> None:
    """The highest stored Merkle node, deleted from ``ledger.db`` (its trigger
    dropped): the store can no longer build its head."""
    conn = sqlite3.connect(home / "ledger.db")
    try:
        conn.execute("DROP TRIGGER merkle_nodes_no_DELETE")
        conn.execute(
            "DELETE FROM merkle_nodes WHERE level = "
            "(SELECT max(level) FROM merkle_nodes) AND idx = 0"
        )
        conn.commit()
    finally:
        conn.close()


def test_a_deleted_merkle_node_is_tampering(trained):
    """A frontier Merkle node deleted from ``ledger.db``: ``verify`` said
    TAMPERED, ``report`` and ``export`` "the store is corrupt" (exit 4)."""
    home, project, _ = trained
    _delete_frontier_node(home)
    for args in COMMANDS:
        proc = mltrail(home, project, *args)
        assert proc.returncode == 3, (args, proc.stdout, proc.stderr)
        assert "Merkle node" in proc.stdout + proc.stderr


def test_a_bundle_export_of_a_ledger_missing_a_merkle_node_is_tampering(trained):
    """``mltrail export`` (a proof bundle) of a home whose frontier Merkle node
    was deleted said "the store is corrupt" (exit 4) where ``verify`` says
    TAMPERED (exit 3); it writes no bundle."""
    home, project, _ = trained
    _delete_frontier_node(home)
    out = project / "bundle.json"
    proc = mltrail(home, project, "export", "model.bin", "-o", str(out))
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    assert "Merkle node" in proc.stdout + proc.stderr
    assert not out.exists()


READS = (
    ("show", "base"),
    ("show", "1"),
    ("runs",),
    ("logs", "base"),
    ("diff", "base", "base"),
    ("trace", "model.bin"),
    ("lineage", "model.bin"),
)


def test_reading_commands_of_a_ledger_missing_a_merkle_node_say_tampered(trained):
    """Commands that read the store (most through the derived index) said "the
    store is corrupt" (exit 4) of a home whose frontier Merkle node was deleted,
    where ``verify`` says TAMPERED (exit 3); they now say what ``verify`` says."""
    home, project, _ = trained
    for args in READS:  # intact: answered as ever
        proc = mltrail(home, project, *args)
        assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    _delete_frontier_node(home)
    for args in READS:
        proc = mltrail(home, project, *args)
        assert proc.returncode == 3, (args, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr
        assert "TAMPERED" in proc.stderr, (args, proc.stderr)
        assert "Merkle node" in proc.stderr, (args, proc.stderr)


@pytest.mark.parametrize("where", ["index", "seal-target"])
def test_a_store_error_beside_the_ledger_verifies_nothing(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    where: str,
) -> None:
    """A broken derived index or an unreachable seal target says nothing of the
    ledger: the command verified the whole ledger (every signature: minutes
    on a large one) before saying the index or the seal target failed."""
    from cli_in_process import in_process_cli
    from mltrail.ledger.home import Home

    cli = in_process_cli(capsys, monkeypatch, tmp_path)
    cli("init")
    cli("runs")
    verified: list[int] = []
    original = Home.verify
    monkeypatch.setattr(
        Home, "verify", lambda self, **kw: verified.append(1) or original(self, **kw)
    )
    if where == "index":
        home = tmp_path / "home"
        for name in ("index.db-wal", "index.db-shm"):
            (home / name).unlink(missing_ok=True)
        (home / "index.db").write_bytes(b"not a database " * 500)
        cli("runs", code=4)
    else:
        (tmp_path / "a-file").write_text("")
        cli("seal", "--to", str(tmp_path / "a-file" / "seals"), code=4)
    assert verified == []
