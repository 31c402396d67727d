"""Write-once seals, judged against a real S3 server with Object Lock.

SeaweedFS (``weed mini``, tests/seaweedfs_server.py) runs on 127.0.0.1 for the
session; each test seals a real SQLite home into its own bucket through the
`mltrail` command, then acts as someone who wants to change history: deletes
or shortens the retention of sealed objects through S3 (the storage refuses),
removes a segment beneath S3 through the filer, or rewrites the whole ledger
with the ledger's own key. The same runs against a local folder.
"""

from __future__ import annotations

import datetime
import itertools
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from mltrail.core.seal import segment_name
from mltrail.errors import InputError
from mltrail.evidence.seals import seal_ledger
from mltrail.ledger.home import init_home, open_home
from mltrail.ledger.ledger import Draft
from mltrail.storage.worm import open_worm

ORIGIN = "example.org/seals"
_buckets = itertools.count()


def mltrail(home: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "MLTRAIL_HOME": str(home)}
    for name in ("MLTRAIL_RUN_ID", "MLTRAIL_WITNESS", "MLTRAIL_SEAL_TARGET", "RANK"):
        env.pop(name, None)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )


def ok(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 0, proc.stderr + proc.stdout
    return proc.stdout


def as_json(proc: subprocess.CompletedProcess[str]) -> Any:
    return json.loads(ok(proc))


def make_home(
    path: Path, notes: int, *, key: Path | None = None, text: str = "n"
) -> Path:
    init_home(path, origin=ORIGIN, key_path=key, env={})
    add_notes(path, notes, text=text)
    return path


def add_notes(path: Path, count: int, *, text: str = "n") -> None:
    home = open_home(path, env={})
    try:
        for i in range(count):
            home.ledger.append("note", {"text": f"{text} {i}"})
    finally:
        home.close()


def verify_seals(home: Path, url: str) -> tuple[int, dict[str, Any]]:
    proc = mltrail(home, "verify", "--seals", url, "--json")
    assert proc.returncode in (0, 3), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def codes(report: dict[str, Any]) -> set[str]:
    return {p["code"] for p in report["problems"]}


@pytest.fixture
def s3(seaweedfs, monkeypatch):
    """A fresh Object Lock bucket; the S3 client settings in the environment."""
    for name, value in seaweedfs.env().items():
        monkeypatch.setenv(name, value)
    bucket = seaweedfs.make_bucket(f"seals-{os.getpid()}-{next(_buckets)}")
    return seaweedfs, bucket, f"s3://{bucket}/team-a"


@pytest.fixture(params=["s3", "folder"])
def target(request, tmp_path):
    """A seal target URL: an S3 bucket with Object Lock, or a local folder."""
    if request.param == "folder":
        return str(tmp_path / "worm")
    return request.getfixturevalue("s3")[2]


def test_the_storage_itself_refuses_to_delete_or_shorten_a_sealed_object(s3, tmp_path):
    server, bucket, url = s3
    home = make_home(tmp_path / "home", 3)
    result = as_json(mltrail(home, "seal", "--to", url, "--retain", "7y", "--json"))
    client = server.client()
    key = f"team-a/segments/{result['written'][0]}/records.jsonl"
    version = client.head_object(Bucket=bucket, Key=key)["VersionId"]
    retention = client.get_object_retention(Bucket=bucket, Key=key)["Retention"]
    assert retention["Mode"] == "COMPLIANCE"
    assert retention["RetainUntilDate"].year >= datetime.datetime.now().year + 6
    from botocore.exceptions import ClientError

    attempts = [
        lambda: client.delete_object(Bucket=bucket, Key=key, VersionId=version),
        lambda: client.delete_object(
            Bucket=bucket, Key=key, VersionId=version, BypassGovernanceRetention=True
        ),
        lambda: client.put_object_retention(
            Bucket=bucket,
            Key=key,
            VersionId=version,
            Retention={
                "Mode": "COMPLIANCE",
                "RetainUntilDate": datetime.datetime.now(datetime.UTC)
                + datetime.timedelta(days=1),
            },
        ),
        lambda: client.put_object_retention(
            Bucket=bucket,
            Key=key,
            VersionId=version,
            Retention={
                "Mode": "GOVERNANCE",
                "RetainUntilDate": retention["RetainUntilDate"],
            },
        ),
    ]
    for attempt in attempts:
        with pytest.raises(ClientError) as caught:
            attempt()
        assert caught.value.response["Error"]["Code"] == "AccessDenied"
    body = client.get_object(Bucket=bucket, Key=key, VersionId=version)["Body"].read()
    assert body.count(b"\n") == result["records"]


def test_seal_is_incremental_and_idempotent(target, tmp_path):
    home = make_home(tmp_path / "home", 5)
    first = as_json(mltrail(home, "seal", "--to", target, "--retain", "7y", "--json"))
    assert first["written"] == [segment_name(0, 6)]
    again = as_json(mltrail(home, "seal", "--to", target, "--retain", "7y", "--json"))
    assert again["written"] == []
    assert again["sealed_size"] == 6
    add_notes(home, 4)
    third = as_json(mltrail(home, "seal", "--to", target, "--retain", "7y", "--json"))
    assert third["written"] == [segment_name(6, 10)]
    assert third["records"] == 4
    status = as_json(mltrail(home, "seal", "status", "--to", target, "--json"))
    assert status["segments"] == 2
    assert status["sealed_size"] == 10
    assert status["unsealed_records"] == 0
    assert status["unfinished"] == []
    code, report = verify_seals(home, target)
    assert code == 0, report["problems"]
    seal_anchor = [a for a in report["anchors"] if a["kind"] == "seal"]
    assert seal_anchor
    assert "records 0 to 9" in seal_anchor[0]["description"]


def test_the_configured_target_is_used_without_to(target, tmp_path):
    home = make_home(tmp_path / "home", 2)
    ok(mltrail(home, "seal", "configure", "--to", target, "--retain", "1y"))
    assert as_json(mltrail(home, "seal", "--json"))["sealed_size"] == 3
    assert mltrail(home, "verify", "--against-seals", "-q").returncode == 0


def test_retention_under_six_months_is_refused(tmp_path):
    home = make_home(tmp_path / "home", 1)
    proc = mltrail(home, "seal", "--to", str(tmp_path / "w"), "--retain", "90d")
    assert proc.returncode == 2
    assert "shorter than six months" in proc.stderr
    assert "EU AI Act" in proc.stderr
    assert not (tmp_path / "w").exists()


def test_an_interrupted_seal_misleads_nobody_and_a_rerun_finishes_it(target, tmp_path):
    home_path = make_home(tmp_path / "home", 4)
    ok(mltrail(home_path, "seal", "--to", target, "--retain", "7y"))
    add_notes(home_path, 3)
    home = open_home(home_path, writable=False, env={})
    worm = open_worm(target)
    real_put = worm._put

    def crash_before_manifest(key, data, until, hold):
        if key.endswith("manifest.json"):
            raise KeyboardInterrupt  # as if killed
        real_put(key, data, until, hold)

    worm._put = crash_before_manifest
    from mltrail.core.seal import parse_retention

    with pytest.raises(KeyboardInterrupt):
        seal_ledger(home, worm, parse_retention("7y"))
    home.close()
    unfinished = segment_name(5, 8)
    status = as_json(mltrail(home_path, "seal", "status", "--to", target, "--json"))
    assert status["unfinished"] == [unfinished]
    assert status["sealed_size"] == 5
    code, report = verify_seals(home_path, target)
    assert code == 0
    assert "seal-unfinished" in codes(report)
    assert any("records 0 to 4 " in a["description"] for a in report["anchors"])
    add_notes(home_path, 2)
    rerun = as_json(
        mltrail(home_path, "seal", "--to", target, "--retain", "7y", "--json")
    )
    assert rerun["resumed"] == unfinished
    assert rerun["written"] == [unfinished, segment_name(8, 10)]
    code, report = verify_seals(home_path, target)
    assert code == 0
    assert "seal-unfinished" not in codes(report)


def test_a_segment_removed_beneath_s3_is_named(s3, tmp_path):
    server, bucket, url = s3
    home = make_home(tmp_path / "home", 2)
    names = []
    for _ in range(3):
        names += as_json(
            mltrail(home, "seal", "--to", url, "--retain", "7y", "--json")
        )["written"]
        add_notes(home, 2)
    assert len(names) == 3
    client = server.client()
    for name in (names[1], names[2]):
        key = f"team-a/segments/{name}/records.jsonl"
        version = client.head_object(Bucket=bucket, Key=key)["VersionId"]
        with pytest.raises(Exception, match="AccessDenied"):  # S3 itself refuses
            client.delete_object(Bucket=bucket, Key=key, VersionId=version)
    server.delete_beneath(bucket, f"team-a/segments/{names[1]}")
    code, report = verify_seals(home, url)
    assert code == 3
    missing = [p for p in report["problems"] if p["code"] == "seal-missing"]
    assert missing
    assert names[1] in missing[0]["message"]
    server.delete_beneath(bucket, f"team-a/segments/{names[2]}")
    code, report = verify_seals(home, url)
    messages = " ".join(p["message"] for p in report["problems"])
    assert code == 3
    assert names[2] in messages
    assert "records 3 to 6" in messages


def test_a_ledger_rewritten_with_its_own_key_is_caught(target, tmp_path):
    home = make_home(tmp_path / "home", 6, text="approved")
    ok(mltrail(home, "seal", "--to", target, "--retain", "7y"))
    key = next((home / "keys").glob("*.key"))
    forged = make_home(tmp_path / "forged", 6, key=key, text="rejected")
    for name in ("ledger.db-wal", "ledger.db-shm"):
        (home / name).unlink(missing_ok=True)
    shutil.copyfile(forged / "ledger.db", home / "ledger.db")
    shutil.copyfile(forged / "witness" / "checkpoint", home / "witness" / "checkpoint")
    plain = as_json(mltrail(home, "verify", "--json"))
    assert plain["ok"], "the forgery passes a plain verify: only the seal catches it"
    code, report = verify_seals(home, target)
    assert code == 3
    differs = [p for p in report["problems"] if p["code"] == "seal-differs"]
    assert differs
    assert differs[0]["seq"] == 0
    assert "rewritten after sealing" in differs[0]["message"]
    proc = mltrail(home, "seal", "--to", target, "--retain", "7y")
    assert proc.returncode == 3
    assert "no longer extends" in proc.stderr


def _home_with_run(path: Path) -> tuple[Path, str, str]:
    """A home with one run that wrote a file and stored a blob."""
    init_home(path, origin=ORIGIN, env={})
    home = open_home(path, env={})
    try:
        ref = home.ledger.put_blob(b"training log line, subject 4711")
        run, sha = "run-a", "ab" * 32
        home.ledger.append_many(
            [
                Draft("run.started", {"source": "api", "name": "train"}, run),
                Draft(
                    "run.artifact",
                    {
                        "path": "/m/a.bin",
                        "exists": True,
                        "type": "file",
                        "sha256": sha,
                        "size": 3,
                    },
                    run,
                ),
                Draft("note", {"text": "log", "attachments": [ref]}, run),
                Draft("run.ended", {"status": "succeeded"}, run),
            ]
        )
        home.ledger.append("note", {"text": "unrelated"})
    finally:
        home.close()
    return path, run, ref["blob"]


def test_legal_holds_reach_the_sealed_objects_and_block_purges(s3, tmp_path):
    server, bucket, url = s3
    home, run, blob = _home_with_run(tmp_path / "home")
    ok(mltrail(home, "seal", "configure", "--to", url, "--retain", "7y"))
    [name] = as_json(mltrail(home, "seal", "--json"))["written"]
    client = server.client()
    key = f"team-a/segments/{name}/records.jsonl"
    hold_of = lambda: client.get_object_legal_hold(Bucket=bucket, Key=key)["LegalHold"]  # noqa: E731
    assert hold_of()["Status"] == "OFF"
    added = as_json(
        mltrail(home, "hold", "add", f"run:{run}", "--reason", "case L-7", "--json")
    )
    assert added["storage"]["on"] == [name]
    assert hold_of()["Status"] == "ON"
    proc = mltrail(home, "purge", blob, "--reason", "erasure request")
    assert proc.returncode == 2
    assert "legal hold" in proc.stderr
    assert "case L-7" in proc.stderr
    add_notes(home, 1)
    later = as_json(mltrail(home, "seal", "--json"))
    assert later["held"] == [], "a segment of records outside the hold is not held"
    released = as_json(
        mltrail(home, "hold", "release", f"run:{run}", "--reason", "closed", "--json")
    )
    assert released["storage"]["off"] == [name]
    assert hold_of()["Status"] == "OFF"
    ok(mltrail(home, "hold", "add", f"blob:{blob}", "--reason", "inquiry 9"))
    assert mltrail(home, "purge", blob, "--reason", "x").returncode == 2
    ok(mltrail(home, "hold", "release", f"blob:{blob}", "--reason", "done"))
    ok(mltrail(home, "purge", blob, "--reason", "erasure request"))
    assert mltrail(home, "verify", "--against-seals", "-q").returncode == 0


def test_a_locked_models_runs_take_nothing_but_notes(tmp_path):
    home_path, run, _ = _home_with_run(tmp_path / "home")
    worm = tmp_path / "worm"
    ok(mltrail(home_path, "seal", "configure", "--to", str(worm), "--retain", "7y"))
    locked = as_json(
        mltrail(home_path, "model", "lock", "ab" * 32, "--reason", "released", "--json")
    )
    assert locked["runs"] == [run]
    assert locked["model_type"] == "file"
    assert locked["seal"]["sealed_size"] == 7, "the lock is sealed at once"
    home = open_home(home_path, env={})
    try:
        with pytest.raises(
            InputError, match=r"run run-a: the run is locked by model.sealed at seq 6"
        ):
            home.ledger.append("run.ended", {"status": "failed"}, run=run)
        with pytest.raises(InputError, match="locked"):
            home.ledger.append_many(
                [
                    Draft("note", {"text": "fine"}, run),
                    Draft("run.ended", {"status": "failed"}, run),
                ]
            )
        home.ledger.append("note", {"text": "a correction"}, run=run)
        home.ledger.append(
            "run.started", {"source": "api", "name": "next"}, run="run-b"
        )
    finally:
        home.close()
    proc = mltrail(home_path, "model", "lock", "ab" * 32)
    assert proc.returncode == 2
    assert "locked already" in proc.stderr


def _relabel(home: Path, where: str, kind: str) -> None:
    """Change the kind column of records (``where``) in the SQLite file, as
    anyone able to write it can (the triggers dropped, then put back)."""
    import sqlite3

    db = sqlite3.connect(home / "ledger.db", isolation_level=None)
    try:
        triggers = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
            "AND tbl_name = 'records'"
        ).fetchall()
        for name, _ in triggers:
            db.execute(f'DROP TRIGGER "{name}"')
        db.execute(f"UPDATE records SET kind = ? WHERE {where}", (kind,))
        for _, sql in triggers:
            db.execute(sql)
    finally:
        db.close()


