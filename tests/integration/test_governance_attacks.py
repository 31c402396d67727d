"""Attacks on approvals and gates, judged where an auditor reads them.

A trainer who wants their own model promoted without independent approval:
a ``model.promoted`` appended by hand (through the team server's ``POST
/entries``, which a writer may do, or the Python API), a gate lowered just
before a promotion and raised again after it, a promotion racing a rejection,
and a model no recorded run made, approved by whoever brought it in. ``promote``
is not the only writer of promotions, so ``model history`` and ``report`` judge
each promotion against the records before it, never against what the entry
says of itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import subprocess
import sys
import uuid
from typing import Any

import pytest

from home_setup import checked_cli, trained_folder, triggers_dropped
from mltrail.audit.governance import approve_model, set_gate
from mltrail.errors import InputError
from mltrail.index import open_index
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft
from mltrail.record.stages import promote

A = "/ledgers/team-a"
CLEAN = {"vcs": "git", "commit": "1" * 40, "branch": "main", "dirty": False}


def as_user(home, user: str) -> None:
    home.ledger.actor = {"user": user, "uid": 1000, "host": "bank-ws"}


def cli(env: dict[str, str], *args: str, code: int = 0) -> str:
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", *args], env=env, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    return proc.stdout


def train(home, user: str, sha: str, run: str) -> None:
    as_user(home, user)
    home.ledger.append_many([
        Draft("run.started", {"source": "api", "name": f"train-{run}"}, run),
        Draft("run.code", CLEAN, run),
        Draft("run.artifact", {"path": f"/m/{run}.bin", "exists": True,
                               "type": "file", "sha256": sha, "size": 3}, run),
        Draft("run.ended", {"status": "succeeded"}, run),
    ])  # fmt: skip


@pytest.fixture
def home(tmp_path):
    init_home(tmp_path / "home", origin="test.mltrail.local/governance-attacks")
    opened = open_home(tmp_path / "home")
    yield opened
    opened.close()


def _env(home) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    return keep | {"MLTRAIL_HOME": str(home.path)}


def _history(env: dict[str, str]) -> tuple[list[dict[str, Any]], str]:
    return (
        json.loads(cli(env, "model", "history", "--json")),
        cli(env, "model", "history"),
    )


def test_a_hand_made_promotion_through_the_server_is_shown_not_meeting_its_gate(
    team_server,
):
    """A writer may append ``model.promoted`` through ``POST /entries``: the
    server does not run ``promote``'s checks. Alice gated out by bob's gate of 2
    appends a promotion of her own model claiming bob and carol approved it;
    the auditor's ``model history`` and ``report`` showed it as any promotion."""
    s = team_server
    tag = uuid.uuid4().hex[:8]
    alice, bob, stage = f"gov-alice-{tag}", f"gov-bob-{tag}", f"prod-{tag}"
    sha = uuid.uuid4().hex * 2
    run = f"gov-{tag}"
    gated = s.entry(bob, "stage.gated",
                    {"stage": stage, "require_approval": 2, "previous": 0})  # fmt: skip
    status, answer = s.call("POST", f"{A}/entries", s.token("approver", bob),
                            {"entries": [gated]})  # fmt: skip
    assert status == 201, answer
    bodies = [
        ("run.started", {"source": "api", "name": "train"}, run),
        ("run.code", CLEAN, run),
        ("run.artifact", {"path": "/m/model.bin", "exists": True, "type": "file",
                          "sha256": sha, "size": 3}, run),
        ("run.ended", {"status": "succeeded"}, run),
        ("model.promoted", {
            "model": sha, "model_type": "file", "stage": stage, "action": "enter",
            "run": run, "path": "/m/model.bin", "ref": "model.bin",
            "note": "approved by the committee", "replaces": None,
            "approvals": {"required": 2, "approvers": [bob, "carol"],
                          "trainers": [alice]},
        }, None),
    ]  # fmt: skip
    entries = [s.entry(alice, kind, body, run=r) for kind, body, r in bodies]
    status, answer = s.call("POST", f"{A}/entries", s.token("writer", alice),
                            {"entries": entries})  # fmt: skip
    assert status == 201, answer

    keep = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    env = keep | {
        "MLTRAIL_URL": f"http://127.0.0.1:{s.port}{A}",
        "MLTRAIL_TOKEN": s.token("auditor", f"gov-auditor-{tag}"),
    }
    events = json.loads(cli(env, "model", "history", "--stage", stage, "--json"))
    [event] = events
    assert event["gate"]["met"] is False
    assert (event["gate"]["required"], event["gate"]["approvers"]) == (2, [])
    assert event["gate"]["trainers"] == [alice]
    text = cli(env, "model", "history", "--stage", stage)
    assert "NOT MET: 0 of 2" in " ".join(text.split())
    report = json.loads(cli(env, "report", f"file:{sha}", "--json"))
    [promoted] = report["promotions"]
    assert promoted["gate"]["met"] is False
    markdown = cli(env, "report", f"file:{sha}")
    assert "NOT MET: 0 of 2 approval" in markdown


