"""Joining a run: what the wrapped command is given, and what a run id may name.

The wrapped command never sees the key's password; what it logs through
``mltrail.start_run()`` still lands in the run, signed by the wrapper. A run id
names one run: reusing one is refused, while the command of a live wrapper and
the other ranks of a distributed run still join.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap

import pytest

import mltrail
from ledger_reading import entries

pytestmark = pytest.mark.usefixtures("isolated_git")

PASSWORD = "correct horse battery staple"


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    mltrail.init_home(path, origin="test.mltrail.local/joining", env={})
    return path


@pytest.fixture
def encrypted_home(tmp_path):
    path = tmp_path / "encrypted"
    env = {"MLTRAIL_KEY_PASSWORD": PASSWORD}
    mltrail.init_home(path, origin="test.mltrail.local/encrypted", env=env)
    assert b"ENCRYPTED" in next((path / "keys").iterdir()).read_bytes()
    return path


def run_cli(home, cwd, *args, env=None, timeout=60):
    full_env = {**os.environ, "MLTRAIL_HOME": str(home), **(env or {})}
    for name in ("MLTRAIL_RUN_ID", "RANK", "WORLD_SIZE", "LOCAL_RANK", "MLTRAIL_SPOOL"):
        if env is None or name not in env:
            full_env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def kinds(home, run_id):
    return [e.kind for e in entries(home, run_id)]


def started_ids(home):
    return [e.run for e in entries(home) if e.kind == "run.started"]


TRAIN = """
import json, os, mltrail
with mltrail.start_run(params={"seed": 7}) as run:
    for step in range(3):
        run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
    run.log_params({"api_token": "sk-live-0123456789abcdef0123456789abcdef"})
    run.note("from the child")
    secret = "MLTRAIL_KEY_PASSWORD" in os.environ
    print(json.dumps({"id": run.id, "joined": run.joined, "password": secret}))
