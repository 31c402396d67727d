"""The server's control tables at work: ledgers, tokens, revocations, idempotency keys.

Needs psycopg only (``mltrail db init`` and ``mltrail tokens`` run without
FastAPI). Each ledger lives in its own PostgreSQL schema (``ledger_<name>``,
hyphens as underscores) of the one database; its log key, which signs
checkpoints and key records, is the file ``<keys>/<name>.key`` and never
enters the database.
"""

from __future__ import annotations

import contextlib
import os
import re
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, urlsplit, urlunsplit

import psycopg
from psycopg import sql

from mltrail.errors import InputError, StoreError
from mltrail.ledger.stored import KIND_ROLES
from mltrail.server.control_schema import (
    CONTROL_MIGRATIONS,
    CONTROL_SCHEMA,
    CONTROL_TABLES,
)
from mltrail.server.tokens import (
    ROLES,
    Principal,
    new_token,
    parse_token,
    secrets_match,
)
from mltrail.storage.postgres import (
    check_role_name,
    connect,
    init_database,
    migrate,
)
from mltrail.storage.registry import display_url

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from mltrail.core.signing import Ed25519Signer
    from mltrail.ledger.ledger import Ledger

__all__ = [
    "Control",
    "LedgerRow",
    "check_ledger_name",
    "default_keys_dir",
    "init_control",
    "init_ledger",
    "load_log_key",
    "revoke_author_key",
    "rotate_log_key",
    "schema_url",
]

_LEDGER_NAME = re.compile(r"[a-z0-9][a-z0-9-]{0,47}")
_C = CONTROL_SCHEMA
MAX_TOKEN_NAME = 200


@dataclass(frozen=True, slots=True)
class LedgerRow:
    """One served ledger: its name, PostgreSQL schema and origin."""

    name: str
    schema: str
    origin: str


def check_ledger_name(name: str) -> str:
    """A ledger name: lower-case letters, digits and hyphens, at most 48.

    Raises:
        InputError: anything else.
    """
    if not _LEDGER_NAME.fullmatch(name):
        raise InputError(
            f"ledger name {name!r} is not lower-case letters, digits and hyphens",
            hint="e.g. team-a (at most 48 characters, starting with a letter or digit)",
        )
    return name


def schema_url(url: str, schema: str) -> str:
    """``url`` with its search_path set to ``schema`` (libpq ``options``)."""
    parts = urlsplit(url)
    option = "options=" + quote(f"-csearch_path={schema}")
    query = f"{parts.query}&{option}" if parts.query else option
    return urlunsplit(parts._replace(query=query))


def default_keys_dir() -> Path:
    """``$MLTRAIL_HOME/server-keys`` (``~/.mltrail/server-keys``)."""
    from mltrail.config import resolve_home

    return resolve_home() / "server-keys"


def load_log_key(keys: Path, ledger: str) -> Ed25519Signer:
    """The log key of ``ledger`` from ``keys/<ledger>.key``."""
    from mltrail.ledger.keystore import key_password, load_signer

    return load_signer(keys / f"{ledger}.key", key_password())


def init_control(conn: psycopg.Connection[Any], role: str | None) -> list[int]:
    """Create or upgrade schema ``mltrail_server``; grant ``role`` SELECT, INSERT."""
    conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(_C)))
    applied = migrate(conn, _C, CONTROL_MIGRATIONS)
    if role is not None:
        s, r = sql.Identifier(_C), sql.Identifier(check_role_name(role))
        tables = sql.SQL(", ").join(
            sql.SQL("{}.{}").format(s, sql.Identifier(t)) for t in CONTROL_TABLES
        )
        with conn.transaction():
            if not conn.execute(
                "SELECT 1 FROM pg_roles WHERE rolname = %s", (role,)
            ).fetchone():
                conn.execute(sql.SQL("CREATE ROLE {} LOGIN").format(r))
            for statement in (
                "GRANT USAGE ON SCHEMA {s} TO {r}",
                "REVOKE CREATE ON SCHEMA {s} FROM {r}",
                "REVOKE ALL ON {tables} FROM {r}",
                "GRANT SELECT, INSERT ON {tables} TO {r}",
                "REVOKE INSERT ON {s}.mltrail_schema FROM {r}",
            ):
                conn.execute(sql.SQL(statement).format(s=s, r=r, tables=tables))
    return applied


