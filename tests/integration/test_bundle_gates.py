"""A regulator holding only a bundle is told of a promotion that missed its gate.

Both verifiers (``mltrail verify-bundle`` and the standalone
examples/verify_bundle.py) judge each carried promotion against the gate and
decisions the bundle carries from before it, as ``model history`` does: a
``model.promoted`` appended by hand through the Python API with one approval of
a gate of 2 verified as an ordinary promotion.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from home_setup import checked_cli, trained_folder
from mltrail.audit.governance import approve_model, set_gate
from mltrail.index import open_index
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft
from mltrail.record.stages import promote

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "verify_bundle.py"
CLEAN = {"vcs": "git", "commit": "1" * 40, "branch": "main", "dirty": False}
HAND, GOOD, LOW = "a" * 64, "b" * 64, "c" * 64


def as_user(home, user: str) -> None:
    home.ledger.actor = {"user": user, "uid": 1000, "host": "bank-ws"}


def train(home, sha: str, run: str) -> None:
    as_user(home, "alice")
    home.ledger.append_many([
        Draft("run.started", {"source": "api", "name": "train"}, run),
        Draft("run.code", CLEAN, run),
        Draft("run.artifact", {"path": f"/m/{run}.bin", "exists": True,
                               "type": "file", "sha256": sha, "size": 3}, run),
        Draft("run.ended", {"status": "succeeded"}, run),
    ])  # fmt: skip


def approve(home, user: str, sha: str, stage: str = "production") -> None:
    as_user(home, user)
    approve_model(home, open_index(home), f"file:{sha}", stage=stage, note="VR-7")


def gate(home, stage: str, required: int, note: str, user: str = "risk") -> None:
    as_user(home, user)
    set_gate(home, open_index(home), stage, require_approval=required, note=note)


def cli(*args, home: Path | None = None) -> str:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    if home is not None:
        env["MLTRAIL_HOME"] = str(home)
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", *map(str, args)], env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("bundle-gates")
    init_home(base / "home", origin="test.mltrail.local/bundle-gates")
    home = open_home(base / "home")
    try:
        for sha, run in ((HAND, "run-hand"), (GOOD, "run-good"), (LOW, "run-low")):
            train(home, sha, run)
        gate(home, "production", 2, "SR 11-7")
        gate(home, "shadow", 1, "4 eyes")
        approve(home, "bob", HAND)
        for user in ("bob", "carol"):
            approve(home, user, GOOD)
        as_user(home, "alice")
        promote(home, open_index(home), f"file:{GOOD}", stage="production", note="go")
        home.ledger.append("model.promoted", {  # promote's checks never ran
            "model": HAND, "model_type": "file", "stage": "production",
            "action": "enter", "run": "run-hand", "path": None,
            "ref": f"file:{HAND}", "note": "approved by the committee",
            "approvals": {"required": 2, "approvers": ["bob", "carol"]},
        })  # fmt: skip
        gate(home, "shadow", 0, "hotfix window", user="alice")
        as_user(home, "alice")
        promote(home, open_index(home), f"file:{LOW}", stage="shadow", note="go")
    finally:
        home.close()
    out = {}
    for name, sha in (("hand", HAND), ("good", GOOD), ("low", LOW)):
        out[name] = base / f"{name}.json"
        cli("export", f"file:{sha}", "-o", out[name], home=base / "home")
    return out


def _verify(path: Path) -> tuple[list[dict], str]:
    """The gate warnings of both verifiers: verify-bundle's problems, the example's lines."""
    report = json.loads(cli("verify-bundle", path, "--json"))
    assert report["ok"], report["problems"]
    gates = [p for p in report["problems"] if p["code"].startswith("gate-")]
    assert all(p["severity"] == "warning" for p in gates)
    proc = subprocess.run(
        [sys.executable, EXAMPLE, path], capture_output=True, text=True, check=False
    )
    assert proc.returncode == 0, proc.stderr
    return gates, proc.stdout


def _seq_of(path: Path, sha: str) -> int:
    bundle = json.loads(path.read_bytes())
    [seq] = [
        r["seq"] for r in bundle["records"]
        if '"kind":"model.promoted"' in r["record"] and sha in r["record"]
    ]  # fmt: skip
    return seq


def test_a_hand_made_promotion_short_of_its_gate_is_a_warning_of_both_verifiers(
    bundles,
):
    gates, example = _verify(bundles["hand"])
    seq = _seq_of(bundles["hand"], HAND)
    [warning] = gates
    assert (warning["code"], warning["seq"]) == ("gate-not-met", seq)
    assert f"file:{HAND} to production" in warning["message"]
    assert "NOT MEET" in warning["message"]
    assert "1 of 2 approval(s) (bob)" in warning["message"]
    lines = [line for line in example.splitlines() if line.startswith("warning:")]
    assert len(lines) == 1, example
    assert (
        f"gate-not-met: record {seq}: the promotion of file:{HAND} to production"
        in (lines[0])
    )
    assert "1 of 2 approval(s) (bob)" in lines[0]


def test_a_properly_approved_promotion_gives_no_gate_warning(bundles):
    gates, example = _verify(bundles["good"])
    assert gates == []
    assert "warning:" not in example


def test_a_gate_lowered_just_before_a_promotion_is_a_warning_of_both_verifiers(
    bundles,
):
    gates, example = _verify(bundles["low"])
    [warning] = gates
    assert warning["code"] == "gate-lowered"
    assert "lowered from 1 to 0" in warning["message"]
    assert "by alice: hotfix window" in warning["message"]
    assert "gate-lowered: record" in example
    assert "lowered from 1 to 0" in example
    assert "by alice: hotfix window" in example


def test_both_verifiers_judge_each_attack_as_model_history_does(tmp_path):
    """A rejection standing before the promotion and a trainer's own approval
    counted toward a gate of 2: each verifier warns exactly of the promotions
    ``model history`` shows NOT MET, naming the same reason."""
    race, own, fine = "d" * 64, "f" * 64, "1" * 64
    init_home(tmp_path / "home", origin="test.mltrail.local/bundle-gates-attacks")
    home = open_home(tmp_path / "home")
    try:
        train(home, race, "run-race")
        train(home, own, "run-own")
        train(home, fine, "run-fine")
        gate(home, "staging", 1, "4 eyes")
        gate(home, "production", 2, "SR 11-7")
        approve(home, "bob", race, "staging")
        approve(home, "bob", fine, "staging")
        as_user(home, "carol")
        approve_model(home, open_index(home), f"file:{race}", stage="staging",
                      note="bias test missing", reject=True)  # fmt: skip
        approve(home, "alice", own)
        approve(home, "bob", own)
        for sha, stage in ((race, "staging"),
                           (own, "production"), (fine, "staging")):  # fmt: skip
            as_user(home, "alice")
            home.ledger.append("model.promoted", {
                "model": sha, "model_type": "file", "stage": stage,
                "action": "enter", "run": None, "path": None,
                "ref": f"file:{sha}", "note": "go",
            })  # fmt: skip
    finally:
        home.close()
    history = json.loads(cli("model", "history", "--json", home=tmp_path / "home"))
    met = {e["model"]: e["gate"]["met"] for e in history}
    assert met == {f"file:{race}": False,
                   f"file:{own}": False, f"file:{fine}": True}  # fmt: skip
    reasons = {race: "rejected by carol",
               own: "1 of 2 approval(s) (bob)", fine: None}  # fmt: skip
    for sha, reason in reasons.items():
        path = tmp_path / f"{sha[:4]}.json"
        cli("export", f"file:{sha}", "-o", path, home=tmp_path / "home")
        gates, example = _verify(path)
        lines = [ln for ln in example.splitlines() if ln.startswith("warning:")]
        if reason is None:
            assert (gates, lines) == ([], [])
            continue
        [warning] = gates
        [line] = lines
        assert warning["code"] == "gate-not-met"
        assert reason in warning["message"]
        assert reason in line


def test_a_weights_file_of_a_trained_folder_is_judged_through_its_manifest(tmp_path):
    """Real ``mltrail run`` from a git commit writes the folder ``ckpt``; bob
    approves its weights file, named by path, which is promoted. Its trainer is
    the folder's, known only through the folder's manifest: carried, no gate
    warning; carried by hash only (--no-blobs), the gate cannot be judged, and
    both verifiers say so rather than call it NOT MET."""
    project, home, env = trained_folder(tmp_path)

    def run(*args: object) -> None:
        checked_cli(project, env, *args)

    run("model", "gate", "production", "--require-approval", "1", "--note", "4 eyes")
    opened = open_home(home)
    try:
        as_user(opened, "bob")
        approve_model(opened, open_index(opened), "ckpt/model.safetensors",
                      stage="production", note="VR-7", cwd=project)  # fmt: skip
    finally:
        opened.close()
    weights = "ckpt/model.safetensors"
    run("model", "promote", weights, "--stage", "production", "--note", "go",
        "--override", "weights file")  # fmt: skip
    run("export", weights, "-o", tmp_path / "full.json")
    run("export", weights, "-o", tmp_path / "hashes.json", "--no-blobs")
    gates, example = _verify(tmp_path / "full.json")
    assert (gates, "warning:" in example) == ([], False)
    gates, example = _verify(tmp_path / "hashes.json")
    [warning] = gates
    assert warning["code"] == "gate-unjudged"
    assert "cannot be judged from this bundle" in warning["message"]
    assert "NOT MEET" not in example
    assert "gate-unjudged:" in example
    assert "cannot be judged from this bundle" in example
