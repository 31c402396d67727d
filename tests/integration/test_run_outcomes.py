"""A run's outcome is never lost, and the command's exit code always passes through.

Each case makes mltrail's own end fail for real (a key rotated by another process,
a store locked by another process, a full database, outputs that cannot be read)
and checks what reaches the ledger, stderr and the exit status.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

import mltrail
from mltrail.record.open_runs import close_stale_runs
from mltrail.record.wrapper import WrapOptions, record_command

pytestmark = pytest.mark.usefixtures("isolated_git")

# Holds ledger.db with BEGIN EXCLUSIVE for SECONDS, after touching MARKER.
HOLD_LOCK = """
import pathlib, sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("BEGIN EXCLUSIVE")
pathlib.Path(sys.argv[2]).touch()
time.sleep(float(sys.argv[3]))
"""


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    mltrail.init_home(path, origin="test.mltrail.local/outcomes", env={})
    return path


def run_cli(home, cwd, *args, env=None, timeout=60):
    full_env = {**os.environ, "MLTRAIL_HOME": str(home), **(env or {})}
    full_env.pop("MLTRAIL_RUN_ID", None)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def records(home):
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        return list(opened.ledger.records())
    finally:
        opened.close()


def run_entries(home, kind):
    return [r.entry for r in records(home) if r.entry.kind == kind]


def listed(home, cwd):
    return json.loads(run_cli(home, cwd, "runs", "--json").stdout)


def verify_ok(home, cwd):
    proc = run_cli(home, cwd, "verify")
    assert proc.returncode == 0, proc.stdout + proc.stderr


def lock_command(home, tmp_path, seconds, code):
    """A shell command that starts a process holding ledger.db locked for
    ``seconds``, waits until it holds the lock, and exits with ``code``."""
    holder = tmp_path / "hold.py"
    holder.write_text(HOLD_LOCK)
    marker = tmp_path / "locked"
    return (
        f"{sys.executable} {holder} {home / 'ledger.db'} {marker} {seconds} "
        f">/dev/null 2>&1 & while [ ! -f {marker} ]; do sleep 0.02; done; "
        f"exit {code}"
    )


def test_a_key_rotated_by_another_process_during_the_run_still_records_the_end(
    home, tmp_path
):
    go = tmp_path / "go"
    wrapper = subprocess.Popen(
        [sys.executable, "-m", "mltrail", "run", "--",
         "sh", "-c", f"echo up; while [ ! -f {go} ]; do sleep 0.02; done; exit 3"],
        cwd=tmp_path,
        env={**os.environ, "MLTRAIL_HOME": str(home)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    assert wrapper.stdout.readline() == "up\n"
    old_key = json.loads((home / "ledger.json").read_text())["signing_key"]
    rotated = run_cli(home, tmp_path, "keys", "rotate")
    assert rotated.returncode == 0, rotated.stderr
    assert not (home / old_key).exists()  # the rotation destroyed the revoked key
    go.touch()
    _, stderr = wrapper.communicate(timeout=60)
    assert wrapper.returncode == 3, stderr
    assert "error:" not in stderr
    (ended,) = run_entries(home, "run.ended")
    assert (ended.body["status"], ended.body["exit_code"]) == ("failed", 3)
    verify_ok(home, tmp_path)


def test_special_outputs_are_recorded_by_type_without_being_read(home, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    sock_path = tmp_path / "sock"
    with socket.socket(socket.AF_UNIX) as sock:
        sock.bind(str(sock_path))
        proc = run_cli(
            home, tmp_path, "run",
            "--output", str(fifo), "--output", "/dev/null", "--output", str(sock_path),
            "--", "sh", "-c", "exit 5",
        )  # fmt: skip
    assert proc.returncode == 5, proc.stderr
    assert "error:" not in proc.stderr
    bodies = [e.body for e in run_entries(home, "run.artifact")]
    assert [(b["path"], b["type"]) for b in bodies] == [
        (str(fifo), "fifo"),
        ("/dev/null", "char-device"),
        (str(sock_path), "socket"),
    ]
    (ended,) = run_entries(home, "run.ended")
    assert ended.body["exit_code"] == 5


def test_outputs_without_content_are_shown_and_are_no_lineage_node(home, tmp_path):
    """Two runs each declare a FIFO output and one never written: ``show`` lists
    them (it failed: "no model, dataset, file or run id starts with 'None'"),
    and ``trace`` joins neither run to the other through a ``data:None`` node
    every content-less output shared."""
    os.mkfifo(tmp_path / "pipe")
    names = ("first", "second")
    for name in names:
        proc = run_cli(
            home, tmp_path, "run", "--name", name,
            "--output", "pipe", "--output", "never", "--", "true",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    for name in names:
        shown = run_cli(home, tmp_path, "show", name)
        assert shown.returncode == 0, shown.stderr
        assert "never" in shown.stdout
        traced = run_cli(home, tmp_path, "trace", name, "--json")
        assert traced.returncode == 0, traced.stderr
        nodes = [n["id"] for n in json.loads(traced.stdout)["lineage"]["nodes"]]
        assert nodes == [nodes[0]]
        assert nodes[0].startswith("run:")


def test_an_unreadable_output_keeps_its_error_and_the_run_its_end(home, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    os.mkfifo(out / "pipe")  # a FIFO inside an output folder cannot be hashed
    proc = run_cli(home, tmp_path, "run", "--output", "out", "--", "sh", "-c", "exit 4")
    assert proc.returncode == 4, proc.stderr
    assert "nothing was recorded" not in proc.stderr
    assert "output" in proc.stderr
    assert "not hashed" in proc.stderr
    (artifact,) = run_entries(home, "run.artifact")
    assert "FIFO" in artifact.body["error"]
    (ended,) = run_entries(home, "run.ended")
    assert ended.body["exit_code"] == 4


def test_a_store_locked_past_the_retries_keeps_the_exit_code_and_the_outcome(
    home, tmp_path
):
    command = lock_command(home, tmp_path, 4, 7)
    proc = run_cli(
        home, tmp_path, "run", "--", "sh", "-c", command,
        env={"MLTRAIL_BUSY_TIMEOUT": "0.2"},
    )  # fmt: skip
    assert proc.returncode == 7, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 2, proc.stderr
    assert "its start was recorded" in errors[0]
    assert "its end was not" in errors[0]
    assert "database is locked" in errors[0]
    assert "exited with 7" in errors[1]
    assert "nothing was recorded" not in proc.stderr
    assert [r["status"] for r in listed(home, tmp_path)] == ["stale"]
    _wait_for_unlock(home)
    closed = run_cli(home, tmp_path, "runs", "close", "--stale", "--json")
    assert closed.returncode == 0, closed.stderr
    (ended,) = run_entries(home, "run.ended")
    assert ended.body["status"] == "aborted"
    assert ended.body["outcome"]["exit_code"] == 7
    assert ended.body["outcome"]["status"] == "failed"
    assert "database is locked" in ended.body["reason"]
    shown = run_cli(home, tmp_path, "show", ended.run).stdout
    assert "failed (exit 7), as the recorder saw it" in shown
    verify_ok(home, tmp_path)


def test_a_lock_released_within_the_retries_loses_nothing(home, tmp_path):
    command = lock_command(home, tmp_path, 1.5, 6)
    proc = run_cli(
        home, tmp_path, "run", "--", "sh", "-c", command,
        env={"MLTRAIL_BUSY_TIMEOUT": "1"},
    )  # fmt: skip
    assert proc.returncode == 6, proc.stderr
    assert "error:" not in proc.stderr
    (ended,) = run_entries(home, "run.ended")
    assert (ended.body["status"], ended.body["exit_code"]) == ("failed", 6)


def test_a_store_locked_at_the_start_runs_nothing_and_says_so(home, tmp_path):
    holder = tmp_path / "hold.py"
    holder.write_text(HOLD_LOCK)
    marker = tmp_path / "locked"
    with subprocess.Popen(
        [sys.executable, str(holder), str(home / "ledger.db"), str(marker), "30"]
    ) as hold:
        try:
            while not marker.exists():
                time.sleep(0.02)
            proc = run_cli(
                home, tmp_path, "run", "--", "touch", "ran",
                env={"MLTRAIL_BUSY_TIMEOUT": "0.2"},
            )  # fmt: skip
        finally:
            hold.kill()
    assert proc.returncode == 4, proc.stderr
    assert "database is locked" in proc.stderr
    assert "nothing of this run was recorded and the command was not run" in (
        proc.stderr
    )
    assert not (tmp_path / "ran").exists()
    assert run_entries(home, "run.started") == []


def _limit_pages(home_obj, extra):
    """Make the home's own connection see a nearly full database (SQLITE_FULL)."""
    conn = home_obj.ledger.store._conn
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages + extra}")
    return conn


