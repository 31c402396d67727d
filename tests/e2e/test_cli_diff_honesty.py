"""`mltrail diff` on real runs: two recorded values that differ are reported,
equal ones are not, and each side is shown with its own source.

Found on 2026-12-07: identical commands holding a secret (a URL password)
read as changed, since each run's commitment has its own salt; a parameter
moved from the command line into a config file printed run A's value with run
B's source; and metrics, written in batches, were compared by their last
batch only: a lower minimum earlier in the run read as no change, the same
points written in other batches as a change.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cli_runner import mltrail

if TYPE_CHECKING:
    from pathlib import Path

TRAIN = "import sys\nprint(sys.argv[1:])\n"
METRICS = """\
import sys
import mltrail

values = [float(v) for v in sys.argv[2].split(",")]
with mltrail.start_run(name=sys.argv[1]) as run:
    for n, value in enumerate(values):
        run.log_metrics({"loss": value})
        if str(n) in sys.argv[3].split(","):
            run.flush()  # a batch ends here, as every 10,000 points or 30 s
"""


def _project(tmp_path: Path) -> tuple[Path, Path]:
    home, project = tmp_path / "home", tmp_path / "project"
    project.mkdir()
    (project / "train.py").write_text(TRAIN)
    (project / "metrics.py").write_text(METRICS)
    assert mltrail(home, "init").returncode == 0
    return home, project


def _run(home: Path, project: Path, name: str, *args: str) -> None:
    done = mltrail(home, "run", "--name", name, "--", "python", *args, cwd=project)
    assert done.returncode == 0, done.stderr


def _diff(home: Path, a: str, b: str) -> tuple[str, dict[str, Any]]:
    shown = mltrail(home, "diff", a, b)
    assert shown.returncode == 0, shown.stderr
    as_json = mltrail(home, "diff", a, b, "--json")
    assert as_json.returncode == 0, as_json.stderr
    return shown.stdout, json.loads(as_json.stdout)


def _keys(result: dict[str, Any], section: str) -> dict[str, dict[str, Any]]:
    return {c["key"]: c for c in result["sections"][section]}


def test_the_same_command_with_a_secret_in_it_is_no_change(tmp_path):
    home, project = _project(tmp_path)
    secret = ("--api-key", "sk-live-0123456789abcdef")
    same = ("train.py", *secret, "--db", "postgres://u:hunter2@db1/x")
    _run(home, project, "a", *same)
    _run(home, project, "b", *same)
    _run(home, project, "c", "train.py", *secret, "--db", "postgres://u:hunter2@db2/x")

    text, result = _diff(home, "a", "b")
    assert "command" not in _keys(result, "run"), text
    assert result["sections"]["params"] == [], text
    assert "command" not in text
    assert "db:" not in text

    text, result = _diff(home, "a", "c")  # the host around the secret changed
    assert _keys(result, "params")["db"]["change"] == "changed"
    assert _keys(result, "run")["command"]["change"] == "changed"
    assert "-  db: postgres://u:<redacted>@db1/x  (argv)" in text, text
    assert "+  db: postgres://u:<redacted>@db2/x  (argv)" in text, text
    assert "hunter2" not in text


def test_a_parameter_moved_into_a_config_file_shows_each_runs_source(tmp_path):
    home, project = _project(tmp_path)
    (project / "cfg.yaml").write_text("lr: 0.2\n")
    _run(home, project, "a", "train.py", "--lr", "0.1")
    _run(home, project, "b", "train.py", "--config", "cfg.yaml")

    text, result = _diff(home, "a", "b")
    lr = _keys(result, "params")["lr"]
    assert (lr["old"], lr["new"], lr["old_source"]) == (0.1, 0.2, "argv")
    assert lr["source"].endswith("cfg.yaml")
    assert "-  lr: 0.1  (argv)" in text, text
    assert f"+  lr: 0.2  ({lr['source']})" in text, text


def _metrics_run(home: Path, project: Path, name: str, values: str, ends: str) -> None:
    _run(home, project, name, "metrics.py", name, values, ends)


def test_metrics_are_compared_over_every_batch_not_the_last(tmp_path):
    home, project = _project(tmp_path)
    _metrics_run(home, project, "good", "5,0.1,0.5,0.4", "2")
    _metrics_run(home, project, "bad", "5,3,2,0.4", "2")
    _metrics_run(home, project, "rebatched", "5,0.1,0.5,0.4", "0,1")

    text, result = _diff(home, "good", "bad")
    metrics = _keys(result, "metrics")
    assert set(metrics) == {"loss.min"}, text
    assert (metrics["loss.min"]["old"], metrics["loss.min"]["new"]) == (0.1, 0.4)
    assert "-  loss.min: 0.1" in text, text
    assert "+  loss.min: 0.4" in text, text

    text, result = _diff(home, "good", "rebatched")  # the same points
    assert result["sections"]["metrics"] == [], text
    assert "\nmetrics" not in text

    shown = mltrail(home, "diff", "good", "rebatched", "--all", "--json")
    every = _keys(json.loads(shown.stdout), "metrics")
    assert {k: c["old"] for k, c in every.items()} == {
        "loss.count": 4,
        "loss.last": 0.4,
        "loss.max": 5.0,
        "loss.min": 0.1,
    }


def test_show_sums_the_metrics_over_every_batch(tmp_path):
    """`show` printed the last batch's summary as the run's (min 0.4 over 2
    points, where the run saw 0.1 among 4)."""
    home, project = _project(tmp_path)
    _metrics_run(home, project, "good", "5,0.1,0.5,0.4", "1")
    shown = mltrail(home, "show", "good", env={"COLUMNS": "200"})
    assert shown.returncode == 0, shown.stderr
    [row] = [line.split() for line in shown.stdout.splitlines()
             if line.split()[:1] == ["loss"]]  # fmt: skip
    assert row == ["loss", "0.4", "0.1", "5", "4"], shown.stdout


SHARDS = """\
import sys
import mltrail

with mltrail.start_run(name=sys.argv[1]) as run:
    for shard in sys.argv[2:]:
        run.log_dataset(shard, role="train")
"""


def test_a_role_read_several_times_pairs_its_datasets_by_id(tmp_path):
    """Shards logged one by one under one role were paired by the order read:
    the same shards in another order read as two changed datasets, and with
    shard 1 dropped the diff named shard 2 removed and shard 1 changed into it."""
    home, project = _project(tmp_path)
    (project / "shards.py").write_text(SHARDS)
    for n in (1, 2):
        (project / f"s{n}.csv").write_text(f"x\n{n}\n")
    _run(home, project, "both", "shards.py", "both", "s1.csv", "s2.csv")
    _run(home, project, "swapped", "shards.py", "swapped", "s2.csv", "s1.csv")
    _run(home, project, "second", "shards.py", "second", "s2.csv")

    text, result = _diff(home, "both", "swapped")
    assert result["sections"]["data"] == [], text
    assert "\ndata" not in text

    text, result = _diff(home, "both", "second")
    data = result["sections"]["data"]
    assert [(d["role"], d["change"]) for d in data] == [("train", "removed")], text
    assert data[0]["fields"] == []
    kept = json.loads(mltrail(home, "diff", "both", "second", "--all", "--json").stdout)
    paired = {d["role"]: (d["old"], d["new"]) for d in kept["sections"]["data"]}
    assert paired["train"][1] is None
    assert paired["train#2"][0] == paired["train#2"][1]  # s2.csv, in both
    assert "train: removed" in text, text
