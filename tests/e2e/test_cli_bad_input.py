"""Hostile or broken input on the command line: one error line, the documented exit
code, nothing written, no hang. Each case was a traceback, a corrupt ledger or a hang."""

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest

from mltrail.core.codec import format_time
from mltrail.core.entry import Entry, sign_entry
from mltrail.ledger.home import open_home

NOTE = json.dumps({"text": "fine"})


def mltrail(home, *args, stdin=None, cwd=None, env=None):
    """Run the CLI; ``args`` may hold bytes (arguments that are not UTF-8)."""
    full_env = {**os.environ, "MLTRAIL_HOME": str(home), **(env or {})}
    for name in ("MLTRAIL_RUN_ID", "MLTRAIL_WITNESS", "MLTRAIL_KEY_PASSWORD"):
        if name not in (env or {}):
            full_env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        capture_output=True,
        env=full_env,
        stdin=stdin,
        cwd=cwd,
        timeout=120,
        check=False,
    )


def one_error(proc, code, *fragments):
    """The process failed with ``code`` and one ``error:`` line (+ a hint)."""
    err = proc.stderr.decode("utf-8", "replace")
    assert proc.returncode == code, err
    assert "Traceback" not in err
    lines = [line for line in err.splitlines() if line.strip()]
    assert lines
    assert lines[0].startswith("error: ")
    assert all(line.startswith("hint: ") for line in lines[1:]), err
    for fragment in fragments:
        assert fragment in lines[0], err


def size(home):
    opened = open_home(home, writable=False, env={})
    try:
        return opened.ledger.head().size
    finally:
        opened.close()


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    assert mltrail(path, "init").returncode == 0
    return path


# -- 1. depth and size ------------------------------------------------------------


def deep_body(depth):
    return '{"text": "x", "a": ' + "[" * depth + "]" * depth + "}"


@pytest.mark.parametrize("depth", [64, 980, 100_000])
def test_a_deep_body_is_refused_at_append(home, tmp_path, depth):
    body = tmp_path / "deep.json"
    body.write_text(deep_body(depth))
    one_error(mltrail(home, "append", "--kind", "note", "--body", f"@{body}"), 2, "64")
    assert size(home) == 1
    assert mltrail(home, "verify").returncode == 0


def test_a_body_just_inside_the_depth_limit_is_kept_and_read_back(home, tmp_path):
    body = tmp_path / "deep.json"
    body.write_text(deep_body(63))
    proc = mltrail(home, "append", "--kind", "note", "--body", f"@{body}")
    assert proc.returncode == 0, proc.stderr
    assert mltrail(home, "verify").returncode == 0
    assert mltrail(home, "log", "--json").returncode == 0
    assert mltrail(home, "show", "1").returncode == 0


@pytest.mark.parametrize(
    ("extra", "message"),
    [(-100, "bytes of canonical JSON"), (1, "is larger than the limit of 4,194,304")],
)
def test_a_body_past_the_size_limit_is_refused(home, tmp_path, extra, message):
    body = tmp_path / "big.json"
    frame = len(json.dumps({"text": "x", "pad": ""}))
    body.write_text(json.dumps({"text": "x", "pad": "y" * (4 * 2**20 - frame + extra)}))
    assert body.stat().st_size == 4 * 2**20 + extra
    proc = mltrail(home, "append", "--kind", "note", "--body", f"@{body}")
    one_error(proc, 2, message)
    assert size(home) == 1


def test_an_over_deep_record_an_older_version_wrote_does_not_crash_readers(home):
    opened = open_home(home, env={})
    try:  # what an older mltrail accepted: signed and appended without the limits
        body = {"text": "old", "deep": json.loads("[" * 900 + "]" * 900)}
        now = format_time(datetime.now(UTC))
        entry = Entry("note", now, {}, body, run="old-run")
        opened.ledger._append_signed([sign_entry(entry, opened.ledger.signer)])
        opened.ledger.append(
            "run.started", {"source": "api", "name": "later"}, run="later-run"
        )
    finally:
        opened.close()
    verify = mltrail(home, "verify", "--json")
    assert verify.returncode == 3
    report = json.loads(verify.stdout)
    assert report["first_bad_seq"] == 1
    malformed = [p for p in report["problems"] if p["code"] == "malformed"]
    assert [(p["seq"], "nests deeper than 66" in p["message"]) for p in malformed] == [
        (1, True)
    ]
    one_error(mltrail(home, "log"), 2, "nests deeper")
    one_error(mltrail(home, "show", "1"), 2, "nests deeper")
    runs = mltrail(home, "runs", "--json")
    assert runs.returncode == 0, runs.stderr
    assert "Traceback" not in runs.stderr.decode()
    assert "record(s) 1 cannot be read" in runs.stderr.decode()
    assert [r["id"] for r in json.loads(runs.stdout)] == ["later-run"]


# -- 2. integers ------------------------------------------------------------------


