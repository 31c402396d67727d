"""The read side on a real ledger: runs filters, show, trace, lineage, sources, flags.

One project is recorded once through the real CLI (a source folder, a cleaning
step, two trainings that differ in lr), then every question is asked the way a
user asks it, as a subprocess.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

CLEAN = """
import pathlib, sys
rows = pathlib.Path(sys.argv[1], "applications.csv").read_text().splitlines()
out = pathlib.Path(sys.argv[2]); out.mkdir(exist_ok=True)
body = [r for r in rows[1:] if not r.endswith(",")]
(out / "train.csv").write_text("\\n".join([rows[0], *body[:80]]) + "\\n")
(out / "test.csv").write_text("\\n".join([rows[0], *body[80:]]) + "\\n")
"""
TRAIN = """
import argparse, hashlib, pathlib
p = argparse.ArgumentParser(); p.add_argument("--lr", type=float); p.add_argument("--data")
a = p.parse_args()
data = pathlib.Path(a.data).read_bytes()
pathlib.Path("model.bin").write_bytes(hashlib.sha256(data + str(a.lr).encode()).digest())
"""


def cli(project: Path, home: Path, *args: str, check: bool = True):
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", "--home", str(home), *args],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env={**os.environ, "GIT_CEILING_DIRECTORIES": str(project.parent)},
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"{args} exited {proc.returncode}: {proc.stderr}")
    return proc


def js(project: Path, home: Path, *args: str):
    return json.loads(cli(project, home, *args, "--json").stdout)


@pytest.fixture(scope="module")
def recorded(tmp_path_factory):
    base = tmp_path_factory.mktemp("queries")
    project, home = base / "project", base / "home"
    (project / "raw").mkdir(parents=True)
    rows = ["id,income,default"] + [f"{i},{1000 + i},{i % 2}" for i in range(100)]
    (project / "raw" / "applications.csv").write_text("\n".join(rows) + "\n")
    (project / "clean.py").write_text(textwrap.dedent(CLEAN))
    (project / "train.py").write_text(textwrap.dedent(TRAIN))
    cli(project, home, "init", "--origin", "test.mltrail.local/queries")
    cli(project, home, "sources", "add", "applications", "raw")
    cli(project, home, "step", "--name", "clean", "--in", "raw", "--out", "clean",
        "--", sys.executable, "clean.py", "raw", "clean")  # fmt: skip
    for name, lr in (("train-a", "0.1"), ("train-b", "0.5")):
        cli(project, home, "run", "--name", name, "--data", "train=clean/train.csv",
            "--output", "model.bin", "--", sys.executable, "train.py", "--lr", lr,
            "--data", "clean/train.csv")  # fmt: skip
    cli(project, home, "run", "--name", "broken", "--", sys.executable, "-c", "exit(3)",
        check=False)  # fmt: skip
    return project, home


def names(found):
    return [r["name"] for r in found]


def test_runs_filters(recorded):
    project, home = recorded
    assert names(js(project, home, "runs")) == ["clean", "train-a", "train-b", "broken"]
    assert names(js(project, home, "runs", "--param", "lr=0.1")) == ["train-a"]
    assert names(js(project, home, "runs", "--param", "lr=.5")) == ["train-b"]
    assert names(js(project, home, "runs", "--name", "train-*")) == [
        "train-a",
        "train-b",
    ]
    assert names(js(project, home, "runs", "--status", "failed")) == ["broken"]
    assert names(js(project, home, "runs", "--user", getpass.getuser(), "-n", "2")) == [
        "train-b",
        "broken",
    ]
    assert len(js(project, home, "runs", "--since", "1h")) == 4
    assert js(project, home, "runs", "--until", "2000-01-01") == []
    assert js(project, home, "runs", "--user", "nobody-else") == []
    text = cli(project, home, "runs", "--param", "lr=9").stdout
    assert "no runs match" in text


def test_runs_by_dataset_finds_the_step_that_wrote_it_and_the_runs_that_read_it(
    recorded,
):
    project, home = recorded
    shown = js(project, home, "show", "train-a")
    train = shown["data"][0]
    assert train["role"] == "train"
    found = names(js(project, home, "runs", "--dataset", train["dataset"][:10]))
    assert found == ["train-a", "train-b"]
    bad = cli(project, home, "runs", "--dataset", "not-hex", check=False)
    assert bad.returncode == 2
    assert "hex" in bad.stderr


def test_show_a_run_in_full(recorded):
    project, home = recorded
    shown = js(project, home, "show", "train-b")
    assert shown["run"]["name"] == "train-b"
    assert shown["run"]["status"] == "succeeded"
    params = {k: v for body in shown["params"] for k, v in body["params"].items()}
    assert params["lr"] == 0.5
    assert shown["outputs"][0]["path"].endswith("model.bin")
    assert shown["environment"]["python"]["version"]
    assert shown["ended"]["exit_code"] == 0
    text = cli(project, home, "show", shown["run"]["id"][:12]).stdout
    for section in ("params", "data", "outputs", "environment", "hardware", "ended"):
        assert f"\n{section}\n" in text
    missing = cli(project, home, "show", "no-such-run", check=False)
    assert missing.returncode == 2
    assert "no run 'no-such-run'" in missing.stderr


def test_show_a_number_is_still_a_record(recorded):
    project, home = recorded
    record = js(project, home, "show", "0")
    assert record["seq"] == 0
    assert record["entry"]["kind"] == "key.added"


def test_trace_a_model_file_back_to_the_raw_source(recorded):
    project, home = recorded
    answer = js(project, home, "trace", "model.bin")  # train-b wrote the current bytes
    [made] = answer["made_by"]
    assert made["run"]["name"] == "train-b"
    assert made["params"]["lr"] == 0.5
    assert made["data"][0]["role"] == "train"
    labels = [n["label"] for n in answer["lineage"]["nodes"]]
    assert any(
        label.startswith("clean (") and label.endswith("[step]") for label in labels
    )
    assert any(label.startswith("applications (") for label in labels)  # the source
    text = cli(project, home, "trace", "model.bin").stdout
    assert "made by run" in text
    assert "param lr = 0.5" in text


def test_lineage_down_from_the_source_reaches_both_models(recorded):
    project, home = recorded
    graph = js(project, home, "lineage", "applications", "--down")
    types = [n["type"] for n in graph["nodes"]]
    assert types.count("run") == 3  # clean, train-a, train-b
    model_files = [n for n in graph["nodes"] if n["label"].startswith("model.bin")]
    assert len(model_files) == 2
    mermaid = cli(
        project, home, "lineage", "applications", "--down", "--format", "mermaid"
    )
    assert mermaid.stdout.startswith("flowchart LR")
    dot = cli(project, home, "lineage", "train-a", "--format", "dot").stdout
    assert dot.startswith("digraph lineage {")
    events = json.loads(
        cli(
            project,
            home,
            "lineage",
            "applications",
            "--down",
            "--format",
            "openlineage",
        ).stdout
    )
    assert {e["job"]["name"] for e in events} == {"clean", "train-a", "train-b"}
    assert all(e["job"]["namespace"] == "test.mltrail.local/queries" for e in events)
    shallow = js(project, home, "lineage", "model.bin", "--depth", "1")
    assert [n["type"] for n in shallow["nodes"]] == ["file", "run"]


def test_unknown_references_are_clear_errors(recorded):
    project, home = recorded
    for args in (("trace", "nothing-like-this"), ("lineage", "abcdef0123")):
        proc = cli(project, home, *args, check=False)
        assert proc.returncode == 2
        assert proc.stderr.startswith("error: ")
    (project / "stranger.bin").write_bytes(b"never recorded")
    proc = cli(project, home, "trace", "stranger.bin", check=False)
    assert proc.returncode == 2
    assert "no record of" in proc.stderr


def test_the_index_rebuilds_itself(recorded, tmp_path):
    project, home = recorded
    before = js(project, home, "runs", "-n", "0")
    (home / "index.db").unlink()
    for suffix in ("-wal", "-shm"):
        (home / f"index.db{suffix}").unlink(missing_ok=True)
    assert js(project, home, "runs", "-n", "0") == before
    assert js(project, home, "reindex")["runs"] == 4
    # an index made for another ledger is noticed and rebuilt, not trusted
    other = tmp_path / "other"
    cli(project, other, "init", "--origin", "test.mltrail.local/other")
    cli(
        project, other, "run", "--name", "elsewhere", "--", sys.executable, "-c", "pass"
    )
    cli(project, other, "runs")
    shutil.copy(home / "index.db", other / "index.db")
    assert names(js(project, other, "runs")) == ["elsewhere"]


def test_sources_check_flags_downstream_models(recorded, tmp_path):
    project, home = recorded
    # work on copies: other tests read the recorded ledger
    work, copy = tmp_path / "project", tmp_path / "home"
    shutil.copytree(project, work)
    shutil.copytree(home, copy)
    work_raw = work / "raw" / "applications.csv"
    # the same bytes as the recorded source: the runs that read them depend on it
    cli(work, copy, "sources", "add", "apps-copy", "raw")
    unchanged = cli(work, copy, "sources", "check", "apps-copy")
    assert unchanged.returncode == 0
    assert "unchanged" in unchanged.stdout
    work_raw.write_text(work_raw.read_text().replace("5,1005,1", "5,9999,1"))
    changed = cli(work, copy, "sources", "check", "apps-copy", "--json", check=False)
    assert changed.returncode == 1
    [result] = json.loads(changed.stdout)
    assert result["changed"] is True
    assert result["changes"] == {"added": 0, "removed": 0, "changed": 1,
                                 "sample": ["~applications.csv"]}  # fmt: skip
    assert len(result["flagged"]) == 2
    text = cli(work, copy, "flags").stdout
    assert "apps-copy" in text
    open_flags = js(project, copy, "flags")
    assert {f["source"] for f in open_flags} == {"apps-copy"}
    assert len(open_flags) == 2
    # a second check does not flag the same models twice
    again = json.loads(cli(work, copy, "sources", "check", "apps-copy", "--json",
                           check=False).stdout)  # fmt: skip
    assert again[0]["changed"] is False
    cli(
        project,
        copy,
        "flags",
        "clear",
        open_flags[0]["model"],
        "--note",
        "re-validated",
    )
    assert len(js(project, copy, "flags")) == 1
    assert len(js(project, copy, "flags", "--all")) == 2
    assert cli(project, copy, "verify").returncode == 0


def test_sources_are_validated(recorded):
    project, home = recorded
    cases = [
        (("sources", "add", "applications", "raw"), "already registered"),
        (("sources", "add", "bad name", "raw"), "source name"),
        (("sources", "add", "gone", "no-such-folder"), "does not exist"),
        (("sources", "add", "db", "sqlite:///x.db"), "--query"),
        (("sources", "check", "unknown"), "no source named"),
        (("flags", "clear", "model.bin", "--note", "x"), "no open flag"),
    ]
    for args, message in cases:
        proc = cli(project, home, *args, check=False)
        assert proc.returncode == 2, args
        assert message in proc.stderr, (args, proc.stderr)
