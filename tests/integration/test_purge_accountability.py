"""Erasure as a way to hide evidence: who purged what, and what readers say.

A real home records a training run (`mltrail run` with `--data` and
`--output`); its dataset manifest is then purged. Every reader an auditor uses
must name the erased provenance (which blob, by whom, when, why, under which
policy) rather than show the model as if it had been recorded that way; `verify`
names a purge of another user's records, and refuses a purge of a blob a legal
hold covered, which only the ledger key's holder could have signed, through
the Python API rather than `mltrail purge`.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from mltrail.core.canonical import compute_blob_digest
from mltrail.core.codec import format_time
from mltrail.core.entry import Entry, sign_entry
from mltrail.core.erasure import PURGE_KIND, purge_body
from mltrail.core.signing import Ed25519Signer
from mltrail.errors import InputError
from mltrail.ledger.erasure import referencing_seqs
from mltrail.ledger.home import open_home
from mltrail.ledger.keystore import load_signer

pytestmark = pytest.mark.usefixtures("isolated_git")

ORIGIN = "test.mltrail.local/purge-accountability"
TRAIN = """\
import pathlib
pathlib.Path("out").mkdir(exist_ok=True)
pathlib.Path("out/model.bin").write_bytes(b"weights")
print("trained")
"""


def mltrail(home: Path, cwd: Path, *args: Any) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    env["MLTRAIL_HOME"] = str(home)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *map(str, args)],
        cwd=cwd, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


def ok(proc: subprocess.CompletedProcess[str]) -> Any:
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout) if proc.stdout.startswith(("{", "[")) else None


def problems(report: dict[str, Any], code: str) -> list[dict[str, Any]]:
    return [p for p in report["problems"] if p["code"] == code]


@pytest.fixture
def trained(tmp_path: Path) -> dict[str, Any]:
    """A home with one run that read `data` and wrote `out`: its run id, user,
    and the digest of its dataset manifest."""
    project, home = tmp_path / "project", tmp_path / "home"
    (project / "data").mkdir(parents=True)
    (project / "data" / "subjects.csv").write_text("name,label\nana,1\n")
    (project / "train.py").write_text(TRAIN)
    ok(mltrail(home, project, "init", "--origin", ORIGIN))
    ok(
        mltrail(
            home, project, "run", "-q", "--name", "base", "--data", "train=data",
            "--output", "out", "--", sys.executable, "train.py",
        )
    )  # fmt: skip
    data = ok(mltrail(home, project, "log", "--kind", "run.data", "--json"))[0]
    made = ok(mltrail(home, project, "log", "--kind", "run.artifact", "--json"))[0]
    return {
        "home": home,
        "project": project,
        "run": data["entry"]["run"],
        "user": data["entry"]["actor"]["user"],
        "manifest": data["entry"]["body"]["manifest"]["blob"],
        "data_seq": data["seq"],
        "model": made["entry"]["body"]["dataset"],
    }


def _purge(world: dict[str, Any]) -> int:
    home, project = world["home"], world["project"]
    done = ok(
        mltrail(
            home, project, "purge", world["manifest"], "--reason", "request 12",
            "--policy", "GDPR Art. 17", "--json",
        )
    )  # fmt: skip
    return int(done["purged"][0]["seq"])


def test_verify_says_who_purged_a_blob_and_when(trained: dict[str, Any]) -> None:
    seq = _purge(trained)
    report = ok(mltrail(trained["home"], trained["project"], "verify", "--json"))
    (purged,) = problems(report, "blob-purged")
    assert purged["seq"] == seq
    assert f"by {trained['user']!r} at 20" in purged["message"]
    assert "policy 'GDPR Art. 17', reason 'request 12'" in purged["message"]
    (note,) = report["purged"]
    assert note["by"] == trained["user"]
    assert note["time"].startswith("20")
    assert problems(report, "purge-by-other") == []  # the run's own user


def test_show_and_trace_name_the_erased_manifest(trained: dict[str, Any]) -> None:
    home, project = trained["home"], trained["project"]
    seq = _purge(trained)
    said = (
        f"run.data (seq {trained['data_seq']}) body.manifest: blob "
        f"{trained['manifest']} "
    )
    why = f"was purged at seq {seq} (by {trained['user']!r} at "
    for args in (["show", trained["run"]], ["trace", "out/model.bin"]):
        proc = mltrail(home, project, *args)
        assert proc.returncode == 0, proc.stderr
        flat = " ".join(proc.stdout.split())
        assert said in flat, (args, proc.stdout)
        assert why in flat, (args, proc.stdout)
        assert "reason 'request 12'" in flat
        assert "erased:" in flat
    shown = ok(mltrail(home, project, "show", trained["run"], "--json"))
    (item,) = shown["purged"]
    assert item["seq"] == trained["data_seq"]
    assert item["purge"]["seq"] == seq
    assert item["purge"]["by"] == trained["user"]
    assert shown["data"][0]["dataset"]  # the dataset id stays in the record
    traced = ok(mltrail(home, project, "trace", "out/model.bin", "--json"))
    assert traced["made_by"][0]["purged"] == shown["purged"]
    # the data on disk still matches the recorded dataset id; the erasure is said
    checked = mltrail(home, project, "reproduce", trained["run"], "--check")
    assert " ".join(checked.stdout.split()).count(said) == 1, checked.stdout
    checked = mltrail(home, project, "reproduce", trained["run"], "--check", "--json")
    assert json.loads(checked.stdout)["purged"] == shown["purged"]
    report = ok(mltrail(home, project, "report", "out/model.bin", "--json"))
    (data,) = report["data"]
    assert data["dataset"] == shown["data"][0]["dataset"]
    assert f"was purged (seq {seq})" in data["manifest"]
    assert f"by {trained['user']!r} at " in data["manifest"]
    assert "reason 'request 12'" in data["manifest"]


def test_a_bundle_says_who_purged_what(trained: dict[str, Any]) -> None:
    home, project = trained["home"], trained["project"]
    _purge(trained)
    bundle = project.parent / "model.json"
    ok(mltrail(home, project, "export", "out/model.bin", "-o", bundle))
    report = ok(mltrail(home, project, "verify-bundle", bundle, "--json"))
    (purged,) = problems(report, "blob-purged")
    assert purged["severity"] == "warning"
    assert f"by {trained['user']!r}" in purged["message"]
    assert "policy 'GDPR Art. 17', reason 'request 12'" in purged["message"]


def register_bob(home: Path, project: Path) -> Ed25519Signer:
    """An author key made and registered for user bob, loaded to sign with."""
    key_file = project.parent / "bob.key"
    ok(mltrail(home, project, "keys", "new", "--out", key_file))
    ok(
        mltrail(
            home, project, "keys", "register", "--key-file", key_file,
            "--identity", "bob",
        )
    )  # fmt: skip
    return load_signer(key_file)


def test_a_purge_of_another_users_records_is_named(
    trained: dict[str, Any],
) -> None:
    """bob writes with his own author key; the ledger key's holder purges the
    blob bob's note attached: verify names both, as a warning."""
    home, project = trained["home"], trained["project"]
    bob = register_bob(home, project)
    data = b"bob's evaluation log\n"
    digest = compute_blob_digest(data)
    opened = open_home(home, env={})
    try:
        opened.ledger.store.put_blob(digest, data)
        body = {"text": "eval", "attachments": [{"blob": digest, "size": len(data)}]}
        now = format_time(datetime.now(UTC))
        started = {"source": "api", "name": "eval"}
        entries = [
            Entry("run.started", now, {"user": "bob"}, started, run="run-bob"),
            Entry("note", now, {"user": "bob"}, body, run="run-bob"),
        ]
        _, record = opened.ledger.append_entries([sign_entry(e, bob) for e in entries])
        opened.checkpoint()
    finally:
        opened.close()
    ok(mltrail(home, project, "purge", digest, "--reason", "tidy up"))
    # the purger referencing the erased blob afterwards does not make it theirs
    opened = open_home(home, env={})
    try:
        opened.ledger.append("note", body)
    finally:
        opened.close()
    report = ok(mltrail(home, project, "verify", "--json"))
    assert report["ok"]  # a purge by the ledger key is lawful: a warning
    (other,) = problems(report, "purge-by-other")
    assert other["severity"] == "warning"
    assert f"purged by {trained['user']!r}" in other["message"]
    assert f"record(s) {record.seq}, written by 'bob'" in other["message"]
    bundle = project.parent / "bob.json"
    ok(mltrail(home, project, "export", "run:run-bob", "-o", bundle))
    checked = ok(mltrail(home, project, "verify-bundle", bundle, "--json"))
    (other,) = problems(checked, "purge-by-other")
    assert f"purged by {trained['user']!r}" in other["message"]
    assert f"record(s) {record.seq}, written by 'bob'" in other["message"]


