"""A changed source flags every model made from it, however the chain reached it.

Recorded through the real CLI (in-process; each step's command a real
subprocess): a preparation run reads the source and writes a cleaned file, a
training run reads that and writes ``model.pt``, and later runs read the model
or read the source through the folder that holds it.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path

import pytest

from cli_in_process import DUP, in_process_cli


@pytest.fixture
def cli(capsys, monkeypatch, tmp_path):
    run = in_process_cli(capsys, monkeypatch, tmp_path)
    project = tmp_path / "project"
    (project / "data" / "raw").mkdir(parents=True)
    monkeypatch.chdir(project)
    (project / "dup.py").write_text(textwrap.dedent(DUP))
    (project / "data" / "raw" / "apps.csv").write_text("id,income\n1,10\n")
    (project / "data" / "raw" / "bureau.csv").write_text("id,score\n1,700\n")

    run("init", "--origin", "test.mltrail.local/chains")
    return run


def step(cli, name: str, read: str, wrote: str) -> None:
    cli("run", "-q", "--name", name, "--data", f"in={read}", "--output", wrote,
        "--", sys.executable, "dup.py", read, wrote, name)  # fmt: skip


def flagged_paths(cli) -> set[str]:
    return {Path(f["path"]).name for f in json.loads(cli("flags", "--json"))}


def check(cli, name: str) -> dict:
    [result] = json.loads(cli("sources", "check", name, "--json", code=1))
    assert result["changed"] is True
    return result


def test_a_model_another_run_read_is_still_flagged(cli):
    cli("sources", "add", "apps", "data/raw/apps.csv")
    step(cli, "prep", "data/raw/apps.csv", "out/clean.csv")
    step(cli, "train", "out/clean.csv", "out/model.pt")
    step(cli, "eval", "out/model.pt", "out/metrics.json")
    Path("data/raw/apps.csv").write_text("id,income\n1,99\n")
    result = check(cli, "apps")
    assert len(result["flagged"]) == 1
    assert flagged_paths(cli) == {"model.pt"}


def test_a_run_reading_the_folder_that_holds_a_file_source_is_flagged(cli):
    cli("sources", "add", "apps", "data/raw/apps.csv")
    step(cli, "train-all", "data/raw", "out/model.pt")
    down = json.loads(cli("lineage", "--down", "source:apps", "--json"))
    assert any(n["label"].startswith("train-all") for n in down["nodes"])
    Path("data/raw/apps.csv").write_text("id,income\n1,99\n")
    check(cli, "apps")
    assert flagged_paths(cli) == {"model.pt"}


def test_a_folder_source_read_through_its_parent_is_keyed_by_its_own_paths(cli):
    sub = Path("data/raw/sub")
    sub.mkdir()
    (sub / "a.csv").write_text("id\n1\n")
    (sub / "b.csv").write_text("id\n2\n")
    cli("sources", "add", "sub", "data/raw/sub")
    step(cli, "train-all", "data/raw", "out/model.pt")
    (sub / "c.csv").write_text("id\n3\n")  # added: nobody read it
    assert check(cli, "sub")["flagged"] == []
    (sub / "b.csv").write_text("id\n22\n")
    assert len(check(cli, "sub")["flagged"]) == 1
    assert flagged_paths(cli) == {"model.pt"}


def test_an_output_read_inside_a_bigger_folder_passes_the_flag_on(cli):
    cli("sources", "add", "apps", "data/raw/apps.csv")
    Path("out/feat").mkdir(parents=True)
    Path("out/feat/static.csv").write_text("id\n1\n")
    step(cli, "prep", "data/raw/apps.csv", "out/feat/clean.csv")
    step(cli, "train", "out/feat", "out/model.pt")
    down = json.loads(cli("lineage", "--down", "source:apps", "--json"))
    assert any(n["label"].startswith("train") for n in down["nodes"])
    Path("data/raw/apps.csv").write_text("id,income\n1,99\n")
    check(cli, "apps")
    assert flagged_paths(cli) == {"model.pt"}


def test_a_folder_reader_of_other_bytes_under_the_same_name_is_not_downstream(cli):
    cli("sources", "add", "apps", "data/raw/apps.csv")
    Path("out/feat").mkdir(parents=True)
    Path("out/feat/static.csv").write_text("id\n1\n")
    Path("out/feat/clean.csv").write_text("hand-made\n")
    step(cli, "train", "out/feat", "out/model.pt")  # before prep wrote clean.csv
    step(cli, "prep", "data/raw/apps.csv", "out/feat/clean.csv")
    Path("data/raw/apps.csv").write_text("id,income\n1,99\n")
    assert check(cli, "apps")["flagged"] == []


def test_a_renamed_copy_of_a_one_file_source_is_flagged(cli):
    cli("sources", "add", "apps", "data/raw/apps.csv")
    Path("elsewhere").mkdir()
    Path("elsewhere/renamed.csv").write_bytes(Path("data/raw/apps.csv").read_bytes())
    step(cli, "train-copy", "elsewhere/renamed.csv", "out/model.pt")
    up = json.loads(cli("lineage", "out/model.pt", "--json"))
    assert "source:apps" in {n["id"] for n in up["nodes"]}
    Path("data/raw/apps.csv").write_text("id,income\n1,99\n")
    check(cli, "apps")
    assert flagged_paths(cli) == {"model.pt"}


def test_every_model_of_a_wide_fan_out_is_flagged(cli, tmp_path, monkeypatch):
    """One cleaned file trained on by more runs than a displayed graph holds:
    every model is flagged, not the first ones found. The display bound
    (``MAX_NODES``, 2,000: 1,001 trainings, 50 s of a CI worker) is lowered to
    5 for the test, as the graph's growers see it (their keyword default)."""
    import mltrail
    from mltrail.audit import trace

    monkeypatch.setitem(trace.build_lineage.__kwdefaults__, "max_nodes", 5)
    home = tmp_path / "home"
    cli("sources", "add", "apps", "data/raw/apps.csv")
    step(cli, "prep", "data/raw/apps.csv", "out/clean.csv")
    models = 6
    for i in range(models):
        with mltrail.start_run(f"train-{i}", home=home, capture=False) as run:
            run.log_dataset("out/clean.csv", role="train")
            Path(f"out/m{i}.pt").write_bytes(b"weights %d" % i)
            run.log_artifact(f"out/m{i}.pt")
    Path("data/raw/apps.csv").write_text("id,income\n1,99\n")
    assert len(check(cli, "apps")["flagged"]) == models