def test_a_gate_lowered_for_one_promotion_is_shown_beside_it(home):
    """Lowering a gate needs a note, but ``model history`` and ``report`` never
    showed the gate: a promotion under a gate lowered to 0 just before it, and
    raised again just after, read like any promotion."""
    sha = "a" * 64
    train(home, "alice", sha, "run-a")
    as_user(home, "riskoffice")
    set_gate(home, open_index(home), "production", require_approval=2, note="SR 11-7")
    as_user(home, "alice")
    set_gate(home, open_index(home), "production", require_approval=0,
             note="hotfix window")  # fmt: skip
    lowered_seq = home.ledger.head().size - 1
    promote(home, open_index(home), f"file:{sha}", stage="production", note="go")
    set_gate(home, open_index(home), "production", require_approval=2, note="back")
    env = _env(home)
    [event], text = _history(env)
    assert event["gate"]["met"] is True
    assert event["gate"]["lowered"]["seq"] == lowered_seq
    assert (event["gate"]["lowered"]["from"], event["gate"]["required"]) == (2, 0)
    assert event["gate"]["lowered"]["user"] == "alice"
    flat = " ".join(text.split())
    assert (
        f"gate lowered from 2 to 0 at seq {lowered_seq} by alice: hotfix window" in flat
    )
    markdown = cli(env, "report", f"file:{sha}")
    assert f"gate lowered from 2 to 0 at seq {lowered_seq} by alice" in markdown


def test_a_promotion_racing_a_rejection_is_shown_not_meeting_its_gate(home):
    """``promote`` reads the approvals, then appends: a rejection appended in
    between (another process, another machine through the server) is not seen,
    and the promotion is recorded after it. The readers judge it against every
    record before it."""
    sha = "b" * 64
    train(home, "alice", sha, "run-b")
    as_user(home, "bob")
    approve_model(home, open_index(home), f"file:{sha}", stage="production",
                  note="VR-7 reviewed")  # fmt: skip
    as_user(home, "riskoffice")
    set_gate(home, open_index(home), "production", require_approval=1, note="4 eyes")
    index = open_index(home)  # alice's promote has read the approvals here
    other = open_home(home.path)
    try:
        as_user(other, "carol")
        approve_model(other, open_index(other), f"file:{sha}", stage="production",
                      note="bias test missing", reject=True)  # fmt: skip
    finally:
        other.close()
    as_user(home, "alice")
    promote(home, index, f"file:{sha}", stage="production", note="go")
    [event], text = _history(_env(home))
    assert event["gate"]["met"] is False
    assert event["gate"]["rejected_by"] == ["carol"]
    assert "NOT MET: 1 of 1 approval(s) (bob); rejected by carol" in " ".join(
        text.split()
    )