def test_an_author_key_cannot_purge(trained: dict[str, Any]) -> None:
    """bob's author key signs a purge of the run's manifest: refused on append
    (verify calls such a record ``author-kind``: tests/unit/test_author_keys.py)."""
    home, project = trained["home"], trained["project"]
    bob = register_bob(home, project)
    body = purge_body(
        trained["manifest"], 1, reason="mine now", policy="none", referenced_by=[]
    )
    entry = Entry(PURGE_KIND, format_time(datetime.now(UTC)), {"user": "bob"}, body)
    opened = open_home(home, env={})
    try:
        size = opened.ledger.head().size
        with pytest.raises(InputError, match="cannot be appended by an author"):
            opened.ledger.append_entries([sign_entry(entry, bob)])
        assert opened.ledger.head().size == size
    finally:
        opened.close()
    report = ok(mltrail(home, project, "verify", "--json"))
    assert report["purged"] == []


@pytest.mark.parametrize("target", ["blob", "run", "model"])
def test_a_purge_under_a_legal_hold_fails_verify(
    trained: dict[str, Any], target: str
) -> None:
    home, project = trained["home"], trained["project"]
    ident = {"blob": trained["manifest"], "run": trained["run"]}.get(
        target, trained["model"]
    )
    ok(mltrail(home, project, "hold", "add", f"{target}:{ident}", "--reason", "suit"))
    refused = mltrail(home, project, "purge", trained["manifest"], "--reason", "x")
    assert refused.returncode == 2
    assert "under legal hold" in refused.stderr
    # the ledger key's holder goes round the command
    opened = open_home(home, env={})
    try:
        ledger = opened.ledger
        seqs = referencing_seqs(ledger, trained["manifest"])
        size = len(ledger.get_blob(trained["manifest"]))
        body = purge_body(
            trained["manifest"], size, reason="routine", policy="retention",
            referenced_by=seqs,
        )  # fmt: skip
        seq = ledger.record_purge(body).seq
        assert ledger.store.erase_blob(trained["manifest"])
    finally:
        opened.close()
    proc = mltrail(home, project, "verify", "--json")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    report = json.loads(proc.stdout)
    (held,) = problems(report, "purge-held")
    assert held["seq"] == seq
    assert held["severity"] == "error"
    assert f"{target} {ident} (hold.added at seq" in held["message"]
    assert "reason 'routine'" in held["message"]


def test_a_purge_after_the_hold_is_released_verifies(
    trained: dict[str, Any],
) -> None:
    home, project = trained["home"], trained["project"]
    target = f"run:{trained['run']}"
    ok(mltrail(home, project, "hold", "add", target, "--reason", "suit"))
    ok(mltrail(home, project, "hold", "release", target, "--reason", "settled"))
    _purge(trained)
    report = ok(mltrail(home, project, "verify", "--json"))
    assert report["ok"]
    assert problems(report, "purge-held") == []
