"""Approvals, gates, model cards and promotion refusals on a real SQLite ledger.

Several people share one ledger here. A test cannot log in as them, so the
ledger's actor (what capture_actor read from the OS account) is set per writer;
the CLI test in tests/e2e/test_cli_governance.py shows the OS account is what
counts, whatever $USER claims.
"""

from __future__ import annotations

import pytest

from mltrail.audit.governance import (
    approval_status,
    approvals,
    approve_model,
    describe_model,
    model_card,
    set_gate,
)
from mltrail.errors import InputError
from mltrail.index import open_index
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft
from mltrail.record.stages import promote

SHA = {"clean": "a" * 64, "dirty": "b" * 64, "nogit": "c" * 64, "bare": "d" * 64}
CODE = {
    "clean": {"vcs": "git", "commit": "1" * 40, "branch": "main", "dirty": False},
    "dirty": {"vcs": "git", "commit": "2" * 40, "branch": "main", "dirty": True,
              "untracked_count": 2},
    "nogit": {"vcs": None, "reason": "not a git repository"},
}  # fmt: skip
MODEL = f"file:{SHA['clean']}"


def as_user(home, user: str, claimed: str | None = None) -> None:
    home.ledger.actor = {"user": user, "uid": 1000, "host": "bank-ws"} | (
        {"claimed_user": claimed} if claimed else {}
    )


@pytest.fixture
def home(tmp_path):
    init_home(tmp_path / "home", origin="test.mltrail.local/governance")
    opened = open_home(tmp_path / "home")
    as_user(opened, "alice")  # alice trains every model
    for name, sha in SHA.items():
        run = f"run-{name}"
        drafts = [Draft("run.started", {"source": "api", "name": f"train-{name}"}, run)]
        if name in CODE:
            drafts.append(Draft("run.code", CODE[name], run))
        drafts += [
            Draft("run.artifact", {"path": f"/m/{name}.bin", "exists": True,
                                   "type": "file", "sha256": sha, "size": 3}, run),
            Draft("run.ended", {"status": "succeeded"}, run),
        ]  # fmt: skip
        opened.ledger.append_many(drafts)
    yield opened
    opened.close()


def approve(home, user: str, *, reject: bool = False, claimed: str | None = None):
    as_user(home, user, claimed)
    note = f"{user} reviewed validation report VR-7"
    return approve_model(home, open_index(home), MODEL, stage="production",
                         note=note, reject=reject)  # fmt: skip


def promote_clean(home, **kw):
    return promote(home, open_index(home), MODEL, stage="production", **kw)


def gate(home, n: int, note: str | None = "SR 11-7 four eyes") -> None:
    set_gate(home, open_index(home), "production", require_approval=n, note=note)


# -- refusals and --override ------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "message", "fix"),
    [
        ("dirty", "ran on uncommitted code", "commit"),
        ("nogit", "did not run from a git commit (not a git repository)", "git"),
        ("bare", "has no code record", "mltrail run"),
    ],
)
def test_code_that_is_not_a_clean_commit_is_refused(home, model, message, fix):
    size = home.ledger.head().size
    with pytest.raises(InputError, match="promotion refused") as caught:
        promote(home, open_index(home), f"/m/{model}.bin", stage="production", note="x")
    assert message in str(caught.value)
    assert fix in caught.value.hint
    assert "--override REASON" in caught.value.hint
    assert home.ledger.head().size == size


def test_a_model_no_recorded_run_made_is_refused(home):
    with pytest.raises(InputError, match="no recorded run made"):
        promote(
            home, open_index(home), f"file:{'e' * 64}", stage="production", note="x"
        )


def test_a_promotion_without_a_note_is_refused(home):
    with pytest.raises(InputError, match="needs --note") as caught:
        promote_clean(home)
    assert "--note" in caught.value.hint


def test_a_flagged_model_is_refused_until_cleared(home):
    home.ledger.append("model.flagged", {
        "model": SHA["clean"], "model_type": "file", "status": "open",
        "source": "customers", "run": "run-clean", "path": "/m/clean.bin",
    })  # fmt: skip
    with pytest.raises(InputError, match=r"1 open flag.*customers changed") as caught:
        promote_clean(home, note="weekly")
    assert "flags clear" in caught.value.hint
    from mltrail.audit.flags import clear_flag

    clear_flag(home, open_index(home), MODEL, note="re-validated")
    assert promote_clean(home, note="weekly")["model"] == SHA["clean"]


def test_override_is_recorded_with_what_it_lifted(home):
    body = promote(home, open_index(home), "/m/dirty.bin", stage="production",
                   override="hotfix INC-7, retrain Monday")  # fmt: skip
    assert body["override"]["reason"] == "hotfix INC-7, retrain Monday"
    refused = body["override"]["refused"]
    assert len(refused) == 2
    assert "uncommitted code" in refused[0]
    assert "needs --note" in refused[1]
    last = home.ledger.record(home.ledger.head().size - 1).entry
    assert last.kind == "model.promoted"
    assert last.body["override"] == body["override"]
    with pytest.raises(InputError, match="--override needs a reason"):
        promote(home, open_index(home), "/m/nogit.bin", stage="staging", override=" ")
    assert home.verify().ok


# -- approvals and gates ----------------------------------------------------------


