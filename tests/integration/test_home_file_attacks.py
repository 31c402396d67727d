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

import hashlib
import json
import os
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


# -- blobs swapped for other bytes of the same size ------------------------------


def _swap_blob(home: Path, old: bytes, new: bytes) -> None:
    """Replace the bytes of the blob holding ``old`` by ``new`` (same size)."""
    import sqlite3

    assert len(old) == len(new)
    conn = sqlite3.connect(home / "ledger.db", isolation_level=None)
    try:
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='trigger'"
        ).fetchall():
            conn.execute(f'DROP TRIGGER "{name}"')
        rows = conn.execute("SELECT digest, data FROM blobs").fetchall()
        [digest] = [d for d, data in rows if old in bytes(data)]
        data = bytes(next(data for d, data in rows if d == digest))
        conn.execute(
            "UPDATE blobs SET data = ? WHERE digest = ?",
            (data.replace(old, new), digest),
        )
    finally:
        conn.close()


def test_a_swapped_log_blob_is_not_shown_as_the_runs_output(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert mltrail(home, "init", "--origin", ORIGIN).returncode == 0
    work = tmp_path / "work"
    work.mkdir()
    command = ("python3", "-c", "print('eval accuracy 0.61')")
    proc = mltrail(
        home, "run", "-q", "--name", "train", "--", *command, cwd=work,
        env={"GIT_CEILING_DIRECTORIES": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "eval accuracy 0.61" in mltrail(home, "logs", "train", "--stdout").stdout
    _swap_blob(home, b"accuracy 0.61", b"accuracy 0.97")
    for args in (("--stdout",), ("--json",), ()):
        proc = mltrail(home, "logs", "train", *args)
        assert "0.97" not in proc.stdout, args
        assert proc.returncode == 3, (args, proc.stdout, proc.stderr)
        assert "altered" in proc.stderr
    assert verify(home)["exit"] == 3


def test_a_swapped_manifest_blob_gives_no_answer_about_its_data(tmp_path: Path) -> None:
    """A one-file dataset's sha256 is read from its manifest blob into the
    index: swapped for a manifest naming another file (same size), `runs
    --dataset` listed the run as having read a file it never read."""
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    (project / "train.csv").write_text("a,b\n1,2\n")
    assert mltrail(home, "init", "--origin", ORIGIN).returncode == 0
    proc = mltrail(
        home, "run", "-q", "--name", "ft", "--data", "train=train.csv", "--", "true",
        cwd=project, env={"GIT_CEILING_DIRECTORIES": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    genuine = hashlib.sha256(b"a,b\n1,2\n").hexdigest()
    forged = hashlib.sha256(b"a file the run never read").hexdigest()
    listed = mltrail(home, "runs", "--dataset", genuine, "--json").stdout
    assert [r["name"] for r in json.loads(listed)] == ["ft"]
    _swap_blob(home, genuine.encode(), forged.encode())
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (home / name).unlink(missing_ok=True)  # rebuilt from the records and blobs
    proc = mltrail(home, "runs", "--dataset", forged, "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    assert verify(home)["exit"] == 3


@pytest.fixture
def wrote_model(tmp_path: Path) -> tuple[Path, Path, str]:
    """A home where run "ft" wrote out/model.bin; the project folder, and a
    file the run never wrote (its sha256 as long as the model's)."""
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    script = (
        "import os; os.makedirs('out', exist_ok=True); "
        "open('out/model.bin', 'wb').write(b'genuine weights')"
    )
    assert mltrail(home, "init", "--origin", ORIGIN).returncode == 0
    proc = mltrail(
        home, "run", "-q", "--name", "ft", "--output", "out", "--",
        "python3", "-c", script,
        cwd=project, env={"GIT_CEILING_DIRECTORIES": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    (project / "evil.bin").write_bytes(b"weights never trained here")
    assert _traced_runs(home, project, "out/model.bin") == ["ft"]
    return home, project, hashlib.sha256(b"genuine weights").hexdigest()


def _traced_runs(home: Path, project: Path, file: str) -> list[str] | None:
    proc = mltrail(home, "trace", file, "--json", cwd=project)
    if proc.returncode != 0:
        return None
    return sorted(m["run"]["name"] for m in json.loads(proc.stdout)["made_by"])


def test_a_swapped_output_manifest_makes_no_run_the_maker_of_a_file(
    wrote_model: tuple[Path, Path, str],
) -> None:
    home, project, genuine = wrote_model
    evil = hashlib.sha256(b"weights never trained here").hexdigest()
    _swap_blob(home, genuine.encode(), evil.encode())
    for name in ("index.db", "index.db-wal", "index.db-shm"):
        (home / name).unlink(missing_ok=True)
    assert _traced_runs(home, project, "evil.bin") in (None, [])
    assert verify(home)["exit"] == 3


def test_a_planted_index_row_backed_by_a_swapped_manifest_is_not_believed(
    wrote_model: tuple[Path, Path, str],
) -> None:
    import sqlite3

    home, project, genuine = wrote_model
    evil = hashlib.sha256(b"weights never trained here").hexdigest()
    with sqlite3.connect(home / "index.db") as index:
        [dataset] = {d for (d,) in index.execute("SELECT dataset FROM output_files")}
        index.execute(
            "INSERT INTO output_files (dataset, sha256) VALUES (?, ?)", (dataset, evil)
        )
    index.close()
    _swap_blob(home, genuine.encode(), evil.encode())
    assert _traced_runs(home, project, "evil.bin") in (None, [])


# -- files in the home that stopped verify from giving a report -------------------


@pytest.mark.parametrize("damage", ["not utf-8", "fifo", "too large"])
def test_a_damaged_witness_file_is_reported_not_a_usage_error(
    tmp_path: Path, damage: str
) -> None:
    """A witness file made unreadable (not UTF-8, a named pipe, too large) made
    `verify --json` exit 2 with no report, as if the auditor had typed a wrong
    option; a witness file holding other text was already an error in the
    report (exit 3)."""
    import os

    home = tmp_path / "home"
    assert mltrail(home, "init", "--origin", ORIGIN).returncode == 0
    append(home, "note")
    witness = home / "witness" / "checkpoint"
    witness.unlink()
    if damage == "not utf-8":
        witness.write_bytes(b"\xff\xfe" + witness.name.encode())
    elif damage == "fifo":
        os.mkfifo(witness)
    else:
        witness.write_text("x" * (1 << 20))
    proc = mltrail(home, "verify", "--json", timeout=60)
    assert proc.returncode == 3, proc.stderr
    report = json.loads(proc.stdout)
    [problem] = [p for p in report["problems"] if p["code"] == "checkpoint"]
    assert "witnessed checkpoint" in problem["message"]
    assert problem["severity"] == "error"


@pytest.mark.parametrize("ca", ["/nonexistent/ca.pem", "ledger.json"])
def test_a_tsa_ca_in_ledger_json_that_cannot_be_read_is_a_warning(
    rolled_back: tuple[Path, str], ca: str
) -> None:
    """A CA file ledger.json names that is missing, or no PEM, made verify exit
    2 with no report; the auditor's own --tsa-ca still must be readable."""
    home, key_id = rolled_back
    _settings(home, tsa_ca=ca)
    report = verify(home, "--trust-key", key_id)
    assert report["exit"] == 0
    [problem] = [p for p in report["problems"] if p["code"] == "tsa-ca"]
    assert problem["severity"] == "warning"
    proc = mltrail(home, "verify", "--tsa-ca", str(home / "missing.pem"))
    assert proc.returncode == 2


def test_a_deleted_blob_with_a_planted_purge_row_is_not_shown_as_purged(
    tmp_path: Path,
) -> None:
    """The store's purges table (derived from blob.purged records) got a row by
    hand for a blob deleted without a purge: readers called the deletion
    "purged by policy at seq N", N being any record."""
    import sqlite3

    home = tmp_path / "home"
    assert mltrail(home, "init", "--origin", ORIGIN).returncode == 0
    work = tmp_path / "work"
    work.mkdir()
    proc = mltrail(
        home, "run", "-q", "--name", "train", "--", "python3", "-c",
        "print('eval accuracy 0.61')",
        cwd=work, env={"GIT_CEILING_DIRECTORIES": str(tmp_path)},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    conn = sqlite3.connect(home / "ledger.db", isolation_level=None)
    try:
        for name in ("blobs_no_DELETE", "purges_need_record"):
            conn.execute(f'DROP TRIGGER "{name}"')
        [(digest, size)] = [
            (d, s)
            for d, s, data in conn.execute("SELECT digest, size, data FROM blobs")
            if b"accuracy 0.61" in bytes(data)
        ]
        conn.execute("DELETE FROM blobs WHERE digest = ?", (digest,))
        conn.execute("INSERT INTO purges VALUES (?, ?, 1)", (digest, size))
    finally:
        conn.close()
    proc = mltrail(home, "logs", "train", "--json")
    stdout = json.loads(proc.stdout)["streams"]["stdout"]
    assert "purged" not in stdout["missing"]
    assert "not in this ledger" in stdout["missing"]
    assert verify(home)["exit"] == 3


def test_a_named_pipe_as_a_runs_lock_file_hangs_no_reader(tmp_path: Path) -> None:
    """A run whose recorder died leaves its lock file, which `runs` and `show`
    probe to say whether it still runs. A named pipe put in its place made the
    probe's open wait for a writer forever: every listing hung."""
    import os
    import subprocess
    import sys

    home = tmp_path / "home"
    assert mltrail(home, "init", "--origin", ORIGIN).returncode == 0
    died = subprocess.run(
        [sys.executable, "-c",
         "import os, mltrail\n"
         "run = mltrail.start_run(name='died')\n"
         "run.__enter__()\n"
         "print(run.id, flush=True)\n"
         "os._exit(0)\n"],
        env={**os.environ, "MLTRAIL_HOME": str(home)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    run_id = died.stdout.strip()
    assert run_id, died.stderr
    lock = home / "runs" / "open" / f"{run_id}.json"
    assert lock.exists()
    lock.unlink()
    os.mkfifo(lock)
    for args in (("runs", "--json"), ("show", run_id, "--json")):
        proc = mltrail(home, *args, timeout=30)
        assert proc.returncode == 0, proc.stderr
        assert "died" in proc.stdout
    folder = lock.parent  # the folder of run files replaced by a file
    shutil.move(folder, tmp_path / "open")
    folder.write_text("")
    for args in (("runs", "--json"), ("show", run_id, "--json")):
        proc = mltrail(home, *args, timeout=30)
        assert proc.returncode == 0, proc.stderr
    folder.unlink()
    shutil.move(tmp_path / "open", folder)
    proc = mltrail(home, "runs", "close", run_id, "--reason", "gone", timeout=30)
    assert proc.returncode == 0, proc.stderr
    [shown] = json.loads(mltrail(home, "runs", "--json").stdout)
    assert shown["status"] == "aborted"


def test_a_named_pipe_as_ledger_json_hangs_no_command(tmp_path: Path) -> None:
    import os

    home = tmp_path / "home"
    assert mltrail(home, "init", "--origin", ORIGIN).returncode == 0
    (home / "ledger.json").unlink()
    os.mkfifo(home / "ledger.json")
    for args in (("verify", "--json"), ("runs", "--json")):
        proc = mltrail(home, *args, timeout=30)
        assert proc.returncode == 2, proc.stderr
        assert "ledger.json: not a regular file" in proc.stderr


def test_a_damaged_index_is_a_warning_of_verify_not_a_failure(tmp_path: Path) -> None:
    """index.db is derived: overwritten with bytes that are no database, it made
    `verify --json` exit 4 with no report on an intact ledger."""
    home = tmp_path / "home"
    assert mltrail(home, "init", "--origin", ORIGIN).returncode == 0
    append(home, "note")
    assert mltrail(home, "runs", "--json").returncode == 0  # index.db exists
    for name in ("index.db-wal", "index.db-shm"):
        (home / name).unlink(missing_ok=True)
    (home / "index.db").write_bytes(b"SQLite format 3\x00" + bytes(4096))
    report = verify(home)
    assert report["exit"] == 0
    [problem] = [p for p in report["problems"] if p["code"] == "index"]
    assert "cannot be read" in problem["message"]
    assert problem["severity"] == "warning"


# -- values the auditor types, read from the home instead -------------------------


def test_a_trusted_key_id_is_never_read_as_a_file_of_that_name(
    tmp_path: Path,
) -> None:
    """`--trust-key VALUE` read VALUE as a file whenever a file of that name
    existed, even when VALUE is itself a key: an auditor who pins the key id
    while working in the copy of the home trusted whatever key the attacker
    wrote into a file named after that id."""
    import subprocess
    import sys

    home = tmp_path / "home"
    assert mltrail(home, "init", "--origin", ORIGIN).returncode == 0
    key_id = mltrail(home, "keys", "export", "--format", "id").stdout.strip()
    forged = tmp_path / "forged"  # a ledger of the attacker's own key
    assert mltrail(forged, "init", "--origin", ORIGIN).returncode == 0
    append(forged, "a history that never happened")
    theirs = mltrail(forged, "keys", "export", "--format", "id").stdout.strip()
    shutil.rmtree(home)
    shutil.copytree(forged, home)
    (home / key_id).write_text(theirs + "\n")
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", "--home", ".", "verify", "--json",
         "--trust-key", key_id],
        cwd=home, capture_output=True, text=True, timeout=120, check=False,
        env={k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")},
    )  # fmt: skip
    assert proc.returncode == 3, proc.stdout
    report = json.loads(proc.stdout)
    assert "genesis" in {p["code"] for p in report["problems"]}


def test_an_index_of_tables_made_by_hand_is_rebuilt_not_a_crash(tmp_path: Path) -> None:
    """An index.db holding tables of other shapes (a `meta` without its
    columns, a table whose name is no identifier) ended every read command and
    verify in a Python traceback (exit 1)."""
    import sqlite3

    home = tmp_path / "home"
    assert mltrail(home, "init", "--origin", ORIGIN).returncode == 0
    append(home, "note")
    with sqlite3.connect(home / "index.db") as db:
        db.execute("CREATE TABLE meta (k, v)")
        db.execute("CREATE TABLE runs (x)")
        db.execute('CREATE TABLE "odd name; --" (x)')
    db.close()
    proc = mltrail(home, "runs", "--json")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == []
    report = verify(home)
    assert report["exit"] == 0
    assert not [p for p in report["problems"] if p["code"] == "index"]


def test_an_origin_edited_in_ledger_json_is_a_tampered_home_not_a_usage_error(
    tmp_path: Path,
) -> None:
    """ledger.json naming another origin than the store's made every command,
    `verify` included, exit 2 as if the auditor had typed a wrong option; it is
    an edited home (exit 3), and the message says which side to trust."""
    home = tmp_path / "home"
    assert mltrail(home, "init", "--origin", ORIGIN).returncode == 0
    append(home, "note")
    _settings(home, origin="evil.example/home")
    proc = mltrail(home, "verify", "--json")
    assert proc.returncode == 3, proc.stderr
    assert "one of the two was edited" in proc.stderr
    assert "signed into every checkpoint" in proc.stderr
