"""Witness cosignatures (C2SP tlog-cosignature) through the real CLI.

A witness key is made with ``mltrail witness keygen``; the ledger's side writes
tlog-witness add-checkpoint bodies (``witness request``); the witness cosigns
(``witness cosign``) only what extends what it cosigned before; the ledger
stores the cosigned note (``checkpoint --cosigned``); ``verify --witness-key``
requires it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys

import pytest


def mltrail(home, *args, stdin=None):
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    for name in ("MLTRAIL_WITNESS", "MLTRAIL_TSA_URL", "MLTRAIL_TSA_CA"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=120,
    )


def ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def note(home, text):
    ok(mltrail(home, "append", "--kind", "note", "--body", json.dumps({"text": text})))


class Witness:
    """A witness with its own key and state, outside any ledger home."""

    def __init__(self, folder, name):
        folder.mkdir()
        self.name = name
        self.key = folder / "w.key"
        self.vkey = ok(
            mltrail(folder, "witness", "keygen", "--name", name, "-o", str(self.key))
        ).stdout.strip()

    def cosign(self, home, body, *extra):
        return mltrail(
            home, "witness", "cosign", "--key", str(self.key), "--name", self.name, *extra, "-",
            stdin=body,
        )  # fmt: skip


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    ok(mltrail(path, "init", "--origin", "test.mltrail.local/witness"))
    note(path, "a")
    return path


@pytest.fixture
def w1(tmp_path):
    return Witness(tmp_path / "w1", "witness.example/w1")


def log_key(home):
    return ok(mltrail(home, "keys", "export", "--format", "vkey")).stdout.strip()


def request(home, old=0):
    return ok(mltrail(home, "witness", "request", "--old", str(old))).stdout


def verify_json(home, *args):
    proc = mltrail(home, "verify", "--json", *args)
    return proc.returncode, json.loads(proc.stdout)


def codes(report, severity=None):
    return [p["code"] for p in report["problems"] if severity in (None, p["severity"])]


def test_cosign_store_and_verify(home, w1):
    assert w1.vkey.startswith("witness.example/w1+")
    cosigned = ok(w1.cosign(home, request(home), "--log-key", log_key(home))).stdout
    assert cosigned.count("\n\u2014 ") == 2  # the ledger's line and the witness's
    ok(mltrail(home, "checkpoint", "--cosigned", "-", stdin=cosigned))
    code, report = verify_json(home, "--witness-key", w1.vkey)
    assert code == 0, report["problems"]
    anchor = [a for a in report["anchors"] if a["kind"] == "cosignature"]
    assert len(anchor) == 1
    assert anchor[0]["external"] is True
    assert "cosigned the checkpoint of size 2" in anchor[0]["description"]
    assert "anchors" not in codes(report)


def test_the_witness_follows_the_log_with_proofs(home, w1):
    ok(w1.cosign(home, request(home), "--log-key", log_key(home)))
    note(home, "b")
    note(home, "c")
    answer = ok(w1.cosign(home, request(home, old=2))).stdout  # key kept in the state
    lines = "".join(
        line + "\n" for line in answer.splitlines() if "witness.example/w1" in line
    )
    ok(mltrail(home, "checkpoint", "--cosigned", "-", stdin=lines))  # lines only
    code, report = verify_json(home, "--witness-key", w1.vkey)
    assert code == 0, report["problems"]
    assert "unwitnessed" not in codes(report)
    assert any("size 4" in a["description"] for a in report["anchors"])


def test_records_after_the_cosigned_checkpoint_are_a_warning(home, w1):
    cosigned = ok(w1.cosign(home, request(home), "--log-key", log_key(home))).stdout
    ok(mltrail(home, "checkpoint", "--cosigned", "-", stdin=cosigned))
    note(home, "b")
    code, report = verify_json(home, "--witness-key", w1.vkey)
    assert code == 0
    assert codes(report, "warning").count("unwitnessed") == 1


def test_a_cosignature_by_another_key_does_not_count(home, w1, tmp_path):
    w2 = Witness(tmp_path / "w2", "witness.example/w1")  # same name, other key
    cosigned = ok(w2.cosign(home, request(home), "--log-key", log_key(home))).stdout
    ok(mltrail(home, "checkpoint", "--cosigned", "-", stdin=cosigned))
    code, report = verify_json(home, "--witness-key", w1.vkey)
    assert code == 3
    assert codes(report, "error") == ["witness-missing"]
    assert verify_json(home, "--witness-key", w2.vkey)[0] == 0


def test_a_tampered_cosignature_fails(home, w1):
    cosigned = ok(w1.cosign(home, request(home), "--log-key", log_key(home))).stdout
    body, _, line = cosigned.rstrip("\n").rpartition("\n")
    name, encoded = line.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[8] ^= 0x01  # the cosignature's time
    forged = f"{body}\n{name} {base64.b64encode(bytes(raw)).decode()}\n"
    ok(mltrail(home, "checkpoint", "--cosigned", "-", stdin=forged))
    code, report = verify_json(home, "--witness-key", w1.vkey)
    assert code == 3
    assert "cosignature" in codes(report, "error")
    bad = next(p for p in report["problems"] if p["code"] == "cosignature")
    assert "does not verify" in bad["message"]


def test_a_forged_line_beside_a_genuine_cosignature_is_ignored(home, w1):
    """A cosigned file with a forged line by a required witness is stored (the
    import knows no witness keys) and evidence rows are never removed: every
    later `verify --witness-key` failed for good, even once the witness's genuine
    cosignature of the same checkpoint, or of a later one, was stored. With a
    genuine one covering its records it proves nothing and is a warning."""
    cosigned = ok(w1.cosign(home, request(home), "--log-key", log_key(home))).stdout
    body, _, line = cosigned.rstrip("\n").rpartition("\n")
    name, encoded = line.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[-1] ^= 0x01  # the signature
    forged = f"{body}\n{name} {base64.b64encode(bytes(raw)).decode()}\n"
    ok(mltrail(home, "checkpoint", "--cosigned", "-", stdin=forged))
    code, report = verify_json(home, "--witness-key", w1.vkey)
    assert code == 3, report["problems"]  # nothing genuine vouches: still an error
    assert "cosignature" in codes(report, "error")
    ok(mltrail(home, "checkpoint", "--cosigned", "-", stdin=cosigned))
    note(home, "b")
    later = ok(w1.cosign(home, request(home, old=2))).stdout
    ok(mltrail(home, "checkpoint", "--cosigned", "-", stdin=later))
    code, report = verify_json(home, "--witness-key", w1.vkey)
    assert code == 0, report["problems"]
    [ignored] = [p for p in report["problems"] if p["code"] == "cosignature-ignored"]
    assert ignored["severity"] == "warning"
    assert "does not verify" in ignored["message"]
    assert "checkpoint of size 3 covers its records" in ignored["message"]
    assert "cosignature" not in codes(report)


def test_the_witness_refuses_a_smaller_checkpoint(home, w1):
    old = ok(mltrail(home, "checkpoint")).stdout  # size 2
    note(home, "b")
    ok(w1.cosign(home, request(home), "--log-key", log_key(home)))  # size 3
    proc = w1.cosign(home, old)
    assert proc.returncode == 3
    assert "fewer than the 3 this witness cosigned" in proc.stderr


def test_the_witness_refuses_a_fork(home, w1, tmp_path):
    ok(w1.cosign(home, request(home), "--log-key", log_key(home)))  # size 2
    fork = tmp_path / "fork"
    shutil.copytree(home, fork)  # the same key, two histories from size 2
    note(home, "honest")
    note(fork, "forged")
    ok(w1.cosign(home, request(home, old=2)))  # size 3, honest
    same_size = ok(mltrail(fork, "checkpoint")).stdout
    proc = w1.cosign(fork, same_size)
    assert proc.returncode == 3
    assert "the log forked" in proc.stderr
    note(fork, "more")
    proc = w1.cosign(fork, request(fork, old=3))  # a proof from the fork's size 3
    assert proc.returncode == 3
    assert "does not extend" in proc.stderr


def test_the_witness_refuses_a_checkpoint_the_log_key_did_not_sign(home, w1, tmp_path):
    other = tmp_path / "other"
    ok(mltrail(other, "init", "--origin", "test.mltrail.local/witness"))  # same name
    ok(w1.cosign(home, request(home), "--log-key", log_key(home)))
    proc = w1.cosign(other, request(other))
    assert proc.returncode == 3
    assert "not signed by a key of" in proc.stderr


def test_a_cosigned_checkpoint_of_another_ledger_is_refused(home, w1, tmp_path):
    other = tmp_path / "other"
    ok(mltrail(other, "init", "--origin", "test.mltrail.local/other"))
    cosigned = ok(w1.cosign(other, request(other), "--log-key", log_key(other))).stdout
    proc = mltrail(home, "checkpoint", "--cosigned", "-", stdin=cosigned)
    assert proc.returncode == 2
    assert "not one of this ledger's checkpoints" in proc.stderr


def test_a_rewritten_ledger_loses_its_witness(home, w1, tmp_path):
    """Someone holding the ledger key rebuilds it: the cosigned checkpoint no
    longer holds, and no new one can be had from the witness."""
    cosigned = ok(w1.cosign(home, request(home), "--log-key", log_key(home))).stdout
    ok(mltrail(home, "checkpoint", "--cosigned", "-", stdin=cosigned))
    backup = tmp_path / "before"
    shutil.copytree(home, backup)
    note(home, "b")
    ok(w1.cosign(home, request(home, old=2)))
    shutil.rmtree(home)
    shutil.copytree(backup, home)  # rolled back to size 2 ...
    note(home, "rewritten")  # ... and rewritten to another size 3
    stale = w1.cosign(home, request(home, old=2))
    assert stale.returncode == 2  # tlog-witness's 409: the witness is at 3
    assert "last cosigned size 3" in stale.stderr
    forked = w1.cosign(home, request(home, old=3))
    assert forked.returncode == 3
    assert "the log forked" in forked.stderr
    code, report = verify_json(home, "--witness-key", w1.vkey)
    assert code == 0  # the stored cosignature (size 2) still holds
    assert "unwitnessed" in codes(report, "warning")


def test_witness_keys_from_files_and_bad_keys(home, w1, tmp_path):
    cosigned = ok(w1.cosign(home, request(home), "--log-key", log_key(home))).stdout
    ok(mltrail(home, "checkpoint", "--cosigned", "-", stdin=cosigned))
    key_file = tmp_path / "w1.vkey"
    key_file.write_text(w1.vkey + "\n")
    assert verify_json(home, "--witness-key", str(key_file))[0] == 0
    proc = mltrail(
        home, "verify", "--witness-key", log_key(home)
    )  # a log key, type 0x01
    assert proc.returncode == 2
    assert "0x04 is expected" in proc.stderr


def test_a_witness_without_the_log_key_refuses(home, w1):
    proc = w1.cosign(home, request(home))
    assert proc.returncode == 2
    assert "knows no key of the log" in proc.stderr
    assert "--log-key" in proc.stderr


def test_a_record_dated_after_the_cosignature_is_named(home, w1):
    """The witness cosigned records 0 to 2 now; seq 2 claims next month."""
    from datetime import UTC, datetime, timedelta

    from mltrail.ledger.home import open_home
    from mltrail.testing import FixedClock

    opened = open_home(home, env={})
    try:
        opened.ledger.clock = FixedClock(datetime.now(UTC) + timedelta(days=30))
        opened.ledger.append("note", {"text": "dated a month ahead"})
    finally:
        opened.close()
    cosigned = ok(w1.cosign(home, request(home), "--log-key", log_key(home))).stdout
    ok(mltrail(home, "checkpoint", "--cosigned", "-", stdin=cosigned))
    code, report = verify_json(home, "--witness-key", w1.vkey)
    assert code == 0  # a witness's clock is not audited: a warning
    [bad] = [p for p in report["problems"] if p["code"] == "dated-after-anchor"]
    assert (bad["seq"], bad["severity"]) == (2, "warning")
    assert "witness witness.example/w1" in bad["message"]
