"""`mltrail runs --param/--dataset` match a run on its starter's records only
(ADR 0010, amendment of 2026-12-07: filters and the records' signers).

Bob holds his own author key (ADR 0025), registered to the identity ``bob`` in
Alice's home (a home several accounts write to, or a copied ledger). He adds
``run.params lr=0.5`` and a ``run.data`` of his dataset to Alice's run. Before,
``runs --param lr=0.5`` and ``runs --dataset <bob's>`` listed Alice's run as
if she had trained with them. The ledger is written in-process (one test cannot
log in as two people) and read through the real command, in subprocesses.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mltrail.audit.query import RunFilter, search_runs
from mltrail.core.codec import format_time
from mltrail.core.entry import Entry, sign_entry
from mltrail.index import open_index
from mltrail.index.tables import INDEX_VERSION
from mltrail.ledger.home import open_home
from mltrail.ledger.keystore import load_signer
from mltrail.ledger.ledger import Draft

ALICE_RUN = "run-alice-1"
ALICE_OTHER = "run-alice-2"
ALICE_EARLY = "run-alice-3"  # her params are recorded before her run.started
BOB_RUN = "run-bob-1"
ALICE_DATA = "a" * 64
BOB_DATA = "b" * 64


def mltrail(home: Path, *args: Any) -> Any:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", *map(str, args)],
        env=env | {"MLTRAIL_HOME": str(home), "COLUMNS": "200"},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return json.loads(proc.stdout) if "--json" in args else proc.stdout


def _bob(signer: Any, kind: str, body: dict[str, Any], run: str) -> Entry:
    time = format_time(datetime.now(UTC))
    return sign_entry(Entry(kind, time, {"user": "bob"}, body, run=run), signer)


def _data(dataset: str, manifest: Any) -> dict[str, Any]:
    return {"role": "train", "path": "d", "dataset": dataset, "files": 2,
            "bytes": 9, "manifest": manifest}  # fmt: skip


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("writers")
    path = base / "home"
    mltrail(path, "init", "--origin", "test.mltrail.local/writers")
    mltrail(path, "keys", "new", "--out", base / "bob.key", "--json")
    mltrail(path, "keys", "register", "--key-file", base / "bob.key",
            "--identity", "bob", "--json")  # fmt: skip
    bob = load_signer(base / "bob.key")
    opened = open_home(path, env={})
    try:
        ledger = opened.ledger
        manifest = ledger.put_blob(b"a manifest\n")
        ledger.actor = {"user": "alice", "uid": 1001, "host": "ws-a"}
        ledger.append_many([
            Draft("run.started", {"source": "api", "name": "train"}, ALICE_RUN),
            Draft("run.params", {"source": "api", "params": {"lr": 0.01}}, ALICE_RUN),
            Draft("run.data", _data(ALICE_DATA, manifest), ALICE_RUN),
            Draft("run.ended", {"status": "succeeded", "exit_code": 0}, ALICE_RUN),
            Draft("run.started", {"source": "api", "name": "tune"}, ALICE_OTHER),
            Draft("run.params", {"source": "api", "params": {"lr": 0.5}}, ALICE_OTHER),
            Draft("run.params", {"source": "api", "params": {"lr": 0.7}}, ALICE_EARLY),
            Draft("run.data", _data("c" * 64, manifest), ALICE_EARLY),
            Draft("run.started", {"source": "api", "name": "early"}, ALICE_EARLY),
        ])  # fmt: skip
        ledger.append_entries([
            _bob(bob, "run.params", {"source": "api", "params": {"lr": 0.5}},
                 ALICE_RUN),
            _bob(bob, "run.data", _data(BOB_DATA, manifest), ALICE_RUN),
            _bob(bob, "run.started", {"source": "api", "name": "bob"}, BOB_RUN),
            _bob(bob, "run.params", {"source": "api", "params": {"lr": 0.5}},
                 BOB_RUN),
            _bob(bob, "run.ended", {"status": "failed", "exit_code": 1},
                 ALICE_OTHER),
            _bob(bob, "run.ended", {"status": "failed", "exit_code": 1},
                 ALICE_EARLY),
        ])  # fmt: skip
        ledger.append_many(
            [  # Alice's own end, after Bob's
                Draft(
                    "run.ended", {"status": "succeeded", "exit_code": 0}, ALICE_EARLY
                ),
            ]
        )
    finally:
        opened.close()
    return path


def _ids(home: Path, *args: str) -> list[str]:
    return [run["id"] for run in mltrail(home, "runs", *args, "-n", "0", "--json")]


def test_a_param_another_user_added_does_not_match_the_run(home: Path) -> None:
    assert _ids(home, "--param", "lr=0.5") == [ALICE_OTHER, BOB_RUN]
    assert _ids(home, "--param", "lr=0.01") == [ALICE_RUN]  # her own still does
    assert _ids(home, "--param", "lr=0.7") == [ALICE_EARLY]  # signed before start
    assert "run-alice-1" not in mltrail(home, "runs", "--param", "lr=0.5")


def test_a_dataset_another_user_added_does_not_match_the_run(home: Path) -> None:
    assert _ids(home, "--dataset", BOB_DATA[:8]) == []
    assert _ids(home, "--dataset", ALICE_DATA[:8]) == [ALICE_RUN]
    assert _ids(home, "--dataset", "c" * 8) == [ALICE_EARLY]


def test_a_common_value_matched_run_by_run_is_also_the_starters(
    home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The newest-first plan (a value many runs hold) checks the signer too."""
    import mltrail.audit.query as query

    monkeypatch.setattr(query, "_param_condition", lambda *_: query._BY_RUN)
    opened = open_home(home, env={})
    index = open_index(opened)
    try:
        spec = RunFilter(params=[("lr", "0.5")], limit=5)
        where, _ = query._conditions(spec, index)
        assert any("EXISTS" in w for w in where)  # the run-by-run plan
        found = search_runs(opened, index, spec)
        assert [s.id for s in found] == [ALICE_OTHER, BOB_RUN]
    finally:
        index.close()
        opened.close()


