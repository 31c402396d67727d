"""``report`` reads a run's dataset manifests after the verification, as ``export
intoto`` does (tests/integration/test_intoto_blob_reads.py): a manifest blob
replaced or deleted in ``ledger.db`` meanwhile (triggers dropped, by someone who
can write the home) fails the report (exit 3), never becomes a line of text in
the report of a ledger verified intact; one purged by a verified purge record
is said to be purged (ADR 0019, amendment of 2026-12-08)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from cli_runner import mltrail
from home_setup import TRAIN_DATA, trained_base, triggers_dropped
from mltrail.audit.refs import resolve_node
from mltrail.cli.printing import derived_index
from mltrail.errors import IntegrityError
from mltrail.ledger.home import open_home, verify_pinned
from mltrail.report import gather_report

if TYPE_CHECKING:
    from collections.abc import Callable

pytestmark = pytest.mark.usefixtures("isolated_git")

REPLACED = "UPDATE blobs SET data = CAST('{}' || char(10) AS BLOB) WHERE digest = ?"
DELETED = "DELETE FROM blobs WHERE digest = ?"


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path, str]:
    """(home, project, the digest of the training data's manifest blob)."""
    return trained_base(tmp_path, TRAIN_DATA, "test.mltrail.local/report-blobs",
                        "--data", "train=data", "--output", "model.bin")  # fmt: skip


def _blobs(home: Path, sql: str, digest: str) -> None:
    with triggers_dropped(home / "ledger.db") as conn:
        conn.execute(sql, (digest,))


def _report_after(home: Path, project: Path, tamper: Callable[[], None]) -> Any:
    """The report of ``model.bin`` as the CLI gathers it (verified and pinned,
    its index derived, the model resolved), ``tamper`` run before it is
    gathered."""
    opened = open_home(home, writable=False)
    try:
        verification = verify_pinned(opened)
        assert verification.ok
        index = derived_index(opened)
        try:
            node = resolve_node(index, "model.bin", cwd=project)
            tamper()
            return gather_report(opened, index, node, verification=verification)
        finally:
            index.close()
    finally:
        opened.close()


def test_the_intact_manifest_lists_its_files(trained):
    home, project, digest = trained
    (data,) = _report_after(home, project, lambda: None)["data"]
    assert data["manifest"] == digest
    assert sorted(f["path"] for f in data["file_hashes"]) == ["a.csv", "b.csv"]


@pytest.mark.parametrize("sql", [REPLACED, DELETED], ids=["replaced", "deleted"])
def test_a_manifest_changed_after_the_verification_fails_the_report(trained, sql):
    """Before: the error became the manifest's line in the report of a ledger
    verified intact ("blob ... is not in this ledger"), exit 0."""
    home, project, digest = trained
    with pytest.raises(
        IntegrityError, match=f"refusing to write the report: .*{digest}"
    ):
        _report_after(home, project, lambda: _blobs(home, sql, digest))


def test_a_manifest_changed_before_the_verification_is_a_line_of_the_report(trained):
    """The report of a ledger that is not intact is still written, headed so:
    its verification named the blob, and the manifest's line says what it is."""
    home, project, digest = trained
    _blobs(home, DELETED, digest)
    proc = mltrail(home, "report", "model.bin", "--json", cwd=project)
    assert proc.returncode == 3, proc.stderr
    (data,) = json.loads(proc.stdout)["data"]
    assert data["manifest"] == f"blob {digest} is not in this ledger"


def test_a_purged_manifest_is_said_to_be_purged(trained):
    home, project, digest = trained
    proc = mltrail(home, "purge", digest, "--reason", "erasure request 12",
                   "--policy", "GDPR Art. 17", cwd=project)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (data,) = _report_after(home, project, lambda: None)["data"]
    assert data["file_hashes"] == []
    assert data["manifest"].startswith(f"blob {digest} was purged (seq ")
    assert "erasure request 12" in data["manifest"]
