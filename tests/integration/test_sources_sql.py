"""SQL-query sources over real databases: SQLite files and PostgreSQL.

PostgreSQL is found at $MLTRAIL_TEST_POSTGRES (default
postgresql://postgres@127.0.0.1:5432/test). Without one these tests skip, saying
how to enable them; under CI (CI=true) a missing server is a failure.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import uuid

import pytest

from mltrail.errors import InputError
from mltrail.record.sources import _query_fingerprint, _without_password
from postgres_db import PG_URL, admin_connection


def cli(cwd, home, *args):
    return subprocess.run(
        [sys.executable, "-m", "mltrail", "--home", str(home), *args],
        cwd=cwd, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def postgres():
    """A connection to the test PostgreSQL, or a skip (a failure under CI)."""
    conn = admin_connection()
    table = f"apps_{uuid.uuid4().hex[:8]}"
    conn.execute(
        f"CREATE TABLE {table} (id int PRIMARY KEY, income numeric, seen date)"
    )
    conn.execute(
        f"INSERT INTO {table} SELECT g, g * 1.5, DATE '2026-01-01' + g "
        "FROM generate_series(1, 500) g"
    )
    try:
        yield conn, table
    finally:
        conn.execute(f"DROP TABLE {table}")
        conn.close()


def test_passwords_never_reach_the_location():
    assert _without_password("postgresql://u:s3cret@db:5433/x?sslmode=require") == (
        "postgresql://u@db:5433/x?sslmode=require"
    )
    assert _without_password("postgresql://db/x") == "postgresql://db/x"


def test_a_sqlite_query_source_changes_when_its_rows_do(tmp_path):
    db = tmp_path / "crm.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE customers (id INTEGER, name TEXT, score REAL, raw BLOB)")
    conn.executemany(
        "INSERT INTO customers VALUES (?, ?, ?, ?)",
        [(i, f"c{i}", i / 3, bytes([i])) for i in range(50)],
    )
    conn.commit()
    home = tmp_path / "home"
    assert cli(tmp_path, home, "init").returncode == 0
    url = f"sqlite:///{db}"
    query = "SELECT * FROM customers ORDER BY id"
    added = cli(
        tmp_path, home, "sources", "add", "crm", url, "--query", query, "--json"
    )
    assert added.returncode == 0, added.stderr
    body = json.loads(added.stdout)
    assert body["type"] == "sql"
    assert body["rows"] == 50
    assert cli(tmp_path, home, "sources", "check").returncode == 0
    conn.execute("UPDATE customers SET score = 99 WHERE id = 7")
    conn.commit()
    conn.close()
    changed = cli(tmp_path, home, "sources", "check", "--json")
    assert changed.returncode == 1
    assert json.loads(changed.stdout)[0]["changed"] is True
    bad = cli(
        tmp_path, home, "sources", "add", "bad", url, "--query", "SELECT * FROM nope"
    )
    assert bad.returncode == 2
    assert "no such table" in bad.stderr


def test_a_postgres_query_source(postgres, tmp_path, monkeypatch):
    conn, table = postgres
    query = f"SELECT * FROM {table} ORDER BY id"
    first = _query_fingerprint(PG_URL, query)
    assert first["rows"] == 500
    assert _query_fingerprint(PG_URL, query) == first  # deterministic
    conn.execute(f"UPDATE {table} SET income = 0 WHERE id = 250")
    assert _query_fingerprint(PG_URL, query)["fingerprint"] != first["fingerprint"]
    home = tmp_path / "home"
    assert cli(tmp_path, home, "init").returncode == 0
    added = cli(
        tmp_path, home, "sources", "add", "apps", PG_URL, "--query", query, "--json"
    )
    assert added.returncode == 0, added.stderr
    assert cli(tmp_path, home, "sources", "check").returncode == 0
    conn.execute(f"DELETE FROM {table} WHERE id = 1")
    assert cli(tmp_path, home, "sources", "check").returncode == 1


def test_an_unreachable_database_is_an_input_error():
    with pytest.raises(InputError, match="failed"):
        _query_fingerprint("postgresql://nobody@127.0.0.1:1/none", "SELECT 1")


@pytest.mark.parametrize(
    "query",
    [
        "DELETE FROM {t} RETURNING id",
        "DELETE FROM {t}; COMMIT; SELECT 1",
        "WITH gone AS (DELETE FROM {t} RETURNING id) SELECT count(*) FROM gone",
        "/* a comment */ SELECT 1; DELETE FROM {t}",
    ],
    ids=["returning", "commit-between", "cte", "second-statement"],
)
def test_a_recorded_query_cannot_change_the_checkers_database(
    postgres, tmp_path, query
):
    """A source's query is a writer's word: one who appends a `source.registered`
    by hand (no need to run it) had `mltrail sources check` run any SQL with the
    checker's credentials, committed when the connection closed: the rows of the
    table were deleted."""
    import mltrail
    from mltrail.ledger.home import open_home

    conn, table = postgres
    home = tmp_path / "home"
    mltrail.init_home(home, origin="test.mltrail.local/sql-attack", env={})
    opened = open_home(home, env={})
    try:
        opened.ledger.append(
            "source.registered",
            {"name": "crm", "location": PG_URL, "type": "sql",
             "query": query.format(t=table), "fingerprint": "0" * 64, "rows": 1},
        )  # fmt: skip
    finally:
        opened.close()
    checked = cli(tmp_path, home, "sources", "check", "--json")
    assert checked.returncode in (0, 1), checked.stderr
    assert conn.execute(f"SELECT count(*) FROM {table}").fetchone()[0] == 500


@pytest.mark.parametrize(
    "query", ["ATTACH DATABASE '{made}' AS x", "VACUUM INTO '{made}'"]
)
def test_a_recorded_sqlite_query_cannot_write_files(tmp_path, query):
    """SQLite sources are opened read-only, but ATTACH (which creates the file
    it names) and VACUUM INTO (which writes a copy of the database there) still
    ran: a writer's source made `sources check` create a file anywhere the
    checker may write (an empty /etc/nologin, when root)."""
    import mltrail
    from mltrail.ledger.home import open_home

    db, made = tmp_path / "crm.db", tmp_path / "made.db"
    conn = sqlite3.connect(db)
    conn.execute("CREATE TABLE t (x)")
    conn.commit()
    conn.close()
    home = tmp_path / "home"
    mltrail.init_home(home, origin="test.mltrail.local/sqlite-attack", env={})
    opened = open_home(home, env={})
    try:
        opened.ledger.append(
            "source.registered",
            {"name": "crm", "location": f"sqlite:///{db}", "type": "sql",
             "query": query.format(made=made), "fingerprint": "0" * 64, "rows": 0},
        )  # fmt: skip
    finally:
        opened.close()
    checked = cli(tmp_path, home, "sources", "check", "--json")
    assert checked.returncode in (0, 1), checked.stderr
    assert not made.exists()


def test_a_password_in_a_database_urls_query_is_not_stored(postgres, tmp_path):
    """Only the ``user:password@`` form was dropped: ``?password=`` (which
    libpq reads too) was appended as typed (ADR 0013, amendment 2026-12-08)."""
    _conn, table = postgres
    password = "Qz8pW3nR5tY1"
    sep = "&" if "?" in PG_URL else "?"
    url = f"{PG_URL}{sep}password={password}&connect_timeout=10"
    home = tmp_path / "home"
    assert cli(tmp_path, home, "init").returncode == 0
    query = f"SELECT * FROM {table} ORDER BY id"
    added = cli(tmp_path, home, "sources", "add", "apps", url, "--query", query)
    assert added.returncode == 0, added.stderr
    checked = cli(tmp_path, home, "sources", "check")  # read without it
    assert checked.returncode == 0, checked.stdout + checked.stderr
    stored = b"".join(p.read_bytes() for p in home.rglob("*") if p.is_file())
    assert password.encode() not in stored
    assert password not in added.stdout + added.stderr + checked.stdout
    assert "connect_timeout=10" in added.stdout  # the rest of the URL stays
