"""`mltrail run` end to end: real commands, real git repositories, real ledgers."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import mltrail
from ledger_reading import entries
from mltrail.capture.run.commitment import check_commitment
from mltrail.core.manifest import FileEntry, compute_manifest, parse_manifest
from mltrail.ledger.keystore import load_commitment_key

pytestmark = pytest.mark.usefixtures("isolated_git")


@pytest.fixture
def home(tmp_path):
    path = tmp_path / "home"
    mltrail.init_home(path, origin="test.mltrail.local/wrapper", env={})
    return path


def git(repo, *args):
    return subprocess.run(
        ["git", *args], cwd=repo, check=True, capture_output=True
    ).stdout.decode()


@pytest.fixture
def repo(tmp_path):
    path = tmp_path / "project"
    path.mkdir()
    (path / "train.py").write_text("import sys\nprint('training', *sys.argv[1:])\n")
    (path / "conf.yaml").write_text(
        "optimizer:\n  name: adam\n  lr: 0.001\nbatch: 32\n"
    )
    git(path, "init", "-q")
    git(path, "add", "-A")
    git(path, "commit", "-qm", "first")
    return path


def mltrail_run(home, cwd, *args, env=None, stdin=None, timeout=60):
    full_env = {**os.environ, "MLTRAIL_HOME": str(home), **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "mltrail", "run", *args],
        cwd=cwd,
        env=full_env,
        capture_output=True,
        input=stdin,
        timeout=timeout,
    )


def last_run(home):
    started = [e for e in entries(home) if e.kind == "run.started"]
    return started[-1].run


def by_kind(found, kind):
    return [e.body for e in found if e.kind == kind]


def blob(home, ref):
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        return opened.ledger.get_blob(ref["blob"])
    finally:
        opened.close()


def test_a_clean_repo_run_is_recorded_in_full(home, repo):
    proc = mltrail_run(
        home,
        repo,
        "--name",
        "baseline",
        "--",
        sys.executable,
        "train.py",
        "--lr",
        "0.1",
        "--epochs=3",
        "--verbose",
        "model.depth=4",
        "--config",
        "conf.yaml",
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode().startswith("training --lr 0.1")
    run_id = last_run(home)
    found = entries(home, run_id)
    kinds = [e.kind for e in found]
    assert kinds[0] == "run.started"
    assert kinds[-1] == "run.ended"
    assert {"run.code", "run.environment", "run.hardware", "run.params"} <= set(kinds)
    started = by_kind(found, "run.started")[0]
    assert started["name"] == "baseline"
    assert started["cwd"] == str(repo.resolve())
    assert started["command"][1:3] == ["train.py", "--lr"]
    code = by_kind(found, "run.code")[0]
    assert code["commit"] == git(repo, "rev-parse", "HEAD").strip()
    assert code["branch"] == "main"
    assert code["dirty"] is False
    params = {p["source"]: p for p in by_kind(found, "run.params")}
    assert params["argv"]["params"] == {
        "lr": 0.1,
        "epochs": 3,
        "verbose": True,
        "model.depth": 4,
        "config": "conf.yaml",
    }
    config = params["config"]
    assert config["params"] == {
        "optimizer.name": "adam",
        "optimizer.lr": 0.001,
        "batch": 32,
    }
    raw = (repo / "conf.yaml").read_bytes()
    assert config["file"]["sha256"] == hashlib.sha256(raw).hexdigest()
    assert blob(home, config["file"]["content"]) == raw
    ended = by_kind(found, "run.ended")[0]
    assert ended["status"] == "succeeded"
    assert ended["exit_code"] == 0
    assert ended["stdout"]["sha256"] == hashlib.sha256(proc.stdout).hexdigest()
    opened = mltrail.open_home(home, writable=False, env={})
    assert opened.ledger.latest_checkpoint()[0] == opened.ledger.head().size
    assert opened.verify().ok
    opened.close()


def test_dirty_repo_records_the_diff_and_untracked_files(home, repo):
    (repo / "train.py").write_text("print('changed')\n")
    (repo / "notes with space.txt").write_text("x")
    assert mltrail_run(home, repo, "--", sys.executable, "train.py").returncode == 0
    code = by_kind(entries(home, last_run(home)), "run.code")[0]
    assert code["dirty"] is True
    assert code["untracked"] == ["notes with space.txt"]
    diff = subprocess.run(
        ["git", "diff", "HEAD", "--binary"], cwd=repo, capture_output=True, check=True
    ).stdout
    assert blob(home, code["diff"]) == diff
    assert code["diff_sha256"] == hashlib.sha256(diff).hexdigest()


def test_detached_head_and_no_repository(home, repo, tmp_path):
    git(repo, "checkout", "-q", "--detach")
    assert mltrail_run(home, repo, "--", "true").returncode == 0
    code = by_kind(entries(home, last_run(home)), "run.code")[0]
    assert code["detached"] is True
    assert code["branch"] is None
    plain = tmp_path / "plain"
    plain.mkdir()
    assert mltrail_run(home, plain, "--", "true").returncode == 0
    code = by_kind(entries(home, last_run(home)), "run.code")[0]
    warning = code.pop("warning")  # said plainly outside git (run.code files)
    assert code == {"vcs": None, "reason": "not inside a git repository"}
    assert "not in a git repository" in warning


@pytest.mark.parametrize(
    ("name", "text", "expected"),
    [
        (
            "c.json",
            '{"a": {"b": 1.5}, "tags": ["x", "y"]}',
            {"a.b": 1.5, "tags": ["x", "y"]},
        ),
        (
            "c.toml",
            "[train]\nepochs = 3\nlr = 2e-5\n",
            {"train.epochs": 3, "train.lr": 2e-5},
        ),
        (
            "c.yml",
            "train:\n  seed: 7\n  amp: true\n",
            {"train.seed": 7, "train.amp": True},
        ),
    ],
)
def test_config_files_of_each_format(home, tmp_path, name, text, expected):
    (tmp_path / name).write_text(text)
    proc = mltrail_run(home, tmp_path, "--config", name, "--", "true")
    assert proc.returncode == 0, proc.stderr
    configs = [
        p
        for p in by_kind(entries(home, last_run(home)), "run.params")
        if p["source"] == "config"
    ]
    assert [c["params"] for c in configs] == [expected]
    assert configs[0]["file"]["format"] == name.rsplit(".", 1)[1].replace("yml", "yaml")


def test_a_failing_command_returns_its_exit_code(home, tmp_path):
    proc = mltrail_run(
        home, tmp_path, "--", sys.executable, "-c", "raise SystemExit(3)"
    )
    assert proc.returncode == 3
    ended = by_kind(entries(home, last_run(home)), "run.ended")[0]
    assert ended["status"] == "failed"
    assert ended["exit_code"] == 3
    assert "failed (exit 3)" in proc.stderr.decode()


def test_a_command_killed_by_a_signal_kills_the_wrapper_the_same_way(home, tmp_path):
    code = "import os, signal; os.kill(os.getpid(), signal.SIGTERM)"
    proc = mltrail_run(home, tmp_path, "--", sys.executable, "-c", code)
    assert proc.returncode == -signal.SIGTERM
    ended = by_kind(entries(home, last_run(home)), "run.ended")[0]
    assert ended["status"] == "interrupted"
    assert ended["signal"] == "SIGTERM"
    assert ended["exit_code"] is None


def test_sigterm_to_the_wrapper_reaches_the_command(home, tmp_path):
    script = tmp_path / "trap.py"
    script.write_text(
        textwrap.dedent(
            """
            import signal, sys, time
            signal.signal(signal.SIGTERM, lambda *a: sys.exit(0))
            print("ready", flush=True)
            time.sleep(30)
            """
        )
    )
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    with subprocess.Popen(
        [sys.executable, "-m", "mltrail", "run", "--", sys.executable, str(script)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    ) as proc:
        assert proc.stdout.readline() == b"ready\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
    ended = by_kind(entries(home, last_run(home)), "run.ended")[0]
    assert ended["status"] == "interrupted"
    assert ended["signals_received"] == ["SIGTERM"]
    assert ended["exit_code"] == 0


def test_stdin_passes_through(home, tmp_path):
    proc = mltrail_run(home, tmp_path, "--", "cat", stdin=b"abc\x00def")
    assert proc.returncode == 0
    assert proc.stdout == b"abc\x00def"


def test_huge_output_is_hashed_in_full_and_stored_capped(home, tmp_path):
    code = (
        "import sys\nfor i in range(200000): sys.stdout.write(f'{i:09d} log line\\n')"
    )
    proc = mltrail_run(
        home, tmp_path, "--log-limit", "64KiB", "--", sys.executable, "-c", code
    )
    assert proc.returncode == 0
    assert len(proc.stdout) == 200000 * 19
    stdout = by_kind(entries(home, last_run(home)), "run.ended")[0]["stdout"]
    assert stdout["sha256"] == hashlib.sha256(proc.stdout).hexdigest()
    assert stdout["size"] == len(proc.stdout)
    assert stdout["truncated"] is True
    stored = blob(home, stdout["stored"])
    assert stored == proc.stdout[: 32 * 1024] + proc.stdout[-32 * 1024 :]
    assert stdout["omitted"] == len(proc.stdout) - 64 * 1024


def test_data_and_outputs_are_hashed(home, tmp_path):
    data = tmp_path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "a.csv").write_bytes(b"x,y\n1,2\n")
    (data / "sub" / "b.csv").write_bytes(b"")
    script = "open('model.bin','wb').write(b'weights'); import os; os.makedirs('out')"
    proc = mltrail_run(
        home,
        tmp_path,
        "--data",
        "train=data",
        "--data",
        "test=data/a.csv",
        "--output",
        "model.bin",
        "--output",
        "out",
        "--output",
        "never.bin",
        "--",
        sys.executable,
        "-c",
        script,
    )
    assert proc.returncode == 0, proc.stderr
    found = entries(home, last_run(home))
    datasets = {d["role"]: d for d in by_kind(found, "run.data")}
    expected = compute_manifest(
        [
            FileEntry("a.csv", 8, hashlib.sha256(b"x,y\n1,2\n").hexdigest()),
            FileEntry("sub/b.csv", 0, hashlib.sha256(b"").hexdigest()),
        ]
    )
    assert datasets["train"]["dataset"] == expected.dataset_id
    assert datasets["train"]["files"] == 2
    assert parse_manifest(blob(home, datasets["train"]["manifest"])) == expected
    assert datasets["test"]["files"] == 1
    artifacts = {Path(a["path"]).name: a for a in by_kind(found, "run.artifact")}
    assert artifacts["model.bin"]["sha256"] == hashlib.sha256(b"weights").hexdigest()
    assert artifacts["out"]["type"] == "directory"
    assert artifacts["out"]["files"] == 0
    assert artifacts["never.bin"]["exists"] is False


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["--data", "train=missing", "--", "true"], 2, "does not exist"),
        (["--", "no-such-command-xyz"], 127, "not found"),
        (["--config", "bad.yaml", "--", "true"], 2, "malformed YAML"),
        (["--data", "nonsense", "--", "true"], 2, "ROLE=PATH"),
    ],
)
def test_bad_input_records_nothing(home, tmp_path, args, code, message):
    (tmp_path / "bad.yaml").write_text("a: [1, 2\n")
    before = len(entries(home))
    proc = mltrail_run(home, tmp_path, *args)
    assert proc.returncode == code
    assert message in proc.stderr.decode()
    assert len(entries(home)) == before


def test_a_ledger_inside_an_output_folder_is_refused(tmp_path):
    home = tmp_path / "out" / "home"
    mltrail.init_home(home, env={})
    proc = mltrail_run(home, tmp_path, "--output", "out", "--", "true")
    assert proc.returncode == 2
    assert "inside the output" in proc.stderr.decode()


SECRETS = {
    "hf": "hf_AbCdEfGhIjKlMnOpQrStUvWxYz0123456789",
    "api": "sk-proj-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe",
    "password": "correct horse battery staple",
    "db": "s3cr3t-pa55",
}


def test_secrets_never_reach_the_ledger_in_clear(home, tmp_path):
    (tmp_path / "conf.yaml").write_text(
        f"db:\n  password: {SECRETS['password']}\n  url: postgresql://app:{SECRETS['db']}@db/x\n"
    )
    proc = mltrail_run(
        home,
        tmp_path,
        "--env",
        "MY_SERVICE_PASSWORD",
        "--",
        sys.executable,
        "-c",
        "pass",
        f"--api-key={SECRETS['api']}",
        "--config",
        "conf.yaml",
        env={"HF_TOKEN": SECRETS["hf"], "MY_SERVICE_PASSWORD": SECRETS["password"]},
    )
    assert proc.returncode == 0, proc.stderr
    stored = b"".join(path.read_bytes() for path in home.rglob("*") if path.is_file())
    for secret in SECRETS.values():
        assert secret.encode() not in stored, secret
    found = entries(home, last_run(home))
    variables = by_kind(found, "run.environment")[0]["variables"]
    key = load_commitment_key(home, create=False)
    assert check_commitment(SECRETS["hf"], variables["HF_TOKEN"], key)
    assert check_commitment(SECRETS["password"], variables["MY_SERVICE_PASSWORD"], key)
    config = next(p for p in by_kind(found, "run.params") if p["source"] == "config")
    assert check_commitment(SECRETS["password"], config["params"]["db.password"], key)
    assert not check_commitment(SECRETS["password"], config["params"]["db.password"])
    assert config["file"]["content_redacted"] is True
    assert b"password: [MASKED:" in blob(home, config["file"]["content"])


def test_a_killed_wrapper_leaves_the_run_open_until_closed(home, tmp_path):
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    with subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mltrail",
            "run",
            "--",
            sys.executable,
            "-c",
            "import time; print('up', flush=True); time.sleep(60)",
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        start_new_session=True,
    ) as wrapper:
        assert wrapper.stdout.readline() == b"up\n"
        run_id = last_run(home)
        listing = subprocess.run(
            [sys.executable, "-m", "mltrail", "runs", "--json"],
            env=env,
            capture_output=True,
        )
        assert json.loads(listing.stdout)[-1]["status"] == "running"
        os.killpg(wrapper.pid, signal.SIGKILL)
        wrapper.wait(timeout=10)
    time.sleep(0.1)
    listing = subprocess.run(
        [sys.executable, "-m", "mltrail", "runs", "--json"],
        env=env,
        capture_output=True,
    )
    assert json.loads(listing.stdout)[-1]["status"] == "stale"
    proc = mltrail_run(home, tmp_path, "--json", "--", "true")
    assert json.loads(proc.stderr.decode().splitlines()[-1])["closed_stale"] == [run_id]
    aborted = by_kind(entries(home, run_id), "run.ended")
    assert [a["status"] for a in aborted] == ["aborted"]


def test_the_command_joins_through_mltrail_run_id(home, tmp_path):
    script = tmp_path / "train.py"
    script.write_text(
        textwrap.dedent(
            """
            import mltrail
            with mltrail.start_run(params={"seed": 7}) as run:
                for step in range(5):
                    run.log_metrics({"loss": 1.0 / (step + 1)}, step=step)
                print(run.id, run.joined)
            """
        )
    )
    proc = mltrail_run(home, tmp_path, "--", sys.executable, str(script))
    assert proc.returncode == 0, proc.stderr
    run_id, joined = proc.stdout.decode().split()
    assert joined == "True"
    assert run_id == last_run(home)
    found = entries(home, run_id)
    assert [e.kind for e in found].count("run.started") == 1
    (metrics,) = by_kind(found, "run.metrics")
    assert json.loads(blob(home, metrics["points"])) == {
        "loss": {"steps": [0, 1, 2, 3, 4], "values": [1.0, 0.5, 1 / 3, 0.25, 0.2]}
    }
    assert {"source": "api", "params": {"seed": 7}} in by_kind(found, "run.params")
    assert found[-1].kind == "run.ended"


def test_other_ranks_add_only_their_hardware(home, tmp_path):
    run_id = "01936f0e-0000-7000-8000-000000000001"
    env = {"MLTRAIL_RUN_ID": run_id, "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}
    proc = mltrail_run(home, tmp_path, "--", "true", env=env)
    assert proc.returncode == 0, proc.stderr
    found = entries(home, run_id)
    assert [e.kind for e in found] == ["run.hardware"]
    assert found[0].body["rank"] == {"rank": 1, "world_size": 2, "local_rank": 1}


def test_ranks_of_one_launch_agree_on_the_run_without_mltrail_run_id(home, tmp_path):
    launch = {"WORLD_SIZE": "2", "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": "29500"}
    for rank in ("1", "0"):
        env = {**launch, "RANK": rank, "LOCAL_RANK": rank}
        proc = mltrail_run(home, tmp_path, "--", "true", env=env)
        assert proc.returncode == 0, proc.stderr
    found = entries(home)
    run_ids = {e.run for e in found if e.kind.startswith("run.")}
    assert len(run_ids) == 1
    hardware_ranks = sorted(
        e.body.get("rank", {}).get("rank") for e in found if e.kind == "run.hardware"
    )
    assert hardware_ranks == [0, 1]
    assert [e.kind for e in found].count("run.started") == 1
