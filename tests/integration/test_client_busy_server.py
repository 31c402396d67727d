"""Commands that verify, then read again, against a busy honest server.

In client mode (ADR 0028) a verification reads one state of the server
(``Store.snapshot``, ADR 0004's amendment of 2026-12-08); what a command
reads after it, or beside it, must not read another state and take the
difference for tampering. Each case acts from inside the command at a fixed
point (a wrapper patched in before the command runs, in its own process), as
another client appending or the server's admin purging would:

- ``mltrail verify``'s check of index.db caught it up, then rebuilt one in
  memory from the server read again: an append between the two printed
  "the derived index disagrees" on an intact ledger and index;
- ``mltrail export`` read the checkpoint of the head, then the newest
  checkpoint again: an append between the two failed it (exit 2);
- a report or export that met a blob purged after its verification said
  the blob was not in the ledger (what a blob deleted without a purge is),
  or left out what it read from it without a word, exit 0: now it says it
  was purged after the verification, to run it again (exit 4), and only
  where a purge record the server now holds names it;
- the newest checkpoint a report prints is the one its verification read
  (it already was: a guard).

A real ``mltrail server`` (tests/server_fixture.py) over PostgreSQL.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from optional_extras import require_extra

require_extra("server", "fastapi", "uvicorn", "psycopg")
require_extra("client", "httpx2")

from client_mode import client_cli, trained_client  # noqa: E402
from home_setup import values  # noqa: E402
from server_fixture import running_server  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

TRAIN = (
    "import pathlib; d = pathlib.Path('data.csv').read_bytes(); "
    "pathlib.Path('model.bin').write_bytes(b'weights of ' + d)"
)


@pytest.fixture(scope="module")
def server():
    with running_server() as running:
        yield running


@pytest.fixture(scope="module")
def project(server, tmp_path_factory) -> tuple[Path, dict[str, dict[str, str]]]:
    """alice (a writer) trained a model on data.csv through the server; carol
    audits (her environment also names what the wrappers act with)."""
    base = tmp_path_factory.mktemp("client")
    (base / "project").mkdir()
    (base / "project" / "data.csv").write_text("a,b\n1,2\n")
    envs = trained_client(server, base, "--name", "train", "--data", "train=data.csv",
                          "--output", "model.bin", "--", sys.executable, "-c", TRAIN)  # fmt: skip
    note = server.entry("bea", "note", {"text": "appended by another client"})
    for name in envs:
        envs[name] |= {
            "WRITER_TOKEN": server.token("writer", "bea"),
            "ENTRY": json.dumps(note),
            "OWNER_URL": server.owner_url,
            "LOG_KEY": str(server.keys / "team-a.key"),
        }
    return base, envs


def _mltrail(
    base: Path, env: dict[str, str], *args: str, script: str | None = None
) -> subprocess.CompletedProcess[str]:
    return client_cli(base, env, *args,
                      script=None if script is None else _PRELUDE + script)  # fmt: skip


_PRELUDE = """
import json, os, sys
from mltrail.cli.main import main
from mltrail.storage import http


def append(why):
    url = os.environ["MLTRAIL_URL"]
    with http.HttpStore(url, os.environ["WRITER_TOKEN"]) as other:
        other.append_entries([json.loads(os.environ["ENTRY"])])
    sys.stderr.write(f"another client appended {why}\\n")


def admin():
    from pathlib import Path
    from mltrail.ledger.keystore import load_signer
    from mltrail.ledger.ledger import Ledger
    from mltrail.ledger.stored import KIND_ROLES
    from mltrail.server.control import schema_url
    from mltrail.storage.postgres import PostgresStore

    signer = load_signer(Path(os.environ["LOG_KEY"]))
    store = PostgresStore(
        schema_url(os.environ["OWNER_URL"], "ledger_team_a"), roles=KIND_ROLES
    )
    return Ledger(
        store, signer, origin="test.example/team-a", trusted_key=signer.key_id
    )
"""

_RUN = """
sys.argv = ["mltrail", *sys.argv[1:]]
main()
"""


def _json(done: subprocess.CompletedProcess[str]) -> Any:
    assert done.returncode == 0, (done.stdout, done.stderr)
    return json.loads(done.stdout)


# -- 1. verify's index check ------------------------------------------------------


_INDEX_RACE = (
    """
from mltrail.index import check

original = check.index_differences

def index_differences(index, *args, **kw):
    append("between the index's catch-up and its rebuild in memory")
    return original(index, *args, **kw)