FILL = (
    "import os, mltrail; "
    "h = mltrail.open_home(os.environ['MLTRAIL_HOME'], writable=False); "
    "h.ledger.put_blob(os.urandom(1 << 20)); raise SystemExit(9)"
)


def test_a_full_database_keeps_the_exit_code_and_leaves_the_run_stale(home, tmp_path):
    opened = mltrail.open_home(home, env={"MLTRAIL_BUSY_TIMEOUT": "0.2"})
    conn = _limit_pages(opened, 40)  # room for the start, none once FILL ran
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    env.pop("MLTRAIL_RUN_ID", None)
    result = record_command(
        opened, [sys.executable, "-c", FILL], WrapOptions(), env=env, cwd=tmp_path
    )
    assert result.process.returncode == 9
    assert len(result.problems) == 2
    assert "its start was recorded" in result.problems[0]
    assert "exited with 9" in result.problems[1]
    conn.execute("PRAGMA max_page_count = 1073741823")
    assert close_stale_runs(opened) == [result.run_id]
    opened.close()
    (ended,) = run_entries(home, "run.ended")
    assert ended.body["status"] == "aborted"
    assert ended.body["outcome"]["exit_code"] == 9


API_SCRIPT = """
import sys, mltrail
with mltrail.start_run("api", capture=False) as run:
    for step in range(5000):  # buffered: written with the end, ~100 kB of points
        run.log_metrics({"loss": 1 / (step + 3)}, step=step)
    conn = run.home.ledger.store._conn  # this process's own connection: full
    pages = conn.execute("PRAGMA page_count").fetchone()[0]
    conn.execute(f"PRAGMA max_page_count = {pages}")
    if sys.argv[1] == "raise":
        raise ValueError("the user's own error")
print("after the block")
"""


