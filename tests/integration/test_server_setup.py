"""Setting up the team server: `db init --ledger`, `mltrail tokens`, the control
tables' refusals, and `mltrail server` without them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from optional_extras import require_extra

require_extra("server", "fastapi", "uvicorn", "psycopg")

from server_fixture import SRC  # noqa: E402

TABLES = ("ledgers", "tokens", "token_revocations", "idempotency", "mltrail_schema")


def mltrail(*args):
    env = dict(os.environ, PYTHONPATH=str(SRC))
    env.pop("MLTRAIL_KEY_PASSWORD", None)
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        capture_output=True,
        text=True,
        env=env,
    )


def test_db_init_of_a_ledger_is_rerunnable_and_keeps_its_key(team_server):
    key = team_server.keys / "team-a.key"
    before = key.read_bytes()
    again = mltrail("db", "init", "--db", team_server.owner_url, "--ledger", "team-a",
                    "--origin", "test.example/team-a", "--keys", str(team_server.keys),
                    "--no-role", "--json")  # fmt: skip
    assert again.returncode == 0, again.stderr
    body = json.loads(again.stdout)
    assert body["created"] is False
    assert body["control_applied"] == []
    assert body["ledger_applied"] == []
    assert key.read_bytes() == before
    assert key.stat().st_mode & 0o077 == 0


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--ledger", "team-a", "--origin", "other.example/a"), "exists with origin"),
        (("--ledger", "Team A; DROP", "--origin", "x.example/a"), "ledger name"),
        (("--ledger", "team-c"), "both --ledger and --origin"),
    ],
)
def test_db_init_refuses_bad_ledgers_in_one_line(team_server, args, message):
    done = mltrail("db", "init", "--db", team_server.owner_url, *args,
                   "--keys", str(team_server.keys))  # fmt: skip
    assert done.returncode == 2
    assert message in done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("table", TABLES)
def test_control_tables_refuse_update_delete_truncate_even_for_the_owner(
    team_server, table
):
    import psycopg

    team_server.revoked_token("auditor")  # a row in every table
    entry = team_server.entry("writer", "note", {"text": "row"})
    status, _ = team_server.call(
        "POST", "/ledgers/team-a/entries", team_server.token("writer"),
        {"entries": [entry]}, headers={"Idempotency-Key": f"setup-{table}"},
    )  # fmt: skip
    assert status == 201
    with psycopg.connect(team_server.owner_url, autocommit=True) as conn:
        count = conn.execute(f"SELECT count(*) FROM mltrail_server.{table}").fetchone()[
            0
        ]
        column = {"ledgers": "origin", "tokens": "role", "token_revocations": "by",
                  "idempotency": "key", "mltrail_schema": "description"}[table]  # fmt: skip
        statements = (
            f"UPDATE mltrail_server.{table} SET {column} = {column}",
            f"DELETE FROM mltrail_server.{table}",
            f"TRUNCATE mltrail_server.{table} CASCADE",
        )
        # replica mode (a superuser's) skips ordinary triggers, not these
        for mode in ("origin", "replica"):
            conn.execute(f"SET session_replication_role = {mode}")
            for statement in statements:
                with pytest.raises(psycopg.Error, match="insert-only"):
                    conn.execute(statement)
        after = conn.execute(f"SELECT count(*) FROM mltrail_server.{table}").fetchone()[
            0
        ]
        assert after == count


def test_an_append_a_trigger_swallows_is_refused_not_acknowledged(team_server):
    """A BEFORE INSERT trigger returning NULL (the owner may add one) drops the
    server's records without an error: the writer got 201, a seq and a signed
    checkpoint covering an entry no table held."""
    import psycopg

    writer = team_server.token("writer")
    swallowed = team_server.entry("writer", "note", {"text": "swallowed?"})
    head = team_server.call("GET", "/ledgers/team-a/head", writer)[1]
    with psycopg.connect(team_server.owner_url, autocommit=True) as conn:
        conn.execute(
            "CREATE FUNCTION ledger_team_a.mltrail_test_null() RETURNS trigger "
            "LANGUAGE plpgsql AS $$ BEGIN RETURN NULL; END $$"
        )
        conn.execute(
            "CREATE TRIGGER mltrail_test_swallow BEFORE INSERT ON ledger_team_a.records "
            "FOR EACH ROW EXECUTE FUNCTION ledger_team_a.mltrail_test_null()"
        )
        try:
            status, body = team_server.call(
                "POST", "/ledgers/team-a/entries", writer, {"entries": [swallowed]}
            )
        finally:
            conn.execute("DROP FUNCTION ledger_team_a.mltrail_test_null CASCADE")
    assert status >= 500, body
    assert team_server.call("GET", "/ledgers/team-a/head", writer)[1] == head
    entry = team_server.entry("writer", "note", {"text": "kept"})
    status, body = team_server.call(
        "POST", "/ledgers/team-a/entries", writer, {"entries": [entry]}
    )
    assert status == 201, body


def test_the_application_role_may_only_select_and_insert(team_server):
    import psycopg

    with psycopg.connect(team_server.app_url, autocommit=True) as conn:
        for statement in (
            "UPDATE mltrail_server.tokens SET role = 'admin'",
            "DELETE FROM mltrail_server.token_revocations",
            "INSERT INTO mltrail_server.mltrail_schema (version, description) VALUES (9, 'x')",
        ):
            with pytest.raises(psycopg.errors.InsufficientPrivilege):
                conn.execute(statement)


def test_tokens_cli_prints_the_token_once_lists_without_secrets_and_revokes(
    team_server,
):
    db = ("--db", team_server.owner_url)
    made = mltrail("tokens", "create", *db, "--ledger", "team-a", "--role", "auditor",
                   "--name", "carol", "--expires", "7d", "--json")  # fmt: skip
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)
    assert team_server.call("GET", "/ledgers/team-a/head", token["token"])[0] == 200
    listed = mltrail("tokens", "list", *db, "--ledger", "team-a", "--json")
    assert token["id"] in listed.stdout
    assert token["token"].split("_", 2)[2] not in listed.stdout  # the secret
    revoked = mltrail("tokens", "revoke", *db, token["id"], "--json")
    assert json.loads(revoked.stdout) == {
        "id": token["id"],
        "revoked": True,
        "already": False,
    }
    # Revoked in the database, not through this server: refused once the server's
    # one-second reuse of an authentication (RecentTokens) has run out.
    deadline = time.monotonic() + 10
    while True:
        status, answer = team_server.call("GET", "/ledgers/team-a/head", token["token"])
        if status != 200 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert status == 401
    assert answer["error"]["message"] == "token revoked"


def test_a_token_revoked_through_the_api_is_refused_at_once(team_server):
    made = team_server.new_token("writer", "soon-revoked")
    assert team_server.call("GET", "/ledgers/team-a/head", made["token"])[0] == 200
    admin = team_server.token("admin")
    path = f"/ledgers/team-a/tokens/{made['id']}/revoke"
    assert team_server.call("POST", path, admin)[0] == 200
    status, answer = team_server.call("GET", "/ledgers/team-a/head", made["token"])
    assert status == 401
    assert answer["error"]["message"] == "token revoked"


@pytest.mark.parametrize(
    "args",
    [
        ("--ledger", "team-a", "--role", "root", "--name", "x"),
        ("--ledger", "nope", "--role", "admin", "--name", "x"),
        ("--ledger", "team-a", "--role", "admin", "--name", "x", "--expires", "soon"),
    ],
)
def test_tokens_create_refuses_bad_input(team_server, args):
    done = mltrail("tokens", "create", "--db", team_server.owner_url, *args)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr


def test_server_without_control_tables_says_to_run_db_init():
    from postgres_db import throwaway_database

    with throwaway_database() as url:
        done = mltrail("server", "--db", url, "--port", "1")
    assert done.returncode == 2, done.stderr
    assert "mltrail db init" in done.stderr


def test_server_commands_teach_with_examples_and_never_import_the_web_framework():
    script = """
