"""A run id chosen to shadow another run in `mltrail show` / `diff` / `trace`.

Run ids may be chosen (``MLTRAIL_RUN_ID``, letters, digits and ``. _ : -``), and
people quote a run by the first characters of its UUID or by its name. A writer
who starts a run whose id is exactly such a prefix, or another run's name, made
``mltrail show 3f2a9c1e`` answer with that run instead of the one the auditor
was given: a full id matched before any prefix or name. Several people share
one ledger here; the ledger's actor is set per writer, as in
tests/integration/test_governance.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft

ALICE = "3f2a9c1e-5b7d-4e21-9a0c-6d8e2f1b4c37"


def _run(home, user: str, run: str, name: str, lr: float) -> None:
    home.ledger.actor = {"user": user, "uid": 1000, "host": "bank-ws"}
    home.ledger.append_many([
        Draft("run.started", {"source": "api", "name": name}, run),
        Draft("run.params", {"source": "api", "params": {"lr": lr}}, run),
        Draft("run.ended", {"status": "succeeded"}, run),
    ])  # fmt: skip


def _cli(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    env.pop("MLTRAIL_RUN_ID", None)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def shared(tmp_path: Path) -> Path:
    path = tmp_path / "home"
    init_home(path, origin="test.mltrail.local/refs")
    home = open_home(path)
    try:
        _run(home, "alice", ALICE, "loan-v3", 0.1)
        _run(home, "mallory", ALICE[:8], "decoy", 9.0)  # Alice's short id
        _run(home, "mallory", "loan-v3", "decoy-2", 7.0)  # Alice's run name
        _run(home, "alice", "run-alice-n1", "nightly", 0.1)
        _run(home, "alice", "run-alice-n2", "nightly", 0.2)
        _run(home, "mallory", "run-mallory-n", "nightly", 9.0)  # dated after
        _run(home, "bob", "run-bob-1", "bobs-run", 0.3)
        _run(home, "bob", "run-bob-2", "bobs-run", 0.4)
    finally:
        home.close()
    return path


@pytest.mark.parametrize("ref", [ALICE[:8], "loan-v3"])
def test_a_run_id_equal_to_another_runs_prefix_or_name_is_refused(shared, ref):
    shown = _cli(shared, "show", ref, "--json")
    assert shown.returncode == 2, shown.stdout
    assert "several runs" in shown.stderr
    assert ALICE in shown.stderr
    diffed = _cli(shared, "diff", ref, ALICE)
    assert diffed.returncode == 2
    assert "several runs" in diffed.stderr


@pytest.mark.parametrize(
    ("ref", "run", "user"),
    [
        (ALICE, ALICE, "alice"),
        (ALICE[:12], ALICE, "alice"),
        (f"run:{ALICE[:8]}", ALICE[:8], "mallory"),
        ("run:loan-v3", "loan-v3", "mallory"),
    ],
)
def test_a_full_id_or_run_colon_id_names_exactly_one_run(shared, ref, run, user):
    shown = _cli(shared, "show", ref, "--json")
    assert shown.returncode == 0, shown.stderr
    found = json.loads(shown.stdout)
    assert found["run"]["id"] == run
    assert found["run"]["user"] == user


def test_trace_run_colon_prefix_still_resolves_a_unique_prefix(shared):
    traced = _cli(shared, "trace", f"run:{ALICE[:12]}", "--json")
    assert traced.returncode == 0, traced.stderr
    assert ALICE in traced.stdout


def test_a_run_name_that_runs_of_several_users_bear_is_refused(shared):
    """ "Its latest run" goes by a start time its writer dated: a run of another
    user with the same name, dated later, answered for Alice's."""
    shown = _cli(shared, "show", "nightly", "--json")
    assert shown.returncode == 2, shown.stdout
    assert "names runs started by 2 users" in shown.stderr
    assert "alice's run-alice-n2" in shown.stderr
    assert "mallory's run-mallory-n" in shown.stderr


def test_a_run_name_of_one_user_is_still_its_latest_run(shared):
    shown = _cli(shared, "show", "bobs-run", "--json")
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout)["run"]["id"] == "run-bob-2"


