"""Gates, approvals, model cards and open flags through the `mltrail` command.

One model is trained from a committed checkout, described, gated, approved by
its own trainer under a claimed $USER (which does not count), promoted with and
without --override, then flagged by an upstream change; `trace`, `show` and
`model history` then show its card and its open flag. Real subprocesses, a real
git repository.
"""

from __future__ import annotations

import json
import os
import pwd
import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from terminal import run_on_terminal

TRAIN = """
import hashlib, json, pathlib
data = pathlib.Path("data/train.csv").read_bytes()
pathlib.Path("model.bin").write_bytes(hashlib.sha256(data).digest() * 4)
pathlib.Path("metrics.json").write_text(json.dumps({"auc": 0.81}))
"""
ME = pwd.getpwuid(os.getuid()).pw_name
OTHER = "bob" if ME != "bob" else "carol"


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    base = tmp_path_factory.mktemp("governance")
    project, home = base / "project", base / "home"
    (project / "data").mkdir(parents=True)
    (project / "data" / "train.csv").write_text("id,y\n1,0\n2,1\n")
    (project / "train.py").write_text(textwrap.dedent(TRAIN))
    (project / ".gitignore").write_text("data/\n*.bin\nmetrics.json\n")
    env = _env(base, home)
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "train"]):
        subprocess.run(["git", *args], cwd=project, env=env, check=True,
                       capture_output=True)  # fmt: skip
    return project, home, env


def _env(base: Path, home: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("MLTRAIL_RUN_ID", "MLTRAIL_WITNESS", "MLTRAIL_URL")}  # fmt: skip
    env.update(
        MLTRAIL_HOME=str(home), GIT_CEILING_DIRECTORIES=str(base),
        GIT_CONFIG_GLOBAL=str(base / "gitconfig"), GIT_CONFIG_NOSYSTEM="1",
        GIT_AUTHOR_NAME="Dev", GIT_AUTHOR_EMAIL="dev@example.com",
        GIT_COMMITTER_NAME="Dev", GIT_COMMITTER_EMAIL="dev@example.com",
    )  # fmt: skip
    return env


def mltrail(project, *args: str, code: int = 0, user: str | None = None):
    path, _, env = project
    if user is not None:
        env = env | {"USER": user, "LOGNAME": user}
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", *args], cwd=path, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    return proc


def js(project, *args: str, code: int = 0, user: str | None = None):
    return json.loads(mltrail(project, *args, "--json", code=code, user=user).stdout)


def _on_a_terminal(project, *args: str) -> list[str]:
    """The lines a terminal shows (rich, colour) without colour codes, trailing
    spaces and rules (a terminal's rule is as wide as the terminal)."""
    path, _, env = project
    code, out = run_on_terminal([sys.executable, "-m", "mltrail", *args], env,
                                cwd=str(path))  # fmt: skip
    assert code == 0, out
    assert b"\x1b[1m" in out  # bold: rich styled it
    return _unruled(re.sub(r"\x1b\[[0-9;]*m", "", out.decode().replace("\r\n", "\n")))


def _unruled(text: str) -> list[str]:
    return [line.rstrip(" ") for line in text.splitlines() if not line.startswith("─")]


def refused(project, *args: str, user: str | None = None) -> str:
    proc = mltrail(project, *args, code=2, user=user)
    assert "Traceback" not in proc.stderr
    return proc.stderr


def test_gates_approvals_cards_and_flags(project):
    path, _, _ = project
    mltrail(project, "init", "--origin", "test.mltrail.local/governance")
    mltrail(project, "sources", "add", "customers", "data")
    mltrail(project, "run", "-q", "--name", "train", "--data", "train=data",
            "--output", "model.bin", "--output", "metrics.json", "--",
            sys.executable, "train.py")  # fmt: skip
    mltrail(project, "model", "describe", "model.bin", "--purpose", "retail credit",
            "--owner", "credit-risk", "--risk-tier", "high")  # fmt: skip
    gate = js(project, "model", "gate", "production", "--require-approval", "1",
              "--note", "SR 11-7 four eyes")  # fmt: skip
    assert (gate["require_approval"], gate["previous"]) == (1, 0)
    assert "lowering" in refused(project, "model", "gate", "production",
                                 "--require-approval", "0")  # fmt: skip

    # the trainer approves, claiming to be someone else: recorded, not counted
    approval = js(project, "model", "approve", "model.bin", "--stage", "production",
                  "--note", "looks fine to me", user=OTHER)  # fmt: skip
    assert approval["user"] == ME
    assert approval["gate"]["approvers"] == []
    assert approval["gate"]["self_approved"] == [ME]
    err = refused(project, "model", "promote", "model.bin", "--stage", "production",
                  "--note", "release 1", "--override", "urgent")  # fmt: skip
    assert "requires 1 approval" in err
    assert f"other than who trained it ({ME})" in err

    # no note: refused with the fix; --override records what it lifted
    err = refused(project, "model", "promote", "model.bin", "--stage", "staging")
    assert "needs --note" in err
    assert "--override REASON" in err
    promoted = js(project, "model", "promote", "model.bin", "--stage", "staging",
                  "--override", "smoke test only")  # fmt: skip
    assert promoted["override"]["reason"] == "smoke test only"
    assert promoted["override"]["refused"] == ["a promotion needs --note saying why"]

    # the source changes: the model (not metrics.json) is flagged, by name
    (path / "data" / "train.csv").write_text("id,y\n1,0\n2,0\n")
    mltrail(project, "sources", "check", code=1)
    [flag] = js(project, "flags")
    assert (flag["name"], flag["run_name"]) == ("model.bin", "train")
    err = refused(project, "model", "promote", "model.bin", "--stage", "shadow",
                  "--note", "shadow run")  # fmt: skip
    assert "open flag(s): upstream source customers changed" in err

    # trace, show and model history show the card and the open flag
    traced = js(project, "trace", "model.bin")
    [facts] = traced["governance"].values()
    assert facts["card"]["risk_tier"]["value"] == "high"
    assert [f["source"] for f in facts["open_flags"]] == ["customers"]
    [(decision, counts)] = [(a["decision"], a["counts"]) for a in facts["approvals"]]
    assert (decision, counts) == ("approve", False)
    for args in (("trace", "model.bin"), ("show", "train"), ("model", "history")):
        text = mltrail(project, *args).stdout
        assert "OPEN FLAG" in text, args
        assert "risk tier: high" in text, args
        assert "upstream source customers changed" in text, args
        assert text == mltrail(project, "--debug", *args).stdout  # click's path
        assert _on_a_terminal(project, *args) == _unruled(text), args
    [shown] = js(project, "show", "train")["governance"].values()
    assert len(shown["open_flags"]) == 1
    [event] = js(project, "model", "history")
    assert event["card"]["owner"]["value"] == "credit-risk"
    assert len(event["open_flags"]) == 1
    assert "verified" in mltrail(project, "verify").stdout.lower()


@pytest.mark.parametrize("command", ["approve", "describe", "gate", "promote"])
def test_help_has_examples(project, command):
    text = mltrail(project, "model", command, "--help").stdout
    assert "Examples:" in text