check.index_differences = index_differences
"""
    + _RUN
)


def test_verify_compares_the_index_as_of_one_state_of_the_server(server, project):
    """Another client appends after index.db was caught up, before the index
    is rebuilt in memory to compare (before: a warning that index.db
    disagrees with the records, "meta last_seq", on an intact server and a
    true index). Now both are read in one snapshot of the server."""
    base, envs = project
    env = envs["carol"]
    _mltrail(base, env, "runs")  # index.db made
    done = _mltrail(base, env, "verify", "--json", script=_INDEX_RACE)
    assert "another client appended" in done.stderr, done.stderr
    report = _json(done)
    assert report["ok"] is True
    assert [p for p in report["problems"] if p["code"] == "index"] == []


def test_verify_still_finds_an_index_edited_by_hand(server, project):
    """The snapshot changes nothing of what the check finds: a row of
    index.db edited by hand is a warning, as before."""
    import sqlite3

    base, envs = project
    env = envs["carol"]
    _mltrail(base, env, "runs")
    (path,) = (base / "carol").rglob("*index.db")  # in client mode, a cache's
    with sqlite3.connect(path) as conn:
        conn.execute("UPDATE runs SET name = 'edited by hand'")
    try:
        report = _json(_mltrail(base, env, "verify", "--json", script=_RUN))
    finally:
        _mltrail(base, env, "reindex")
    assert report["ok"] is True
    found = [p["message"] for p in report["problems"] if p["code"] == "index"]
    assert found, report["problems"]
    assert "edited by hand" in " ".join(found)


# -- 2. bundle export -------------------------------------------------------------


_BUNDLE_RACE = (
    """
from mltrail.ledger.ledger import Ledger

original = Ledger.latest_checkpoint
done = []

def latest_checkpoint(self):
    if not done:
        done.append(True)
        append("between the checkpoint of the head and the newest checkpoint")
    return original(self)