def init_ledger(
    url: str,
    ledger: str,
    origin: str,
    keys: Path,
    *,
    role: str | None = "mltrail_app",
) -> dict[str, Any]:
    """Set up (or re-check) a served ledger: control tables, schema, log key, genesis.

    Re-runnable: an existing ledger keeps its key and genesis; its tables and
    grants are brought up to date.

    Raises:
        InputError: a bad name, or the ledger exists with another origin.
        ConfigError: the ledger exists but its key file is missing.
        StoreError: the database refuses.
    """
    from mltrail.ledger.keystore import generate_signer, key_password, save_signer
    from mltrail.ledger.ledger import Ledger
    from mltrail.storage.postgres import PostgresStore

    check_ledger_name(ledger)
    schema = "ledger_" + ledger.replace("-", "_")
    conn = connect(url)
    try:
        applied = init_control(conn, role)
        row = conn.execute(
            f"SELECT origin FROM {_C}.ledgers WHERE name = %s",  # noqa: S608
            (ledger,),
        ).fetchone()
        conn.execute(
            sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema))
        )
    except psycopg.Error as e:
        raise StoreError(f"cannot set up {display_url(url)}: {e}") from e
    finally:
        conn.close()
    if row is not None and row[0] != origin:
        raise InputError(
            f"ledger {ledger} exists with origin {row[0]!r}, not {origin!r}",
            hint="an origin never changes; pick another ledger name",
        )
    ledger_url = schema_url(url, schema)
    tables = init_database(ledger_url, roles=KIND_ROLES, role=role)
    key_path = keys / f"{ledger}.key"
    created = False
    if row is None:
        with PostgresStore(ledger_url, roles=KIND_ROLES) as store:
            if store.head().size == 0:
                signer = generate_signer()
                save_signer(signer, key_path, key_password())
                Ledger.create(
                    store, signer, origin=origin, actor={"user": "mltrail-server"}
                )
                created = True
            else:
                load_log_key(
                    keys, ledger
                )  # a half-done earlier run: the key must exist
        conn = connect(url)
        try:
            conn.execute(
                f"INSERT INTO {_C}.ledgers (name, schema, origin) VALUES (%s, %s, %s) "  # noqa: S608
                "ON CONFLICT DO NOTHING",
                (ledger, schema, origin),
            )
        finally:
            conn.close()
    else:
        load_log_key(keys, ledger)
    return {
        "db": display_url(url),
        "ledger": ledger,
        "schema": schema,
        "origin": origin,
        "key_file": str(key_path),
        "created": created,
        "control_applied": applied,
        "ledger_applied": tables.applied,
        "role": role,
    }