def test_a_model_no_run_made_cannot_pass_a_gate_on_its_importers_approval(home):
    """A model no recorded run made has no recorded trainer, so nobody's approval
    was "self": alice trained it outside mltrail (or re-saved her own model, a
    new fingerprint), approved it herself, and promoted it with --override,
    which lifts "no recorded run made it" but was not to lift the gate."""
    as_user(home, "riskoffice")
    set_gate(home, open_index(home), "production", require_approval=1, note="4 eyes")
    as_user(home, "alice")
    model = f"file:{'c' * 64}"
    approve_model(home, open_index(home), model, stage="production", note="mine")
    size = home.ledger.head().size
    with pytest.raises(InputError, match="no recorded run made it") as caught:
        promote(home, open_index(home), model, stage="production", note="go",
                override="vendor model")  # fmt: skip
    assert "--override does not lift a gate" in caught.value.hint
    assert home.ledger.head().size == size
    home.ledger.append("model.promoted", {  # what promote refused, by hand
        "model": "c" * 64, "model_type": "file", "stage": "production",
        "action": "enter", "run": None, "path": None, "ref": model, "note": "go",
    })  # fmt: skip
    [event], text = _history(_env(home))
    assert event["gate"]["met"] is False
    assert event["gate"]["approvers"] == ["alice"]
    assert "no recorded trainer" in " ".join(text.split())


def _trained_folder(tmp_path) -> Any:
    """A git project whose ``train.py`` writes the checkpoint folder ``ckpt``,
    trained once under ``mltrail run`` by this OS account; returns the CLI."""
    project, home, env = trained_folder(tmp_path)

    def run(*args: str, code: int = 0) -> subprocess.CompletedProcess[str]:
        return checked_cli(project, env, *args, code=code)

    run.home = home  # type: ignore[attr-defined]
    run.project = project  # type: ignore[attr-defined]
    return run


def test_a_weights_file_of_a_trained_folder_keeps_its_trainer(tmp_path):
    """The weights file of a checkpoint folder, named by its path, is a ``file:``
    that no run wrote by itself: it had no trainer, so the trainer's own approval
    of it counted, and --override lifted "no recorded run made it". Real
    ``mltrail run`` from a git commit; the OS account is the trainer."""
    run = _trained_folder(tmp_path)
    run("model", "gate", "production", "--require-approval", "1", "--note", "4 eyes")
    weights = "ckpt/model.safetensors"
    approved = run("model", "approve", weights, "--stage", "production",
                   "--note", "looks fine to me")  # fmt: skip
    assert "does not count" in approved.stdout
    refused = run("model", "promote", weights, "--stage", "production", "--note",
                  "go", "--override", "weights file", code=2)  # fmt: skip
    assert "requires 1 approval" in refused.stderr
    assert "it has 0" in refused.stderr


def test_a_rejection_of_a_folder_blocks_its_weights_file_named_by_path(tmp_path):
    """A validator rejects the checkpoint folder; the trainer promotes the weights
    file inside it, named by its path (another node, with no decision of its
    own): the rejection did not block it. It does now, until the validator
    approves."""
    run = _trained_folder(tmp_path)
    home = open_home(run.home)
    try:
        as_user(home, "validator")
        approve_model(home, open_index(home), "ckpt", stage="production",
                      note="bias test missing", reject=True,
                      cwd=run.project)  # fmt: skip
    finally:
        home.close()
    weights = "ckpt/model.safetensors"
    refused = run("model", "promote", weights, "--stage", "production", "--note",
                  "go", "--override", "weights file", code=2)  # fmt: skip
    assert "validator rejected" in refused.stderr
    home = open_home(run.home)
    try:
        as_user(home, "validator")
        approve_model(home, open_index(home), "ckpt", stage="production",
                      note="bias test added", cwd=run.project)  # fmt: skip
    finally:
        home.close()
    run("model", "promote", weights, "--stage", "production", "--note", "go",
        "--override", "weights file")  # fmt: skip