def test_verify_names_a_locked_run_amended_past_the_append_check(tmp_path):
    """Appends refuse an entry amending a run a model.sealed record locked, but
    they find the locks by the store's kind column: with the lock's row
    relabelled ``note`` in the file, `mltrail append` took a run.ended of the
    locked run, and once the label was put back `verify` said OK (the lock
    stood only in one command). Verify now replays the locks from the signed
    records and names the amendment (``locked-run``), also when it sits among
    plain records the walk takes whole."""
    home, run, _ = _home_with_run(tmp_path / "home")
    ok(mltrail(home, "model", "lock", "ab" * 32, "--reason", "released"))
    assert mltrail(home, "verify", "-q").returncode == 0
    _relabel(home, "kind = 'model.sealed'", "note")
    for text in ("before", "between"):
        ok(mltrail(home, "append", "--kind", "note", "--body", f'{{"text": "{text}"}}'))
    ok(mltrail(home, "append", "--kind", "run.ended", "--run", run,
               "--body", '{"status": "failed"}'))  # fmt: skip
    ok(mltrail(home, "append", "--kind", "note", "--body", '{"text": "after"}'))
    _relabel(home, "seq = 6", "model.sealed")
    proc = mltrail(home, "verify", "--json")
    assert proc.returncode == 3, proc.stdout
    [problem] = [
        p for p in json.loads(proc.stdout)["problems"] if p["severity"] == "error"
    ]
    assert (problem["code"], problem["seq"]) == ("locked-run", 9)
    assert "model.sealed at seq 6" in problem["message"]


