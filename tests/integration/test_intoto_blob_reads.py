"""``export intoto`` reads a run's manifests after the verification: a manifest
blob replaced or deleted in ``ledger.db`` meanwhile (triggers dropped, by
someone who can write the home) is refused, never signed into a statement that
silently lacks the files; one purged by a verified purge record is stated as
purged (ADR 0024, amendment of 2026-12-08)."""

from __future__ import annotations

import base64
import json
from typing import TYPE_CHECKING, Any

import pytest

from cli_runner import mltrail
from home_setup import TRAIN_OUT, trained_base, triggers_dropped
from mltrail.cli.printing import derived_index
from mltrail.errors import IntegrityError
from mltrail.integrations.intoto import export_intoto
from mltrail.ledger.home import open_home, verify_pinned

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.usefixtures("isolated_git")


@pytest.fixture
def trained(tmp_path: Path) -> tuple[Path, Path, str]:
    """(home, project, the digest of the output folder's manifest blob)."""
    return trained_base(tmp_path, {"train.py": TRAIN_OUT},
                        "test.mltrail.local/intoto-blobs", "--output", "out")  # fmt: skip


def _blobs(home: Path, sql: str, *args: object) -> None:
    """``sql`` on ledger.db's blobs, its triggers dropped (and put back)."""
    with triggers_dropped(home / "ledger.db") as conn:
        conn.execute(sql, args)


def _statement(envelope: dict[str, Any]) -> dict[str, Any]:
    return json.loads(base64.b64decode(envelope["payload"]))


def _export_after(home: Path, tamper: Any) -> dict[str, Any]:
    """``export intoto`` of run ``base`` as the CLI makes it (verified and
    pinned, its index derived, then the run read), ``tamper`` run before the
    run is read."""
    opened = open_home(home, writable=False)
    try:
        verification = verify_pinned(opened)
        assert verification.ok
        index = derived_index(opened)
        tamper()
        try:
            return export_intoto(opened, index, "base", verification=verification)
        finally:
            index.close()
    finally:
        opened.close()


def test_the_intact_manifest_gives_a_subject_per_file(trained):
    home, _, _ = trained
    statement = _statement(_export_after(home, lambda: None))
    assert sorted(s["name"] for s in statement["subject"]) == ["out/a.bin", "out/b.bin"]


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE blobs SET data = CAST('{}' || char(10) AS BLOB) WHERE digest = ?",
        "DELETE FROM blobs WHERE digest = ?",
    ],
    ids=["replaced", "deleted"],
)
def test_a_manifest_changed_after_the_verification_signs_nothing(trained, sql):
    """Before: the error was swallowed, and the key signed a statement whose
    subject was the folder's dataset id, its files left out."""
    home, _, digest = trained
    with pytest.raises(IntegrityError, match=digest):
        _export_after(home, lambda: _blobs(home, sql, digest))


def test_a_purged_manifest_is_stated_as_purged(trained):
    home, project, digest = trained
    proc = mltrail(home, "purge", digest, "--reason", "erasure request 12",
                   "--policy", "GDPR Art. 17", cwd=project)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (subject,) = _statement(_export_after(home, lambda: None))["subject"]
    assert subject["name"] == "out"
    assert "mltrailDataset" in subject["digest"]
    purged = subject["annotations"]["manifestPurged"]
    assert purged["blob"] == digest
    assert purged["reason"] == "erasure request 12"
    assert purged["policy"] == "GDPR Art. 17"