"""


def test_the_wrapped_command_gets_no_mltrail_secret(encrypted_home, tmp_path):
    secrets = {"MLTRAIL_KEY_PASSWORD": PASSWORD, "MLTRAIL_TOKEN": "tok-123"}
    proc = run_cli(encrypted_home, tmp_path, "run", "--", "env", env=secrets)
    assert proc.returncode == 0, proc.stderr
    names = {line.partition("=")[0] for line in proc.stdout.splitlines()}
    assert "MLTRAIL_KEY_PASSWORD" not in names
    assert "MLTRAIL_TOKEN" not in names
    assert PASSWORD not in proc.stdout
    assert {"MLTRAIL_RUN_ID", "MLTRAIL_HOME", "MLTRAIL_SPOOL"} <= names


def test_a_joined_child_logs_through_the_wrapper_with_an_encrypted_key(
    encrypted_home, tmp_path
):
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(TRAIN))
    env = {"MLTRAIL_KEY_PASSWORD": PASSWORD}
    proc = run_cli(
        encrypted_home, tmp_path, "run", "--", sys.executable, str(script), env=env
    )
    assert proc.returncode == 0, proc.stderr
    assert "warning" not in proc.stderr.replace("warning: the code is not in a git", "")
    child = json.loads(proc.stdout)
    assert child["joined"] is True
    assert child["password"] is False
    run_kinds = kinds(encrypted_home, child["id"])
    assert run_kinds.count("run.started") == 1
    assert run_kinds[-1] == "run.ended"
    assert {"run.metrics", "note"} <= set(run_kinds)
    params = [e.body for e in entries(encrypted_home, child["id"])]
    assert {"source": "api", "params": {"seed": 7}} in params
    token = next(b for b in params if "api_token" in b.get("params", {}))
    assert set(token["params"]["api_token"]) == {"redacted", "salt", "key"}
    stored = (encrypted_home / "ledger.db").read_bytes()
    assert b"sk-live-0123456789abcdef" not in stored
    assert not list((encrypted_home / "runs" / "open").iterdir())
    verified = run_cli(encrypted_home, tmp_path, "verify", env=env)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def test_what_a_child_spooled_survives_a_killed_wrapper(home, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        "import mltrail, time\n"
        "run = mltrail.start_run()\n"
        "run.log_params({'lr': 0.5})\n"
        "print('logged', flush=True)\n"
        "time.sleep(60)\n"
    )
    with subprocess.Popen(
        [sys.executable, "-m", "mltrail", "run", "--", sys.executable, str(script)],
        cwd=tmp_path,
        env={**os.environ, "MLTRAIL_HOME": str(home)},
        stdout=subprocess.PIPE,
        start_new_session=True,
    ) as wrapper:
        assert wrapper.stdout.readline() == b"logged\n"
        os.killpg(wrapper.pid, signal.SIGKILL)
        wrapper.wait(timeout=10)
    (run_id,) = started_ids(home)
    closed = run_cli(home, tmp_path, "runs", "close", "--stale", "--json")
    assert json.loads(closed.stdout) == {"closed": [run_id]}, closed.stderr
    found = entries(home, run_id)
    assert {"source": "api", "params": {"lr": 0.5}} in [e.body for e in found]
    assert found[-1].kind == "run.ended"
    assert found[-1].body["status"] == "aborted"
    assert not list((home / "runs" / "open").iterdir())


def test_a_spooled_entry_of_a_forbidden_kind_is_dropped_with_a_warning(home, tmp_path):
    forge = (
        "import json, os, pathlib; "
        "spool = pathlib.Path(os.environ['MLTRAIL_SPOOL']); "
        "entry = {'kind': 'run.ended', 'body': {'status': 'succeeded'}}; "
        "(spool / '0-forged.json').write_text(json.dumps({'entries': [entry]}))"
    )
    proc = run_cli(
        home, tmp_path, "run", "--", sys.executable, "-c", forge + "; exit(3)"
    )
    assert proc.returncode == 3, proc.stderr
    assert "may not add 'run.ended'" in proc.stderr
    (run_id,) = started_ids(home)
    ended = [e.body for e in entries(home, run_id) if e.kind == "run.ended"]
    assert [(b["status"], b["exit_code"]) for b in ended] == [("failed", 3)]


def test_reusing_a_run_id_is_refused_before_anything_runs(home, tmp_path):
    env = {"MLTRAIL_RUN_ID": "nightly-2026-12-01"}
    first = run_cli(home, tmp_path, "run", "--", "true", env=env)
    assert first.returncode == 0, first.stderr
    second = run_cli(home, tmp_path, "run", "--", "touch", "ran", env=env)
    assert second.returncode == 2
    assert "already names the run started at seq" in second.stderr
    assert "nothing was recorded" in second.stderr
    assert not (tmp_path / "ran").exists()
    assert started_ids(home) == ["nightly-2026-12-01"]
    listing = json.loads(run_cli(home, tmp_path, "runs", "--json").stdout)
    assert [(r["id"], r["status"]) for r in listing] == [
        ("nightly-2026-12-01", "succeeded")
    ]


def test_the_python_api_refuses_a_reused_run_id_too(home, tmp_path):
    code = "import mltrail; mltrail.start_run(capture=False).end()"
    env = {**os.environ, "MLTRAIL_HOME": str(home), "MLTRAIL_RUN_ID": "job-7"}
    for name in ("RANK", "WORLD_SIZE", "MLTRAIL_SPOOL"):
        env.pop(name, None)
    first = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert first.returncode == 0, first.stderr
    again = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                           capture_output=True, text=True, check=False)  # fmt: skip
    assert again.returncode == 1
    assert "InputError: run id job-7 (from MLTRAIL_RUN_ID) already names" in (
        again.stderr
    )
    assert started_ids(home) == ["job-7"]


def test_a_run_id_that_would_leave_the_home_is_refused(home, tmp_path):
    proc = run_cli(home, tmp_path, "run", "--", "true",
                   env={"MLTRAIL_RUN_ID": "../../escape"})  # fmt: skip
    assert proc.returncode == 2
    assert "is not 1 to 128 characters of letters" in proc.stderr
    assert started_ids(home) == []


def test_other_ranks_still_join_a_started_run(home, tmp_path):
    run_id = "01936f0e-0000-7000-8000-0000000000aa"
    launch = {"MLTRAIL_RUN_ID": run_id, "WORLD_SIZE": "2"}
    rank0 = run_cli(home, tmp_path, "run", "--", "true",
                    env={**launch, "RANK": "0", "LOCAL_RANK": "0"})  # fmt: skip
    assert rank0.returncode == 0, rank0.stderr
    rank1 = run_cli(home, tmp_path, "run", "--", "true",
                    env={**launch, "RANK": "1", "LOCAL_RANK": "1"})  # fmt: skip
    assert rank1.returncode == 0, rank1.stderr
    code = (
        "import mltrail; r = mltrail.start_run(); "
        "print(r.id, r.joined, r.records_run_level); r.end()"
    )
    env = {**os.environ, "MLTRAIL_HOME": str(home), **launch, "RANK": "1"}
    env.pop("MLTRAIL_SPOOL", None)
    api = subprocess.run([sys.executable, "-c", code], env=env, cwd=tmp_path,
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert api.returncode == 0, api.stderr
    assert api.stdout.split() == [run_id, "True", "False"]
    assert kinds(home, run_id).count("run.started") == 1
    hardware = [e.body["rank"]["rank"] for e in entries(home, run_id)
                if e.kind == "run.hardware"]  # fmt: skip
    assert sorted(hardware) == [0, 1, 1]


def test_a_wrapper_inside_a_live_run_starts_its_own(home, tmp_path):
    inner = f"{sys.executable} -m mltrail run -q -- true"
    proc = run_cli(home, tmp_path, "run", "--", "sh", "-c", inner)
    assert proc.returncode == 0, proc.stderr
    ids = started_ids(home)
    assert len(set(ids)) == 2
    for run_id in ids:
        assert kinds(home, run_id).count("run.ended") == 1