def test_a_hold_relabelled_in_the_store_still_keeps_its_blob(tmp_path):
    """`mltrail purge` found the holds by the store's kind column: with the
    hold.added row relabelled ``note`` in the file, the held blob was purged
    (exit 0, its bytes erased for good; verify named it only afterwards). A
    purge now finds the holds by their signed bytes."""
    home, run, blob = _home_with_run(tmp_path / "home")
    ok(mltrail(home, "hold", "add", f"run:{run}", "--reason", "case L-7"))
    _relabel(home, "kind = 'hold.added'", "note")
    proc = mltrail(home, "purge", blob, "--reason", "erasure request")
    assert proc.returncode == 2, proc.stdout
    assert "under legal hold" in proc.stderr
    assert "case L-7" in proc.stderr
    _relabel(home, "seq = 6", "hold.added")
    assert mltrail(home, "verify", "-q").returncode == 0, "the blob is still there"


def _edit_record(home: Path, seq: int, old: bytes, new: bytes) -> None:
    """Replace ``old`` by ``new`` in the stored bytes of record ``seq`` (the
    triggers dropped, then put back), as anyone able to write the file can."""
    import sqlite3

    db = sqlite3.connect(home / "ledger.db", isolation_level=None)
    try:
        triggers = db.execute(
            "SELECT name, sql FROM sqlite_master WHERE type = 'trigger' "
            "AND tbl_name = 'records'"
        ).fetchall()
        for name, _ in triggers:
            db.execute(f'DROP TRIGGER "{name}"')
        [(data,)] = db.execute("SELECT record FROM records WHERE seq = ?", (seq,))
        assert bytes(data).count(old) == 1
        edited = bytes(data).replace(old, new)
        db.execute("UPDATE records SET record = ? WHERE seq = ?", (edited, seq))
        for _, sql in triggers:
            db.execute(sql)
    finally:
        db.close()


