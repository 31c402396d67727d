"""Nothing that may need erasing is stored inline in a record body.

A value inline in a body can never be purged: the record's hash, signature and
Merkle leaf cover it. So logs, diffs, scripts, config contents, data rows,
metric points and package lists must be blobs, which `mltrail purge` can erase.
A realistic `mltrail run` (a dirty git tree, a config file with a comment and a
prompt, output on stdout and stderr, labelled data, metrics and a long
parameter logged from inside) and a `mltrail step` plant a marker in each; no
record body may hold one, each must be found in a blob, and every long string
left in a body must sit where only names, paths and the like go.
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mltrail.ledger.home import init_home

pytestmark = pytest.mark.usefixtures("isolated_git")

TRAIN = """\
import sys
import mltrail
print("STDOUT-MARKER-55d1 training with", sys.argv[1:])
print("STDERR-MARKER-c0de a warning", file=sys.stderr)
with mltrail.start_run() as run:
    run.log_metrics({"loss": 0.5, "accuracy": 0.9}, step=1)
    run.log_params({"note": "API-PARAM-MARKER-3e9f " + "free text " * 40})
"""
CONFIG = """\
# CONFIG-COMMENT-MARKER-91b2: tuned by hand
lr: 0.1
epochs: 3
prompt: |
  You are a careful assistant. PROMPT-MARKER-77aa
  Answer in one line.
"""
SCRIPT = """\
# SCRIPT-MARKER-2b7e
import pathlib
pathlib.Path("clean.csv").write_text("text,label\\nok,pos\\n")
"""
IN_BLOBS = (
    "STDOUT-MARKER-55d1",
    "STDERR-MARKER-c0de",
    "DIFF-MARKER-7f3a",
    "CONFIG-COMMENT-MARKER-91b2",
    "PROMPT-MARKER-77aa",
    "API-PARAM-MARKER-3e9f",
    "SCRIPT-MARKER-2b7e",
)
NOWHERE = ("ROW-MARKER-a1", "ROW-MARKER-b2")  # data rows are hashed, never stored
LONG = 80
ALLOWED_LONG = tuple(
    re.compile(pattern)
    for pattern in (
        r"\.variables\.[A-Za-z0-9_]+$",  # allow-listed environment variables
        r"(^|\.)(path|cwd|root|program|executable|prefix|base_prefix|url)$",
        r"\.(command|positional|untracked)\[\]$",  # the command line, file names
    )
)


def mltrail(home: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    env.pop("MLTRAIL_WITNESS", None)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip


def git(repo: Path, *args: str) -> None:
    subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)


@pytest.fixture
def recorded(tmp_path: Path) -> Path:
    project, home = tmp_path / "project", tmp_path / "home"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    (project / "conf.yaml").write_text(CONFIG)
    (project / "clean.py").write_text(SCRIPT)
    data = project / "data"
    data.mkdir()
    (data / "train.csv").write_text("text,label\nROW-MARKER-a1 hello,pos\nbye,neg\n")
    (data / "val.csv").write_text("text,label\nROW-MARKER-b2 hi,pos\n")
    git(project, "init", "-q")
    git(project, "add", "-A")
    git(project, "commit", "-qm", "first")
    with (project / "train.py").open("a") as f:
        f.write("# DIFF-MARKER-7f3a: an uncommitted edit\n")
    init_home(home, origin="test.mltrail.local/inline", env={})
    for args in (
        ["run", "-q", "--name", "audit", "--data", "train=data/train.csv",
         "--data", "validation=data/val.csv", "--label", "label", "--config",
         "conf.yaml", "--", sys.executable, "train.py", "--config", "conf.yaml"],
        ["step", "-q", "--name", "clean", "--in", "data/train.csv", "--out",
         "clean.csv", "--", sys.executable, "clean.py"],
    ):  # fmt: skip
        proc = mltrail(home, project, *args)
        assert proc.returncode == 0, proc.stderr
    return home


def test_no_content_is_inline_in_a_record_body(recorded: Path) -> None:
    bodies = _bodies(recorded)
    kinds = {kind for kind, _ in bodies}
    assert {"run.code", "run.params", "run.data", "run.metrics", "run.step"} <= kinds
    inline = "\n".join(json.dumps(body) for _, body in bodies)
    blobs = _blob_bytes(recorded)
    for marker in IN_BLOBS:
        assert marker not in inline, f"{marker} is inline in a record body"
        assert marker.encode() in blobs, f"{marker} was not captured in a blob"
    for marker in NOWHERE:
        assert marker not in inline
        assert marker.encode() not in blobs
    metrics = next(body for kind, body in bodies if kind == "run.metrics")
    assert set(metrics["points"]) >= {"blob", "size"}
    long = [
        (path, text[:60])
        for kind, body in bodies
        for path, text in _strings(body, kind)
        if len(text) > LONG and not any(p.search(path) for p in ALLOWED_LONG)
    ]
    assert long == []


def test_long_parameter_text_reads_back_from_its_blob(recorded: Path) -> None:
    records = json.loads(mltrail(recorded, recorded, "log", "--json").stdout)
    [config] = [
        r for r in records
        if r["entry"]["kind"] == "run.params" and r["entry"]["body"]["source"] == "config"
    ]  # fmt: skip
    params = config["entry"]["body"]["params"]
    assert params["lr"] == 0.1  # short values stay inline, typed
    assert params["prompt"]["media_type"] == "text/plain"
    shown = mltrail(recorded, recorded, "show", str(config["seq"]), "--json")
    text = json.loads(shown.stdout)["blobs"][params["prompt"]["blob"]]
    assert (
        text == "You are a careful assistant. PROMPT-MARKER-77aa\nAnswer in one line.\n"
    )


def _bodies(home: Path) -> list[tuple[str, dict[str, Any]]]:
    proc = mltrail(home, home, "log", "--json")
    assert proc.returncode == 0, proc.stderr
    return [(r["entry"]["kind"], r["entry"]["body"]) for r in json.loads(proc.stdout)]


def _blob_bytes(home: Path) -> bytes:
    conn = sqlite3.connect(f"file:{home / 'ledger.db'}?mode=ro", uri=True)
    try:
        return b"\n".join(
            bytes(row[0]) for row in conn.execute("SELECT data FROM blobs")
        )
    finally:
        conn.close()


def _strings(value: Any, path: str) -> list[tuple[str, str]]:
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in _strings(v, f"{path}.{k}")]
    if isinstance(value, list):
        return [s for v in value for s in _strings(v, f"{path}[]")]
    return [(path, value)] if isinstance(value, str) else []
