"""The PostgreSQL store beyond the contract suite, on the test server.

One throwaway database for the module, set up by ``mltrail db init`` with an
application role of its own (dropped afterwards): privileges and triggers refuse
changes, concurrent appenders from several processes neither fork nor leave
gaps, and a home kept in PostgreSQL records a run that verifies. Skipped, saying
how to enable it, without a server (tests/postgres_db.py); a failure under CI.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys
import textwrap
import uuid
from pathlib import Path

import pytest

from mltrail.ledger.stored import KIND_ROLES
from postgres_db import admin_connection, throwaway_database, with_database


def cli(cwd, *args, env_home=None, check=True):
    env = {
        **_base_env(),
        **({"MLTRAIL_HOME": str(env_home)} if env_home else {}),
    }
    done = subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, env=env, check=False,
    )  # fmt: skip
    if check:
        assert done.returncode == 0, done.stderr
    return done


def _base_env():
    import os

    keep = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    keep.pop("MLTRAIL_RUN_ID", None)
    return keep


@pytest.fixture(scope="module")
def database():
    """(owner URL, application role URL, role) of a database set up by `db init`."""
    admin_connection().close()  # skip (or fail under CI) before anything else
    role = f"mltrail_app_{uuid.uuid4().hex[:8]}"
    with throwaway_database() as owner_url:
        done = cli(".", "db", "init", "--db", owner_url, "--role", role, "--json")
        assert json.loads(done.stdout)["applied"] == [1, 2, 3]
        app_url = with_database(owner_url, owner_url.rsplit("/", 1)[1], user=role)
        try:
            yield owner_url, app_url, role
        finally:
            conn = admin_connection()
            conn.execute(f'DROP DATABASE IF EXISTS "{owner_url.rsplit("/", 1)[1]}" '
                         "WITH (FORCE)")  # fmt: skip
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')
            conn.close()


@pytest.fixture(scope="module")
def home(database, tmp_path_factory):
    """A home whose ledger lives in the database, written as the application role."""
    _, app_url, _ = database
    where = tmp_path_factory.mktemp("pg")
    done = cli(where, "init", "--store", app_url, "--json", env_home=where / "home")
    assert json.loads(done.stdout)["store"] == app_url
    return where / "home"


def test_db_init_is_rerunnable_and_versioned(database):
    import psycopg

    owner_url, _, role = database
    again = cli(".", "db", "init", "--db", owner_url, "--role", role, "--json")
    body = json.loads(again.stdout)
    assert body["applied"] == []
    assert body["version"] == 3
    assert body["role_created"] is False
    assert body["role_privileges"] == ["SELECT", "INSERT"]
    with psycopg.connect(owner_url) as conn:
        rows = conn.execute("SELECT version FROM mltrail_schema").fetchall()
        ordinary = conn.execute(
            "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal AND tgenabled <> 'A'"
        ).fetchall()
    assert rows == [(1,), (2,), (3,)]
    assert ordinary == [("records_purge",)]  # the rest fire in replica mode too


def test_db_init_refuses_bad_input(database, tmp_path):
    owner_url, _, _ = database
    bad_role = cli(tmp_path, "db", "init", "--db", owner_url, "--role", "x; DROP",
                   check=False)  # fmt: skip
    assert bad_role.returncode == 2
    assert "role name" in bad_role.stderr
    assert "Traceback" not in bad_role.stderr
    sqlite = cli(tmp_path, "db", "init", "--db", "sqlite:///x.db", check=False)
    assert sqlite.returncode == 2
    down = cli(tmp_path, "db", "init", "--db", "postgresql://u:pw@127.0.0.1:1/x",
               check=False)  # fmt: skip
    assert down.returncode == 4
    assert "cannot connect to PostgreSQL at postgresql://u@127.0.0.1:1/x" in down.stderr
    assert "pw" not in down.stderr.replace("PGPASSWORD", "")


TABLES = (
    "records", "merkle_nodes", "blobs", "checkpoints", "meta", "purges",
    "erasures", "checkpoint_evidence", "mltrail_schema",
)  # fmt: skip
CHANGES = ("UPDATE {t} SET {c} = {c}", "DELETE FROM {t}", "TRUNCATE {t}")


def _a_column(conn, table):
    """A column an UPDATE may name (not a GENERATED ALWAYS identity)."""
    return conn.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = %s "
        "AND table_schema = current_schema() AND is_identity = 'NO' "
        "ORDER BY ordinal_position LIMIT 1",
        (table,),
    ).fetchone()[0]


def _fill_every_table(app_url):
    """As the application role: a ledger with a purged blob, a kept blob, evidence."""
    from mltrail.ledger.erasure import purge_blob
    from mltrail.ledger.ledger import Ledger
    from mltrail.storage.postgres import PostgresStore
    from mltrail.testing import fixed_signer

    store = PostgresStore(app_url, roles=KIND_ROLES)
    ledger = Ledger.create(store, fixed_signer(), origin="example.org/pg-triggers")
    try:
        for data in (b"personal data", b"kept"):
            ledger.put_blob(data)
        ledger.append("note", {"text": "a note"})
        gone = "sha256:" + hashlib.sha256(b"personal data").hexdigest()
        purge_blob(ledger, gone, reason="test")  # through mltrail_erase_blob
        store.add_evidence("rfc3161", 1, "cp\n", b"token", "2026-01-01T00:00:00Z")
    finally:
        ledger.close()
    return gone


def test_changes_are_refused_by_privileges_and_by_triggers():
    from mltrail.storage.postgres import init_database

    role = f"mltrail_app_{uuid.uuid4().hex[:8]}"
    with throwaway_database() as owner_url:
        name = owner_url.rsplit("/", 1)[1]
        try:
            init_database(owner_url, roles=KIND_ROLES, role=role)
            app_url = with_database(owner_url, name, user=role)
            gone = _fill_every_table(app_url)
            _check_refusals(owner_url, app_url, gone)
        finally:
            conn = admin_connection()
            conn.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
            conn.execute(f'DROP ROLE IF EXISTS "{role}"')
            conn.close()


def _check_refusals(owner_url, app_url, gone):
    import psycopg

    with (
        psycopg.connect(owner_url, autocommit=True) as owner,
        psycopg.connect(app_url, autocommit=True) as app,
    ):
        counts = {
            t: owner.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES
        }
        assert all(counts.values()), counts  # row triggers fire on rows only
        for table in TABLES:
            column = _a_column(owner, table)
            for change in CHANGES:
                statement = change.format(t=table, c=column)
                with pytest.raises(psycopg.errors.InsufficientPrivilege):
                    app.execute(statement)
                with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
                    owner.execute(statement)
        after = {
            t: owner.execute(f"SELECT count(*) FROM {t}").fetchone()[0] for t in TABLES
        }
        assert after == counts
        assert owner.execute(
            "SELECT count(*) FROM blobs WHERE digest = %s", (gone,)
        ).fetchone() == (0,)
        # The app role may read the version table, not write it.
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            app.execute(
                "INSERT INTO mltrail_schema (version, description) VALUES (99, 'x')"
            )
        # Nobody adds a purge without its record, or erases a blob no purge names.
        kept = owner.execute("SELECT digest FROM blobs LIMIT 1").fetchone()[0]
        with pytest.raises(psycopg.errors.RaiseException, match=r"blob\.purged record"):
            owner.execute(
                "INSERT INTO purges (digest, size, seq) VALUES (%s, 1, 0)", (kept,)
            )
        with pytest.raises(psycopg.errors.RaiseException, match="no stored blob"):
            app.execute("SELECT mltrail_erase_blob(%s)", (kept,))


def test_replica_mode_skips_no_refusal_once_db_init_upgraded_the_schema(tmp_path):
    """``SET session_replication_role = replica`` (a superuser's, or a role
    granted it) skips ordinary triggers: before migration 2 it let the owner
    UPDATE, DELETE and TRUNCATE every table with the triggers in place. A
    schema at version 1 is refused until `mltrail db init` upgrades it."""
    import psycopg

    from mltrail.errors import StoreError
    from mltrail.storage.postgres import PostgresStore, migrate
    from mltrail.storage.postgres_schema import ledger_migrations

    with throwaway_database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn, "public", ledger_migrations(KIND_ROLES.purge_kind)[:1])
        with pytest.raises(StoreError, match="schema version 1, this mltrail needs"):
            PostgresStore(url, roles=KIND_ROLES)
        done = cli(tmp_path, "db", "init", "--db", url, "--no-role", "--json")
        assert json.loads(done.stdout)["applied"] == [2, 3]
        gone = _fill_every_table(url)
        with psycopg.connect(url, autocommit=True) as owner:
            owner.execute("SET session_replication_role = replica")
            counts = {
                t: owner.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in TABLES
            }
            for table in TABLES:
                column = _a_column(owner, table)
                for change in CHANGES:
                    with pytest.raises(
                        psycopg.errors.RaiseException, match="append-only"
                    ):
                        owner.execute(change.format(t=table, c=column))
            with pytest.raises(psycopg.errors.RaiseException, match=r"blob\.purged"):
                owner.execute(
                    "INSERT INTO purges (digest, size, seq) VALUES ('sha256:00', 1, 0)"
                )
            with pytest.raises(psycopg.errors.RaiseException, match="only a purged"):
                owner.execute("INSERT INTO erasures (digest) VALUES ('sha256:00')")
            after = {
                t: owner.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
                for t in TABLES
            }
            assert after == counts
            assert owner.execute(
                "SELECT count(*) FROM blobs WHERE digest = %s", (gone,)
            ).fetchone() == (0,)


def test_db_init_upgrades_a_version_1_schema_whose_trigger_was_dropped(tmp_path):
    """Migration 2 sets each trigger firing ALWAYS by name: on a version-1 schema
    whose owner had dropped one, `db init` stopped on "trigger ... does not
    exist", the one command meant to restore the refusals refused to run."""
    import psycopg

    from mltrail.storage.postgres import migrate
    from mltrail.storage.postgres_schema import ledger_migrations

    with throwaway_database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            migrate(conn, "public", ledger_migrations(KIND_ROLES.purge_kind)[:1])
            conn.execute("DROP TRIGGER checkpoints_no_truncate ON checkpoints")
            conn.execute("DROP TRIGGER records_purge ON records")
        done = cli(tmp_path, "db", "init", "--db", url, "--no-role", "--json")
        body = json.loads(done.stdout)
        assert body["applied"] == [2, 3]
        assert sorted(body["restored"]) == ["checkpoints_no_truncate", "records_purge"]
        again = json.loads(
            cli(tmp_path, "db", "init", "--db", url, "--no-role", "--json").stdout
        )
        assert (again["applied"], again["restored"]) == ([], [])
        with psycopg.connect(url) as conn:
            states = dict(
                conn.execute(
                    "SELECT tgname, tgenabled FROM pg_trigger WHERE NOT tgisinternal"
                ).fetchall()
            )
        assert states.pop("records_purge") == "O"
        assert states["checkpoints_no_truncate"] == "A"
        assert set(states.values()) == {"A"}