def test_a_purge_refuses_a_ledger_whose_hold_record_was_edited(tmp_path):
    """`mltrail purge` read the holds from the signed bytes but skipped a record
    it could not take for one: with the hold.added record's kind edited to
    ``hold.addeD`` inside its bytes (not the last record, so the head check
    passed), the held blob was purged (exit 0, erased for good) and verify said
    TAMPERED only afterwards. A purge now verifies the whole ledger first and
    refuses (exit 3), writing and erasing nothing."""
    home, run, blob = _home_with_run(tmp_path / "home")
    ok(mltrail(home, "hold", "add", f"run:{run}", "--reason", "case L-7"))
    ok(mltrail(home, "append", "--kind", "note", "--body", '{"text": "later"}'))
    size = len(as_json(mltrail(home, "log", "--json")))
    _edit_record(home, 6, b'"hold.added"', b'"hold.addeD"')
    proc = mltrail(home, "purge", blob, "--reason", "erasure request")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "cannot be undone" in proc.stderr
    assert "mltrail verify" in proc.stderr
    _edit_record(home, 6, b'"hold.addeD"', b'"hold.added"')
    assert mltrail(home, "verify", "-q").returncode == 0, "the blob is still there"
    assert len(as_json(mltrail(home, "log", "--json"))) == size, "nothing written"


def test_an_interrupted_purge_is_not_finished_in_a_tampered_ledger(
    tmp_path, monkeypatch
):
    """A purge recorded but not yet erased is finished by `purge --resume` and
    by the next writable open, from the store's ``purges`` rows: those are
    finished only once the whole ledger verifies (a row planted in the file, or
    a hold edited away, must not make mltrail erase bytes for good)."""
    from mltrail.errors import StoreError
    from mltrail.storage.sqlite import SQLiteStore

    home, _, blob = _home_with_run(tmp_path / "home")
    opened = open_home(home, env={}, finish_purges=False)
    try:
        monkeypatch.setattr(SQLiteStore, "_erase_blob", lambda self, d: 1 / 0)
        with pytest.raises(StoreError):
            opened.purge_blob(blob, reason="erasure request")
        monkeypatch.undo()
    finally:
        opened.close()
    _edit_record(home, 5, b'"unrelated"', b'"unrelateD"')
    proc = mltrail(home, "purge", "--resume")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "cannot be undone" in proc.stderr
    proc = mltrail(home, "append", "--kind", "note", "--body", '{"text": "x"}')
    assert proc.returncode == 0, proc.stderr
    assert "fails verification" in proc.stderr
    _edit_record(home, 5, b'"unrelateD"', b'"unrelated"')
    report = as_json(mltrail(home, "verify", "--json"))
    assert "purge-pending" in [p["code"] for p in report["problems"]]
    assert json.loads(ok(mltrail(home, "purge", "--resume", "--json")))["purged"]


# -- an insider against the storage: new versions, delete markers, weak locks --
#
# Object Lock protects object *versions*, not keys: in an Object Lock bucket
# (always versioned) anyone allowed to put objects can put a new version over a
# sealed key, or a delete marker, and a plain GET then returns the newcomer.


def _forge(tmp_path: Path, home: Path, notes: int) -> Path:
    """The ledger rebuilt with its own key and other records, put in its place."""
    key = next((home / "keys").glob("*.key"))
    forged = make_home(tmp_path / "forged", notes, key=key, text="rejected")
    for name in ("ledger.db-wal", "ledger.db-shm"):
        (home / name).unlink(missing_ok=True)
    shutil.copyfile(forged / "ledger.db", home / "ledger.db")
    shutil.copyfile(forged / "witness" / "checkpoint", home / "witness" / "checkpoint")
    return forged


def _put_over(client, bucket: str, folder: Path, prefix: str, **extra: Any) -> None:
    """Put every file of a folder seal over the same keys in the bucket."""
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            key = f"{prefix}/{path.relative_to(folder).as_posix()}"
            client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes(), **extra)