def test_the_writer_of_an_output_in_a_run_with_no_start_is_a_trainer(home):
    """Trainers were only the starters of runs that wrote the model: alice
    recorded her model in a run with no ``run.started`` (any writer of a home
    can), bob's export job recorded the same bytes in a run of his, and bob was
    the only trainer: alice's own approval counted toward the gate."""
    sha = "d" * 64
    as_user(home, "alice")
    home.ledger.append("run.artifact", {"path": "/m/mine.bin", "exists": True,
                                        "type": "file", "sha256": sha, "size": 3},
                       run="run-orphan")  # fmt: skip
    train(home, "bob", sha, "run-export")
    as_user(home, "riskoffice")
    set_gate(home, open_index(home), "production", require_approval=1, note="4 eyes")
    as_user(home, "alice")
    approve_model(home, open_index(home), f"file:{sha}", stage="production",
                  note="independent review")  # fmt: skip
    with pytest.raises(InputError, match=r"requires 1 approval.*it has 0"):
        promote(home, open_index(home), f"file:{sha}", stage="production",
                note="go", override="orphan run")  # fmt: skip


def test_the_report_says_which_approver_trained_the_model(home):
    """The report's approvals table listed a trainer's own approval like any
    other: a regulator reading "approve by alice" could not tell it never
    counted."""
    sha = "e" * 64
    train(home, "alice", sha, "run-e")
    for user in ("alice", "bob"):
        as_user(home, user)
        approve_model(home, open_index(home), f"file:{sha}", stage="production",
                      note=f"{user} reviewed VR-7")  # fmt: skip
    env = _env(home)
    report = json.loads(cli(env, "report", f"file:{sha}", "--json"))
    marks = {a["user"]: a["trained_it"] for a in report["approvals"]}
    assert marks == {"alice": True, "bob": False}
    markdown = cli(env, "report", f"file:{sha}")
    assert "| alice \\(trained it: not counted\\) |" in markdown
    assert "| bob |" in markdown


# -- index.db edits and hidden names (review of 2026-12-08) ---------------------


def _hand_promotion(home, sha: str, kind: str = "file") -> None:
    """A ``model.promoted`` appended by hand: ``promote``'s checks never ran."""
    home.ledger.append("model.promoted", {
        "model": sha, "model_type": kind, "stage": "production", "action": "enter",
        "run": None, "path": None, "ref": f"{kind}:{sha}", "note": "go",
    })  # fmt: skip


def _edit_index(home, sql: str) -> None:
    index = open_index(home)  # brought up to date, then edited behind its back
    path = index.path
    index.close()
    conn = sqlite3.connect(path)
    try:
        changed = conn.execute(sql).rowcount
        conn.commit()
    finally:
        conn.close()
    assert changed > 0, sql


def _history_after_edit(home) -> tuple[dict[str, Any], str]:
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", "model", "history", "--json"],
        env=_env(home), capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    [event] = json.loads(proc.stdout)
    return event["gate"], proc.stderr


def test_an_edited_gate_row_does_not_make_a_promotion_meet_its_gate(home):
    """``model history`` judged each promotion from the ``gates`` rows of
    ``index.db`` without checking them against their records: whoever can write
    the home set the gate's ``required`` to 0, and a promotion appended by hand
    under a gate of 2 read "not gated" (met), with no warning."""
    sha = "1a" * 32
    train(home, "alice", sha, "run-g")
    as_user(home, "riskoffice")
    set_gate(home, open_index(home), "production", require_approval=2, note="SR 11-7")
    as_user(home, "alice")
    _hand_promotion(home, sha)
    _edit_index(home, "UPDATE gates SET required = 0")
    gate, stderr = _history_after_edit(home)
    assert "disagreed with the signed records" in stderr
    assert (gate["met"], gate["required"]) == (False, 2)


def test_an_edited_trainer_row_does_not_count_the_trainers_approval(home):
    """The trainers a promotion is judged with come from the ``runs`` and
    ``data`` rows of the runs that wrote the model, which were not checked:
    naming another starter and signer made alice's own approval count."""
    sha = "2b" * 32
    train(home, "alice", sha, "run-t")
    as_user(home, "riskoffice")
    set_gate(home, open_index(home), "production", require_approval=1, note="4 eyes")
    as_user(home, "alice")
    approve_model(home, open_index(home), f"file:{sha}", stage="production",
                  note="mine")  # fmt: skip
    _hand_promotion(home, sha)
    _edit_index(home, "UPDATE runs SET user = 'zed' WHERE id = 'run-t'")
    gate, stderr = _history_after_edit(home)
    assert "disagreed with the signed records" in stderr
    assert (gate["met"], gate["approvers"], gate["trainers"]) == (False, [], ["alice"])


