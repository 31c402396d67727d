"""Stores chosen by URL: schemes, paths, passwords kept out of the home."""

from __future__ import annotations

from pathlib import Path

import pytest

from mltrail.errors import InputError
from mltrail.storage.registry import (
    check_storable_url,
    display_url,
    is_file_store,
    open_store,
    sqlite_path,
    store_scheme,
)


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("ledger.db", "sqlite"),
        ("/srv/a/ledger.db", "sqlite"),
        ("sqlite:///ledger.db", "sqlite"),
        ("postgresql://u@h/db", "postgresql"),
        ("PostgreSQL://u@h/db", "postgresql"),
        ("https://ledger.example.com", "https"),
    ],
)
def test_scheme(url, scheme):
    assert store_scheme(url) == scheme
    assert is_file_store(url) is (scheme == "sqlite")


def test_sqlite_paths_follow_sqlalchemy():
    home = Path("/home/a/.mltrail")
    assert sqlite_path("ledger.db", home) == home / "ledger.db"
    assert sqlite_path("sqlite:///ledger.db", home) == home / "ledger.db"
    assert sqlite_path("sqlite:////srv/l.db", home) == Path("/srv/l.db")
    with pytest.raises(InputError, match="names no file"):
        sqlite_path("sqlite:///", home)


def test_a_server_url_must_name_a_ledger():
    for url in ("https://ledger.example.com", "http://127.0.0.1:8080/x"):
        with pytest.raises(InputError, match="names no ledger"):
            open_store(url)
    with pytest.raises(InputError, match="must not carry credentials") as info:
        open_store("https://u:s3cret@h/ledgers/a")
    assert "s3cret" not in str(info.value)


def test_unknown_scheme_names_the_known_ones():
    with pytest.raises(InputError, match="unknown store URL scheme 'mysql'") as info:
        open_store("mysql://u:secret@h/db")
    assert "secret" not in str(info.value)
    assert "postgresql://" in (info.value.hint or "")


def test_passwords_are_never_shown_or_stored():
    url = "postgresql://u:s3cret@db:5433/x?sslmode=require"
    assert display_url(url) == "postgresql://u@db:5433/x?sslmode=require"
    assert display_url("postgresql://db/x") == "postgresql://db/x"
    with pytest.raises(InputError, match="carries a password") as info:
        check_storable_url(url)
    assert "s3cret" not in str(info.value)
    check_storable_url("postgresql://u@db/x")


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://u@db/x?password=s3cret&sslmode=require",
            "postgresql://u@db/x?sslmode=require",
        ),
        (
            "postgresql://u:s3cret@db/x?sslmode=require&sslpassword=s3cret",
            "postgresql://u@db/x?sslmode=require",
        ),
        ("postgresql://u@db/x?pass%77ord=s3cret", "postgresql://u@db/x"),
        ("host=db password=s3cret dbname=x", "host=db password=*** dbname=x"),
        ("host=db password = 's3 cret' dbname=x", "host=db password = *** dbname=x"),
    ],
)
def test_a_password_in_the_query_or_a_connection_string_is_never_shown(url, shown):
    """libpq also takes a password as a URL parameter or a conninfo key."""
    assert display_url(url) == shown
    with pytest.raises(InputError, match="carries a password") as info:
        check_storable_url(url)
    assert "s3cret" not in str(info.value)


def test_paths_and_other_parameters_are_shown_as_they_are():
    for url in (
        "postgresql://u@db/x?options=-csearch_path%3Dledger_a",
        "/data/password=1/ledger.db",
        "sqlite:///ledger.db",
    ):
        assert display_url(url) == url
        check_storable_url(url)