def _problems(report: dict[str, Any], code: str) -> list[dict[str, Any]]:
    return [p for p in report["problems"] if p["code"] == code]


def test_sealed_objects_overwritten_by_new_versions_are_caught(s3, tmp_path):
    server, bucket, url = s3
    home = make_home(tmp_path / "home", 4, text="approved")
    ok(mltrail(home, "seal", "--to", url, "--retain", "7y"))
    forged = _forge(tmp_path, home, 4)
    ok(mltrail(forged, "seal", "--to", str(tmp_path / "worm"), "--retain", "7y"))
    # a plain PutObject over each sealed key: S3 keeps the locked version and
    # makes the forged one the current version
    _put_over(server.client(), bucket, tmp_path / "worm", "team-a")
    code, report = verify_seals(home, url)
    assert code == 3
    assert not [a for a in report["anchors"] if a["kind"] == "seal"]
    differs = _problems(report, "seal-differs")
    assert differs
    assert differs[0]["seq"] == 0
    overwritten = _problems(report, "seal-overwritten")
    assert len(overwritten) == 4  # records, checkpoint, evidence, manifest
    assert (
        "newer version(s) were put over the sealed object"
        in (overwritten[0]["message"])
    )
    # sealing again neither takes the forgery for the seal nor writes over it
    proc = mltrail(home, "seal", "--to", url, "--retain", "7y")
    assert proc.returncode == 3
    assert "no longer extends" in proc.stderr


def test_a_last_segment_hidden_by_delete_markers_is_still_checked(s3, tmp_path):
    server, bucket, url = s3
    home = make_home(tmp_path / "home", 2)
    ok(mltrail(home, "seal", "--to", url, "--retain", "7y"))
    add_notes(home, 2)
    last = as_json(mltrail(home, "seal", "--to", url, "--retain", "7y", "--json"))
    client = server.client()
    prefix = f"team-a/segments/{last['written'][0]}/"
    for obj in client.list_objects_v2(Bucket=bucket, Prefix=prefix)["Contents"]:
        client.delete_object(Bucket=bucket, Key=obj["Key"])  # a delete marker
    (home / "seals.json").unlink()  # the insider holds the home too
    code, report = verify_seals(home, url)
    assert code == 3
    deleted = _problems(report, "seal-deleted")
    assert len(deleted) == 4
    assert last["written"][0] in deleted[0]["message"]
    assert report["size"] == 5
    assert not _problems(report, "seal-differs")


@pytest.mark.parametrize(
    ("lock", "code", "words"),
    [
        ({"ObjectLockMode": "GOVERNANCE"}, "seal-unlocked", "GOVERNANCE"),
        ({}, "seal-unlocked", "no lock"),
        ({"ObjectLockMode": "COMPLIANCE"}, "seal-retention", "locked only until"),
    ],
)
def test_objects_not_locked_as_a_seal_locks_them_are_named(
    s3, tmp_path, lock, code, words
):
    server, bucket, url = s3
    home = make_home(tmp_path / "home", 3)
    # sealed by hand (or by a changed mltrail) with a weaker lock than it claims
    ok(mltrail(home, "seal", "--to", str(tmp_path / "worm"), "--retain", "7y"))
    if lock:
        lock = {
            **lock,
            "ObjectLockRetainUntilDate": datetime.datetime.now(datetime.UTC)
            + datetime.timedelta(days=2),
        }
    _put_over(server.client(), bucket, tmp_path / "worm", "team-a", **lock)
    result, report = verify_seals(home, url)
    assert result == 3
    found = _problems(report, code)
    assert found, report["problems"]
    assert words in found[0]["message"]
    assert not [a for a in report["anchors"] if a["kind"] == "seal"]


def test_checking_reads_each_sealed_key_with_one_request(s3, tmp_path):
    """`verify --seals` lists the sealed versions once, then GETs each key: it
    does not list every key's versions again (ADR 0017, amendment 2026-12-07)."""
    from mltrail.evidence.seals import check_against_seals

    _, _, url = s3
    home = make_home(tmp_path / "home", 3)
    ok(mltrail(home, "seal", "--to", url, "--retain", "7y"))
    add_notes(home, 3)
    ok(mltrail(home, "seal", "--to", url, "--retain", "7y"))
    worm = open_worm(url)
    calls: list[str] = []
    worm.client.meta.events.register(
        "before-call.s3.*", lambda model, **_: calls.append(model.name)
    )
    opened = open_home(home, env={})
    try:
        check = check_against_seals(opened, worm)
    finally:
        opened.close()
    assert not check.problems, check.problems
    gets = calls.count("GetObject")
    assert gets >= 8  # two segments of four files each
    assert calls.count("ListObjectVersions") == 1, calls
    # writing still asks the storage afresh: a listing may be stale by then
    ok(mltrail(home, "seal", "--to", url, "--retain", "7y"))


def _put_beside(client, bucket: str, folder: Path, prefix: str) -> None:
    """Put every file of a folder seal under new keys, locked as a seal locks."""
    until = datetime.datetime.now(datetime.UTC) + datetime.timedelta(days=7 * 366)
    _put_over(
        client,
        bucket,
        folder,
        prefix,
        ObjectLockMode="COMPLIANCE",
        ObjectLockRetainUntilDate=until,
    )