def rotate_log_key(
    url: str,
    ledger: str,
    keys: Path,
    *,
    reason: str = "scheduled rotation",
    move_old_key_to: Path | None = None,
) -> dict[str, Any]:
    """Rotate a served ledger's log key, as its admin: a new key file, then
    ``key.added`` (signed by the old key) and ``key.revoked`` of the old key
    (signed by the new one) in one append, its checkpoint signed by the new key.

    The new key is written to ``<keys>/<ledger>.key.new`` first; once the
    rotation is stored, the old key file gets a second name
    (``<ledger>.key.old``), the new one is renamed over ``<ledger>.key`` and
    the old one is overwritten and deleted, or moved to ``move_old_key_to``:
    each step synced, all under the key folder's lock
    (:mod:`mltrail.server.log_key`). A rotation killed after its records were
    stored is finished first, by whoever comes next (the server, or a command),
    its revoked key moved where it asked (``<ledger>.key.move-to``, written
    before the store) or destroyed. A running server loads the new key file
    before its next write.

    Raises:
        InputError: no such ledger, or ``move_old_key_to`` exists.
        ConfigError: the ledger's key file is missing or unreadable, or
            ``<ledger>.key.new`` holds a key the ledger never added.
        StoreError: the database refuses.
    """
    from mltrail.errors import AuthError, ConfigError, IntegrityError
    from mltrail.ledger.keystore import (
        destroy_key_file,
        generate_signer,
        key_password,
        save_signer,
    )
    from mltrail.server.log_key import (
        dispose_revoked_key,
        finish_rotation,
        key_paths,
        keys_lock,
        remember_move,
        swap_in_new_key,
    )

    row = _served_row(url, ledger)
    if move_old_key_to is not None and (
        move_old_key_to.exists() or move_old_key_to.is_symlink()
    ):
        raise InputError(f"{move_old_key_to} already exists; refusing to overwrite it")
    key_path, new_path, old_path = key_paths(keys, ledger)
    password = key_password()
    if not keys.is_dir():
        load_log_key(keys, ledger)  # said as a missing key file
    with keys_lock(keys, wait=True), _served_ledger(url, row, None) as served:
        finished = finish_rotation(keys, ledger, served, password)
        old = load_log_key(keys, ledger)
        if new_path.exists() or new_path.is_symlink():
            raise ConfigError(
                f"{new_path} holds no key the ledger added: a rotation was "
                "stopped before it stored its records (the ledger never added it)",
                hint="delete it, then rotate again",
            )
        if os.path.lexists(old_path) and not old_path.is_symlink():
            # finish_rotation left it: it holds a key valid now, and the swap
            # after the store would stop at it (a rotation stored, its files not)
            raise ConfigError(
                f"{old_path} holds a log key valid now, where a rotation puts the "
                "revoked key: refusing to rotate before anything is stored",
                hint=f"make {key_path} the key file of the key the server signs "
                f"with (not a link to {old_path.name}), then rotate again",
            )
        remember_move(keys, ledger, move_old_key_to)
        new = generate_signer()
        save_signer(new, new_path, password)
        served.signer = old
        try:
            records = served.rotate_key(new, reason=reason)
        except (InputError, ConfigError, AuthError, IntegrityError):
            # refused: the new key is deleted once the ledger says it holds
            # none of it (never on a doubt: it could be the only valid key)
            with contextlib.suppress(Exception):
                if new.key_id not in served.keys().keys:
                    destroy_key_file(new_path)
                    remember_move(keys, ledger, None)  # no rotation to finish
            raise
        swap_in_new_key(keys, ledger)
        dispose_revoked_key(keys, ledger)
    return {
        "ledger": ledger,
        "revoked": old.key_id,
        "added": new.key_id,
        "seq": records[0].seq,
        "key_file": str(key_path),
        "old_key": "moved" if move_old_key_to is not None else "destroyed",
        "moved_to": str(move_old_key_to) if move_old_key_to is not None else None,
        "finished": finished,
    }


def revoke_author_key(
    url: str, ledger: str, keys: Path, key_id: str, *, reason: str
) -> dict[str, Any]:
    """Revoke an author key of a served ledger, as its admin: ``key.revoked``
    signed by the ledger's log key (``<keys>/<ledger>.key``), appended to the
    database as the server appends. A running server refuses the key's entries
    from its next write on (its appender sees the key records change). An
    interrupted log key rotation is finished first.

    Raises:
        InputError: no such ledger; the key is unknown, already revoked, or a
            log key (``rotate_log_key`` replaces those).
        ConfigError: the ledger's key file is missing or unreadable.
        StoreError: the database refuses.
    """
    from mltrail.ledger.keystore import key_password
    from mltrail.server.log_key import finish_rotation, keys_lock

    row = _served_row(url, ledger)
    if not keys.is_dir():
        load_log_key(keys, ledger)  # said as a missing key file
    with keys_lock(keys, wait=True), _served_ledger(url, row, None) as served:
        finish_rotation(keys, ledger, served, key_password())
        served.signer = load_log_key(keys, ledger)
        record = served.revoke_key(key_id, reason=reason)
    return {"ledger": ledger, "key": key_id, "seq": record.seq}