def test_the_application_role_is_told_who_upgrades_an_older_schema(tmp_path):
    """The application role's open of a version-1 schema said to run `db init
    --db` with its own URL "as their owner": run as printed, it connected as the
    role and failed ("must be owner of table records"), and without `--role` it
    would have granted a second role, mltrail_app. The hint names the owner and
    the role; `db init` run as the role says the same."""
    import psycopg

    from mltrail.errors import StoreError
    from mltrail.storage.postgres import PostgresStore, _grant_app_role, migrate
    from mltrail.storage.postgres_schema import ledger_migrations

    role = f"mltrail_old_{uuid.uuid4().hex[:8]}"
    try:
        with throwaway_database() as url:
            with psycopg.connect(url, autocommit=True) as conn:
                migrate(conn, "public", ledger_migrations(KIND_ROLES.purge_kind)[:1])
                _grant_app_role(conn, "public", role)
                owner = conn.execute("SELECT current_user").fetchone()[0]
            app_url = with_database(url, url.rsplit("/", 1)[1], user=role)
            with pytest.raises(StoreError) as opened:
                PostgresStore(app_url, roles=KIND_ROLES)
            hint = opened.value.hint or ""
            assert f"as {owner}" in hint
            assert f"--role {role}" in hint
            done = cli(tmp_path, "db", "init", "--db", app_url, "--role", role,
                       check=False)  # fmt: skip
            assert done.returncode != 0
            assert f"as {owner}" in done.stderr
            made = cli(tmp_path, "init", "--store", app_url, check=False,
                       env_home=tmp_path / "home")  # fmt: skip
            assert made.returncode != 0
            assert f"as {owner}, the tables' owner" in made.stderr  # the role: masked
    finally:
        conn = admin_connection()
        conn.execute(f'DROP ROLE IF EXISTS "{role}"')
        conn.close()


