"""A bundle proven to extend a checkpoint the auditor kept (``export
--consistent-with``, ``verify-bundle --trust-checkpoint``), and the forks,
roll-backs and edits that must fail (ADR 0016, amendment of 2026-12-07).

Real homes, the real CLI in subprocesses. A fork is made as a key holder would
make it: the home copied, and each copy appending other records with the same
key.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from cli_runner import mltrail
from mltrail.core.canonical import canonical_bytes
from mltrail.core.merkle import consistency_proof
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft

ORIGIN = "test.mltrail.local/consistency"


def run(home: Path, name: str, origin: str = ORIGIN) -> None:
    """Append one run of two records (creating the home first if need be)."""
    if not (home / "ledger.json").exists():
        init_home(home, origin=origin)
    opened = open_home(home)
    opened.ledger.append_many([
        Draft("run.started", {"source": "api", "name": name}, f"run-{name}"),
        Draft("run.ended", {"status": "succeeded"}, f"run-{name}"),
    ])  # fmt: skip
    opened.close()


def ok(proc):
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc


def checkpoint(home: Path, path: Path) -> Path:
    path.write_text(ok(mltrail(home, "checkpoint")).stdout)
    return path


def key(home: Path) -> str:
    return ok(mltrail(home, "keys", "export", "--format", "vkey")).stdout.strip()


def export(home: Path, out: Path, *kept: Path, ref: str = "run:run-a"):
    flags = [a for p in kept for a in ("--consistent-with", str(p))]
    return mltrail(home, "export", ref, "-o", str(out), *flags)


def verify(tmp: Path, bundle: Path, *kept: Path, trust_key: str | None = None):
    flags = [a for p in kept for a in ("--trust-checkpoint", str(p))]
    if trust_key is not None:
        flags += ["--trust-key", trust_key]
    return mltrail(tmp / "no-home", "verify-bundle", str(bundle), "--json", *flags)


EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "verify_bundle.py"


def example(bundle: Path, *kept: Path) -> subprocess.CompletedProcess[str]:
    """The standalone verifier, which must agree."""
    flags = [a for p in kept for a in ("--trust-checkpoint", str(p))]
    return subprocess.run(
        [sys.executable, str(EXAMPLE), str(bundle), *flags],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def report(proc) -> dict:
    return json.loads(proc.stdout)


def codes(proc) -> set[str]:
    return {p["code"] for p in report(proc)["problems"] if p["severity"] == "error"}


@pytest.fixture
def audited(tmp_path):
    """A home of one run whose checkpoint (size 3) the auditor kept."""
    home = tmp_path / "home"
    run(home, "a")
    return home, checkpoint(home, tmp_path / "audit.cp")


def test_a_bundle_proven_to_extend_the_auditors_checkpoint_verifies(audited, tmp_path):
    home, kept = audited
    run(home, "b")
    run(home, "c")
    done = ok(export(home, tmp_path / "b.json", kept))
    assert "consistent with" in done.stdout
    bundle = json.loads((tmp_path / "b.json").read_bytes())
    assert bundle["format"] == "mltrail-bundle/1"  # old verifiers read it
    assert [g["items"] for g in bundle["evidence"]] == [[]]
    assert bundle["evidence"][0]["checkpoint"] == kept.read_text()
    verified = verify(tmp_path, tmp_path / "b.json", kept, trust_key=key(home))
    assert verified.returncode == 0, verified.stdout
    anchors = [a for a in report(verified)["anchors"] if a["kind"] == "checkpoint"]
    assert len(anchors) == 1
    assert anchors[0]["external"]
    assert "size 3" in anchors[0]["description"]  # the genesis record, one run
    assert "records 0 to 2" in anchors[0]["description"]
    # the human output names it as an anchor outside the bundle
    text = mltrail(tmp_path, "verify-bundle", str(tmp_path / "b.json"),
                   "--trust-checkpoint", str(kept))  # fmt: skip
    assert text.returncode == 0, text.stdout
    assert "anchor (outside the bundle): the trusted checkpoint" in text.stdout
    standalone = example(tmp_path / "b.json", kept)
    assert standalone.returncode == 0, standalone.stderr
    assert "extends the kept checkpoint of size 3" in standalone.stdout
    # a checkpoint of the bundle's own size needs no proof: the roots are equal
    now = checkpoint(home, tmp_path / "now.cp")
    ok(verify(tmp_path, tmp_path / "b.json", now, kept))


def test_a_bundle_without_the_proof_fails_naming_the_export_flag(audited, tmp_path):
    home, kept = audited
    run(home, "b")
    ok(export(home, tmp_path / "b.json"))
    done = verify(tmp_path, tmp_path / "b.json", kept)
    assert done.returncode == 3
    assert codes(done) == {"consistency-missing"}
    assert "--consistent-with" in report(done)["verdict"]
    assert example(tmp_path / "b.json", kept).returncode == 1
    ok(verify(tmp_path, tmp_path / "b.json"))  # without the checkpoint: as before


def fork(tmp_path: Path, home: Path, mine: int, theirs: int) -> Path:
    """Copy ``home``; the original appends ``mine`` runs, the copy ``theirs``
    others, with the same key. Returns the copy."""
    other = tmp_path / "fork"
    shutil.copytree(home, other)
    for i in range(mine):
        run(home, f"mine{i}")
    for i in range(theirs):
        run(other, f"theirs{i}")
    return other


@pytest.mark.parametrize(("mine", "theirs"), [(1, 1), (1, 3)])
def test_a_fork_fails_against_the_other_branchs_checkpoint(
    audited, tmp_path, mine, theirs
):
    home, _ = audited
    other = fork(tmp_path, home, mine, theirs)
    kept = checkpoint(home, tmp_path / "mine.cp")  # the auditor saw this branch
    # the key holder cannot export a proof from it ...
    refused = export(other, tmp_path / "x.json", kept)
    assert refused.returncode == 3, refused.stdout + refused.stderr
    assert "forked" in refused.stderr
    assert not (tmp_path / "x.json").exists()
    # ... and a bundle of the other branch does not pass
    ok(export(other, tmp_path / "theirs.json"))
    done = verify(tmp_path, tmp_path / "theirs.json", kept, trust_key=key(home))
    assert done.returncode == 3
    want = "inconsistent" if mine == theirs else "consistency-missing"
    assert codes(done) == {want}
    assert not any(a["kind"] == "checkpoint" for a in report(done)["anchors"])
    assert "forked" in example(tmp_path / "theirs.json", kept).stderr


def test_a_forged_proof_from_the_auditors_checkpoint_fails(audited, tmp_path):
    """The forker adds the auditor's checkpoint with a consistency proof from
    its size in their own tree: it does not lead from the auditor's root."""
    home, _ = audited
    other = fork(tmp_path, home, 1, 3)
    kept = checkpoint(home, tmp_path / "mine.cp")  # size 5
    ok(export(other, tmp_path / "theirs.json"))  # size 9
    bundle = json.loads((tmp_path / "theirs.json").read_bytes())
    # the proof from size 5 in the forked tree, under the auditor's checkpoint
    forked = open_home(other)
    proof = consistency_proof(5, 9, forked.ledger.store.node)
    forked.close()
    bundle["evidence"].append(
        {"checkpoint": kept.read_text(), "consistency": [h.hex() for h in proof],
         "items": []}
    )  # fmt: skip
    (tmp_path / "forged.json").write_bytes(canonical_bytes(bundle))
    done = verify(tmp_path, tmp_path / "forged.json", kept, trust_key=key(home))
    assert done.returncode == 3
    assert codes(done) == {"evidence", "inconsistent"}
    assert example(tmp_path / "forged.json", kept).returncode == 1