@pytest.mark.parametrize("how", ["raise", "return"])
def test_the_api_never_hides_the_callers_exception_nor_loses_the_outcome(
    home, tmp_path, how
):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(API_SCRIPT))
    env = {**os.environ, "MLTRAIL_HOME": str(home), "MLTRAIL_BUSY_TIMEOUT": "0.2"}
    env.pop("MLTRAIL_RUN_ID", None)
    proc = subprocess.run(
        [sys.executable, str(script), how],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "after the block" not in proc.stdout
    last = proc.stderr.strip().splitlines()[-1]
    if how == "raise":
        assert "ValueError: the user's own error" in proc.stderr
        assert last.startswith("mltrail: run ")  # the note under the traceback
    else:
        assert last.startswith("mltrail.errors.StoreError: run ")
    assert "its start was recorded but its end was not" in last
    (run,) = listed(home, tmp_path)
    assert run["status"] == "stale"
    opened = mltrail.open_home(home, env={})
    try:
        assert close_stale_runs(opened) == [run["id"]]
    finally:
        opened.close()
    (ended,) = run_entries(home, "run.ended")
    status = "failed" if how == "raise" else "succeeded"
    assert ended.body["outcome"]["status"] == status


def test_the_api_records_its_end_after_a_rotation_by_another_process(home, tmp_path):
    env = {"MLTRAIL_BUSY_TIMEOUT": "5"}
    with mltrail.start_run("api", home=home, capture=False) as run:
        run.log_metrics({"loss": 0.5})
        rotated = run_cli(home, tmp_path, "keys", "rotate", env=env)
        assert rotated.returncode == 0, rotated.stderr
    (ended,) = run_entries(home, "run.ended")
    assert ended.body["status"] == "succeeded"
    assert len(run_entries(home, "run.metrics")) == 1
    verify_ok(home, tmp_path)


def _wait_for_unlock(home):
    conn = sqlite3.connect(home / "ledger.db", timeout=30, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("ROLLBACK")
    finally:
        conn.close()


def test_a_command_that_cannot_execute_after_the_start_is_recorded_as_failed(
    home, tmp_path
):
    script = tmp_path / "broken.sh"
    script.write_text("#!/no/such/interpreter\necho never\n")
    script.chmod(0o755)
    proc = run_cli(home, tmp_path, "run", "--", str(script))
    assert proc.returncode == 126, proc.stderr
    assert "nothing was recorded" not in proc.stderr
    assert "the run was recorded as failed" in proc.stderr
    (ended,) = run_entries(home, "run.ended")
    assert (ended.body["status"], ended.body["exit_code"]) == ("failed", 126)
    assert [r["status"] for r in listed(home, tmp_path)] == ["failed"]
