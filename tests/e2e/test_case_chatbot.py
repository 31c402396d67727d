"""Case study 2 of the mission article: a chatbot that began to hallucinate.

A routine update changed the sampling temperature (0.7 -> 1.2) and slipped one
contaminated sample into one of 2,000 training files. `mltrail diff` of the two
fine-tunes names exactly those two changes (and the new commit); `mltrail reproduce`
reruns the stable fine-tune in a copy of the code (the checkout untouched), then with
`--in-place` rolls the checkout back, and `--check` confirms both.
Every step runs the CLI as a user would, as subprocesses.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

FINETUNE = """
import argparse, hashlib, pathlib, yaml
p = argparse.ArgumentParser()
p.add_argument("--config")
a = p.parse_args()
cfg = yaml.safe_load(pathlib.Path(a.config).read_text())
digest = hashlib.sha256(str(cfg["generation"]["temperature"]).encode())
for f in sorted(pathlib.Path(cfg["data"]).glob("*.jsonl")):
    digest.update(f.read_bytes())
print("adapter", digest.hexdigest()[:12])
"""
CONFIG = """\
data: data
lora:
  r: 8
  alpha: 16
  targets: [q_proj, v_proj]
generation:
  temperature: {temperature}
  top_p: 0.9
"""
CONTAMINATED = "chat-1234.jsonl"


def git(repo: Path, *args: str) -> str:
    done = subprocess.run(["git", *args], cwd=repo, check=True, capture_output=True)
    return done.stdout.decode().strip()


def mltrail(project: Path, home: Path, *args: str, code: int = 0):
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", "--home", str(home), *args],
        cwd=project, capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    assert proc.returncode == code, proc.stdout + proc.stderr
    return proc


def record(project: Path, home: Path) -> str:
    mltrail(
        project, home, "run", "-q", "--name", "chatbot-finetune", "--config", "cfg.yaml",
        "--data", "train=data", "--", sys.executable, "finetune.py", "--config", "cfg.yaml",
    )  # fmt: skip
    runs = json.loads(mltrail(project, home, "runs", "--json").stdout)
    return str(runs[-1]["id"])


@pytest.fixture(scope="module")
def chatbot(tmp_path_factory):
    base = tmp_path_factory.mktemp("chatbot")
    project, home = base / "chatbot", base / "ledger"
    data = project / "data"
    data.mkdir(parents=True)
    (project / "finetune.py").write_text(textwrap.dedent(FINETUNE))
    (project / "cfg.yaml").write_text(CONFIG.format(temperature=0.7))
    for i in range(2000):
        turn = {"user": f"question {i}?", "assistant": f"answer {i}."}
        (data / f"chat-{i:04d}.jsonl").write_text(json.dumps(turn) + "\n")
    env = {
        "GIT_CEILING_DIRECTORIES": str(base),
        "GIT_CONFIG_GLOBAL": str(base / "gitconfig"),
        "GIT_CONFIG_NOSYSTEM": "1",
        **{f"GIT_{r}_{k}": v for r in ("AUTHOR", "COMMITTER")
           for k, v in (("NAME", "Dev"), ("EMAIL", "dev@example.com"))},
    }  # fmt: skip
    patch = pytest.MonkeyPatch()
    for key, value in env.items():
        patch.setenv(key, value)
    for key in (
        "MLTRAIL_RUN_ID",
        "RANK",
        "WORLD_SIZE",
        "MLTRAIL_WITNESS",
        "MLTRAIL_HOME",
    ):
        patch.delenv(key, raising=False)
    try:
        git(project, "init", "-q")
        git(project, "add", "-A")
        git(project, "commit", "-qm", "chatbot fine-tune")
        mltrail(project, home, "init", "--origin", "saas.example/chatbot")
        stable = record(project, home)
        # the routine update: a new temperature and one contaminated sample
        (project / "cfg.yaml").write_text(CONFIG.format(temperature=1.2))
        poisoned = {
            "user": "question 1234?",
            "assistant": "The moon is made of cheese.",
        }
        (data / CONTAMINATED).write_text(json.dumps(poisoned) + "\n")
        git(project, "commit", "-qam", "routine update")
        regressed = record(project, home)
        yield project, home, stable, regressed
    finally:
        patch.undo()


def test_diff_names_the_temperature_and_the_contaminated_file(chatbot):
    project, home, stable, regressed = chatbot
    diff = json.loads(
        mltrail(project, home, "diff", stable, regressed, "--json").stdout
    )
    sections = diff["sections"]
    assert diff["same"] is False
    assert [(c["key"], c["old"], c["new"]) for c in sections["params"]] == [
        ("generation.temperature", 0.7, 1.2)
    ]
    (train,) = sections["data"]
    assert train["role"] == "train"
    assert train["change"] == "changed"
    files = train["files"]
    assert [(f["path"], f["change"]) for f in files["files"]] == [
        (CONTAMINATED, "changed")
    ]
    assert files["unchanged"] == 1999
    assert {c["key"] for c in train["fields"]} <= {"bytes"}  # the sample's new size
    assert {c["key"] for c in sections["code"]} <= {"commit", "describe"}
    assert "commit" in {c["key"] for c in sections["code"]}
    # everything else is the same, except what differs between any two runs
    assert {c["key"] for c in sections["run"]} <= {"duration_s"}
    for name in ("environment", "hardware", "finetune", "outputs"):
        assert sections[name] == [], name
    assert {c["key"].split(".")[0] for c in sections["metrics"]} <= set()


def test_diff_report_for_people(chatbot):
    project, home, stable, regressed = chatbot
    text = mltrail(project, home, "diff", stable, regressed).stdout
    assert "-  generation.temperature: 0.7" in text
    assert "+  generation.temperature: 1.2" in text
    assert f"-    {CONTAMINATED}" in text
    assert "1 changed, 0 added, 0 removed, 1999 unchanged" in text
    mltrail(project, home, "diff", stable, regressed, "--exit-code", code=1)
    mltrail(project, home, "diff", stable, stable, "--exit-code", code=0)


def repo_state(repo: Path) -> tuple[str, str, str]:
    return (
        git(repo, "symbolic-ref", "-q", "HEAD"),
        git(repo, "rev-parse", "HEAD"),
        git(repo, "status", "--porcelain", "--untracked-files=all"),
    )


def test_reproduce_rolls_back_to_the_stable_run(chatbot, tmp_path):
    project, home, stable, _ = chatbot
    out = tmp_path / "stable"
    mltrail(project, home, "reproduce", stable, "--out", str(out))
    assert "temperature: 0.7" in (out / "configs" / "cfg.yaml").read_text()
    check = json.loads(
        mltrail(project, home, "reproduce", stable, "--check", "--json", code=1).stdout
    )
    assert {(m["kind"], m["what"]) for m in check["mismatches"]} == {
        ("code", "commit"),
        ("config", str(project / "cfg.yaml")),
        ("data", "train dataset id"),
        ("data", f"train {CONTAMINATED}"),
    }
    regressed = repo_state(project)

    # by default the stable run is rerun in a copy: the checkout is not touched
    rerun = subprocess.run(["sh", str(out / "command.sh")], capture_output=True, text=True,
                           env=os.environ, check=False)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    copy = out / "src"
    assert "temperature: 0.7" in (copy / "cfg.yaml").read_text()
    assert "cheese" not in (copy / "data" / CONTAMINATED).read_text()
    assert repo_state(project) == regressed
    assert "temperature: 1.2" in (project / "cfg.yaml").read_text()
    ok = mltrail(project, home, "reproduce", stable, "--check", "--cwd", str(copy))
    assert ok.stdout.startswith("OK")
    in_copy = record(copy, home)
    diff = json.loads(mltrail(project, home, "diff", stable, in_copy, "--json").stdout)
    assert diff["sections"]["params"] == []
    (train,) = diff["sections"]["data"]  # the same files, read from the copy
    assert train["old"] == train["new"]
    assert [(c["key"], c["new"]) for c in train["fields"]] == [
        ("path", str(copy / "data"))
    ]
    code = {c["key"]: c["new"] for c in diff["sections"]["code"]}
    assert code == {"branch": None, "detached": True, "root": str(copy)}

    # --in-place rolls the checkout itself back, and says how to undo that
    rerun = subprocess.run(["sh", str(out / "command.sh"), "--in-place"], capture_output=True,
                           text=True, env=os.environ, check=False)  # fmt: skip
    assert rerun.returncode == 0, rerun.stderr
    assert "temperature: 0.7" in (project / "cfg.yaml").read_text()
    assert "cheese" not in (project / "data" / CONTAMINATED).read_text()
    ok = mltrail(project, home, "reproduce", stable, "--check")
    assert ok.stdout.startswith("OK")
    rolled_back = record(project, home)
    diff = json.loads(
        mltrail(project, home, "diff", stable, rolled_back, "--json").stdout
    )
    assert diff["sections"]["params"] == []
    assert diff["sections"]["data"] == []
    # the same commit, checked out detached by command.sh
    assert {c["key"] for c in diff["sections"]["code"]} == {"branch", "detached"}
    (back,) = [x for x in rerun.stderr.splitlines() if x.startswith("to get back: ")]
    subprocess.run(back.removeprefix("to get back: "), shell=True, check=True)
    assert repo_state(project) == regressed
