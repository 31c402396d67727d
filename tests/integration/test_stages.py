"""Model stages on a real ledger: promote, replace, demote, and who held what when."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from mltrail.errors import InputError
from mltrail.index import open_index
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft, SystemClock
from mltrail.record.stages import demote, promote, stage_history, stage_holders

SHA = {name: name[0] * 64 for name in ("aaa", "bbb", "ccc")}
CLEAN_CODE = {"vcs": "git", "commit": "f" * 40, "branch": "main", "dirty": False}


class Clock:
    def __init__(self) -> None:
        self.t = datetime(2026, 3, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self.t


@pytest.fixture
def home(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(SystemClock, "now", lambda self: clock.now())
    init_home(tmp_path / "home", origin="test.mltrail.local/stages")
    opened = open_home(tmp_path / "home")
    for name, sha in SHA.items():
        run = f"run-{name}"
        opened.ledger.append_many([
            Draft("run.started", {"source": "api", "name": f"train-{name}"}, run),
            Draft("run.code", CLEAN_CODE, run),
            Draft("run.artifact", {"path": f"/m/{name}.bin", "exists": True,
                                   "type": "file", "sha256": sha, "size": 3}, run),
            Draft("run.ended", {"status": "succeeded"}, run),
        ])  # fmt: skip
    opened.ledger.append_many([
        Draft("run.started", {"source": "api", "name": "two-outputs"}, "run-two"),
        Draft("run.artifact", {"path": "/m/x", "exists": True, "type": "file",
                               "sha256": "d" * 64, "size": 1}, "run-two"),
        Draft("run.artifact", {"path": "/m/y", "exists": True, "type": "file",
                               "sha256": "e" * 64, "size": 1}, "run-two"),
    ])  # fmt: skip
    opened.clock = clock
    yield opened
    opened.close()


def at(day: int) -> float:
    return datetime(2026, 3, day, 12, tzinfo=UTC).timestamp()


def step(home, day: int) -> None:
    home.clock.t = datetime(2026, 3, day, 9, tzinfo=UTC)


def test_a_stage_holds_one_model_at_a_time(home):
    step(home, 2)
    body = promote(home, open_index(home), "aaaa", stage="production", note="v1")
    assert body["model"] == SHA["aaa"]
    assert body["model_type"] == "file"
    assert body["run"] == "run-aaa"
    assert body["path"] == "/m/aaa.bin"
    assert body["replaces"] is None
    step(home, 9)
    body = promote(
        home, open_index(home), "train-bbb", stage="production", note="v2"
    )  # a run name
    assert body["replaces"] == f"file:{SHA['aaa']}"
    promote(
        home, open_index(home), "/m/ccc.bin", stage="staging", note="try"
    )  # by output path
    step(home, 16)
    demote(home, open_index(home), "bbbb", stage="production", note="rolled back")
    index = open_index(home)
    assert stage_holders(index, at=at(1)) == {}
    assert stage_holders(index, at=at(5))["production"].model == f"file:{SHA['aaa']}"
    holders = stage_holders(index, at=at(10))
    assert holders["production"].model == f"file:{SHA['bbb']}"
    assert holders["staging"].model == f"file:{SHA['ccc']}"
    assert "production" not in stage_holders(index)
    history = stage_history(index, stage="production")
    assert [(p.action, p.note) for p in history] == [
        ("enter", "v1"),
        ("enter", "v2"),
        ("leave", "rolled back"),
    ]
    assert home.verify().ok


@pytest.mark.parametrize(
    ("ref", "stage", "message"),
    [
        ("aaaa", "prod uction", "not a name"),
        ("two-outputs", "production", "wrote 2 outputs"),
        ("ffff", "production", "starts with"),
        ("nothing-at-all", "production", "nothing in the ledger"),
    ],
)
def test_bad_promotions_record_nothing(home, ref, stage, message):
    size = home.ledger.head().size
    with pytest.raises(InputError, match=message):
        promote(home, open_index(home), ref, stage=stage)
    assert home.ledger.head().size == size


def test_promoting_twice_or_demoting_what_does_not_hold_is_refused(home):
    promote(home, open_index(home), "aaaa", stage="production", note="v1")
    with pytest.raises(InputError, match="already holds"):
        promote(home, open_index(home), "aaaa", stage="production", note="v1")
    with pytest.raises(InputError, match="does not hold"):
        demote(home, open_index(home), "bbbb", stage="production")
    with pytest.raises(InputError, match="does not hold"):
        demote(home, open_index(home), "aaaa", stage="staging")


def test_promotions_are_signed_entries(home):
    promote(home, open_index(home), "cccc", stage="production", note="ok")
    last = home.ledger.record(home.ledger.head().size - 1)
    assert last.entry.kind == "model.promoted"
    assert last.entry.sig is not None
    assert last.entry.time.startswith("2026-03-01T00:00:00")  # the clock of the append
    assert last.entry.body["note"] == "ok"


def test_a_promotion_dated_earlier_holds_only_until_the_next_one(home):
    """Events count in time order: a promotion appended last but dated before
    the others (a writer's clock three minutes behind, or an entry pushed from an
    offline ledger) held the stage from then on at every moment (seq order), so
    it answered for times when another model had been promoted after it."""
    step(home, 2)
    promote(home, open_index(home), "aaaa", stage="production", note="v1")
    home.clock.t = datetime(2026, 3, 2, 9, 0, 10, tzinfo=UTC)
    promote(home, open_index(home), "bbbb", stage="production", note="v2")
    home.clock.t = datetime(2026, 3, 2, 8, 57, tzinfo=UTC)  # 3 minutes behind
    with pytest.raises(InputError, match="an event dated before it would not be"):
        promote(home, open_index(home), "cccc", stage="production", note="v3")
    late = {"model": SHA["ccc"], "model_type": "file", "stage": "production",
            "action": "enter", "note": "v3, dated early"}  # fmt: skip
    home.ledger.append("model.promoted", late)  # what another client may write
    index = open_index(home)

    def held(*moment: int) -> str:
        return stage_holders(index, at=datetime(*moment, tzinfo=UTC).timestamp())[
            "production"
        ].note

    assert held(2026, 3, 2, 8, 58) == "v3, dated early"
    assert held(2026, 3, 2, 9, 0, 5) == "v1"
    assert held(2026, 3, 2, 9, 0, 15) == "v2"
    assert stage_holders(index)["production"].note == "v2"  # now: the same