import sys
from click.testing import CliRunner
from mltrail.cli.main import cli
for args in (["--help"], ["server", "--help"], ["tokens", "create", "--help"],
             ["tokens", "list", "--help"], ["tokens", "revoke", "--help"],
             ["db", "init", "--help"]):
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert args == ["--help"] or "Examples" in result.output, args
print(sorted(m for m in ("fastapi", "uvicorn", "starlette") if m in sys.modules))
"""
    env = dict(os.environ, PYTHONPATH=str(SRC))
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"


def test_tokens_cli_through_the_api_with_an_admin_token(team_server, monkeypatch):
    monkeypatch.setenv(
        "MLTRAIL_URL", f"http://127.0.0.1:{team_server.port}/ledgers/team-a"
    )
    monkeypatch.setenv("MLTRAIL_TOKEN", team_server.token("admin"))
    monkeypatch.delenv("MLTRAIL_SERVER_DB", raising=False)
    made = mltrail("tokens", "create", "--role", "writer", "--name", "dave", "--json")
    assert made.returncode == 0, made.stderr
    token = json.loads(made.stdout)
    assert token["ledger"] == "team-a"
    assert team_server.call("GET", "/ledgers/team-a/head", token["token"])[0] == 200
    listed = mltrail("tokens", "list", "--json")
    assert token["id"] in listed.stdout
    assert mltrail("tokens", "revoke", token["id"], "--json").returncode == 0
    assert team_server.call("GET", "/ledgers/team-a/head", token["token"])[0] == 401
    monkeypatch.setenv("MLTRAIL_TOKEN", team_server.token("writer"))
    refused = mltrail("tokens", "list")
    assert refused.returncode == 5
    assert "role writer may not do this" in refused.stderr
    assert "Traceback" not in refused.stderr


def test_server_refuses_to_start_without_a_ledgers_log_key(team_server, tmp_path):
    done = mltrail(
        "server", "--db", team_server.app_url, "--keys", str(tmp_path), "--port", "1"
    )
    assert done.returncode == 2, done.stderr
    assert "team-a.key not found" in done.stderr
    assert "Traceback" not in done.stderr


def test_server_json_says_where_it_listens_before_serving(team_server):
    from server_fixture import free_port

    port = free_port()
    env = dict(os.environ, PYTHONPATH=str(SRC))
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mltrail",
            "server",
            "--db",
            team_server.app_url,
            "--keys",
            str(team_server.keys),
            "--port",
            str(port),
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
    )
    try:
        out = b""
        while b"}" not in out:
            chunk = process.stdout.read1(1000)
            assert chunk, "mltrail server exited before saying where it listens"
            out += chunk
        said = json.loads(out)
        assert said["listening"] == f"http://127.0.0.1:{port}/api/v1"
        assert {"team-a", "team-b"} <= set(said["ledgers"])
    finally:
        process.terminate()
        process.wait(timeout=15)
        process.stdout.close()