@pytest.mark.parametrize("how", ["inline", "file", "stdin"])
def test_integers_json_cannot_carry_are_refused_not_rounded(home, tmp_path, how):
    text = '{"text": "x", "n": 9007199254740993}'
    file = tmp_path / "n.json"
    file.write_text(text)
    body = {"inline": text, "file": f"@{file}", "stdin": "-"}[how]
    with file.open("rb") as stdin:
        proc = mltrail(home, "append", "--kind", "note", "--body", body, stdin=stdin)
    one_error(proc, 2, "integer 9007199254740993 is beyond", "write it as a string")
    assert size(home) == 1


# -- 3. one error line instead of a traceback --------------------------------------


@pytest.mark.parametrize(
    "args",
    [
        ["append", "--kind", "note", "--body", b'{"text": "\xff"}'],
        ["runs", "--name", b"\xff"],
        ["runs", "--user", b"caf\xe9"],
        ["show", b"\xff\xfe"],
        ["diff", b"a\xff", "b"],
        ["keys", "rotate", "--reason", b"\xff"],
        ["run", "--name", b"\xff", "--", "true"],
    ],
)
def test_arguments_that_are_not_utf8(home, args):
    one_error(mltrail(home, *args), 2, "is not valid UTF-8")
    assert size(home) == 1


def test_a_body_file_or_stdin_that_is_not_utf8(home, tmp_path):
    file = tmp_path / "latin1.json"
    file.write_bytes(b'{"text": "caf\xe9"}')
    proc = mltrail(home, "append", "--kind", "note", "--body", f"@{file}")
    one_error(proc, 2, "is not UTF-8 text")
    with file.open("rb") as stdin:
        proc = mltrail(home, "append", "--kind", "note", "--body", "-", stdin=stdin)
    one_error(proc, 2, "stdin is not UTF-8 text")
    assert size(home) == 1


@pytest.mark.parametrize(
    "args",
    [
        ["runs", "--week", "9999-W52"],
        ["runs", "--until", "9999-12-31"],
        ["runs", "--since", "9999-12-31", "--until", "9999-12-31"],
        ["model", "history", "--at", "9999-12-31"],
    ],
)
def test_dates_out_of_range(home, args):
    one_error(mltrail(home, *args), 2, "out of the range of dates")


@pytest.fixture
def recorded(home, tmp_path):
    proc = mltrail(home, "run", "--name", "r", "--", "true", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return json.loads(mltrail(home, "runs", "--json").stdout)[0]["id"]


def test_reproduce_into_a_folder_that_cannot_be_created(home, tmp_path, recorded):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    for out in [blocker / "sub", Path("/proc/mltrail-test/x")]:
        proc = mltrail(home, "reproduce", recorded, "--out", str(out))
        one_error(proc, 2, "cannot write the reproduction into")


def test_reproduce_keeps_a_config_from_a_parent_folder_inside_the_output(
    home, tmp_path
):
    project, shared = tmp_path / "project", tmp_path / "shared"
    project.mkdir()
    shared.mkdir()
    (shared / "conf.yaml").write_text("lr: 0.1\n")
    proc = mltrail(
        home, "run", "--config", "../shared/conf.yaml", "--", "true", cwd=project
    )
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(mltrail(home, "runs", "--json").stdout)[0]["id"]
    proc = mltrail(home, "reproduce", run_id, "--out", "repro", cwd=project)
    assert proc.returncode == 0, proc.stderr
    assert (project / "repro" / "configs" / "conf.yaml").read_text() == "lr: 0.1\n"
    assert not (project / "shared").exists()


@pytest.mark.parametrize("run_id", ["a/b", "../../escaped", ".", "x" * 129])
def test_run_ids_that_are_not_file_names(home, tmp_path, run_id):
    marker = tmp_path / "ran"
    proc = mltrail(
        home, "run", "--", "touch", str(marker), env={"MLTRAIL_RUN_ID": run_id}
    )
    one_error(proc, 2, "MLTRAIL_RUN_ID", "is not 1 to 128 characters")
    assert not marker.exists()
    assert not (tmp_path / "escaped.json").exists()
    assert not (home / "escaped.json").exists()
    proc = mltrail(home, "append", "--kind", "note", "--run", run_id, "--body", NOTE)
    one_error(proc, 2, "is not 1 to 128 characters")
    one_error(mltrail(home, "runs", "close", run_id), 2, f"no run {run_id}")
    assert size(home) == 1


def test_start_run_with_a_bad_run_id(home, tmp_path):
    code = "import mltrail\nwith mltrail.start_run('x'):\n    pass\n"
    proc = subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "MLTRAIL_HOME": str(home), "MLTRAIL_RUN_ID": "../x"},
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 1
    assert "InputError: MLTRAIL_RUN_ID: run id '../x' is not" in proc.stderr
    assert size(home) == 1
    assert not (home / "runs" / "x.json").exists()


@pytest.mark.parametrize("where", ["under-a-file", "proc"])
def test_a_home_that_cannot_be_created(tmp_path, where):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    home = blocker / "home" if where == "under-a-file" else Path("/proc/mltrail-x")
    one_error(mltrail(home, "init"), 2, "cannot create the ledger home")
    one_error(mltrail(home, "run", "--", "true", cwd=tmp_path), 2, "cannot create")