def test_self_approval_does_not_count(home):
    gate(home, 1)
    approve(home, "alice")  # she trained it
    status = approval_status(open_index(home), MODEL, "production")
    assert status["trainers"] == ["alice"]
    assert status["self_approved"] == ["alice"]
    assert status["approvers"] == []
    with pytest.raises(InputError, match=r"requires 1 approval.*it has 0") as caught:
        promote_clean(home, note="v1")
    assert "--override does not lift" in caught.value.hint
    with pytest.raises(InputError, match="requires 1 approval"):
        promote_clean(home, note="v1", override="I am sure")  # no way around it
    approve(home, "bob")
    body = promote_clean(home, note="v1")
    assert body["approvals"] == {"required": 1, "approvers": ["bob"],
                                 "trainers": ["alice"]}  # fmt: skip


def test_two_approvals_by_the_same_person_count_once(home):
    gate(home, 2)
    approve(home, "bob")
    approve(home, "bob")
    with pytest.raises(InputError, match=r"it has 1 \(bob\)"):
        promote_clean(home, note="v1")
    approve(home, "carol")
    assert promote_clean(home, note="v1")["approvals"]["approvers"] == ["bob", "carol"]


def test_a_claimed_user_is_never_counted(home):
    gate(home, 1)
    approve(home, "alice", claimed="bob")  # alice with USER=bob: still alice
    [found] = approvals(home, MODEL)
    assert (found["user"], found["claimed_user"]) == ("alice", "bob")
    assert found["self"] is True
    assert found["counts"] is False
    with pytest.raises(InputError, match="requires 1 approval"):
        promote_clean(home, note="v1")


def test_a_rejection_blocks_until_the_same_person_approves(home):
    approve(home, "bob")
    approve(home, "carol", reject=True)
    with pytest.raises(InputError, match=r"carol rejected .* for production") as caught:
        promote_clean(home, note="v1", override="business says go")  # not lifted
    assert "same person" in caught.value.hint
    approve(home, "dave")
    with pytest.raises(InputError, match="carol rejected"):
        promote_clean(home, note="v1")
    approve(home, "carol")  # carol changed her mind: her newest decision stands
    assert promote_clean(home, note="v1")["model"] == SHA["clean"]
    decisions = [
        (a["user"], a["decision"], a["counts"]) for a in approvals(home, MODEL)
    ]
    assert decisions == [
        ("bob", "approve", True),
        ("carol", "reject", False),
        ("dave", "approve", True),
        ("carol", "approve", True),
    ]


def test_a_gate_is_a_signed_entry_and_lowering_it_needs_a_note(home):
    gate(home, 2, note=None)
    with pytest.raises(InputError, match="already requires 2"):
        gate(home, 2)
    with pytest.raises(InputError, match=r"lowering the gate of production \(2 -> 0\)"):
        gate(home, 0, note=None)
    gate(home, 0, note="committee decision CM-12: staging only")
    last = home.ledger.record(home.ledger.head().size - 1).entry
    assert last.kind == "stage.gated"
    assert last.body == {"stage": "production", "require_approval": 0, "previous": 2,
                         "note": "committee decision CM-12: staging only"}  # fmt: skip
    assert last.sig is not None
    with pytest.raises(InputError, match="0 to 100"):
        gate(home, 101)


def test_approvals_need_a_note_and_a_stage_name(home):
    with pytest.raises(InputError, match="needs --note"):
        approve_model(home, open_index(home), MODEL, stage="production", note=" ")
    with pytest.raises(InputError, match="not a name"):
        approve_model(home, open_index(home), MODEL, stage="prod uction", note="x")


# -- model cards -------------------------------------------------------------------


def test_model_card_keeps_the_newest_value_of_each_field_with_who_and_when(home):
    as_user(home, "ana")
    index = open_index(home)
    describe_model(home, index, MODEL, {"purpose": "retail credit scoring",
                                        "owner": "credit-risk team"})  # fmt: skip
    as_user(home, "ben")
    describe_model(home, open_index(home), "/m/clean.bin",
                   {"risk_tier": "high", "owner": "model risk office"})  # fmt: skip
    card = model_card(home, MODEL)
    assert card["model"] == MODEL
    assert card["purpose"]["value"] == "retail credit scoring"
    assert card["purpose"]["user"] == "ana"
    assert (card["owner"]["value"], card["owner"]["user"]) == (
        "model risk office",
        "ben",
    )
    assert card["risk_tier"]["value"] == "high"
    assert card["limitations"] is None
    assert card["owner"]["time"].endswith("Z")
    assert model_card(home, SHA["clean"][:10])["owner"]["value"] == "model risk office"
    with pytest.raises(InputError, match="say what to record"):
        describe_model(home, open_index(home), MODEL, {"purpose": None})
    assert home.verify().ok


def test_a_clean_run_claiming_the_same_bytes_does_not_lift_a_dirty_runs_refusal(home):
    """Another run (here another user's) that says it wrote the bytes of a model
    trained on uncommitted code, from a clean commit, must not make that model's
    code look recorded: every run that wrote it is checked, and each refusal
    names its run."""
    as_user(home, "mallory")
    run = "run-claim"
    home.ledger.append_many([
        Draft("run.started", {"source": "api", "name": "claim"}, run),
        Draft("run.code", CODE["clean"], run),
        Draft("run.artifact", {"path": "/m/copy.bin", "exists": True, "type": "file",
                               "sha256": SHA["dirty"], "size": 3}, run),
        Draft("run.ended", {"status": "succeeded"}, run),
    ])  # fmt: skip
    as_user(home, "alice")
    size = home.ledger.head().size
    with pytest.raises(InputError, match="promotion refused") as caught:
        promote(home, open_index(home), f"file:{SHA['dirty']}", stage="production",
                note="x")  # fmt: skip
    assert "run run-dirty" in str(caught.value)
    assert "ran on uncommitted code" in str(caught.value)
    assert home.ledger.head().size == size
