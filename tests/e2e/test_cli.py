"""The mltrail command end to end, as a user runs it: real processes, real files."""

import json
import os
import sqlite3
import subprocess
import sys

import pytest

from mltrail.core.checkpoint import parse_signed_checkpoint
from mltrail.core.merkle import verify_consistency, verify_inclusion


def run(home, *args, stdin=None, check=False):
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    env.pop("MLTRAIL_WITNESS", None)
    env.pop("MLTRAIL_KEY_PASSWORD", None)
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        capture_output=True,
        text=True,
        env=env,
        input=stdin,
        timeout=120,
    )
    if check:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    path = tmp_path_factory.mktemp("cli") / "home"
    run(path, "init", "--origin", "test.mltrail.local/cli", check=True)
    for i in range(6):
        run(
            path,
            "append",
            "--kind",
            "note",
            "--body",
            json.dumps({"text": f"n{i}"}),
            check=True,
        )
    run(path, "checkpoint", check=True)
    return path


def count(home):
    return len(json.loads(run(home, "log", "--json", check=True).stdout))


def test_init_twice_is_safe(home):
    proc = run(home, "init", check=True)
    assert "already exists" in proc.stdout
    assert oct((home / "keys").stat().st_mode)[-3:] == "700"
    key_files = list((home / "keys").glob("*.key"))
    assert key_files
    assert oct(key_files[0].stat().st_mode)[-3:] == "600"


def test_log_json_lists_records(home):
    records = json.loads(run(home, "log", "--json", check=True).stdout)
    assert records[0]["entry"]["kind"] == "key.added"
    assert [r["entry"]["body"]["text"] for r in records[1:7]] == [
        f"n{i}" for i in range(6)
    ]
    assert [r["seq"] for r in records] == list(range(len(records)))


def test_show_resolves_blobs(home, tmp_path):
    attachment = tmp_path / "review.txt"
    attachment.write_text("all checks passed")
    out = json.loads(
        run(
            home,
            "append",
            "--kind",
            "note",
            "--body",
            '{"text": "r"}',
            "--attach",
            str(attachment),
            "--json",
            check=True,
        ).stdout
    )
    shown = json.loads(run(home, "show", str(out["seq"]), "--json", check=True).stdout)
    ref = shown["entry"]["body"]["attachments"][0]
    assert ref["name"] == "review.txt"
    assert shown["blobs"][ref["blob"]] == "all checks passed"


def test_body_from_stdin(home):
    out = run(
        home,
        "append",
        "--kind",
        "note",
        "--body",
        "-",
        "--json",
        stdin='{"text": "piped"}',
        check=True,
    )
    assert json.loads(out.stdout)["entry"]["body"]["text"] == "piped"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--kind", "note", "--body", "{not json"], "--body is not valid JSON"),
        (["--kind", "nope", "--body", "{}"], "unknown kind 'nope'"),
        (["--kind", "note", "--body", '{"txt": 1}'], "does not match its schema"),
        (["--kind", "note", "--body", "[1]"], "must be a JSON object"),
        (["--kind", "key.added", "--body", "{}"], "written by `mltrail keys`"),
        (
            [
                "--kind",
                "note",
                "--body",
                '{"text": "x", "attachments": '
                '[{"blob": "sha256:' + "0" * 64 + '", "size": 1}]}',
            ],
            "not stored",
        ),
    ],
)
def test_bad_input_is_one_line_exit_2_and_writes_nothing(home, args, needle):
    before = count(home)
    proc = run(home, "append", *args)
    assert proc.returncode == 2, proc.stderr
    assert needle in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stderr.startswith("error: ")
    assert count(home) == before


def test_prove_inclusion_and_consistency(home):
    run(home, "checkpoint", check=True)
    bundle = json.loads(run(home, "prove", "3", "--json", check=True).stdout)
    cp = parse_signed_checkpoint(bundle["checkpoint"]).checkpoint
    assert cp.root.hex() == bundle["root"]
    verify_inclusion(
        3,
        bundle["tree_size"],
        bytes.fromhex(bundle["leaf_hash"]),
        [bytes.fromhex(h) for h in bundle["proof"]],
        cp.root,
    )
    cons = json.loads(
        run(home, "prove", "--consistency", "2", "7", "--json", check=True).stdout
    )
    verify_consistency(
        2,
        7,
        bytes.fromhex(cons["old_root"]),
        bytes.fromhex(cons["new_root"]),
        [bytes.fromhex(h) for h in cons["proof"]],
    )
    text = run(home, "prove", "3", check=True).stdout
    assert "leaf_hash:" in text


def test_prove_errors(home):
    proc = run(home, "prove", "100000")
    assert proc.returncode == 2
    assert "no checkpoint covers seq 100000" in proc.stderr
    assert run(home, "prove").returncode == 2


def test_checkpoint_text_is_a_signed_note(home):
    text = run(home, "checkpoint", check=True).stdout
    lines = text.split("\n")
    assert lines[0] == "test.mltrail.local/cli"
    assert lines[3] == ""
    assert lines[4].startswith("\u2014 test.mltrail.local/cli ")