def test_an_end_another_user_signed_is_labelled_until_the_starters_own(
    home: Path,
) -> None:
    """Bob's run.ended (failed) in Alice's runs: where she recorded no end the
    status is his, and says so; her own later end replaces it."""
    runs = mltrail(home, "runs", "-n", "0", "--json")
    by_id = {r["id"]: (r["status"], r["exit_code"], r["ended_by"]) for r in runs}
    assert by_id[ALICE_OTHER] == ("failed", 1, "bob")
    assert by_id[ALICE_EARLY] == ("succeeded", 0, None)
    assert by_id[ALICE_RUN] == ("succeeded", 0, None)
    failed = mltrail(home, "runs", "--status", "failed", "--json")
    assert [(r["id"], r["ended_by"]) for r in failed] == [(ALICE_OTHER, "bob")]
    text = mltrail(home, "runs", "--status", "failed")
    assert "failed (by bob)" in text, text


def test_rows_say_who_signed_them(home: Path) -> None:
    mltrail(home, "runs", "--json")
    conn = sqlite3.connect(home / "index.db")
    try:
        rows = conn.execute(
            "SELECT value, user, own FROM params WHERE run = ? ORDER BY seq",
            (ALICE_RUN,),
        ).fetchall()
        data = conn.execute(
            "SELECT dataset, user, own FROM data WHERE run = ? ORDER BY seq",
            (ALICE_RUN,),
        ).fetchall()
    finally:
        conn.close()
    assert rows == [("0.01", "alice", 1), ("0.5", "bob", 0)]
    assert data == [(ALICE_DATA, "alice", 1), (BOB_DATA, "bob", 0)]


def test_an_index_of_the_version_before_is_rebuilt(home: Path, tmp_path: Path) -> None:
    """An index made before the signer columns (version 7: no ``user`` and
    ``own`` in params and data) is rebuilt on open, and answers as a new one."""
    import shutil

    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    mltrail(copy, "runs", "--json")
    conn = sqlite3.connect(copy / "index.db", isolation_level=None)
    try:
        conn.execute("UPDATE meta SET value = '7' WHERE key = 'version'")
        for table in ("params", "data"):
            conn.execute(f"ALTER TABLE {table} DROP COLUMN user")
            conn.execute(f"ALTER TABLE {table} DROP COLUMN own")
    finally:
        conn.close()
    assert _ids(copy, "--param", "lr=0.5") == [ALICE_OTHER, BOB_RUN]
    conn = sqlite3.connect(copy / "index.db")
    try:
        (version,) = conn.execute(
            "SELECT value FROM meta WHERE key = 'version'"
        ).fetchone()
        columns = [r[1] for r in conn.execute("PRAGMA table_info(params)")]
    finally:
        conn.close()
    assert version == INDEX_VERSION != "7"
    assert "user" in columns


@pytest.mark.parametrize(
    ("edit", "args", "expected"),
    [
        ("UPDATE params SET user = 'alice', own = 1 WHERE user = 'bob'",
         ["--param", "lr=0.5"], [ALICE_OTHER, BOB_RUN]),
        ("UPDATE params SET own = 1 WHERE user = 'bob'",
         ["--param", "lr=0.5"], [ALICE_OTHER, BOB_RUN]),
        ("UPDATE data SET own = 1 WHERE user = 'bob'",
         ["--dataset", BOB_DATA[:8]], []),
        ("UPDATE runs SET ended_by = NULL WHERE ended_by = 'bob'",
         ["--status", "failed"], [ALICE_OTHER]),
    ],
)  # fmt: skip
def test_an_index_row_edited_to_another_signer_is_caught(
    home: Path, tmp_path: Path, edit: str, args: list[str], expected: list[str]
) -> None:
    """The answer-time check covers the signer: an index.db edited to say Alice
    signed Bob's lr=0.5 (or only that it is hers) is found out and rebuilt
    before the answer."""
    import shutil

    copy = tmp_path / "home"
    shutil.copytree(home, copy)
    mltrail(copy, "runs", "--json")
    conn = sqlite3.connect(copy / "index.db", isolation_level=None)
    try:
        conn.execute(edit)
    finally:
        conn.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", "runs", *args, "--json"],
        env=env | {"MLTRAIL_HOME": str(copy)},
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    found = json.loads(proc.stdout)
    assert [r["id"] for r in found] == expected
    assert all(r["ended_by"] == "bob" for r in found if r["id"] == ALICE_OTHER)
    assert "disagreed with the signed records" in proc.stderr
