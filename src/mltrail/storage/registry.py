"""Stores chosen by URL: a scheme -> factory registry.

    sqlite:///relative.db     a SQLite file (relative to the ledger home)
    sqlite:////abs/path.db    a SQLite file at an absolute path
    ledger.db, /abs/path.db   a plain path: a SQLite file (what ledger.json has always held)
    postgresql://user@host/db a PostgreSQL database (``mltrail[postgres]``)
    https://host/ledgers/NAME a ledger kept by an mltrail server (``mltrail[client]``;
                              the token comes from ``MLTRAIL_TOKEN``)

A backend registers a factory taking the URL and :class:`StoreOptions`; the
factory imports its driver lazily, so choosing SQLite never loads psycopg. The
options carry what the opener knows of the ledger's format as plain data: the
kind roles a SQL store needs, the record hash a server's client derives.
Passwords never belong in a stored URL: :func:`display_url` drops them from
anything shown, and :func:`check_storable_url` refuses them where a URL is
written into a home's settings.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit, urlunsplit

from mltrail.errors import ConfigError, InputError
from mltrail.values import Frozen

if TYPE_CHECKING:
    from collections.abc import Callable

    from mltrail.storage.base import KindRoles, Store

__all__ = [
    "StoreOptions",
    "check_storable_url",
    "display_url",
    "is_file_store",
    "is_server_url",
    "open_store",
    "register_store",
    "require_postgres",
    "sqlite_path",
    "store_scheme",
]


class StoreOptions(Frozen):
    """How to open a store, whatever its backend."""

    __slots__ = __match_args__ = (
        "create", "busy_timeout", "read_only", "base", "token", "roles", "row_hash"
    )  # fmt: skip
    create: bool
    """Create the store (SQLite file, PostgreSQL tables) if missing."""
    busy_timeout: float
    """Seconds a write waits for another writer's lock."""
    read_only: bool
    """Only read (SQLite: write nothing into the file's folder)."""
    base: Path | None
    """Folder a relative SQLite path is resolved against (the ledger home)."""
    token: str | None
    """Bearer token for an mltrail server (None: ``MLTRAIL_TOKEN``)."""
    roles: KindRoles | None
    """The ledger's kind roles (see ``KindRoles``): needed by SQLite and PostgreSQL."""
    row_hash: Callable[[bytes], bytes] | None
    """A record's hash from its bytes, for a server's client (None: the server's)."""

    def __init__(
        self,
        create: bool = False,
        busy_timeout: float = 60.0,
        read_only: bool = False,
        base: Path | None = None,
        token: str | None = None,
        roles: KindRoles | None = None,
        row_hash: Callable[[bytes], bytes] | None = None,
    ) -> None:
        _set(self, "create", create)
        _set(self, "busy_timeout", busy_timeout)
        _set(self, "read_only", read_only)
        _set(self, "base", base)
        _set(self, "token", token)
        _set(self, "roles", roles)
        _set(self, "row_hash", row_hash)


_set = object.__setattr__  # how a frozen value sets its fields in __init__


def _roles(url: str, options: StoreOptions) -> KindRoles:
    if options.roles is None:
        raise ConfigError(
            f"the store {display_url(url)} was opened without its ledger's kind "
            "roles (StoreOptions.roles)",
            hint="open stores through mltrail.ledger (its KIND_ROLES)",
        )
    return options.roles


_FACTORIES: dict[str, Callable[[str, StoreOptions], Store]] = {}


def register_store(scheme: str, factory: Callable[[str, StoreOptions], Store]) -> None:
    """Open URLs of ``scheme`` (lower case, no ``://``) with ``factory``."""
    _FACTORIES[scheme] = factory


def store_scheme(url: str) -> str:
    """The URL's scheme (``sqlite`` for a plain path)."""
    if "://" not in url:
        return "sqlite"
    return url.split("://", 1)[0].lower()


def is_file_store(url: str) -> bool:
    """Whether the store is a local SQLite file (read-only checks apply to it)."""
    return store_scheme(url) == "sqlite"


def sqlite_path(url: str, base: Path | None = None) -> Path:
    """The file of a SQLite URL or plain path, relative ones against ``base``.

    SQLAlchemy's form: ``sqlite:///relative.db``, ``sqlite:////absolute/path.db``.
    """
    raw = url.split("://", 1)[1].removeprefix("/") if "://" in url else url
    if not raw:
        raise InputError(
            f"store URL {url!r} names no file", hint="e.g. sqlite:///ledger.db"
        )
    path = Path(raw).expanduser()
    return path if path.is_absolute() or base is None else base / path


