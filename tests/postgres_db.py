"""The test PostgreSQL: reach it or skip (fail under CI), throwaway databases and schemas.

The server is found at $MLTRAIL_TEST_POSTGRES (default
postgresql://postgres@127.0.0.1:5432/test, a login that may create databases
and roles). Without one the tests that need it skip, saying how to enable them;
under CI (CI=true) a missing server is a failure.

    url = postgres_url()                  # the server, or a skip
    with throwaway_database() as db_url:  # CREATE DATABASE mltrail_test_<hex>, dropped after
        ...
"""

from __future__ import annotations

import os
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING
from urllib.parse import quote, urlsplit, urlunsplit

import pytest

from optional_extras import in_ci, require_extra

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "PG_URL",
    "admin_connection",
    "postgres_url",
    "throwaway_database",
    "throwaway_schema",
    "with_database",
]

PG_URL = os.environ.get(
    "MLTRAIL_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test"
)


def admin_connection():
    """An autocommit connection to the test server, or a skip (a failure under CI)."""
    (psycopg,) = require_extra("postgres", "psycopg")
    try:
        return psycopg.connect(PG_URL, connect_timeout=3, autocommit=True)
    except psycopg.OperationalError as e:
        if in_ci():
            pytest.fail(f"CI needs PostgreSQL at {PG_URL}: {e}", pytrace=False)
        pytest.skip(
            f"no PostgreSQL at {PG_URL} ({e}); start one or set MLTRAIL_TEST_POSTGRES"
        )


def postgres_url() -> str:
    """The test server's URL once it answers (else a skip, or a failure under CI)."""
    admin_connection().close()
    return PG_URL


def with_database(
    url: str, database: str, *, user: str | None = None, schema: str | None = None
) -> str:
    """``url`` pointed at another database (and login user, and search_path)."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if user is not None:
        netloc = f"{user}@{netloc.rpartition('@')[2]}"
    query = parts.query
    if schema is not None:
        option = "options=" + quote(f"-csearch_path={schema}")
        query = f"{query}&{option}" if query else option
    return urlunsplit(parts._replace(netloc=netloc, path=f"/{database}", query=query))


@contextmanager
def throwaway_database() -> Iterator[str]:
    """A new, empty database with a unique name; dropped afterwards (connections too)."""
    name = f"mltrail_test_{uuid.uuid4().hex[:12]}"
    with admin_connection() as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield with_database(PG_URL, name)
    finally:  # a connection of its own: the server may have restarted meanwhile
        with admin_connection() as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@contextmanager
def throwaway_schema(database_url: str) -> Iterator[str]:
    """A new schema in the database ``database_url`` names; the URL that uses it."""
    import psycopg

    name = f"s_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(f'CREATE SCHEMA "{name}"')
    try:
        yield with_database(
            database_url, urlsplit(database_url).path.lstrip("/"), schema=name
        )
    finally:
        with psycopg.connect(database_url, autocommit=True) as conn:
            conn.execute(f'DROP SCHEMA "{name}" CASCADE')