def _served_row(url: str, ledger: str) -> LedgerRow:
    """The control row of served ledger ``ledger`` (InputError: none)."""
    check_ledger_name(ledger)
    control = Control(url)
    try:
        row = control.ledger(ledger)
    finally:
        control.close()
    if row is None:
        raise InputError(
            f"{display_url(url)} serves no ledger {ledger}",
            hint="set one up with mltrail db init --db URL --ledger NAME --origin ORIGIN",
        )
    return row


@contextmanager
def _served_ledger(
    url: str, row: LedgerRow, signer: Ed25519Signer | None
) -> Iterator[Ledger]:
    """The served ledger ``row`` over its database schema, signing with ``signer``
    (its log key) as the server does (actor ``mltrail-server``)."""
    from mltrail.core.codec import decode_record
    from mltrail.ledger.ledger import Ledger
    from mltrail.storage.postgres import PostgresStore

    with PostgresStore(schema_url(url, row.schema), roles=KIND_ROLES) as store:
        first = next(iter(store.rows(0, 1)), None)
        genesis = None if first is None else decode_record(first.data).record.entry
        yield Ledger(
            store,
            signer,
            origin=row.origin,
            trusted_key=None
            if genesis is None or genesis.sig is None
            else genesis.sig.key,
            actor={"user": "mltrail-server"},
        )