Ledger.latest_checkpoint = latest_checkpoint
"""
    + _RUN
)


def test_a_bundle_is_exported_from_one_state_of_a_growing_server(
    server, project, tmp_path
):
    """Another client appends between ``export_bundle``'s read of the head's
    checkpoint and its read of the newest checkpoint (before: "the ledger's
    newest checkpoint does not cover every record", exit 2). Now the bundle
    is built in one snapshot: of the records as of its first read, and it
    verifies."""
    base, envs = project
    env = envs["carol"]
    out = tmp_path / "model.bundle.json"
    done = _mltrail(
        base, env, "export", "model.bin", "-o", str(out), "--json", script=_BUNDLE_RACE
    )
    assert "another client appended" in done.stderr, done.stderr
    summary = _json(done)
    assert summary["records"] > 0
    checked = _mltrail(base, env, "verify-bundle", str(out), "--json")
    assert json.loads(checked.stdout)["ok"] is True


# -- 3. a blob purged after the verification ---------------------------------------


def _trained(base: Path, env: dict[str, str], tag: str, *, folder: bool = False) -> str:
    """alice trains ``model-TAG.bin`` (run ``train-TAG``) on data of its own;
    the digest of that data's manifest (a blob)."""
    project = base / "project"
    data = f"data-{tag}"
    if folder:  # two files: a manifest the derived index does not read
        (project / data).mkdir()
        for n in (1, 2):
            (project / data / f"part-{n}.csv").write_text(f"a,b\n{tag},{n}\n")
        train = TRAIN.replace("'data.csv'", f"'{data}/part-1.csv'")
    else:
        data += ".csv"
        (project / data).write_text(f"a,b\n{tag},2\n")
        train = TRAIN.replace("data.csv", data)
    train = train.replace("model.bin", f"model-{tag}.bin")
    _mltrail(
        base, env, "run", "--name", f"train-{tag}", "--data", f"train={data}",
        "--output", f"model-{tag}.bin", "--", sys.executable, "-c", train,
    )  # fmt: skip
    shown = _json(_mltrail(base, env, "show", f"train-{tag}", "--json", script=_RUN))
    found = [d for d in values(shown, "manifest") if isinstance(d, dict)]
    (digest,) = {d["blob"] for d in found}
    return str(digest)


_PURGE_AFTER = (
    """
from mltrail.ledger import home

original = home.verify_pinned

def verify_pinned(*args, **kw):
    report = original(*args, **kw)
    from mltrail.ledger.erasure import purge_blob
    ledger = admin()
    try:
        purge_blob(ledger, os.environ["DIGEST"], reason="purged after a verification")
    finally:
        ledger.close()
    sys.stderr.write("the admin purged the blob after the verification\\n")
    return report

home.verify_pinned = verify_pinned
"""
    + _RUN
)


@pytest.mark.parametrize(
    ("tag", "folder", "command"),
    [("r", False, ("report", "model-r.bin", "--json")),
     ("f", True, ("report", "model-f.bin", "--json")),
     ("o", False, ("export", "openlineage"))],
    ids=["report", "report-folder", "openlineage"],
)  # fmt: skip
def test_a_blob_purged_after_the_verification_says_so(
    server, project, tag, folder, command
):
    """The server's admin purges the data's manifest right after the
    command's verification (before: the report said the blob was not in the
    ledger, exit 0). Now the command says
    it was purged after its verification and to run it again (exit 4); run
    again, the purge is verified and read as a purge."""
    base, envs = project
    digest = _trained(base, envs["alice"], tag, folder=folder)
    env = envs["carol"] | {"DIGEST": digest}
    done = _mltrail(base, env, *command, script=_PURGE_AFTER)
    assert "the admin purged the blob" in done.stderr, done.stderr
    assert done.returncode == 4, (done.stdout, done.stderr)
    assert "after the verification" in done.stderr, done.stderr
    assert "run the command again" in done.stderr, done.stderr
    again = _mltrail(base, env, *command, script=_RUN)
    assert again.returncode == 0, (again.stdout, again.stderr)


@contextmanager
def _owner_sql(server) -> Iterator[Any]:
    import psycopg

    with psycopg.connect(server.owner_url, autocommit=True) as conn:
        conn.execute('SET search_path TO "ledger_team_a"')
        yield conn


def test_a_blob_deleted_after_the_verification_with_no_purge_record_is_missing(
    server, project
):
    """Someone deletes a blob's bytes from the server's database after a
    verification and files a purge of it at the seq of a later record that
    is no purge: no purge record names it, so it is missing as before
    (deleted without a purge), not "purged after the verification"."""
    from mltrail.errors import InputError, StoreError
    from mltrail.ledger.home import open_home, verify_pinned
    from mltrail.storage.http import HttpStore

    base, envs = project
    digest = _trained(base, envs["alice"], "d")
    env = envs["carol"]
    home = open_home(base / "carol", writable=False, env=env)
    try:
        report = verify_pinned(home)
        assert report.ok
        with HttpStore(env["MLTRAIL_URL"], env["WRITER_TOKEN"]) as other:
            note = server.entry("bea", "note", {"text": "no purge"})
            other.append_entries([note])
        with _owner_sql(server) as conn:
            size, data = conn.execute(
                "SELECT size, data FROM blobs WHERE digest = %s", (digest,)
            ).fetchone()
            conn.execute("ALTER TABLE blobs DISABLE TRIGGER USER")
            conn.execute("ALTER TABLE purges DISABLE TRIGGER USER")
            conn.execute("DELETE FROM blobs WHERE digest = %s", (digest,))
            conn.execute(
                "INSERT INTO purges (digest, size, seq) VALUES (%s, %s, %s)",
                (digest, size, report.size),
            )
            conn.execute("ALTER TABLE purges ENABLE TRIGGER USER")
            conn.execute("ALTER TABLE blobs ENABLE TRIGGER USER")
        try:
            with pytest.raises(InputError) as raised:
                home.ledger.get_blob(digest)
        finally:  # team-a as it was, for the other tests
            with _owner_sql(server) as conn:
                conn.execute("ALTER TABLE purges DISABLE TRIGGER USER")
                conn.execute("DELETE FROM purges WHERE digest = %s", (digest,))
                conn.execute("ALTER TABLE purges ENABLE TRIGGER USER")
                conn.execute(
                    "INSERT INTO blobs (digest, size, data) VALUES (%s, %s, %s)",
                    (digest, size, data),
                )
        assert not isinstance(raised.value, StoreError)
        assert "without a purge" in str(raised.value.hint)
    finally:
        home.close()


# -- 4. the report's checkpoint ------------------------------------------------------


_APPEND_AFTER = (
    """
from mltrail.ledger import home

original = home.verify_pinned

def verify_pinned(*args, **kw):
    report = original(*args, **kw)
    append("after the verification")
    return report

home.verify_pinned = verify_pinned
"""
    + _RUN
)


def test_the_report_shows_the_checkpoint_its_verification_read(server, project):
    """Another client appends right after the report's verification: the
    newest checkpoint the report prints is the one the verification read
    and checked (of the records verified), not the server's newest read
    again afterwards (it already was on main: the pinned store hands out the
    checkpoints read in the verification's snapshot)."""
    base, envs = project
    done = _mltrail(
        base, envs["carol"], "report", "model.bin", "--json", script=_APPEND_AFTER
    )
    assert "another client appended after" in done.stderr, done.stderr
    kept = _json(done)["record_keeping"]
    assert kept["ok"] is True
    assert kept["checkpoint"]["size"] == kept["records"]
    from mltrail.storage.http import HttpStore

    env = envs["carol"]
    with HttpStore(env["MLTRAIL_URL"], env["MLTRAIL_TOKEN"]) as store:
        assert kept["records"] < store.head().size  # the append came after