def test_an_edited_rejection_of_another_name_does_not_vanish(tmp_path):
    """A rejection of the checkpoint folder blocks its weights file; the rows of
    decisions on the other names were read from ``index.db`` unchecked: the
    rejection edited into an approval let a hand-made promotion of the weights
    file read as met."""
    run = _trained_folder(tmp_path)
    weights = hashlib.sha256(b"weights" * 100).hexdigest()
    home = open_home(run.home)
    try:
        as_user(home, "validator")
        approve_model(home, open_index(home), "ckpt", stage="production",
                      note="bias test missing", reject=True,
                      cwd=run.project)  # fmt: skip
        as_user(home, "alice")
        _hand_promotion(home, weights)
        before, quiet = _history_after_edit(home)
        assert (before["met"], before["rejected_by"]) == (False, ["validator"])
        assert "disagreed" not in quiet  # the checks find nothing in a true index
        _edit_index(home, "UPDATE approvals SET decision = 'approve'")
        gate, stderr = _history_after_edit(home)
    finally:
        home.close()
    assert "disagreed with the signed records" in stderr
    assert (gate["met"], gate["rejected_by"]) == (False, ["validator"])


def test_decoy_folders_do_not_push_a_rejected_folder_past_the_name_cap(home):
    """The other names of a weights file were listed up to 500, in the index's
    order: alice recorded 500 folders holding her weights file, named to sort
    before the folder the validator rejected, and promoted the file on bob's
    approval; the rejection was never read."""
    weights, config = "3c" * 32, "4d" * 32
    rejected = "f" * 64
    as_user(home, "alice")

    def folder(dataset: str, extra: str) -> Draft:
        manifest = home.ledger.put_blob(
            b"".join(
                json.dumps({"path": name, "sha256": sha, "size": 3}).encode() + b"\n"
                for name, sha in (("model.bin", weights), ("config.json", extra))
            )
        )
        return Draft("run.artifact", {
            "path": f"/ckpt/{dataset[:8]}", "exists": True, "type": "directory",
            "dataset": dataset, "files": 2, "bytes": 6, "manifest": manifest,
        }, "run-ckpt")  # fmt: skip

    home.ledger.append_many([
        Draft("run.started", {"source": "api", "name": "train"}, "run-ckpt"),
        Draft("run.code", CLEAN, "run-ckpt"),
        folder(rejected, config),
        Draft("run.ended", {"status": "succeeded"}, "run-ckpt"),
    ])  # fmt: skip
    as_user(home, "bob")
    approve_model(home, open_index(home), f"file:{weights}", stage="production",
                  note="VR-9 reviewed")  # fmt: skip
    as_user(home, "riskoffice")
    set_gate(home, open_index(home), "production", require_approval=1, note="4 eyes")
    as_user(home, "validator")
    approve_model(home, open_index(home), f"data:{rejected}", stage="production",
                  note="bias test missing", reject=True)  # fmt: skip
    as_user(home, "alice")
    for decoys in ([], [folder(f"{i:064x}", f"{i:064x}") for i in range(500)]):
        if decoys:
            home.ledger.append_many(decoys)
        with pytest.raises(InputError, match="validator rejected"):
            promote(home, open_index(home), f"file:{weights}", stage="production",
                    note="go", override="weights file")  # fmt: skip


# -- the gate readers and promote decide from checked rows (2026-12-08) ----------


def _cli_run(home, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args], env=_env(home),
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def _gated_model(home, *, required: int, reject: bool = False,
                 self_approve: bool = False) -> str:  # fmt: skip
    """alice's model under a gate of ``required``, rejected by the validator
    or approved by alice herself when asked; returns its node."""
    sha = uuid.uuid4().hex * 2
    train(home, "alice", sha, "run-m")
    if required:
        as_user(home, "riskoffice")
        set_gate(home, open_index(home), "production", require_approval=required,
                 note="SR 11-7")  # fmt: skip
    if reject or self_approve:
        as_user(home, "validator" if reject else "alice")
        approve_model(home, open_index(home), f"file:{sha}", stage="production",
                      note="bias test missing" if reject else "mine",
                      reject=reject)  # fmt: skip
    return f"file:{sha}"