def test_a_rolled_back_ledger_cannot_extend_a_newer_checkpoint(audited, tmp_path):
    """The home restored from a copy older than the auditor's checkpoint
    (records cut from the end), and then rewritten past it."""
    home, _ = audited
    backup = tmp_path / "backup"
    shutil.copytree(home, backup)
    run(home, "b")
    run(home, "c")
    kept = checkpoint(home, tmp_path / "later.cp")  # size 7
    ok(export(backup, tmp_path / "old.json"))  # size 3
    refused = export(backup, tmp_path / "x.json", kept)
    assert refused.returncode == 3
    assert "holds only 3" in refused.stderr
    done = verify(tmp_path, tmp_path / "old.json", kept)
    assert done.returncode == 3
    assert codes(done) == {"checkpoint-newer"}
    assert "older than" in report(done)["verdict"]
    assert "older than" in example(tmp_path / "old.json", kept).stderr
    # rewritten: the restored copy appends other records past the kept size
    for name in ("x", "y", "z"):
        run(backup, name)
    refused = export(backup, tmp_path / "x.json", kept)
    assert refused.returncode == 3
    assert "forked" in refused.stderr
    ok(export(backup, tmp_path / "rewritten.json"))
    done = verify(tmp_path, tmp_path / "rewritten.json", kept)
    assert done.returncode == 3
    assert codes(done) == {"consistency-missing"}