_SECRET_PARAMS = frozenset({"password", "sslpassword"})
_CONNINFO_SECRET = re.compile(
    r"(?<!\S)(password|sslpassword)(\s*=\s*)('(?:[^'\\]|\\.)*'|\S*)", re.IGNORECASE
)


def _secret_param(segment: str) -> bool:
    """Is ``name=value`` (a URL query's part) a libpq password parameter?"""
    return unquote(segment.partition("=")[0]).strip().lower() in _SECRET_PARAMS


def _has_password(url: str) -> bool:
    if "://" not in url:
        return _CONNINFO_SECRET.search(url) is not None
    parts = urlsplit(url)
    return parts.password is not None or any(
        _secret_param(s) for s in parts.query.split("&") if s
    )


def display_url(url: str) -> str:
    """The URL without a password, fit to show or log: none in the user part,
    no ``password`` or ``sslpassword`` query parameter (libpq takes both), and
    in a ``key=value`` connection string the values of those keys masked."""
    if not _has_password(url):
        return url
    if "://" not in url:
        return _CONNINFO_SECRET.sub(r"\1\2***", url)
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        host = parts.hostname or ""
        if parts.port:
            host += f":{parts.port}"
        netloc = (f"{parts.username}@" if parts.username else "") + host
    query = "&".join(s for s in parts.query.split("&") if s and not _secret_param(s))
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def check_storable_url(url: str) -> None:
    """Refuse a URL that carries a password (it would be written into the home).

    Raises:
        InputError: it does.
    """
    if _has_password(url):
        raise InputError(
            f"the store URL {display_url(url)} carries a password, which mltrail "
            "never stores",
            hint="drop it from the URL; PostgreSQL finds it in PGPASSWORD or "
            "~/.pgpass (or pass the whole URL in MLTRAIL_STORE_URL each time)",
        )


def open_store(url: str, options: StoreOptions | None = None) -> Store:
    """Open the store ``url`` names.

    Raises:
        InputError: an unknown scheme, or a server URL that names no ledger.
        ConfigError: the backend's extra is not installed, or there is no store
            there (and not ``create``).
        StoreError: the store cannot be reached or opened.
    """
    options = options or StoreOptions()
    scheme = store_scheme(url)
    factory = _FACTORIES.get(scheme)
    if factory is not None:
        return factory(url, options)
    known = ", ".join(f"{s}://" for s in sorted(_FACTORIES))
    raise InputError(
        f"unknown store URL scheme {scheme!r} in {display_url(url)}",
        hint=f"use one of {known}",
    )


def _open_sqlite(url: str, options: StoreOptions) -> Store:
    from mltrail.storage.sqlite import SQLiteStore

    return SQLiteStore(
        sqlite_path(url, options.base),
        roles=_roles(url, options),
        create=options.create,
        busy_timeout=options.busy_timeout,
        read_only=options.read_only,
    )


def require_postgres() -> None:
    """Raise ConfigError naming the extra when psycopg is not installed."""
    import importlib.util

    if importlib.util.find_spec("psycopg") is None:
        raise ConfigError(
            "a PostgreSQL store needs psycopg, which is not installed",
            hint="pip install 'mltrail[postgres]'",
        )


def _open_postgres(url: str, options: StoreOptions) -> Store:
    require_postgres()
    from mltrail.storage.postgres import PostgresStore

    return PostgresStore(
        url,
        roles=_roles(url, options),
        create=options.create,
        busy_timeout=options.busy_timeout,
    )


def _open_http(url: str, options: StoreOptions) -> Store:
    import os

    from mltrail.storage.http import TOKEN_ENV, HttpStore

    token = options.token or os.environ.get(TOKEN_ENV)
    return HttpStore(
        url, token, timeout=options.busy_timeout, row_hash=options.row_hash
    )


def is_server_url(url: str) -> bool:
    """Whether the store is a ledger kept by an mltrail server (client mode)."""
    return store_scheme(url) in ("http", "https")


register_store("sqlite", _open_sqlite)
register_store("http", _open_http)
register_store("https", _open_http)
register_store("postgresql", _open_postgres)
register_store("postgres", _open_postgres)
