"""`mltrail data` and data options of `mltrail run`, as a user runs them."""

import functools
import http.server
import json
import os
import shutil
import subprocess
import sys
import threading
import time

import pytest

import mltrail


def mltrail_cmd(home, *args, cwd=None):
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    for name in ("MLTRAIL_RUN_ID", "MLTRAIL_WITNESS", "RANK", "WORLD_SIZE"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        capture_output=True,
        env=env,
        cwd=cwd,
        timeout=120,
        check=False,
    )


@pytest.fixture
def dataset(tmp_path):
    root = tmp_path / "data"
    (root / "train").mkdir(parents=True)
    (root / "train" / "a.csv").write_bytes(b"x,y\n1,0\n2,1\n")
    (root / "train" / "with space.csv").write_bytes(b"x,y\n3,0\n")
    (root / "train" / "back\\slash.csv").write_bytes(b"odd name\n")
    (root / os.fsdecode(b"caf\xff.bin")).write_bytes(b"\x00\x01")
    (root / "empty.txt").write_bytes(b"")
    return root


def test_data_hash_prints_what_sha256sum_prints(tmp_path, dataset):
    proc = mltrail_cmd(tmp_path / "home", "data", "hash", "data", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    files = sorted(
        os.path.relpath(os.path.join(d, f), tmp_path)
        for d, _, names in os.walk(dataset)
        for f in names
    )
    expected = subprocess.run(
        [shutil.which("sha256sum"), *files],
        cwd=tmp_path,
        capture_output=True,
        check=True,
    ).stdout
    assert sorted(proc.stdout.splitlines()) == sorted(expected.splitlines())
    assert b"dataset " in proc.stderr
    check = subprocess.run(
        ["sha256sum", "-c"], input=proc.stdout, cwd=tmp_path, capture_output=True
    )
    assert check.returncode == 0, check.stdout


def test_data_hash_json_and_manifest(tmp_path, dataset):
    out = tmp_path / "manifest.jsonl"
    proc = mltrail_cmd(
        tmp_path / "home",
        "data",
        "hash",
        str(dataset),
        "--json",
        "--manifest",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    (result,) = json.loads(proc.stdout)
    assert result["files"] == 5
    from mltrail.core.manifest import parse_manifest

    manifest = parse_manifest(out.read_bytes())
    assert manifest.dataset_id == result["dataset"]
    assert any(e.raw_path == b"caf\xff.bin" for e in manifest.entries)


def test_a_missing_path_is_a_clear_error(tmp_path):
    proc = mltrail_cmd(tmp_path / "home", "data", "hash", "nope", cwd=tmp_path)
    assert proc.returncode == 2
    assert b"nope" in proc.stderr


def test_describe_warns_about_leakage_and_exits_1(tmp_path):
    (tmp_path / "train.csv").write_text("id,f,y\n1,0.5,a\n2,0.7,b\n3,0.1,a\n")
    (tmp_path / "test.csv").write_text('id,f,y\n"3",0.1,a\n4,0.9,b\n')
    proc = mltrail_cmd(
        tmp_path / "home",
        "data",
        "describe",
        "train=train.csv",
        "test=test.csv",
        "--label",
        "y",
        "--json",
        cwd=tmp_path,
    )
    assert proc.returncode == 1
    report = json.loads(proc.stdout)
    assert report["splits"]["train"]["label"]["counts"] == {"a": 2, "b": 1}
    assert report["warnings"] == [
        "1 row of test also appears in train: possible leakage"
    ]


def test_run_records_split_statistics_overlaps_and_dvc(tmp_path):
    home = tmp_path / "home"
    (tmp_path / "train.csv").write_text("f,y\n1,a\n2,b\n")
    (tmp_path / "val.csv").write_text("f,y\n2,b\n3,a\n")
    (tmp_path / "train.csv.dvc").write_text(
        "outs:\n- md5: 0123456789abcdef0123456789abcdef\n  size: 12\n  hash: md5\n"
        "  path: train.csv\n"
    )
    proc = mltrail_cmd(
        home,
        "run",
        "--label",
        "y",
        "--data",
        "train=train.csv",
        "--data",
        "validation=val.csv",
        "--",
        "true",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert b"1 row of validation also appears in train" in proc.stderr
    opened = mltrail.open_home(home, writable=False, env={})
    data = {
        r.entry.body["role"]: r.entry.body
        for r in opened.ledger.records()
        if r.entry.kind == "run.data"
    }
    opened.close()
    assert data["train"]["table"]["rows"] == 2
    assert data["train"]["overlaps"] == [{"role": "validation", "rows": 1}]
    assert data["train"]["dvc"]["md5"] == "0123456789abcdef0123456789abcdef"
    assert "dvc" not in data["validation"]


@pytest.fixture
def http_root(tmp_path):
    root = tmp_path / "served"
    root.mkdir()
    handler = functools.partial(
        http.server.SimpleHTTPRequestHandler, directory=str(root)
    )
    handler.log_message = lambda *a: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_run_with_remote_data_over_http(tmp_path, http_root):
    root, base = http_root
    (root / "train.csv").write_bytes(b"x\n1\n")
    home = tmp_path / "home"
    proc = mltrail_cmd(
        home, "run", "--data", f"train={base}/train.csv", "--", "true", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr
    opened = mltrail.open_home(home, writable=False, env={})
    (body,) = [
        r.entry.body for r in opened.ledger.records() if r.entry.kind == "run.data"
    ]
    opened.close()
    assert body["url"] == f"{base}/train.csv"
    assert body["checksums"] == {"store": 0, "streamed": 1}
    local = mltrail_cmd(home, "data", "hash", str(root / "train.csv"), "--json")
    assert json.loads(local.stdout)[0]["dataset"] == body["dataset"]


def test_data_hash_of_a_url_prints_it_without_its_credentials(tmp_path, http_root):
    """`data hash` printed a URL as typed, password and signed query included
    (a run records it without them), and a one-object URL as ``URL/name``."""
    root, base = http_root
    (root / "train.csv").write_bytes(b"x\n1\n")
    secret_url = base.replace("://", "://u:PW@") + "/train.csv?token=SEKRIT"
    home = tmp_path / "home"
    for args in ((), ("--json",)):
        proc = mltrail_cmd(home, "data", "hash", secret_url, *args, cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        shown = proc.stdout + proc.stderr
        assert b"PW" not in shown
        assert b"SEKRIT" not in shown
    text = mltrail_cmd(home, "data", "hash", secret_url, cwd=tmp_path)
    assert text.stdout.decode().split() == [
        json.loads(proc.stdout)[0]["entries"][0]["sha256"],
        f"{base}/train.csv",
    ]
    assert json.loads(proc.stdout)[0]["path"] == f"{base}/train.csv"


_BAR_AT_ONCE = (
    "import mltrail.capture.data.progress as p; p.PROGRESS_DELAY_S = 0.0; "
    "from mltrail.cli.main import main; main()"
)


def run_on_a_terminal(home, *args, cwd):
    """Run the CLI with stderr on a pseudo-terminal (stdout a pipe), the progress
    bar's one-second delay removed; return (exit code, stdout, what the terminal got)."""
    import pty

    env = {**os.environ, "MLTRAIL_HOME": str(home), "COLUMNS": "120"}
    for name in ("MLTRAIL_RUN_ID", "MLTRAIL_WITNESS", "RANK", "WORLD_SIZE"):
        env.pop(name, None)
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [sys.executable, "-c", _BAR_AT_ONCE, *args],
        stdout=subprocess.PIPE,
        stderr=slave,
        stdin=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
    )
    os.close(slave)
    screen = bytearray()
    reader = threading.Thread(target=_drain, args=(master, screen))
    reader.start()
    stdout, _ = proc.communicate(timeout=120)
    reader.join(timeout=30)
    os.close(master)
    return proc.returncode, stdout, bytes(screen)


def _drain(fd, into):
    while True:
        try:
            chunk = os.read(fd, 65536)
        except OSError:  # EIO: every writer closed
            return
        if not chunk:
            return
        into += chunk


@pytest.mark.parametrize("command", ["run", "step"])
def test_run_and_step_show_a_hashing_bar_on_a_terminal_only(tmp_path, dataset, command):
    data_option = ["--data", "train=data"] if command == "run" else ["--in", "data"]
    out_option = "--output" if command == "run" else "--out"
    write = "open('out.txt', 'w').write('y' * 100_000); print('hello')"
    child = [sys.executable, "-c", write]
    args = [command, *data_option, out_option, "out.txt", "--", *child]
    code, stdout, screen = run_on_a_terminal(tmp_path / "home", *args, cwd=tmp_path)
    assert code == 0, screen
    assert stdout == b"hello\n"  # the command's output alone
    role = "train" if command == "run" else "input"
    assert f"hashing {role} {tmp_path / 'data'}".encode() in screen
    assert b"hashing output " in screen
    assert b"files" in screen
    for quiet in ("-q", "--json"):
        code, stdout, screen = run_on_a_terminal(
            tmp_path / "home", command, quiet, *args[1:], cwd=tmp_path
        )
        assert code == 0, screen
        assert stdout == b"hello\n"
        assert b"hashing" not in screen
    piped = mltrail_cmd(tmp_path / "home", *args, cwd=tmp_path)
    assert piped.returncode == 0
    assert b"hashing" not in piped.stderr


def test_data_hash_shows_its_bar_on_a_terminal(tmp_path, dataset):
    code, stdout, screen = run_on_a_terminal(
        tmp_path / "home", "data", "hash", "data", cwd=tmp_path
    )
    assert code == 0, screen
    assert b"hashing data" in screen
    assert b"dataset " in screen
    assert b"hashing" not in stdout


SETTLE_S = 2.1  # past the CLI's racy window: files newer are hashed every time


@pytest.mark.parametrize(
    "flags",
    [(), ("--no-cache",), ("--follow-links",), ("--no-cache", "--follow-links")],
)
def test_plain_data_hash_prints_what_the_click_command_prints(tmp_path, dataset, flags):
    """`data hash PATH...` runs without click (ADR 0035); `--home H data hash`
    goes through the click group: the same bytes, cold and warm."""
    (dataset / "dätä").mkdir()
    (dataset / "dätä" / "ü.txt").write_bytes(b"not ASCII\n")
    (dataset / "link").symlink_to("empty.txt")
    if "--no-cache" not in flags:
        time.sleep(SETTLE_S)  # so that the warm run uses a stored tree result
    home = tmp_path / "home"
    args = ["data", "hash", "data", "data/train/a.csv", *flags]
    for _ in range(2):  # cold, then warm (a stored tree result)
        plain = mltrail_cmd(home / "plain", *args, cwd=tmp_path)
        clicked = mltrail_cmd(
            home / "plain", "--home", home / "click", *args, cwd=tmp_path
        )
        assert plain.returncode == clicked.returncode == 0, plain.stderr
        assert plain.stdout == clicked.stdout
        assert plain.stderr == clicked.stderr
    assert b"d\xc3\xa4t\xc3\xa4/\xc3\xbc.txt" in plain.stdout
    assert (home / "plain" / "cache" / "hashes.db").exists() == (
        "--no-cache" not in flags
    )


@pytest.mark.parametrize(
    "args",
    [
        ("data", "hash", "missing"),
        ("data", "hash", "data", "missing"),
        ("data", "hash", os.fsdecode(b"caf\xff")),
    ],
)
def test_plain_data_hash_fails_as_the_click_command_fails(tmp_path, dataset, args):
    home = tmp_path / "home"
    plain = mltrail_cmd(home, *args, cwd=tmp_path)
    clicked = mltrail_cmd(home, "--home", home, *args, cwd=tmp_path)
    assert plain.returncode == clicked.returncode != 0
    assert plain.stdout == clicked.stdout
    assert plain.stderr == clicked.stderr
    assert plain.stderr.startswith(b"error: ")


def test_plain_data_hash_loads_no_click(tmp_path, dataset):
    """Cold: no click, no mltrail.config, nor dataclasses, typing, contextlib or
    pathlib; warm (a stored tree result): not even the manifest module,
    hashlib, sqlite3 or re (ADR 0035 and its amendments)."""
    code = (
        "import sys; from mltrail.cli.main import main; main(); "
        "import os; unwanted = os.environ['UNWANTED'].split(','); "
        "loaded = set(sys.modules).intersection(unwanted); "
        "assert not loaded, loaded"
    )
    env = {**os.environ, "MLTRAIL_HOME": str(tmp_path / "home")}
    time.sleep(SETTLE_S)  # so that the warm run uses a stored tree result
    cold = "click,mltrail.config,mltrail.cli.app"
    cold += ",dataclasses,inspect,typing,contextlib,pathlib,urllib.parse"
    warm = cold + ",mltrail.core.manifest,hashlib,sqlite3,re"
    for unwanted in (cold, warm):
        proc = subprocess.run(
            [sys.executable, "-c", code, "data", "hash", "data"],
            capture_output=True, env={**env, "UNWANTED": unwanted}, cwd=tmp_path,
            timeout=120, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
        assert b"dataset " in proc.stderr


def test_options_beyond_the_plain_form_still_go_through_click(tmp_path, dataset):
    home = tmp_path / "home"
    as_json = mltrail_cmd(home, "data", "hash", "data", "--json", cwd=tmp_path)
    assert as_json.returncode == 0, as_json.stderr
    assert json.loads(as_json.stdout)[0]["files"] == 5
    usage = mltrail_cmd(home, "data", "hash", cwd=tmp_path)
    assert usage.returncode == 2
    assert b"Missing argument 'PATHS...'" in usage.stderr
    helped = mltrail_cmd(home, "data", "hash", "--help", cwd=tmp_path)
    assert helped.returncode == 0
    assert b"sha256sum" in helped.stdout