_EDITS = {  # what an attacker with write access to the home does to index.db
    "gate-lowered": (
        {"required": 2}, ["UPDATE gates SET required = 0"], "requires 2 approval"),
    "gate-deleted": ({"required": 2}, ["DELETE FROM gates"], "requires 2 approval"),
    "rejection-approved": (
        {"required": 1, "reject": True},
        ["UPDATE approvals SET decision = 'approve'"], "validator rejected"),
    "rejection-deleted": (
        {"required": 0, "reject": True}, ["DELETE FROM approvals"],
        "validator rejected"),
    "trainer-renamed": (
        {"required": 1, "self_approve": True},
        ["UPDATE runs SET user = 'zed' WHERE id = 'run-m'",
         "UPDATE data SET user = 'zed' WHERE run = 'run-m'"], "requires 1 approval"),
}  # fmt: skip


@pytest.mark.parametrize("edit", sorted(_EDITS))
def test_promote_does_not_sign_a_promotion_an_edited_index_allows(home, edit):
    """``promote`` judged the gate from ``index.db`` rows it never checked, then
    signed ``model.promoted``: a gate's ``required`` set to 0 or its row
    deleted, a rejection turned into an approval or deleted, or the trainer's
    run renamed so her own approval counted, and a model that does not meet its
    gate was promoted (exit 0, a signed entry, no warning)."""
    options, sqls, refusal = _EDITS[edit]
    node = _gated_model(home, **options)
    for sql in sqls:
        _edit_index(home, sql)
    proc = _cli_run(home, "model", "promote", node, "--stage", "production",
                    "--note", "go")  # fmt: skip
    assert proc.returncode == 2, proc.stdout
    assert "disagreed with the signed records" in proc.stderr
    assert refusal in proc.stderr
    kinds = [r.entry.kind for r in home.ledger.records()]
    assert "model.promoted" not in kinds


@pytest.mark.parametrize("edit", sorted(_EDITS))
def test_model_gate_of_a_model_reads_checked_rows(home, edit):
    """``mltrail model gate STAGE --model M`` said "promotion allowed" from the
    same edited rows."""
    options, sqls, _ = _EDITS[edit]
    node = _gated_model(home, **options)
    for sql in sqls:
        _edit_index(home, sql)
    proc = _cli_run(home, "model", "gate", "production", "--model", node, "--json")
    assert proc.returncode == 0, proc.stderr
    assert "disagreed with the signed records" in proc.stderr
    status = json.loads(proc.stdout)
    assert status["ok"] is False
    assert status["trainers"] == ["alice"]


@pytest.mark.parametrize("sql", ["UPDATE gates SET required = 0", "DELETE FROM gates"])
def test_the_gate_list_reads_checked_rows(home, sql):
    """``mltrail model gate`` listed an edited gate (0 approvals) or none at all
    for a deleted row, with no warning."""
    _gated_model(home, required=2)
    _edit_index(home, sql)
    proc = _cli_run(home, "model", "gate", "--json")
    assert proc.returncode == 0, proc.stderr
    assert "disagreed with the signed records" in proc.stderr
    [gate] = json.loads(proc.stdout)
    assert (gate["stage"], gate["require_approval"]) == ("production", 2)


def test_a_gate_is_not_lowered_without_a_note_through_an_edited_index(home):
    """``model gate STAGE --require-approval N`` read the gate it replaces from
    ``index.db``: with ``required`` edited to 0, lowering 2 to 1 passed as a
    raise, without the note a lowering needs, and signed ``previous: 0``."""
    _gated_model(home, required=2)
    _edit_index(home, "UPDATE gates SET required = 0")
    proc = _cli_run(home, "model", "gate", "production", "--require-approval", "1")
    assert proc.returncode == 2, proc.stdout
    assert "disagreed with the signed records" in proc.stderr
    assert "lowering the gate of production (2 -> 1) needs --note" in proc.stderr