def _wrote(home, user: str, run: str, path: str, sha: str) -> None:
    home.ledger.actor = {"user": user, "uid": 1000, "host": "bank-ws"}
    home.ledger.append_many([
        Draft("run.started", {"source": "api", "name": f"train-{run}"}, run),
        Draft("run.artifact", {"path": path, "exists": True, "type": "file",
                               "sha256": sha, "size": 3}, run),
        Draft("run.ended", {"status": "succeeded"}, run),
    ])  # fmt: skip


def test_an_output_name_other_users_wrote_other_bytes_under_is_refused(tmp_path):
    """`trace weights.bin` (no such file here) took the latest output of that
    name, whoever appended it: another user's later output answered for it."""
    path = tmp_path / "home"
    init_home(path, origin="test.mltrail.local/outputs")
    home = open_home(path)
    try:
        _wrote(home, "alice", "run-a1", "/m/weights.bin", "a" * 64)
        _wrote(home, "alice", "run-a2", "/m/weights.bin", "b" * 64)  # a retrain
        _wrote(home, "alice", "run-a3", "/m/adapter.bin", "c" * 64)
        _wrote(home, "mallory", "run-m1", "/x/adapter.bin", "c" * 64)  # same bytes
    finally:
        home.close()
    traced = _cli(path, "trace", "weights.bin", "--json")
    assert traced.returncode == 0, traced.stderr  # one user's latest
    assert json.loads(traced.stdout)["node"]["id"] == f"file:{'b' * 64}"
    traced = _cli(path, "trace", "adapter.bin", "--json")
    assert traced.returncode == 0, traced.stderr  # two users, the same bytes

    home = open_home(path)
    try:
        _wrote(home, "mallory", "run-m2", "/x/weights.bin", "d" * 64)
    finally:
        home.close()
    for command in ("trace", "report"):
        answered = _cli(path, command, "weights.bin", "--json")
        assert answered.returncode == 2, answered.stdout
        assert "names outputs of runs started by several users" in answered.stderr
        assert f"file:{'b' * 64} (alice's latest)" in answered.stderr or (
            f"file:{'d' * 64} (mallory's latest)" in answered.stderr
        )


def test_diff_tells_a_key_not_in_nfc_from_its_nfc_spelling(tmp_path):
    """A parameter `café` in run A and `cafe` + U+0301 in run B were listed as
    one removed and one added, both printed `café: 0.1`: a rename (which a
    program reading `café` would not find) looked like no change."""
    path = tmp_path / "home"
    init_home(path, origin="test.mltrail.local/nfc")
    home = open_home(path)
    try:
        home.ledger.actor = {"user": "alice", "uid": 1000, "host": "bank-ws"}
        for run, key in (("run-a", "caf\u00e9"), ("run-b", "cafe\u0301")):
            home.ledger.append_many([
                Draft("run.started", {"source": "api", "name": run}, run),
                Draft("run.params", {"source": "api", "params": {key: 0.1}}, run),
                Draft("run.ended", {"status": "succeeded"}, run),
            ])  # fmt: skip
    finally:
        home.close()
    shown = _cli(path, "diff", "run-a", "run-b")
    assert shown.returncode == 0, shown.stderr
    lines = [line for line in shown.stdout.splitlines() if "0.1" in line]
    assert len(lines) == 2, shown.stdout
    assert lines[0] != lines[1].replace("+", "-", 1), shown.stdout
    assert "[key not in NFC form: U+0301]" in shown.stdout


def test_the_shared_name_check_reads_only_the_index_of_names_and_starters(shared):
    """`show NAME` checks whether runs of several users bear the name on every
    call: reading each run of a name (2,060 of them in bench_query's ledger)
    took 9 ms of the 80 ms read commands may add. The check is two seeks in a
    covering index, whatever the number of runs (checked by its query plan)."""
    import sqlite3

    from mltrail.audit.query import NAME_STARTERS

    assert _cli(shared, "show", "bobs-run", "--json").returncode == 0  # the index
    conn = sqlite3.connect(shared / "index.db")
    try:
        plan = [row[3] for row in conn.execute(
            f"EXPLAIN QUERY PLAN {NAME_STARTERS}", ("nightly",)
        )]  # fmt: skip
    finally:
        conn.close()
    searches = [step for step in plan if step.startswith("SEARCH")]
    assert searches == ["SEARCH runs USING COVERING INDEX runs_name_user (name=?)"] * 2