def test_forged_segments_added_beside_the_sealed_ones_are_no_cover(
    target, tmp_path, request
):
    """Nothing sealed is deleted or overwritten: the insider (home and key) only
    adds segments of a rewritten ledger under new names that sort before the
    sealed ones (0-1 before 0-5, 1-7 before 5-7). The walk from record 0 took
    them and skipped every sealed segment it overlapped as a stray copy."""
    home = make_home(tmp_path / "home", 4, text="approved")
    ok(mltrail(home, "seal", "--to", target, "--retain", "7y"))
    add_notes(home, 2, text="approved later")
    sealed = as_json(mltrail(home, "seal", "--to", target, "--retain", "7y", "--json"))
    size = sealed["sealed_size"]
    key = next((home / "keys").glob("*.key"))
    forged = make_home(tmp_path / "forged", 0, key=key)
    scratch = tmp_path / "scratch"
    ok(mltrail(forged, "seal", "--to", str(scratch), "--retain", "7y"))
    add_notes(forged, size - 1, text="rejected")
    ok(mltrail(forged, "seal", "--to", str(scratch), "--retain", "7y"))
    for name in ("ledger.db-wal", "ledger.db-shm"):
        (home / name).unlink(missing_ok=True)
    shutil.copyfile(forged / "ledger.db", home / "ledger.db")
    shutil.copyfile(forged / "witness" / "checkpoint", home / "witness" / "checkpoint")
    if target.startswith("s3://"):
        server, bucket, _ = request.getfixturevalue("s3")
        _put_beside(server.client(), bucket, scratch, "team-a")
    else:
        for segment in (scratch / "segments").iterdir():
            shutil.copytree(segment, Path(target) / "segments" / segment.name)
    code, report = verify_seals(home, target)
    assert code == 3, (report["anchors"], report["problems"])
    assert not [a for a in report["anchors"] if a["kind"] == "seal"]
    found = _problems(report, "seal-differs") + _problems(report, "seal-invalid")
    assert found, report["problems"]
    assert found[0]["seq"] == 0


def test_an_honest_second_seal_of_the_same_records_still_passes(tmp_path):
    """Two sealers at once can both finish a segment over the same records
    (0-5 and 0-7 beside 5-7): each is held to the ledger, and both agree."""
    home = make_home(tmp_path / "home", 4)
    worm = tmp_path / "worm"
    ok(mltrail(home, "seal", "--to", str(worm), "--retain", "7y"))
    add_notes(home, 2)
    ok(mltrail(home, "seal", "--to", str(worm), "--retain", "7y"))
    other = tmp_path / "other"
    ok(mltrail(home, "seal", "--to", str(other), "--retain", "7y"))
    for segment in (other / "segments").iterdir():
        shutil.copytree(segment, worm / "segments" / segment.name)
    assert len(list((worm / "segments").iterdir())) == 3
    code, report = verify_seals(home, str(worm))
    assert code == 0, report["problems"]
    assert [a for a in report["anchors"] if a["kind"] == "seal"]
    code, alone = audit(str(worm), _key_id(home))
    assert code == 0, alone["problems"]
    assert (alone["segments"], alone["sealed_size"]) == (3, 7)


# -- an auditor with nothing but the seal location and the ledger's key -------


def _key_id(home: Path) -> str:
    import re

    return re.search(r"key id: +([0-9a-f]{64})", ok(mltrail(home, "keys", "export")))[1]


def audit(url: str, *keys: str) -> tuple[int, dict[str, Any]]:
    """`mltrail seal verify URL --trust-key ...` with no home to read."""
    trust = [arg for key in keys for arg in ("--trust-key", key)]
    proc = mltrail(Path("/nonexistent/mltrail-home"), "seal", "verify", url, *trust,
                   "--json")  # fmt: skip
    assert proc.returncode in (0, 3), proc.stderr
    return proc.returncode, json.loads(proc.stdout)


def test_an_auditor_checks_the_seals_alone_with_the_ledger_key(target, tmp_path):
    """The seals were checkable only through a home (`verify --seals` opens
    MLTRAIL_HOME), and the walk of the segments trusted whatever key their
    first record adds: an auditor holding the bucket and the ledger's public
    key had no check. `mltrail seal verify` reads no home."""
    home = make_home(tmp_path / "home", 4)
    ok(mltrail(home, "seal", "--to", target, "--retain", "7y"))
    add_notes(home, 2)
    ok(mltrail(home, "seal", "--to", target, "--retain", "7y"))
    code, report = audit(target, _key_id(home))
    assert code == 0, report["problems"]
    assert (report["segments"], report["sealed_size"]) == (2, 7)
    assert report["origin"] == ORIGIN
    other = make_home(tmp_path / "other", 1)
    code, report = audit(target, _key_id(other))
    assert code == 3
    assert {p["code"] for p in report["problems"]} == {"seal-untrusted"}


def test_seals_alone_name_forged_segments_beside_the_sealed_ones(
    target, tmp_path, request
):
    """The insider holding the ledger key adds segments of a rewritten ledger
    beside the sealed ones (0-1 and 1-7 beside 0-5 and 5-7): each verifies by
    itself, signed by the trusted key; together they seal two histories."""
    home = make_home(tmp_path / "home", 4, text="approved")
    ok(mltrail(home, "seal", "--to", target, "--retain", "7y"))
    add_notes(home, 2, text="approved later")
    size = as_json(mltrail(home, "seal", "--to", target, "--retain", "7y", "--json"))[
        "sealed_size"
    ]
    key = next((home / "keys").glob("*.key"))
    forged = make_home(tmp_path / "forged", 0, key=key)
    scratch = tmp_path / "scratch"
    ok(mltrail(forged, "seal", "--to", str(scratch), "--retain", "7y"))
    add_notes(forged, size - 1, text="rejected")
    ok(mltrail(forged, "seal", "--to", str(scratch), "--retain", "7y"))
    assert audit(str(scratch), _key_id(home))[0] == 0  # alone, the forgery verifies
    if target.startswith("s3://"):
        server, bucket, _ = request.getfixturevalue("s3")
        _put_beside(server.client(), bucket, scratch, "team-a")
    else:
        for segment in (scratch / "segments").iterdir():
            shutil.copytree(segment, Path(target) / "segments" / segment.name)
    code, report = audit(target, _key_id(home))
    assert code == 3, report
    assert "two different histories are sealed" in json.dumps(report["problems"])