def test_the_gate_checks_find_nothing_in_a_true_index(home):
    """No warning (and no rebuild) when ``index.db`` says what the records say."""
    node = _gated_model(home, required=1, reject=True)
    as_user(home, "validator")
    approve_model(home, open_index(home), node, stage="production", note="fixed")
    for args in (("model", "gate"), ("model", "gate", "production", "--model", node),
                 ("model", "promote", node, "--stage", "production", "--note", "go"),
                 ("model", "history")):  # fmt: skip
        proc = _cli_run(home, *args)
        assert proc.returncode == 0, (args, proc.stderr)
        assert "disagreed" not in proc.stderr, args


# -- a decision hidden from promote by the store's kind column (2026-12-08) -----


def _edit_ledger(home, sql: str) -> None:
    """``sql`` run on ledger.db with its triggers dropped, then put back."""
    home.close()
    with triggers_dropped(home.path / "ledger.db") as conn:
        changed = conn.execute(sql).rowcount
    assert changed > 0, sql


@pytest.mark.parametrize("required", [0, 1])
def test_promote_does_not_sign_past_a_rejection_whose_kind_column_was_changed(
    home, required
):
    """The validator's rejection: its ``approvals`` row deleted from index.db
    and its ``kind`` column in ledger.db changed (the signed bytes untouched),
    so no listing by kind finds it. ``promote`` signed the promotion (exit 0)
    and ``model gate --model`` allowed it; both now refuse (exit 3)."""
    node = _gated_model(home, required=required, reject=True)
    if required:  # alice's approval meets the gate, the rejection is what blocks
        as_user(home, "validator2")
        approve_model(home, open_index(home), node, stage="production", note="ok")
        as_user(home, "validator")
        approve_model(home, open_index(home), node, stage="production",
                      note="bias test missing", reject=True)  # fmt: skip
    seqs = [r.seq for r in home.ledger.records() if r.entry.kind == "model.approved"
            and r.entry.body.get("decision") == "reject"]  # fmt: skip
    _edit_index(home, "DELETE FROM approvals WHERE decision = 'reject'")
    _edit_ledger(home, "UPDATE records SET kind = 'note' WHERE seq IN ("
                 + ", ".join(map(str, seqs)) + ")")  # fmt: skip
    proc = _cli_run(home, "model", "promote", node, "--stage", "production",
                    "--note", "go")  # fmt: skip
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "by its signed bytes" in proc.stderr, proc.stderr
    assert "kind column" in proc.stderr, proc.stderr
    gate = _cli_run(home, "model", "gate", "production", "--model", node)
    assert gate.returncode == 3, (gate.stdout, gate.stderr)
    assert "promotion allowed" not in gate.stdout.lower()
    reopened = open_home(home.path)
    try:
        kinds = [r.entry.kind for r in reopened.ledger.records()]
    finally:
        reopened.close()
    assert "model.promoted" not in kinds


def test_promote_does_not_sign_past_a_gate_whose_kind_column_was_changed(home):
    """The stage's gate (2 approvals): its ``gates`` row deleted from index.db
    and its ``kind`` column changed, so the stage read as ungated and
    ``promote`` signed a promotion of a model no one approved."""
    node = _gated_model(home, required=2)
    seqs = [r.seq for r in home.ledger.records() if r.entry.kind == "stage.gated"]
    _edit_index(home, "DELETE FROM gates")
    _edit_ledger(home, "UPDATE records SET kind = 'note' WHERE seq IN ("
                 + ", ".join(map(str, seqs)) + ")")  # fmt: skip
    proc = _cli_run(home, "model", "promote", node, "--stage", "production",
                    "--note", "go")  # fmt: skip
    assert proc.returncode == 3, (proc.stdout, proc.stderr)
    assert "stage.gated record by its signed bytes" in proc.stderr, proc.stderr
