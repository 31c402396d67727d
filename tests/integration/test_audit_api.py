"""The Python API for questions: mltrail.audit() answers what the CLI answers."""

from __future__ import annotations

import pytest

import mltrail
from mltrail.errors import InputError

pytestmark = pytest.mark.usefixtures("isolated_home")


@pytest.fixture
def recorded(tmp_path):
    (tmp_path / "raw.csv").write_text("id,y\n1,0\n2,1\n")
    for name, lr in (("first", 0.1), ("second", 0.5)):
        with mltrail.start_run(name=name, params={"lr": lr, "deep": {"layers": 2}},
                               data={"train": "raw.csv"}) as run:  # fmt: skip
            (tmp_path / "model.bin").write_bytes(f"model {lr}".encode())
            run.log_artifact("model.bin")
    return tmp_path


def test_runs_run_trace_lineage(recorded):
    with mltrail.audit() as audit:
        assert [r.name for r in audit.runs()] == ["first", "second"]
        assert [r.name for r in audit.runs(params={"lr": 0.5})] == ["second"]
        assert [r.name for r in audit.runs(params={"deep.layers": 2}, limit=1)] == [
            "second"
        ]
        assert audit.runs(since="1h", user="someone-else") == []
        view = audit.run("first")
        assert view.params()["lr"][0] == 0.1
        assert view.body("run.data")["role"] == "train"
        made = audit.trace(recorded / "model.bin")["made_by"]
        assert [m["run"]["name"] for m in made] == ["second"]
        graph = audit.lineage(recorded / "raw.csv", down=True)
        assert {
            n.label.split(" ")[0] for n in graph.nodes.values() if n.type == "run"
        } == {
            "first",
            "second",
        }
        assert audit.stage_holders() == {}
        assert audit.flags() == []
        assert audit.sources() == []
        with pytest.raises(InputError):
            audit.run("no-such-run")


def test_affected_models(recorded):
    with mltrail.audit() as audit:
        affected = audit.affected_models(recorded / "raw.csv")
    assert sorted(n.label.split(" ")[0] for n in affected) == ["model.bin", "model.bin"]


def test_diff(recorded):
    with mltrail.audit() as audit:
        changed = audit.diff("first", "second")
    out = changed.to_dict()
    assert not changed.is_empty
    assert [c["key"] for c in out["sections"]["params"]] == ["lr"]
