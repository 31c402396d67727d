"""Commitments need the key: a dictionary attack on the ledger alone finds nothing,
the auditor with the key confirms; a normal run is not masked; logs can be off."""

import base64
import hashlib
import hmac
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path

import pytest

import mltrail
from mltrail.capture.run.commitment import check_commitment
from mltrail.ledger.keystore import COMMITMENT_KEY_FILE, load_commitment_key
from mltrail.record.commitments import commitments_in

WORDS = ["123456", "password", "letmein", "hunter2", "qwerty", "dragon", "monkey"]


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    mltrail.init_home(path, origin="test.mltrail.local/commitments", env={})
    return path


def run_cli(home, cwd, *args, env=None, stdin=None):
    full = {**os.environ, "MLTRAIL_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args], cwd=cwd, env=full, input=stdin,
        capture_output=True, timeout=60, check=False,
    )  # fmt: skip


def records(home):
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        return list(opened.ledger.records())
    finally:
        opened.close()


def the_commitments(home):
    return [c for r in records(home) for _, c in commitments_in(r.entry.body)]


def guesses(commitment, word):
    """Every way to test a guess with what the ledger stores: the salt and the
    key id are there, the key is not."""
    salt = bytes.fromhex(commitment["salt"])
    key_id = commitment.get("key", "").encode()
    w = word.encode()
    yield from (
        hashlib.sha256(salt + w).hexdigest(),
        hashlib.sha256(w).hexdigest(),
        hashlib.sha256(w + salt).hexdigest(),
        hmac.new(salt, w, hashlib.sha256).hexdigest(),
        hmac.new(key_id, salt + w, hashlib.sha256).hexdigest(),
        hmac.new(
            key_id, b"mltrail/commitment/v1\0" + salt + w, hashlib.sha256
        ).hexdigest(),
    )


def test_a_dictionary_attack_on_the_ledger_alone_finds_nothing(home, tmp_path):
    ran = run_cli(home, tmp_path, "run", "--", "true", "--password", "hunter2")
    assert ran.returncode == 0, ran.stderr
    found = the_commitments(home)
    assert found
    assert all(c["redacted"].startswith("hmac-sha256:") for c in found)
    stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file()
                      and not p.match("keys/*"))  # fmt: skip
    for commitment in found:
        digest = commitment["redacted"].split(":", 1)[1]
        for word in WORDS:
            assert digest not in set(guesses(commitment, word)), word
    assert b"hunter2" not in stored
    # the same attack breaks an old salted SHA-256 commitment at once
    old_salt = os.urandom(16)
    old = {"redacted": "sha256:" + hashlib.sha256(old_salt + b"hunter2").hexdigest(),
           "salt": old_salt.hex()}  # fmt: skip
    cracked = [w for w in WORDS if old["redacted"][7:] in set(guesses(old, w))]
    assert cracked == ["hunter2"]


def test_the_auditor_with_the_key_confirms_it(home, tmp_path):
    run_cli(home, tmp_path, "run", "--", "true", "--password", "hunter2")
    key_file = home / COMMITMENT_KEY_FILE
    assert key_file.stat().st_mode & 0o777 == 0o600
    key = load_commitment_key(home, create=False)
    assert any(check_commitment("hunter2", c, key) for c in the_commitments(home))
    assert not any(check_commitment("hunter3", c, key) for c in the_commitments(home))
    checked = run_cli(home, tmp_path, "secrets", "check", "--json", stdin=b"hunter2\n")
    assert checked.returncode == 0, checked.stderr
    matches = json.loads(checked.stdout)["matches"]
    assert [m["path"] for m in matches] == ["body.command[2]", "body.params.password"]
    wrong = run_cli(home, tmp_path, "secrets", "check", stdin=b"hunter3")
    assert wrong.returncode == 1
    # without the key nothing can be confirmed, and the CLI says why
    key_file.unlink()
    blind = run_cli(home, tmp_path, "secrets", "check", stdin=b"hunter2")
    assert blind.returncode == 2  # nothing matched, and keyed ones could not be checked
    assert b"could not be checked" in blind.stderr


def test_a_normal_run_is_stored_as_printed(home, tmp_path):
    """Digests, commit ids, UUIDs, signatures and dataset ids are no secrets."""
    lines = [
        "sha256 " + hashlib.sha256(b"x").hexdigest(),
        "dataset sha256:" + hashlib.sha256(b"y").hexdigest(),
        "commit " + hashlib.sha1(b"z").hexdigest(),
        "run " + str(uuid.uuid4()),
        'sig "' + base64.b64encode(os.urandom(64)).decode() + '"',
        "loss=0.1234 lr=0.001 step=100 tokens/s=1234.5 max_tokens=2048",
        "key: train_loss  eval_key: val/acc",
    ]
    text = "\n".join(lines) + "\n"
    (tmp_path / "out.txt").write_text(text)
    ran = run_cli(home, tmp_path, "run", "--", "cat", "out.txt")
    assert ran.returncode == 0, ran.stderr
    assert ran.stdout.decode() == text
    ended = [r.entry.body for r in records(home) if r.entry.kind == "run.ended"][-1]
    assert "masked" not in ended["stdout"]
    assert ended["stdout"]["sha256"] == hashlib.sha256(text.encode()).hexdigest()
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        assert (
            opened.ledger.get_blob(ended["stdout"]["stored"]["blob"]) == text.encode()
        )
    finally:
        opened.close()


@pytest.mark.parametrize("how", ["option", "env", "settings"])
def test_logs_can_be_kept_out_entirely(home, tmp_path, how):
    args, env = ["run"], {}
    if how == "option":
        args += ["--log-limit", "0"]
    elif how == "env":
        env["MLTRAIL_STORE_LOGS"] = "0"
    else:
        settings = json.loads((home / "ledger.json").read_text())
        (home / "ledger.json").write_text(json.dumps({**settings, "store_logs": False}))
    secret = "password=hunter22"
    ran = run_cli(home, tmp_path, *args, "--", "echo", secret, env=env)
    assert ran.returncode == 0, ran.stderr
    stdout = [r.entry.body for r in records(home) if r.entry.kind == "run.ended"][-1][
        "stdout"
    ]
    assert stdout["stored"] is None
    assert stdout["omitted"] == stdout["size"]
    # the hash is of the masked stream: a short log's hash is no guessing target
    masked = b"password=[MASKED:password]\n"
    assert stdout["sha256"] == hashlib.sha256(masked).hexdigest()
    assert stdout["sha256"] != hashlib.sha256(secret.encode() + b"\n").hexdigest()


def test_a_secret_split_across_reads_is_masked(home, tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(
        "import sys, time\n"
        "for part in ('token=', 'hunt', 'er22', 'xyz', '\\n'):\n"
        "    sys.stdout.write(part); sys.stdout.flush(); time.sleep(0.05)\n"
    )
    ran = run_cli(home, tmp_path, "run", "--", sys.executable, str(script),
                  env={"MY_TOKEN": "hunter22xyz"})  # fmt: skip
    assert ran.returncode == 0, ran.stderr
    stored = b"".join(p.read_bytes() for p in Path(home).rglob("*") if p.is_file())
    assert b"hunter22xyz" not in stored
    assert b"token=[MASKED:MY_TOKEN]" in stored