def test_seals_alone_catch_a_record_altered_under_a_re_signed_checkpoint(tmp_path):
    """Whoever holds the ledger key can alter a record's body, chain the records
    again and sign a new checkpoint over them: chain, tree and checkpoint all
    verify. The record's own signature does not, and is checked."""
    from mltrail.core.canonical import compute_leaf_hash, compute_record_hash
    from mltrail.core.checkpoint import Checkpoint, sign_checkpoint
    from mltrail.core.codec import decode_record
    from mltrail.core.entry import Record
    from mltrail.core.merkle import CompactRange
    from mltrail.core.seal import build_manifest

    home = make_home(tmp_path / "home", 4, text="approved")
    worm = tmp_path / "worm"
    [name] = as_json(mltrail(home, "seal", "--to", str(worm), "--retain", "7y",
                             "--json"))["written"]  # fmt: skip
    lines = (worm / "segments" / name / "records.jsonl").read_bytes().splitlines()
    out, prev, tree = [], bytes(32), CompactRange()
    for line in lines:
        record = decode_record(line).record
        entry = record.entry
        if record.seq == 2:
            entry = entry.__class__.from_dict(
                {**entry.to_dict(), "body": {"text": "rejected 1"}}
            )
        data = Record(record.seq, prev.hex(), entry).to_bytes()
        out.append(data)
        prev = compute_record_hash(data)
        tree.append(compute_leaf_hash(data))
    opened = open_home(home, env={})
    try:
        note = sign_checkpoint(
            Checkpoint(ORIGIN, len(out), tree.root()), opened.ledger.signer
        ).to_text()
    finally:
        opened.close()
    files = {
        "records.jsonl": b"".join(d + b"\n" for d in out),
        "checkpoint.txt": note.encode(),
        "evidence.json": b"[]",
    }
    forged = tmp_path / "forged" / "segments" / name
    forged.mkdir(parents=True)
    for file, data in files.items():
        (forged / file).write_bytes(data)
    (forged / "manifest.json").write_bytes(
        build_manifest(
            origin=ORIGIN,
            start=0,
            end=len(out),
            prev=bytes(32),
            frontier=[],
            files=files,
            sealed_at="2026-12-07T00:00:00Z",
            retain_until=None,
        )
    )
    assert audit(str(worm), _key_id(home))[0] == 0
    code, report = audit(str(tmp_path / "forged"), _key_id(home))
    assert code == 3
    [problem] = report["problems"]
    assert problem["code"] == "seal-invalid"
    assert "record 2: its signature does not verify" in problem["message"]


def test_a_legal_hold_lifted_beneath_the_ledger_is_named(s3, tmp_path):
    """A hold stands in the ledger, but the S3 legal hold of its segment's
    objects was lifted: by `mltrail hold add` of anything else while the
    hold.added row was relabelled ``note`` in the file (apply_legal_holds then
    saw no hold covering the segment and turned it OFF), or by anyone allowed
    s3:PutObjectLegalHold. With the label put back, `verify --seals` said OK.
    The legal holds mltrail sets now come from the signed hold records, and
    verify warns of a covered segment's object that is not held."""
    server, bucket, url = s3
    home, run, _ = _home_with_run(tmp_path / "home")
    ok(mltrail(home, "seal", "configure", "--to", url, "--retain", "7y"))
    [name] = as_json(mltrail(home, "seal", "--json"))["written"]
    ok(mltrail(home, "hold", "add", f"run:{run}", "--reason", "case L-7"))
    client = server.client()
    key = f"team-a/segments/{name}/records.jsonl"
    status = lambda: client.get_object_legal_hold(Bucket=bucket, Key=key)[  # noqa: E731
        "LegalHold"
    ]["Status"]
    assert status() == "ON"
    _relabel(home, "kind = 'hold.added'", "note")
    ok(mltrail(home, "hold", "add", "run:another", "--reason", "unrelated"))
    assert status() == "ON", "a relabelled hold still holds its segment"
    _relabel(home, "seq = 6", "hold.added")
    assert verify_seals(home, url)[0] == 0
    version = client.head_object(Bucket=bucket, Key=key)["VersionId"]
    client.put_object_legal_hold(
        Bucket=bucket, Key=key, VersionId=version, LegalHold={"Status": "OFF"}
    )
    code, report = verify_seals(home, url)
    assert code == 0, report["problems"]  # the seal itself is intact
    [problem] = _problems(report, "seal-unheld")
    assert (problem["severity"], problem["seq"]) == ("warning", 0)
    assert key.removeprefix("team-a/") in problem["message"]
    assert "case L-7" in problem["message"]


def test_seals_alone_follow_a_key_rotation_from_either_key(tmp_path):
    """After `mltrail keys rotate`, the genesis key vouches for the key it
    added, and the new key's checkpoint covers every record before it: either
    key, pinned, verifies the seals; a key of another ledger does not."""
    home = make_home(tmp_path / "home", 2)
    worm = str(tmp_path / "worm")
    ok(mltrail(home, "seal", "--to", worm, "--retain", "7y"))
    old = _key_id(home)
    ok(mltrail(home, "keys", "rotate", "--reason", "yearly"))
    add_notes(home, 2)
    ok(mltrail(home, "seal", "--to", worm, "--retain", "7y"))
    new = _key_id(home)
    assert new != old
    for key in (old, new):
        code, report = audit(worm, key)
        assert code == 0, (key, report["problems"])
        assert report["sealed_size"] == 7
    other = make_home(tmp_path / "other", 0)
    code, report = audit(worm, _key_id(other))
    assert code == 3
    [problem] = report["problems"]
    assert (problem["code"], problem["seq"]) == ("seal-untrusted", 0)