_WRITER = textwrap.dedent(
    """
    import sys
    import mltrail

    name, count = sys.argv[1], int(sys.argv[2])
    home = mltrail.open_home(sys.argv[3])
    try:
        for i in range(count):
            home.ledger.append("note", {"text": f"{name} {i}"})
    finally:
        home.close()
    """
)


def test_concurrent_appenders_neither_fork_nor_leave_gaps(home, tmp_path):
    from mltrail.core.codec import decode_record
    from mltrail.ledger.home import open_home

    before = _size(home)
    writers, each = 4, 15
    script = tmp_path / "writer.py"
    script.write_text(_WRITER)
    procs = [
        subprocess.Popen(
            [sys.executable, str(script), f"w{n}", str(each), str(home)],
            env=_base_env(),
            stderr=subprocess.PIPE,
            text=True,
        )
        for n in range(writers)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    opened = open_home(home, writable=False, env={})
    try:
        rows = list(opened.ledger.store.rows())
    finally:
        opened.close()
    assert [r.seq for r in rows] == list(range(len(rows)))
    assert len(rows) == before + writers * each
    for earlier, later in itertools.pairwise(rows):
        assert decode_record(later.data).record.prev == earlier.hash.hex()
    texts = [decode_record(r.data).record.entry.body.get("text") for r in rows]
    for n in range(writers):
        mine = [t for t in texts if t and t.startswith(f"w{n} ")]
        assert mine == [f"w{n} {i}" for i in range(each)]
    verified = cli(home.parent, "verify", "--json", env_home=home)
    assert json.loads(verified.stdout)["ok"] is True


def test_verify_warns_of_refusals_turned_off_and_db_init_restores_them(home, database):
    """The owner may drop or disable a trigger, or add a rule, with no row
    changed: verify said nothing, and `db init` (no DDL once current) left the
    tables unprotected for good."""
    import psycopg

    owner_url = database[0]
    with psycopg.connect(owner_url, autocommit=True) as owner:
        owner.execute("ALTER TABLE records DISABLE TRIGGER records_append_only")
        owner.execute("DROP TRIGGER checkpoints_no_truncate ON checkpoints")
        owner.execute("ALTER TABLE meta ENABLE TRIGGER meta_append_only")  # origin
        owner.execute("ALTER TABLE blobs DROP CONSTRAINT blobs_content_address")
        owner.execute(
            "CREATE RULE mltrail_test_rule AS ON INSERT TO merkle_nodes DO ALSO NOTHING"
        )
        try:
            before = _protection_warnings(home)
            init = cli(".", "db", "init", "--db", owner_url, "--no-role", "--json")
            after = _protection_warnings(home)
        finally:
            owner.execute("DROP RULE mltrail_test_rule ON merkle_nodes")
    assert [m.split(" is ")[0].split(" fires ")[0] for m in before] == [
        "mltrail's trigger records_append_only on public.records",
        "mltrail's trigger meta_append_only on public.meta",
        "mltrail's trigger checkpoints_no_truncate on public.checkpoints",
        "the constraint blobs_content_address on public.blobs",
        "rule mltrail_test_rule on public.merkle_nodes",
    ]
    assert "disabled" in before[0]
    assert "replica mode skips it" in before[1]
    assert "missing" in before[2]
    assert sorted(json.loads(init.stdout)["restored"]) == [
        "blobs_content_address", "checkpoints_no_truncate", "meta_append_only",
        "records_append_only",
    ]  # fmt: skip
    assert after == before[4:]  # a rule that is not mltrail's is left to the owner
    assert _protection_warnings(home) == []


def test_a_refusal_function_replaced_is_warned_of_and_restored(home, database):
    """Every trigger in place and firing, but the function they call replaced
    by one that lets the change through (the owner's CREATE OR REPLACE): verify
    said nothing of it and `db init` left it, the tables open to UPDATE."""
    import psycopg

    owner_url = database[0]
    with psycopg.connect(owner_url, autocommit=True) as owner:
        original = owner.execute(
            "SELECT pg_get_functiondef('mltrail_refuse'::regproc)"
        ).fetchone()[0]
        owner.execute(
            "CREATE OR REPLACE FUNCTION mltrail_refuse() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$"
        )
        try:
            before = _protection_warnings(home)
            init = cli(".", "db", "init", "--db", owner_url, "--no-role", "--json")
            after = _protection_warnings(home)
        finally:
            owner.execute(original)
        assert any("mltrail_refuse" in m for m in before), before
        assert json.loads(init.stdout)["restored"] == ["mltrail_refuse"]
        assert after == []
        with pytest.raises(psycopg.errors.RaiseException, match="append-only"):
            owner.execute("UPDATE meta SET value = value")


def _protection_warnings(home: Path) -> list[str]:
    done = cli(home.parent, "verify", "--json", "--no-index", env_home=home)
    report = json.loads(done.stdout)
    assert report["ok"] is True  # no record changed
    return [
        p["message"]
        for p in report["problems"]
        if p["code"] == "store-protection" and p["severity"] == "warning"
    ]


def test_the_application_role_cannot_plant_bytes_under_a_digest(database):
    """With INSERT only, someone holding the application's login stored other
    bytes under the digest of a file not recorded yet: ``ON CONFLICT DO
    NOTHING`` kept them for good, so a run recording that file either
    referenced the planted bytes (same size; verify then failed) or was refused
    for ever (another size)."""
    import psycopg

    _, app_url, _ = database
    real = b"print('not recorded yet')\n"
    digest = "sha256:" + hashlib.sha256(real).hexdigest()
    insert = "INSERT INTO blobs (digest, size, data) VALUES (%s, %s, %s)"
    with psycopg.connect(app_url, autocommit=True) as app:
        for size, data in ((len(real), b"x" * len(real)), (len(real), b"short")):
            with pytest.raises(psycopg.errors.CheckViolation, match="content_address"):
                app.execute(insert, (digest, size, data))
        with pytest.raises(psycopg.errors.CheckViolation, match="content_address"):
            app.execute(insert, (digest, len(real) + 1, real))  # a false size
        assert app.execute(
            "SELECT count(*) FROM blobs WHERE digest = %s", (digest,)
        ).fetchone() == (0,)


SWALLOWERS = {
    "rule": ("CREATE RULE mltrail_test_swallow AS ON INSERT TO records "
             "DO INSTEAD NOTHING", "DROP RULE mltrail_test_swallow ON records"),
    "trigger": ("CREATE FUNCTION mltrail_test_null() RETURNS trigger LANGUAGE plpgsql "
                "AS $$ BEGIN RETURN NULL; END $$; CREATE TRIGGER mltrail_test_swallow "
                "BEFORE INSERT ON checkpoints FOR EACH ROW "
                "EXECUTE FUNCTION mltrail_test_null()",
                "DROP FUNCTION mltrail_test_null CASCADE"),
}  # fmt: skip


@pytest.mark.parametrize("how", sorted(SWALLOWERS))
def test_an_append_a_rule_or_trigger_swallows_is_refused(home, database, how):
    """The owner's rule (DO INSTEAD NOTHING) or BEFORE INSERT trigger returning
    NULL drops rows without an error: `append` said it stored a record that no
    table held, and verify, with nothing to check, said intact."""
    import psycopg

    owner_url = database[0]
    before = _size(home)
    add, remove = SWALLOWERS[how]
    with psycopg.connect(owner_url, autocommit=True) as owner:
        owner.execute(add)
        try:
            done = cli(home.parent, "append", "--kind", "note", "--body",
                       '{"text": "swallowed?"}', env_home=home, check=False)  # fmt: skip
        finally:
            owner.execute(remove)
    assert done.returncode == 4, done.stdout
    assert "a rule or trigger that is not mltrail's dropped them" in done.stderr
    assert _size(home) == before
    cli(home.parent, "append", "--kind", "note", "--body", '{"text": "kept"}',
        env_home=home)  # fmt: skip
    verified = cli(home.parent, "verify", "--json", "--no-index", env_home=home)
    assert json.loads(verified.stdout)["ok"] is True


def _size(home: Path) -> int:
    from mltrail.ledger.home import open_home

    opened = open_home(home, writable=False, env={})
    try:
        return opened.ledger.head().size
    finally:
        opened.close()


def test_a_run_on_a_postgres_home_verifies_and_purges(home):
    where = home.parent
    (where / "train.py").write_text("print('loss 0.1')\n")
    run = cli(where, "run", "--json", "--", sys.executable, "train.py", env_home=home)
    assert "loss 0.1" in run.stdout
    run_id = json.loads(run.stderr)["run"]
    shown = cli(where, "show", run_id, "--json", env_home=home)
    assert run_id in shown.stdout
    verified = cli(where, "verify", "--json", env_home=home)
    assert json.loads(verified.stdout)["ok"] is True
    # Erasure as the application role: through the owner's function only.
    digest = _some_blob(home)
    cli(where, "purge", digest, "--reason", "test", "--json", env_home=home)
    after = json.loads(cli(where, "verify", "--json", env_home=home).stdout)
    assert after["ok"] is True


def _some_blob(home: Path) -> str:
    from mltrail.ledger.home import open_home

    opened = open_home(home, writable=False, env={})
    try:
        return opened.ledger.store.find_blobs("sha256:", limit=1)[0][0]
    finally:
        opened.close()


def test_a_home_without_db_init_says_what_to_run(tmp_path):
    import psycopg

    with throwaway_database() as url:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute("CREATE SCHEMA empty")
        empty = with_database(url, url.rsplit("/", 1)[1], schema="empty")
        from mltrail.errors import ConfigError
        from mltrail.storage.postgres import PostgresStore

        with pytest.raises(ConfigError, match="no mltrail ledger") as info:
            PostgresStore(empty, roles=KIND_ROLES)
        assert "mltrail db init" in (info.value.hint or "")


def test_a_password_never_reaches_the_home(database, tmp_path):
    _, app_url, _ = database
    with_password = app_url.replace("@", ":s3cret@", 1)
    refused = cli(tmp_path, "init", "--store", with_password, check=False,
                  env_home=tmp_path / "a")  # fmt: skip
    assert refused.returncode == 2
    assert "carries a password" in refused.stderr
    assert "s3cret" not in refused.stderr
    assert not (tmp_path / "a" / "ledger.json").exists()
    # From MLTRAIL_STORE_URL it is used, and written without the password.
    from mltrail.storage.postgres import init_database

    owner_url, app_url, role = database
    name = app_url.rsplit("/", 1)[1]
    with psycopg_connect(owner_url) as conn:
        conn.execute("CREATE SCHEMA team_b")
    init_database(
        with_database(owner_url, name, schema="team_b"), roles=KIND_ROLES, role=role
    )
    team_b = with_database(app_url, name, schema="team_b")
    env = {
        **_base_env(),
        "MLTRAIL_HOME": str(tmp_path / "b"),
        "MLTRAIL_STORE_URL": team_b.replace("@", ":s3cret@", 1),
    }
    for args in (["init", "--json"], ["append", "--kind", "note", "--body",
                 '{"text": "b"}'], ["verify", "--json"]):  # fmt: skip
        done = subprocess.run(
            [sys.executable, "-m", "mltrail", *args],
            cwd=tmp_path, capture_output=True, text=True, timeout=120, env=env,
            check=False,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        assert "s3cret" not in done.stdout + done.stderr
    settings = (tmp_path / "b" / "ledger.json").read_text()
    assert "s3cret" not in settings
    assert json.loads(settings)["store"] == team_b


def psycopg_connect(url):
    import psycopg

    return psycopg.connect(url, autocommit=True)


def test_a_run_live_on_one_host_is_running_on_another_until_it_dies(home, tmp_path):
    """Liveness through the shared store: a second home on the same ledger (a
    second host) sees the run running while its recorder lives, stale once it
    was killed, without any lock file of its own."""
    import contextlib
    import os
    import shutil
    import signal

    other = tmp_path / "other-host"
    shutil.copytree(home, other)
    proc = subprocess.Popen(
        [sys.executable, "-m", "mltrail", "run", "--name", "live-elsewhere", "--",
         sys.executable, "-c", "import time; time.sleep(120)"],
        cwd=home.parent, env={**_base_env(), "MLTRAIL_HOME": str(home)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True,
    )  # fmt: skip
    try:
        assert _status_on(other, "live-elsewhere", "running", until=60) == "running"
        assert not list((other / "runs" / "open").glob("*.json"))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
        assert _status_on(other, "live-elsewhere", "stale", until=30) == "stale"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)


def _status_on(home: Path, name: str, wanted: str, *, until: float) -> str | None:
    import time

    deadline = time.monotonic() + until
    status = None
    while time.monotonic() < deadline:
        listed = json.loads(cli(home.parent, "runs", "--json", env_home=home).stdout)
        runs = listed["runs"] if isinstance(listed, dict) else listed
        status = next((r["status"] for r in runs if r.get("name") == name), None)
        if status == wanted:
            return status
        time.sleep(0.5)
    return status


def test_a_hold_whose_session_was_ended_is_taken_again(home, database, monkeypatch):
    """A server restart or a terminated backend ends the hold's session, and
    with it the advisory lock: the run looked stale to every host for the rest
    of its life (and `runs close RUN` elsewhere ended it while it ran). The
    hold now sees its connection gone and takes the run again."""
    import time

    import mltrail
    from mltrail.storage import postgres

    monkeypatch.setattr(postgres, "HOLD_CHECK_SECONDS", 0.1)
    opened = mltrail.open_home(home, env={})
    store, run = opened.ledger.store, f"re-held-{uuid.uuid4().hex[:8]}"
    key = tuple(k & 0xFFFFFFFF for k in postgres._run_lock_key(store.schema, run))
    admin = admin_connection()

    def holders() -> list[int]:
        return [
            pid
            for (pid,) in admin.execute(
                "SELECT l.pid FROM pg_locks l JOIN pg_database d ON d.oid = "
                "l.database WHERE l.locktype = 'advisory' AND l.granted AND "
                "d.datname = %s AND l.classid::bigint = %s AND l.objid::bigint = %s",
                (database[0].rsplit("/", 1)[1], *key),
            ).fetchall()
        ]

    hold = store.hold_run(run)
    try:
        [first] = holders()
        assert admin.execute("SELECT pg_terminate_backend(%s)", (first,)).fetchone()[0]
        deadline = time.monotonic() + 30
        while holders() in ([], [first]) and time.monotonic() < deadline:
            time.sleep(0.1)
        [again] = holders()
        assert again != first
        assert store.live_runs([run]) == {run}
        hold.release()
        assert store.live_runs([run]) == set()
    finally:
        hold.release()
        admin.close()
        opened.close()
