"""``mltrail push`` against a real `mltrail server` subprocess (ADR 0031).

A training machine records runs offline into its embedded home, its clock
two days behind the server's entries (the CLI runs with ``SystemClock``
shifted back, see ``OFFLINE``), so the pushed entries are dated far before
the server ledger's newest time. Then ``mltrail push`` uploads them: client
mode shows the runs with their original times and author, the server's ledger
verifies, pushing again adds nothing, and a push stopped after one batch
resumes where it stopped.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from optional_extras import require_extra
from server_fixture import running_server

require_extra("client", "httpx2")

OFFLINE = """
import sys
from datetime import timedelta
import mltrail.ledger.ledger as ledger
real = ledger.SystemClock.now
ledger.SystemClock.now = lambda self: real(self) - timedelta(days=2)
from mltrail.cli.main import main
main(sys.argv[1:])
"""
TRAIN = "import pathlib; pathlib.Path('model.bin').write_bytes(b'weights ' * 1000)"


@pytest.fixture(scope="module")
def server():
    with running_server() as running:
        yield running


@pytest.fixture(scope="module")
def laptop(server, tmp_path_factory):
    """(base folder, env of the offline machine's home, env of a client-mode auditor)."""
    from mltrail.capture.machine.identity import os_account

    base = tmp_path_factory.mktemp("push")
    (base / "project").mkdir()
    (base / "offline.py").write_text(OFFLINE)
    url = f"http://127.0.0.1:{server.port}/ledgers/team-a"
    keep = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    keep["GIT_CEILING_DIRECTORIES"] = str(base)
    user = os_account(os.getuid())
    offline = keep | {
        "MLTRAIL_HOME": str(base / "laptop"),
        "MLTRAIL_PUSH_URL": url,
        "MLTRAIL_TOKEN": server.token("writer", user),
    }
    auditor = keep | {
        "MLTRAIL_HOME": str(base / "auditor"),
        "MLTRAIL_URL": url,
        "MLTRAIL_TOKEN": server.token("auditor", "carol"),
    }
    return base, offline, auditor


def cli(
    base: Path, env: dict[str, str], *args: str, offline: bool = False, code: int = 0
):
    """Run the CLI (its clock two days back when ``offline``); its stdout, or
    its stderr when ``code`` is not 0."""
    program = [str(base / "offline.py")] if offline else ["-m", "mltrail"]
    proc = subprocess.run(
        [sys.executable, *program, *args], cwd=base / "project", env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    return proc.stdout if code == 0 else proc.stderr


def js(base: Path, env: dict[str, str], *args: str, **kw: bool):
    return json.loads(cli(base, env, *args, "--json", **kw))


def record_offline(base: Path, env: dict[str, str], name: str) -> None:
    cli(base, env, "run", "--name", name, "--output", "model.bin", "--",
        sys.executable, "-c", TRAIN, offline=True)  # fmt: skip


_PUSHED: set[str] = set()
"""The laptops (base folders) that pushed once: their key is registered since.
Tests run in any order, and on several workers."""


def test_push_uploads_offline_runs_with_their_times_once(server, laptop):
    base, offline, auditor = laptop
    first = str(base) not in _PUSHED
    if not (base / "laptop" / "ledger.json").exists():
        js(base, offline, "init", offline=True)
    record_offline(base, offline, "offline-train")
    server.call(
        "POST",
        "/ledgers/team-a/entries",
        server.token("writer", "alice"),
        {"entries": [server.entry("alice", "note", {"text": "the team works on"})]},
    )
    dry = js(base, offline, "push", "--dry-run")
    assert dry["dry_run"]
    assert dry["pushed"] > 0
    pushed = js(base, offline, "push")
    _PUSHED.add(str(base))
    assert (pushed["pushed"], pushed["batches"]) == (dry["pushed"], 1)
    assert pushed["key_registered"] == first
    if first:  # a later push finds the server holding the same blobs already
        assert pushed["blobs"] > 0  # the environment's package list, the logs...
    # the embedded ledger's genesis key.added, when this is the first push
    assert pushed["skipped"] == (1 if first else 0)

    (run,) = [r for r in js(base, auditor, "runs") if r["name"] == "offline-train"]
    (local,) = [r for r in js(base, offline, "runs") if r["name"] == "offline-train"]
    assert (run["id"], run["user"], run["started"], run["status"]) == (
        local["id"],
        local["user"],
        local["started"],
        "succeeded",
    )
    started = datetime.fromisoformat(run["started"].replace("Z", "+00:00"))
    assert started < datetime.now(UTC) - timedelta(days=1)
    assert "offline-train" in cli(base, auditor, "show", "offline-train")
    assert js(base, auditor, "verify")["ok"]

    again = js(base, offline, "push")
    assert (again["pushed"], again["batches"]) == (0, 0)
    assert again["server_size"] == pushed["server_size"]


def test_an_interrupted_push_resumes_where_it_stopped(server, laptop):
    from mltrail.ledger.client_mode import open_remote_ledger
    from mltrail.ledger.home import open_home
    from mltrail.ledger.push import push_ledger

    base, offline, auditor = laptop
    if not (base / "laptop" / "ledger.json").exists():
        js(base, offline, "init", offline=True)
    record_offline(base, offline, "second")
    home = open_home(offline["MLTRAIL_HOME"], env=offline)
    try:
        remote = open_remote_ledger(
            home.path, offline["MLTRAIL_PUSH_URL"], offline, home.ledger.signer
        )
        first = push_ledger(home, remote, batch_size=3, max_batches=1)
        _PUSHED.add(str(base))
        remote.ledger.close()
    finally:
        home.close()
    assert (first.pushed, first.batches) == (3, 1)
    rest = js(base, offline, "push")
    assert rest["from"] > first.start
    assert rest["pushed"] > 0

    records = js(base, auditor, "log")
    local = js(base, offline, "log")
    sent = [r["entry"]["sig"]["value"] for r in local if r["seq"] > 0]
    landed = [r["entry"]["sig"]["value"] for r in records]
    assert all(landed.count(sig) == 1 for sig in sent)
    assert js(base, auditor, "verify")["ok"]
    assert js(base, offline, "push")["pushed"] == 0


def test_a_token_of_another_user_or_no_server_is_refused_in_one_line(server, laptop):
    base, offline, _ = laptop
    if not (base / "laptop" / "ledger.json").exists():
        js(base, offline, "init", offline=True)
    record_offline(base, offline, "third")
    alice = offline | {"MLTRAIL_TOKEN": server.token("writer", "alice")}
    refused = cli(base, alice, "push", code=2)
    assert "the server takes entries of the token's user only" in refused
    assert "Traceback" not in refused
    nowhere = {k: v for k, v in offline.items() if k != "MLTRAIL_PUSH_URL"}
    assert "no server to push to" in cli(base, nowhere, "push", code=2)


def test_a_local_ledger_that_fails_verification_is_not_pushed(server, laptop):
    base, offline, auditor = laptop
    env = offline | {"MLTRAIL_HOME": str(base / "tampered")}
    js(base, env, "init")
    cli(base, env, "append", "--kind", "note", "--body", '{"text": "lr 0.1"}')
    # a later record, untouched: the last row's hash column stays right, so the
    # home opens for writing and push's own verification is what refuses
    cli(base, env, "append", "--kind", "note", "--body", '{"text": "lr 0.3"}')
    conn = sqlite3.connect(base / "tampered" / "ledger.db", isolation_level=None)
    try:
        for (name,) in conn.execute(
            "SELECT name FROM sqlite_master WHERE type='trigger'"
        ):
            conn.execute(f'DROP TRIGGER "{name}"')
        conn.execute(
            "UPDATE records SET record = "
            "CAST(replace(CAST(record AS TEXT), '0.1', '0.2') AS BLOB) "
            "WHERE seq = 1"
        )
    finally:
        conn.close()
    before = js(base, auditor, "log")
    refused = cli(base, env, "push", code=3)
    assert "refusing to push: the local ledger fails verification" in refused
    assert js(base, auditor, "log") == before


def _laptop_checkpoint(signer, size: int, origin: str = "laptop.example/pia") -> str:
    from mltrail.core.checkpoint import CheckpointSigner

    return CheckpointSigner(origin, signer).sign(size, bytes(32))


@pytest.mark.parametrize(
    ("checkpoint", "key", "status", "why"),
    [
        (lambda pia, other: _laptop_checkpoint(pia, 5), "pia", 201, None),
        (lambda pia, other: _laptop_checkpoint(pia, 2), "pia", 422, "covers 2"),
        (lambda pia, other: _laptop_checkpoint(other, 5), "pia", 422, "not verify"),
        (
            lambda pia, other: _laptop_checkpoint(pia, 5, "laptop.example/x"),
            "pia",
            422,
            "does not verify",
        ),
        (lambda pia, other: "not a checkpoint", "pia", 422, "does not verify"),
        (lambda pia, other: _laptop_checkpoint(other, 5), "other", 422, "never added"),
    ],
    ids=["vouches", "short", "other-key", "other-origin", "garbage", "unknown-key"],
)
def test_the_server_refuses_a_push_header_whose_checkpoint_does_not_vouch(
    server, checkpoint, key, status, why
):
    """A ``ledger.pushed`` header's checkpoint is checked when it is appended
    (as verify's pushed-checkpoint does): refused with 422, nothing stored."""
    from mltrail.core.codec import format_time
    from mltrail.core.entry import Entry, sign_entry
    from mltrail.ledger.keystore import generate_signer

    b = "/ledgers/team-b"  # team-a holds the pushes of the tests above
    pia, other = server.signer_for("team-b", "pia"), generate_signer()
    now = datetime.now(UTC)
    body = {
        "origin": "laptop.example/pia",
        "key": {"pia": pia, "other": other}[key].key_id,
        "from": 1,
        "to": 4,
        "count": 1,
        "checkpoint": checkpoint(pia, other),
    }
    entries = [
        Entry("ledger.pushed", format_time(now), {"user": "pia"}, body),
        Entry("note", format_time(now - timedelta(days=2)), {"user": "pia"},
              {"text": "recorded offline"}),
    ]  # fmt: skip
    token = server.token("writer", "pia", ledger="team-b")
    auditor = server.token("auditor", ledger="team-b")
    before = server.call("GET", f"{b}/head", auditor)[1]["size"]
    sent = {"entries": [sign_entry(e, pia).to_dict() for e in entries]}
    got, answer = server.call("POST", f"{b}/entries", token, sent)
    assert got == status, answer
    after = server.call("GET", f"{b}/head", auditor)[1]["size"]
    if why is None:
        assert after == before + 2
    else:
        assert "ledger.pushed header at seq" in answer["error"]["message"]
        assert why in answer["error"]["message"]
        assert after == before
    _, report = server.call("POST", f"{b}/verify", auditor)
    assert report["ok"], report


def test_the_server_refuses_a_push_header_of_another_users_ledger(server):
    """bob (a writer) copies the checkpoint of pia's laptop, which every reader
    sees in her headers, into a header of his own naming her laptop's origin
    and key, ``to`` as far as it covers. Stored, it would make her next push
    resume there (her entries never pushed, the push saying all is done) and
    put his back-dated entries in her laptop's window. Refused, 422; nothing
    stored."""
    from mltrail.core.codec import format_time
    from mltrail.core.entry import Entry, sign_entry

    b = "/ledgers/team-b"
    pia, bob = server.signer_for("team-b", "pia"), server.signer_for("team-b", "bob")
    now = datetime.now(UTC)
    body = {
        "origin": "laptop.example/pia",
        "key": pia.key_id,
        "from": 1,
        "to": 5,
        "count": 1,
        "checkpoint": _laptop_checkpoint(pia, 5),
    }
    entries = [
        Entry("ledger.pushed", format_time(now), {"user": "bob"}, body),
        Entry("note", format_time(now - timedelta(days=2)), {"user": "bob"},
              {"text": "recorded offline, on pia's laptop"}),
    ]  # fmt: skip
    token = server.token("writer", "bob", ledger="team-b")
    auditor = server.token("auditor", ledger="team-b")
    before = server.call("GET", f"{b}/head", auditor)[1]["size"]
    sent = {"entries": [sign_entry(e, bob).to_dict() for e in entries]}
    got, answer = server.call("POST", f"{b}/entries", token, sent)
    assert got == 422, answer
    assert "of 'pia', but is signed by a key of 'bob'" in answer["error"]["message"]
    assert server.call("GET", f"{b}/head", auditor)[1]["size"] == before


def test_push_refuses_a_push_header_the_server_made_up(server, laptop, monkeypatch):
    """A lying server lists a ledger.pushed record of this laptop whose ``to``
    says everything was pushed already. Push resumed after the highest ``to``
    it was shown, unchecked: it sent nothing and said so, and the runs never
    reached the server. The header that decides is now checked as an append's
    answer is (signed by a key of this home, included in the pinned
    checkpoint): exit 3, nothing pushed."""
    from mltrail.core.codec import decode_record
    from mltrail.core.entry import Record
    from mltrail.errors import IntegrityError
    from mltrail.ledger.client_mode import open_remote_ledger
    from mltrail.ledger.home import open_home
    from mltrail.ledger.push import push_ledger
    from mltrail.storage.base import StoredRow

    base, offline, _ = laptop
    if not (base / "laptop" / "ledger.json").exists():
        js(base, offline, "init", offline=True)
    record_offline(base, offline, "made-up")
    js(base, offline, "push")  # a genuine header of this laptop on the server
    _PUSHED.add(str(base))
    record_offline(base, offline, "never-sent")
    home = open_home(offline["MLTRAIL_HOME"], env=offline)
    try:
        remote = open_remote_ledger(
            home.path, offline["MLTRAIL_PUSH_URL"], offline, home.ledger.signer
        )
        size = home.ledger.head().size
        real = remote.store.rows_of_kinds

        def lying(kinds, start=0):
            for row in real(kinds, start):
                record = decode_record(row.data).record
                body = dict(record.entry.body)
                if record.entry.kind == "ledger.pushed" and body.get("to", 0) < size:
                    body["to"] = size
                    entry = record.entry.__class__.from_dict(
                        {**record.entry.to_dict(), "body": body}
                    )
                    data = Record(record.seq, record.prev, entry).to_bytes()
                    yield StoredRow(row.seq, row.hash, data)
                else:
                    yield row

        monkeypatch.setattr(remote.store, "rows_of_kinds", lying)
        before = remote.ledger.head().size
        with pytest.raises(IntegrityError, match="no key of this home signed"):
            push_ledger(home, remote)
        assert remote.ledger.head().size == before
        remote.ledger.close()
    finally:
        home.close()
    assert js(base, offline, "push")["pushed"] > 0  # an honest answer: sent


def test_push_refuses_a_ledger_rolled_back_and_written_on_since(server, laptop):
    """The laptop pushed, then its home was put back to a copy from before
    the last run and recorded on. Push resumed after the header's ``to``
    and sent the tail of the new history: the server took, without a word,
    records continuing a history other than the one it held (the header's
    checkpoint and the new one do not agree). Push now requires the ledger
    to extend the checkpoint of the header it resumes after: exit 3, nothing
    sent."""
    import shutil

    base, offline, auditor = laptop
    home = base / "rolled-back"
    env = offline | {"MLTRAIL_HOME": str(home)}
    js(base, env, "init", offline=True)
    record_offline(base, env, "kept")
    shutil.copytree(home, base / "rolled-back.copy")
    record_offline(base, env, "pushed-then-undone")
    assert js(base, env, "push")["pushed"] > 0
    shutil.rmtree(home)
    shutil.move(base / "rolled-back.copy", home)
    record_offline(base, env, "instead-one")
    record_offline(base, env, "instead-two")
    assert js(base, env, "verify")["ok"]  # the copy is intact, just other
    before = js(base, auditor, "log")
    refused = cli(base, env, "push", code=3)
    assert "does not extend the checkpoint it pushed" in refused
    assert js(base, auditor, "log") == before


def test_a_promotion_pushed_after_the_gate_was_raised_says_so(server, laptop):
    """A promotion recorded offline, where ``promote`` checked the gate that
    ledger knew (none), and pushed after someone gated the stage on the server,
    is judged by the gate it reached (seq order) and reads NOT MET; the history
    said only that, as for a promotion appended by hand past the gate. It now
    says the gate was set after the promotion's time and the promotion pushed."""
    base, offline, auditor = laptop
    if not (base / "laptop" / "ledger.json").exists():
        js(base, offline, "init", offline=True)
    record_offline(base, offline, "pushgate-train")
    cli(base, offline, "model", "promote", "model.bin", "--stage", "pushgate",
        "--note", "offline smoke test", "--override", "no git on the cluster",
        offline=True)  # fmt: skip
    gated = {"stage": "pushgate", "require_approval": 1, "previous": 0}
    status, _ = server.call(
        "POST",
        "/ledgers/team-a/entries",
        server.token("approver", "riskoffice"),
        {"entries": [server.entry("riskoffice", "stage.gated", gated)]},
    )
    assert status == 201
    js(base, offline, "push")
    _PUSHED.add(str(base))
    [event] = js(base, auditor, "model", "history", "--stage", "pushgate")
    gate = event["gate"]
    assert (gate["met"], gate["required"]) == (False, 1)
    assert gate["set_after"]["user"] == "riskoffice"
    assert gate["set_after"]["pushed"] is not None
    text = cli(base, auditor, "model", "history", "--stage", "pushgate")
    assert "NOT MET: 0 of 1 approval(s)" in text
    assert f"the promotion was pushed at seq {gate['set_after']['pushed']}" in text
    assert "after the gate changed" in text
