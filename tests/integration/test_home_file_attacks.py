"""Attacks through the files of a home other than its records.

The attacker can write the whole home (``ledger.json``, the witness file, its
folder, the key folder) and holds the ledger key kept there; the auditor holds a
copy of the home and the public key printed by ``mltrail keys export``. A copy
that is a true earlier state (a rollback) or a fork by that key verifies against
the key alone; verify says so (ADR 0003, amendment of 2026-12-07). What these
tests pin is that nothing written inside the home can make verify call one of
its anchors "outside the home", and so silence that warning: an anchor counts as
kept elsewhere only when the auditor named it (a flag, an environment
variable), and the path named passes through no link inside the home.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from cli_runner import mltrail
from tsa_server import TsaServer, make_tsa_ca

ORIGIN = "example.org/home-files"


def verify(home: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    proc = mltrail(home, "verify", "--json", *args, env=env)
    assert proc.returncode in (0, 3), proc.stderr
    report = json.loads(proc.stdout)
    report["exit"] = proc.returncode
    return report


def anchors_warning(report: dict[str, Any]) -> list[str]:
    return [p["message"] for p in report["problems"] if p["code"] == "anchors"]


def append(home: Path, text: str, env: dict[str, str] | None = None) -> None:
    body = json.dumps({"text": text})
    proc = mltrail(home, "append", "--kind", "note", "--body", body, env=env)
    assert proc.returncode == 0, proc.stderr


@pytest.fixture
def rolled_back(tmp_path: Path) -> tuple[Path, str]:
    """A home rolled back to a copy taken before its last record, and the key id
    the auditor pinned."""
    home = tmp_path / "home"
    assert mltrail(home, "init", "--origin", ORIGIN).returncode == 0
    for i in range(3):
        append(home, f"note {i}")
    key_id = mltrail(home, "keys", "export", "--format", "id").stdout.strip()
    before = tmp_path / "before"
    shutil.copytree(home, before)
    append(home, "model withdrawn by the risk committee")
    shutil.rmtree(home)
    shutil.copytree(before, home)
    return home, key_id


def _settings(home: Path, **changes: str) -> None:
    path = home / "ledger.json"
    path.write_text(json.dumps({**json.loads(path.read_text()), **changes}))


def test_a_rollback_verified_with_the_pinned_key_alone_is_named_as_such(
    rolled_back: tuple[Path, str],
) -> None:
    home, key_id = rolled_back
    report = verify(home, "--trust-key", key_id)
    assert report["exit"] == 0  # the limit: a true earlier state
    assert anchors_warning(report)


def test_a_witness_path_in_ledger_json_is_not_an_anchor_outside_the_home(
    rolled_back: tuple[Path, str], tmp_path: Path
) -> None:
    home, key_id = rolled_back
    planted = tmp_path / "planted" / "witness.cp"  # any folder the attacker writes
    planted.parent.mkdir()
    shutil.copy(home / "witness" / "checkpoint", planted)
    _settings(home, witness=str(planted))
    report = verify(home, "--trust-key", key_id)
    assert report["exit"] == 0
    [witness] = [a for a in report["anchors"] if "witnessed" in a["description"]]
    assert witness["external"] is False
    assert anchors_warning(report)


def test_a_witness_file_linked_out_of_the_home_is_not_an_anchor_outside_it(
    rolled_back: tuple[Path, str], tmp_path: Path
) -> None:
    home, key_id = rolled_back
    planted = tmp_path / "planted.cp"
    shutil.copy(home / "witness" / "checkpoint", planted)
    (home / "witness" / "checkpoint").unlink()
    (home / "witness" / "checkpoint").symlink_to(planted)
    report = verify(home, "--trust-key", key_id)
    [witness] = [a for a in report["anchors"] if "witnessed" in a["description"]]
    assert witness["external"] is False
    assert anchors_warning(report)


def test_an_outside_witness_reached_through_a_link_in_the_home_is_inside_it(
    rolled_back: tuple[Path, str], tmp_path: Path
) -> None:
    """MLTRAIL_WITNESS names a path outside the home, but through a link the
    attacker could plant there: which file is read is the attacker's choice."""
    home, key_id = rolled_back
    planted = tmp_path / "planted.cp"
    shutil.copy(home / "witness" / "checkpoint", planted)
    (home / "link").symlink_to(planted)
    outside = tmp_path / "auditor" / "witness.cp"
    outside.parent.mkdir()
    outside.symlink_to(home / "link")
    report = verify(home, "--trust-key", key_id, env={"MLTRAIL_WITNESS": str(outside)})
    [witness] = [a for a in report["anchors"] if "witnessed" in a["description"]]
    assert witness["external"] is False
    assert anchors_warning(report)