def test_a_note_relabelled_as_a_hold_release_lifts_no_hold(tmp_path):
    """A note may carry any member, ``target`` and ``id`` too; relabelled
    ``hold.released`` in the store's kind column, `hold list` took it for the
    release of a standing hold (and `seal` sealed later records of the run
    without their legal hold). Rows listed as hold records are now checked
    against their signed bytes: the store's lie is refused."""
    home, run, _ = _home_with_run(tmp_path / "home")
    ok(mltrail(home, "hold", "add", f"run:{run}", "--reason", "case L-7"))
    body = json.dumps({"text": "see the case file", "target": "run", "id": run})
    ok(mltrail(home, "append", "--kind", "note", "--body", body))
    assert len(as_json(mltrail(home, "hold", "list", "--json"))) == 1
    _relabel(home, "seq = 7", "hold.released")
    proc = mltrail(home, "hold", "list", "--json")
    assert proc.returncode == 3, proc.stdout
    assert "signed bytes say seq 7, kind 'note'" in proc.stderr


def test_seals_alone_take_the_chain_that_reaches_farthest(tmp_path):
    """Two sealers (or one who may put objects) left 5-7 beside 5-9: the walk
    in name order took 0-5 and 5-7, then found records 7 and 8 only in a
    segment beside its chain, and called them unchecked. The walk now follows
    the chain of segments that reaches farthest; the others are compared with
    it."""
    home = make_home(tmp_path / "home", 4)
    worm, other = str(tmp_path / "worm"), str(tmp_path / "other")
    for url in (worm, other):
        ok(mltrail(home, "seal", "--to", url, "--retain", "7y"))
    add_notes(home, 2)
    ok(mltrail(home, "seal", "--to", other, "--retain", "7y"))
    add_notes(home, 2)
    ok(mltrail(home, "seal", "--to", worm, "--retain", "7y"))
    name = segment_name(5, 7)
    shutil.copytree(Path(other) / "segments" / name, Path(worm) / "segments" / name)
    code, report = audit(worm, _key_id(home))
    assert code == 0, report["problems"]
    assert report["problems"] == []
    assert (report["segments"], report["sealed_size"]) == (3, 9)


def test_a_second_sealer_ending_early_is_no_missing_segment(tmp_path):
    """The home sealed 5-9 (and remembers it in seals.json); a second sealer
    left 5-7 beside it. The walk took 0-5 and 5-7, checked 5-9 beside them,
    and then named records 7 and 8 as removed from the storage (seal-missing,
    exit 3) though they are sealed there and agree with the ledger."""
    home = make_home(tmp_path / "home", 4)
    worm, other = str(tmp_path / "worm"), str(tmp_path / "other")
    for url in (worm, other):
        ok(mltrail(home, "seal", "--to", url, "--retain", "7y"))
    add_notes(home, 2)
    ok(mltrail(home, "seal", "--to", other, "--retain", "7y"))
    add_notes(home, 2)
    ok(mltrail(home, "seal", "--to", worm, "--retain", "7y"))
    name = segment_name(5, 7)
    shutil.copytree(Path(other) / "segments" / name, Path(worm) / "segments" / name)
    code, report = verify_seals(home, worm)
    assert code == 0, report["problems"]
    [anchor] = [a for a in report["anchors"] if a["kind"] == "seal"]
    assert anchor["description"].startswith("records 0 to 8 ")


def test_a_ledger_rewritten_after_an_interrupted_seal_is_caught(target, tmp_path):
    """A seal of records 5 to 7 was killed before its manifest: their bytes
    and the checkpoint signed over them are kept write-once, but the segment
    counted for nothing. The owner then put the home back to its state before
    those records and wrote others in their place: `verify --seals` said OK,
    with a warning that a seal was interrupted. The interrupted seal's records,
    vouched for by its checkpoint, are now held to the ledger too."""
    home_path = make_home(tmp_path / "home", 4)
    ok(mltrail(home_path, "seal", "--to", target, "--retain", "7y"))
    shutil.copytree(home_path, tmp_path / "before")
    add_notes(home_path, 3, text="approved")
    home = open_home(home_path, writable=False, env={})
    worm = open_worm(target)
    real_put = worm._put

    def crash_before_manifest(key, data, until, hold):
        if key.endswith("manifest.json"):
            raise KeyboardInterrupt  # as if killed
        real_put(key, data, until, hold)

    worm._put = crash_before_manifest
    from mltrail.core.seal import parse_retention

    with pytest.raises(KeyboardInterrupt):
        seal_ledger(home, worm, parse_retention("7y"))
    home.close()
    code, report = verify_seals(home_path, target)
    assert code == 0, report["problems"]  # the honest ledger: a warning only
    shutil.rmtree(home_path)
    shutil.move(tmp_path / "before", home_path)
    add_notes(home_path, 3, text="rejected")
    assert mltrail(home_path, "verify", "-q").returncode == 0
    code, report = verify_seals(home_path, target)
    assert code == 3, report["problems"]
    [differs] = _problems(report, "seal-differs")
    assert differs["seq"] == 5
    assert "(unfinished)" in differs["message"]
    assert not [a for a in report["anchors"] if a["kind"] == "seal"]