def test_a_witness_that_is_not_utf8(home):
    """The home's witness damaged: `checkpoint` (which would write it) stops with
    a usage error; `verify` reports it (exit 3, ADR 0006 amendment: whoever
    writes the home wrote it, and the auditor still gets the report)."""
    (home / "witness" / "checkpoint").write_bytes(b"\xff\xfe not a checkpoint\n")
    one_error(mltrail(home, "checkpoint"), 2, "witness", "not UTF-8 text")
    proc = mltrail(home, "verify")
    assert proc.returncode == 3, proc.stderr
    assert b"witnessed checkpoint" in proc.stdout
    assert b"not UTF-8 text" in proc.stdout


def test_a_witness_that_never_ends(home):
    proc = mltrail(home, "verify", env={"MLTRAIL_WITNESS": "/dev/zero"})
    one_error(proc, 2, "witness /dev/zero is a character device")


def test_a_manifest_that_cannot_be_written(tmp_path):
    (tmp_path / "f.txt").write_text("data")
    out = tmp_path / "missing" / "m.jsonl"
    proc = mltrail(
        tmp_path / "home", "data", "hash", "f.txt", "--manifest", str(out), cwd=tmp_path
    )
    one_error(proc, 2, "cannot write the manifest to")


def test_a_full_disk_is_a_store_error_and_writes_nothing(home, monkeypatch, capsys):
    from mltrail.cli.main import main
    from mltrail.storage.sqlite import SQLiteStore

    connect = SQLiteStore._connect

    def no_room_to_grow(self, create):
        conn = connect(self, create)
        pages = conn.execute("PRAGMA page_count").fetchone()[0]
        conn.execute(f"PRAGMA max_page_count = {pages}")  # SQLite hits SQLITE_FULL
        return conn

    monkeypatch.setattr(SQLiteStore, "_connect", no_room_to_grow)
    monkeypatch.setenv("MLTRAIL_HOME", str(home))
    monkeypatch.delenv("MLTRAIL_WITNESS", raising=False)
    body = json.dumps({"text": "x" * 50_000})
    with pytest.raises(SystemExit) as exited:
        main(["append", "--kind", "note", "--body", body])
    assert exited.value.code == 4
    err = capsys.readouterr().err
    assert err.startswith("error: the disk holding ledger")
    assert "is full: nothing was written" in err
    monkeypatch.undo()
    assert size(home) == 1
    assert mltrail(home, "verify").returncode == 0


# -- 4. unbounded input -------------------------------------------------------------


def test_a_key_file_that_never_ends(tmp_path):
    proc = mltrail(tmp_path / "home", "init", "--key", "/dev/zero")
    one_error(proc, 2, "signing key /dev/zero is a character device")
    big = tmp_path / "big.key"
    big.write_bytes(b"-" * (64 * 2**10))
    big.chmod(0o600)
    one_error(mltrail(tmp_path / "home", "init", "--key", str(big)), 2, "larger than")
    assert not (tmp_path / "home").exists()


def test_a_body_that_never_ends(home):
    proc = mltrail(home, "append", "--kind", "note", "--body", "@/dev/zero")
    one_error(proc, 2, "body file /dev/zero is larger than the limit")
    with open("/dev/zero", "rb") as zero:
        proc = mltrail(home, "append", "--kind", "note", "--body", "-", stdin=zero)
    one_error(proc, 2, "stdin is larger than the limit")
    assert size(home) == 1


@pytest.mark.parametrize("suffix", ["yaml", "json", "toml"])
def test_a_config_that_is_a_pipe_is_refused_before_the_command_runs(
    home, tmp_path, suffix
):
    fifo = tmp_path / f"conf.{suffix}"
    os.mkfifo(fifo)
    marker = tmp_path / "ran"
    proc = mltrail(home, "run", "--config", str(fifo), "--", "touch", str(marker))
    one_error(proc, 2, "is a named pipe (FIFO), not a regular file")
    assert not marker.exists()
    assert size(home) == 1


def test_an_attachment_that_never_ends(home):
    proc = mltrail(
        home, "append", "--kind", "note", "--body", NOTE, "--attach", "/dev/zero"
    )
    one_error(proc, 2, "attachment /dev/zero is a character device")


@pytest.mark.parametrize(
    "args",
    [
        ["verify", "--workers", "1500"],
        ["verify", "--workers", "0"],
        ["runs", "-n", "99999999999999999999999"],
        ["runs", "-n", "-1"],
        ["log", "--limit", "0"],
        ["log", "--from", "-3"],
        ["diff", "a", "b", "--files", "-1"],
        ["model", "delta", "--top", "-1", ".", "."],
        ["run", "--log-limit", "4096GiB", "--", "true"],
    ],
)
def test_counts_and_sizes_are_bounded(home, tmp_path, args):
    proc = mltrail(home, *args, cwd=tmp_path)
    err = proc.stderr.decode()
    assert proc.returncode == 2, err
    assert "Traceback" not in err
    assert "Invalid value" in err
    assert size(home) == 1