def test_a_witness_the_auditor_keeps_elsewhere_is_still_outside_and_catches_it(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    kept = tmp_path / "auditor" / "witness.cp"
    outside = {"MLTRAIL_WITNESS": str(kept)}
    assert mltrail(home, "init", "--origin", ORIGIN, env=outside).returncode == 0
    append(home, "note", env=outside)
    before = tmp_path / "before"
    shutil.copytree(home, before)
    append(home, "model withdrawn", env=outside)
    intact = verify(home, env=outside)
    assert intact["exit"] == 0
    [witness] = [a for a in intact["anchors"] if "witnessed" in a["description"]]
    assert witness["external"] is True
    assert not anchors_warning(intact)
    shutil.rmtree(home)
    shutil.copytree(before, home)
    assert verify(home, env=outside)["exit"] == 3


@pytest.fixture(scope="module")
def attacker_tsa(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[TsaServer, Path]]:
    """A time-stamping authority of the attacker's own, and the CA it chains to."""
    ca = make_tsa_ca(tmp_path_factory.mktemp("tsa"), name="forged")
    with TsaServer(ca) as tsa:
        yield tsa, ca.ca_pem


def test_a_tsa_ca_named_in_ledger_json_is_not_an_anchor_outside_the_home(
    rolled_back: tuple[Path, str], attacker_tsa: tuple[TsaServer, Path]
) -> None:
    home, key_id = rolled_back
    tsa, ca = attacker_tsa
    proc = mltrail(home, "checkpoint", "--tsa", tsa.url)
    assert proc.returncode == 0, proc.stderr
    _settings(home, tsa_ca=str(ca))  # a file outside the home
    report = verify(home, "--trust-key", key_id)
    assert report["exit"] == 0
    [stamp] = [a for a in report["anchors"] if a["kind"] == "timestamp"]
    assert stamp["external"] is False
    assert "ledger.json" in stamp["description"]
    assert anchors_warning(report)


def test_a_tsa_ca_the_auditor_names_is_an_anchor_outside_the_home(
    rolled_back: tuple[Path, str], attacker_tsa: tuple[TsaServer, Path]
) -> None:
    home, key_id = rolled_back
    tsa, ca = attacker_tsa
    assert mltrail(home, "checkpoint", "--tsa", tsa.url).returncode == 0
    for how in (("--tsa-ca", str(ca)), ()):
        env = {"MLTRAIL_TSA_CA": str(ca)}
        report = verify(home, "--trust-key", key_id, *how, env=env)
        [stamp] = [a for a in report["anchors"] if a["kind"] == "timestamp"]
        assert stamp["external"] is True
        assert not anchors_warning(report)


def test_a_seal_target_named_in_ledger_json_is_not_an_anchor_outside_the_home(
    rolled_back: tuple[Path, str], tmp_path: Path
) -> None:
    """The attacker seals the rolled-back ledger to a folder of their own and
    names it in ledger.json; `verify --against-seals` used to call it an anchor
    outside the home and drop the warning."""
    home, key_id = rolled_back
    worm = str(tmp_path / "attacker-worm")
    proc = mltrail(home, "seal", "configure", "--to", worm, "--retain", "7y")
    assert proc.returncode == 0, proc.stderr
    assert mltrail(home, "seal").returncode == 0
    report = verify(home, "--trust-key", key_id, "--against-seals")
    assert report["exit"] == 0
    [seal] = [a for a in report["anchors"] if a["kind"] == "seal"]
    assert seal["external"] is False
    assert "ledger.json" in seal["description"]
    assert anchors_warning(report)
    named = verify(home, "--trust-key", key_id, "--seals", worm)
    [seal] = [a for a in named["anchors"] if a["kind"] == "seal"]
    assert seal["external"] is True  # the auditor named it
    assert not anchors_warning(named)
