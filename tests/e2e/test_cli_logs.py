"""`mltrail logs RUN`: the stored stdout/stderr of a wrapped run, as a user reads them."""

import json
import os
import subprocess
import sys

import pytest


def mltrail(home, *args, cwd=None, env=None):
    full = {**os.environ, "MLTRAIL_HOME": str(home), **(env or {})}
    for name in ("MLTRAIL_RUN_ID", "MLTRAIL_WITNESS", "RANK", "WORLD_SIZE"):
        full.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        capture_output=True, env=full, cwd=cwd, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def ran(tmp_path):
    home = tmp_path / "home"
    script = tmp_path / "train.py"
    script.write_text(
        "import sys\n"
        "print('epoch 1 loss=0.5')\n"
        "print('token=hunter22xyz')\n"
        "print('warning: slow disk', file=sys.stderr)\n"
    )
    proc = mltrail(
        home, "run", "--name", "train", "--", sys.executable, str(script),
        cwd=tmp_path, env={"MY_TOKEN": "hunter22xyz"},
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return home, tmp_path


def test_both_streams_with_headings(ran):
    home, _ = ran
    proc = mltrail(home, "logs", "train")
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout.decode()
    assert (
        out.index("== stdout") < out.index("epoch 1 loss=0.5") < out.index("== stderr")
    )
    assert "warning: slow disk" in out
    # the secret was masked before storing, and stays masked
    assert "hunter22xyz" not in out
    assert "token=[MASKED:MY_TOKEN]" in out


def test_one_stream_alone_and_json(ran):
    home, _ = ran
    only = mltrail(home, "logs", "train", "--stderr")
    assert only.returncode == 0, only.stderr
    assert only.stdout == b"warning: slow disk\n"
    data = json.loads(mltrail(home, "logs", "train", "--json").stdout)
    assert data["streams"]["stdout"]["text"].startswith("epoch 1 loss=0.5\n")
    assert data["streams"]["stderr"]["size"] == len(b"warning: slow disk\n")


def test_a_purged_stream_says_so(ran):
    home, tmp_path = ran
    data = json.loads(mltrail(home, "logs", "train", "--json").stdout)
    blob = data["streams"]["stdout"]["stored"]["blob"]
    purge = mltrail(home, "purge", blob, "--reason", "subject request #12",
                    "--policy", "GDPR Art. 17", cwd=tmp_path)  # fmt: skip
    assert purge.returncode == 0, purge.stderr
    alone = mltrail(home, "logs", "train", "--stdout")
    assert alone.returncode == 2
    err = alone.stderr.decode()
    assert "stdout was purged by policy at seq" in err
    assert "GDPR Art. 17" in err
    assert "Traceback" not in err
    both = mltrail(home, "logs", "train")
    assert both.returncode == 0
    assert b"purged by policy" in both.stdout
    assert b"warning: slow disk" in both.stdout
    after = json.loads(mltrail(home, "logs", "train", "--json").stdout)
    assert "purged" in after["streams"]["stdout"]["missing"]


def test_logs_kept_out_and_unknown_runs(tmp_path):
    home = tmp_path / "home"
    proc = mltrail(home, "run", "--name", "quiet", "--log-limit", "0", "--",
                   "echo", "hi", cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    alone = mltrail(home, "logs", "quiet", "--stdout")
    assert alone.returncode == 2
    assert b"was not stored" in alone.stderr
    missing = mltrail(home, "logs", "no-such-run")
    assert missing.returncode == 2
    assert b"Traceback" not in missing.stderr
