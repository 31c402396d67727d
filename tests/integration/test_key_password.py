"""The key password (``MLTRAIL_KEY_PASSWORD``) as an attacker would probe it.

It must never be recorded (not even as a commitment: ADR 0013 amendment
"mltrail's own secrets"), never be printed, and every command must read the
same bytes from it (ADR 0003 amendment "the key password").
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from typing import TYPE_CHECKING

import pytest

from cli_runner import INHERITED_NOT, mltrail
from ledger_reading import entries
from mltrail.capture.machine.environment import is_recorded_variable
from mltrail.ledger.keystore import load_signer

if TYPE_CHECKING:
    from pathlib import Path

pytestmark = pytest.mark.skipif(os.name != "posix", reason="POSIX environment bytes")

# b"pw\xff-d\xe9j\xe0" read by Python from the environment: lone surrogates
NOT_UTF8 = b"pw\xff-d\xe9j\xe0-secret".decode("utf-8", "surrogateescape")
PASSWORD = "Tr0ub4dor&3-not-recorded"


def test_a_password_that_is_not_utf8_is_read_the_same_by_every_command(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    env = {"MLTRAIL_KEY_PASSWORD": NOT_UTF8}
    assert mltrail(home, "init", env=env).returncode == 0
    rotated = mltrail(home, "keys", "rotate", "--reason", "test", env=env)
    assert rotated.returncode == 0, rotated.stderr
    note = ("append", "--kind", "note", "--body", '{"text": "after"}')
    appended = mltrail(home, *note, env=env)
    assert appended.returncode == 0, appended.stderr
    out = tmp_path / "bob.key"
    made = mltrail(home, "keys", "new", "--out", str(out), env=env)
    assert made.returncode == 0, made.stderr
    password = NOT_UTF8.encode("utf-8", "surrogateescape")
    assert load_signer(out, password).key_id in made.stdout
    registered = mltrail(
        home, "keys", "register", "--key-file", str(out), "--identity", "bob", env=env
    )
    assert registered.returncode == 0, registered.stderr
    for proc in (rotated, appended, made, registered):
        assert "Traceback" not in proc.stderr


def test_a_wrong_password_is_one_clear_error_that_does_not_echo_it(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    assert mltrail(home, "init", env={"MLTRAIL_KEY_PASSWORD": PASSWORD}).returncode == 0
    wrong = "Tr0ub4dor&3-WRONG-guess"
    for args in (
        ("append", "--kind", "note", "--body", '{"text": "x"}'),
        ("keys", "rotate", "--reason", "test"),
        ("run", "--", "true"),
    ):
        proc = mltrail(home, *args, env={"MLTRAIL_KEY_PASSWORD": wrong})
        assert proc.returncode == 5, proc.stderr
        assert "wrong password for signing key" in proc.stderr
        assert "Traceback" not in proc.stderr
        assert wrong not in proc.stderr + proc.stdout
        assert PASSWORD not in proc.stderr + proc.stdout


RUN_IN_PROCESS = """
import mltrail
with mltrail.start_run(name="in-process") as run:
    run.log_params({"lr": 0.1})
"""


def test_an_in_process_run_records_no_trace_of_mltrails_own_secrets(
    tmp_path: Path,
) -> None:
    home = tmp_path / "home"
    secrets = {
        "MLTRAIL_KEY_PASSWORD": PASSWORD,
        "MLTRAIL_WITNESS_KEY_PASSPHRASE": "another-secret-passphrase",
    }
    assert mltrail(home, "init", env=secrets).returncode == 0
    script = tmp_path / "train.py"
    script.write_text(textwrap.dedent(RUN_IN_PROCESS))
    env = {**os.environ, "MLTRAIL_HOME": str(home), **secrets}
    for name in ("MLTRAIL_RUN_ID", "MLTRAIL_WITNESS", "MLTRAIL_SPOOL"):
        env.pop(name, None)
    done = subprocess.run(
        [sys.executable, str(script)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    [environment] = [e.body for e in entries(home) if e.kind == "run.environment"]
    recorded = environment["variables"]
    assert "MLTRAIL_HOME" in recorded  # the MLTRAIL_ prefix is recorded...
    assert not set(secrets) & set(recorded)  # ...but not its secrets
    stored = json.dumps([e.to_dict() for e in entries(home)])
    for value in secrets.values():
        assert value not in stored


def test_naming_an_mltrail_secret_to_record_does_not_record_it() -> None:
    assert is_recorded_variable("MY_SETTING", extra=("MY_SETTING",))
    for name in ("MLTRAIL_KEY_PASSWORD", "MLTRAIL_TOKEN"):
        assert not is_recorded_variable(name)
        assert not is_recorded_variable(name, extra=(name,))
    assert "MLTRAIL_KEY_PASSWORD" in INHERITED_NOT  # the tests above set it