@pytest.mark.parametrize("where", ["first", "last"])
def test_a_tampered_consistency_proof_fails(audited, tmp_path, where):
    home, kept = audited
    for name in ("b", "c", "d"):
        run(home, name)
    ok(export(home, tmp_path / "b.json", kept))
    bundle = json.loads((tmp_path / "b.json").read_bytes())
    proof = bundle["evidence"][0]["consistency"]
    i = 0 if where == "first" else -1
    proof[i] = ("0" if proof[i][0] != "0" else "1") + proof[i][1:]
    (tmp_path / "t.json").write_bytes(canonical_bytes(bundle))
    done = verify(tmp_path, tmp_path / "t.json", kept)
    assert done.returncode == 3
    assert codes(done) == {"evidence", "inconsistent"}
    assert example(tmp_path / "t.json", kept).returncode == 1
    # the kept checkpoint swapped for a re-rooted copy of it fails too
    bundle = json.loads((tmp_path / "b.json").read_bytes())
    lines = bundle["evidence"][0]["checkpoint"].split("\n")
    lines[2] = "A" * 43 + "="
    bundle["evidence"][0]["checkpoint"] = "\n".join(lines)
    (tmp_path / "t2.json").write_bytes(canonical_bytes(bundle))
    assert verify(tmp_path, tmp_path / "t2.json", kept).returncode == 3


def test_a_checkpoint_of_another_ledger_is_refused(audited, tmp_path):
    home, _ = audited
    run(home, "b")
    ok(export(home, tmp_path / "b.json"))
    # same origin, another key: a ledger someone else started under the name
    same_name = tmp_path / "same-name"
    run(same_name, "a")
    impostor = checkpoint(same_name, tmp_path / "impostor.cp")
    # another origin
    elsewhere = tmp_path / "elsewhere"
    run(elsewhere, "a", origin="test.mltrail.local/elsewhere")
    foreign = checkpoint(elsewhere, tmp_path / "foreign.cp")

    refused = export(home, tmp_path / "x.json", impostor)
    assert refused.returncode == 2
    assert "not signed by this ledger" in refused.stderr
    refused = export(home, tmp_path / "x.json", foreign)
    assert refused.returncode == 2
    assert "of the ledger 'test.mltrail.local/elsewhere'" in refused.stderr

    done = verify(tmp_path, tmp_path / "b.json", impostor)
    assert done.returncode == 3
    assert codes(done) == {"checkpoint-signature"}
    assert example(tmp_path / "b.json", impostor).returncode == 1
    done = verify(tmp_path, tmp_path / "b.json", foreign)
    assert done.returncode == 3
    assert codes(done) == {"trusted-checkpoint"}


def test_a_checkpoint_signed_by_an_untrusted_key_fails_when_pinned(audited, tmp_path):
    """With --trust-key, the kept checkpoint is checked as the bundle's is: a
    bundle whose ledger is another's, made to extend that ledger's own
    checkpoint, does not verify pinned to the real key."""
    home, _ = audited
    forger = tmp_path / "forger"
    run(forger, "a")
    theirs = checkpoint(forger, tmp_path / "theirs.cp")
    run(forger, "b")
    ok(export(forger, tmp_path / "f.json", theirs))
    ok(verify(tmp_path, tmp_path / "f.json", theirs))  # unpinned: their own word
    done = verify(tmp_path, tmp_path / "f.json", theirs, trust_key=key(home))
    assert done.returncode == 3
    assert "trust-key" in codes(done)


def test_an_unreadable_checkpoint_file_is_a_problem_not_a_crash(audited, tmp_path):
    home, _ = audited
    ok(export(home, tmp_path / "b.json"))
    junk = tmp_path / "junk.cp"
    junk.write_text("not a checkpoint\n")
    done = verify(tmp_path, tmp_path / "b.json", junk)
    assert done.returncode == 3
    assert codes(done) == {"trusted-checkpoint"}
    assert example(tmp_path / "b.json", junk).returncode == 1
    refused = export(home, tmp_path / "x.json", junk)
    assert refused.returncode == 2
    assert "not a signed checkpoint" in refused.stderr