def test_verify_intact_then_tampered(home, tmp_path):
    ok = run(home, "verify")
    assert ok.returncode == 0, ok.stdout + ok.stderr
    assert ok.stdout.startswith("OK:")
    report = json.loads(run(home, "verify", "--json", check=True).stdout)
    assert report["ok"] is True
    copy = tmp_path / "copy"
    subprocess.run(["cp", "-r", str(home), str(copy)], check=True)
    conn = sqlite3.connect(copy / "ledger.db")
    conn.execute("DROP TRIGGER records_no_UPDATE")
    data = conn.execute("SELECT record FROM records WHERE seq = 2").fetchone()[0]
    conn.execute(
        "UPDATE records SET record = ? WHERE seq = 2",
        (bytes(data).replace(b'"n1"', b'"n9"'),),
    )
    conn.commit()
    conn.close()
    bad = run(copy, "verify")
    assert bad.returncode == 3
    assert bad.stdout.startswith("TAMPERED:")
    assert (
        "seq 3: prev hash does not match seq 2: a record was changed or removed"
        in bad.stdout
    )
    assert "seq 2: signature does not verify" in bad.stdout
    report = json.loads(run(copy, "verify", "--json").stdout)
    assert report["ok"] is False
    assert report["first_bad_seq"] == 2


def test_keys_rotate_and_list(tmp_path):
    home = tmp_path / "h"
    run(home, "init", check=True)
    run(home, "append", "--kind", "note", "--body", '{"text": "before"}', check=True)
    rotated = json.loads(run(home, "keys", "rotate", "--json", check=True).stdout)
    run(home, "append", "--kind", "note", "--body", '{"text": "after"}', check=True)
    keys = {
        k["key"]: k
        for k in json.loads(run(home, "keys", "list", "--json", check=True).stdout)
    }
    assert keys[rotated["revoked"]]["status"] == "revoked"
    assert keys[rotated["added"]]["status"] == "valid"
    assert run(home, "verify").returncode == 0
    last = json.loads(run(home, "log", "--json", check=True).stdout)[-1]
    assert last["entry"]["sig"]["key"] == rotated["added"]


def test_missing_and_corrupt_ledgers(tmp_path):
    missing = run(tmp_path / "nothing", "log")
    assert missing.returncode == 2
    assert "no ledger at" in missing.stderr
    assert "mltrail init" in missing.stderr
    home = tmp_path / "corrupt"
    run(home, "init", check=True)
    (home / "ledger.db").write_bytes(b"this is not a database" * 100)
    for name in ("ledger.db-wal", "ledger.db-shm"):
        (home / name).unlink(missing_ok=True)
    corrupt = run(home, "log")
    assert corrupt.returncode == 4
    assert "cannot open ledger" in corrupt.stderr


def test_missing_key_file(tmp_path):
    home = tmp_path / "h"
    run(home, "init", check=True)
    for key in (home / "keys").glob("*.key"):
        key.unlink()
    proc = run(home, "append", "--kind", "note", "--body", '{"text": "x"}')
    assert proc.returncode == 2
    assert "signing key" in proc.stderr
    assert "not found" in proc.stderr


@pytest.mark.parametrize(
    ("password", "message"),
    [("wrong", "wrong password"), (None, "encrypted and no password")],
)
def test_encrypted_key_with_wrong_or_no_password_is_an_auth_error(
    tmp_path, password, message
):
    home = tmp_path / "h"
    env = {**os.environ, "MLTRAIL_HOME": str(home), "MLTRAIL_KEY_PASSWORD": "right"}
    subprocess.run(
        [sys.executable, "-m", "mltrail", "init"],
        env=env,
        check=True,
        capture_output=True,
    )
    env.pop("MLTRAIL_KEY_PASSWORD")
    if password is not None:
        env["MLTRAIL_KEY_PASSWORD"] = password
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "mltrail",
            "append",
            "--kind",
            "note",
            "--body",
            '{"text": "x"}',
        ],
        env=env,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 5
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert count(home) == 1


@pytest.mark.parametrize(
    "command",
    [
        "init",
        "append",
        "log",
        "show",
        "checkpoint",
        "prove",
        "verify",
        "export",
        "verify-bundle",
        "keys",
        "demo",
        "run",
        "runs",
        "step",
        "push",
    ],
)
def test_help_teaches(command, tmp_path):
    proc = run(tmp_path, command, "--help", check=True)
    assert "Usage: mltrail" in proc.stdout


def test_demo_runs(tmp_path):
    proc = run(tmp_path / "unused", "demo", check=True)
    out = proc.stdout
    assert "OK:" in out
    assert "TAMPERED:" in out
    assert "anchor (outside the home): key" in out  # the auditor's pinned key
    for name in ("prepare", "baseline", "retrain"):
        assert f"{name} " in out
    assert "-  lr: 0.5  (argv)" in out
    assert "+  lr: 8  (argv)" in out
    assert "train: changed" in out
    assert "by file: 1 changed, 0 added, 0 removed, 0 unchanged" in out
    assert "now holds production" in out
    assert "<-wrote- run prepare" in out
    assert "succeeded (exit 0)" in proc.stderr
    assert not (tmp_path / "unused").exists()


def test_demo_records_into_a_given_home(tmp_path):
    run(tmp_path / "unused", "demo", "--home", str(tmp_path / "mine"), check=True)
    listing = json.loads(run(tmp_path / "mine", "runs", "--json", check=True).stdout)
    assert [r["name"] for r in listing] == ["prepare", "baseline", "retrain"]
    assert run(tmp_path / "mine", "verify").returncode == 0