class Control:
    """Queries on the control tables over one connection (not thread-safe)."""

    def __init__(self, url: str) -> None:
        self.location = display_url(url)
        self.conn = connect(url)

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()

    def ledger(self, name: str) -> LedgerRow | None:
        """The ledger ``name``, or None."""
        row = self.conn.execute(
            f"SELECT name, schema, origin FROM {_C}.ledgers WHERE name = %s",  # noqa: S608
            (name,),
        ).fetchone()
        return None if row is None else LedgerRow(*row)

    def ledgers(self) -> list[LedgerRow]:
        """Every served ledger, by name."""
        rows = self.conn.execute(
            f"SELECT name, schema, origin FROM {_C}.ledgers ORDER BY name"  # noqa: S608
        ).fetchall()
        return [LedgerRow(*r) for r in rows]

    def create_token(
        self,
        ledger: str,
        name: str,
        role: str,
        *,
        expires_days: float | None,
        created_by: str,
    ) -> dict[str, Any]:
        """Add a token; the result carries the token text, shown this once.

        Raises:
            InputError: unknown ledger or role, bad name or expiry.
        """
        if role not in ROLES:
            raise InputError(
                f"unknown role {role!r}", hint=f"one of {', '.join(ROLES)}"
            )
        if not name or len(name) > MAX_TOKEN_NAME or not name.isprintable():
            raise InputError("a token's name is 1 to 200 printable characters")
        if expires_days is not None and not 0 < expires_days <= 3660:
            raise InputError("expiry must be between 0 and 3660 days")
        if self.ledger(ledger) is None:
            raise InputError(f"no ledger {ledger!r} on this server")
        token_id, text, digest = new_token()
        expires = (
            None
            if expires_days is None
            else datetime.now(UTC) + timedelta(days=expires_days)
        )
        self.conn.execute(
            f"INSERT INTO {_C}.tokens (id, ledger, name, role, secret_sha256, expires, "  # noqa: S608
            "created_by) VALUES (%s, %s, %s, %s, %s, %s, %s)",
            (token_id, ledger, name, role, digest, expires, created_by),
        )
        return {
            "id": token_id,
            "token": text,
            "ledger": ledger,
            "name": name,
            "role": role,
            "expires": None if expires is None else _iso(expires),
        }

    def list_tokens(self, ledger: str | None = None) -> list[dict[str, Any]]:
        """Tokens (no secrets), oldest first; only ``ledger``'s when given."""
        query = (
            f"SELECT t.id, t.ledger, t.name, t.role, t.created, t.expires, "  # noqa: S608
            f"t.created_by, r.revoked, r.by FROM {_C}.tokens t "
            f"LEFT JOIN {_C}.token_revocations r ON r.id = t.id"
        )
        if ledger is None:
            rows = self.conn.execute(query + " ORDER BY t.created, t.id").fetchall()
        else:
            rows = self.conn.execute(
                query + " WHERE t.ledger = %s ORDER BY t.created, t.id", (ledger,)
            ).fetchall()
        return [
            {
                "id": i,
                "ledger": lg,
                "name": n,
                "role": ro,
                "created": _iso(c),
                "expires": None if e is None else _iso(e),
                "created_by": cb,
                "revoked": None if rv is None else _iso(rv),
                "revoked_by": by,
            }
            for i, lg, n, ro, c, e, cb, rv, by in rows
        ]

    def revoke_token(
        self, token_id: str, by: str, *, ledger: str | None = None
    ) -> bool:
        """Revoke a token (False: it was revoked already).

        Raises:
            InputError: no such token (on ``ledger``, when given).
        """
        row = self.conn.execute(
            f"SELECT ledger FROM {_C}.tokens WHERE id = %s",  # noqa: S608
            (token_id,),
        ).fetchone()
        if row is None or (ledger is not None and row[0] != ledger):
            raise InputError(
                f"no token {token_id!r}" + (f" on {ledger}" if ledger else "")
            )
        cursor = self.conn.execute(
            f"INSERT INTO {_C}.token_revocations (id, by) VALUES (%s, %s) "  # noqa: S608
            "ON CONFLICT DO NOTHING",
            (token_id, by),
        )
        return cursor.rowcount == 1

    def revoked(self, token_id: str) -> bool:
        """Was token ``token_id`` revoked?"""
        row = self.conn.execute(
            f"SELECT 1 FROM {_C}.token_revocations WHERE id = %s",  # noqa: S608
            (token_id,),
        ).fetchone()
        return row is not None

    def authenticate(self, text: str) -> Principal | str:
        """The principal a bearer token stands for, or why it is refused."""
        parsed = parse_token(text)
        if parsed is None:
            return "malformed token"
        row = self.conn.execute(
            f"SELECT t.ledger, t.name, t.role, t.secret_sha256, t.expires, "  # noqa: S608
            f"r.id IS NOT NULL FROM {_C}.tokens t "
            f"LEFT JOIN {_C}.token_revocations r ON r.id = t.id WHERE t.id = %s",
            (parsed.id,),
        ).fetchone()
        if row is None or not secrets_match(parsed.secret, row[3]):
            return "unknown token"
        ledger, name, role, _, expires, revoked = row
        if revoked:
            return "token revoked"
        if expires is not None and expires <= datetime.now(UTC):
            return "token expired"
        return Principal(parsed.id, ledger, name, role, expires)

    def idempotent_response(
        self, ledger: str, key: str
    ) -> tuple[str, bytes, Any] | None:
        """(token id, request SHA-256, response) stored for an idempotency key."""
        row = self.conn.execute(
            f"SELECT token_id, request_sha256, response FROM {_C}.idempotency "  # noqa: S608
            "WHERE ledger = %s AND key = %s",
            (ledger, key),
        ).fetchone()
        return None if row is None else (row[0], bytes(row[1]), row[2])


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")
