"""``mltrail db init``: set up a PostgreSQL database for a team ledger."""

from __future__ import annotations

from pathlib import Path

import click

from mltrail.cli.output import console, emit_json, json_option
from mltrail.errors import InputError
from mltrail.storage.registry import require_postgres, store_scheme

__all__ = ["db"]


@click.group()
def db() -> None:
    """Set up the database of a ledger kept in PostgreSQL.

    \b
    Examples:
      mltrail db init --db postgresql://owner@db.example.com/audit
      mltrail init --store postgresql://mltrail_app@db.example.com/audit
    """


@db.command(name="init")
@click.option(
    "--db",
    "url",
    required=True,
    envvar="MLTRAIL_STORE_URL",
    help="postgresql:// URL to connect with, as the owner of the schema "
    "(default: $MLTRAIL_STORE_URL). A password is best left to PGPASSWORD "
    "or ~/.pgpass.",
)
@click.option(
    "--role",
    default="mltrail_app",
    show_default=True,
    help="Role the application connects as: created (LOGIN, no password) if "
    "missing, and granted SELECT and INSERT only.",
)
@click.option("--no-role", is_flag=True, help="Only apply the migrations.")
@click.option(
    "--ledger",
    help="Set up a team-server ledger of this name (letters, digits, hyphens): "
    "the server tables, schema ledger_<name>, a new log key and the genesis.",
)
@click.option("--origin", help="The new ledger's origin, e.g. example.com/team-a.")
@click.option(
    "--keys",
    type=click.Path(file_okay=False, path_type=Path),
    envvar="MLTRAIL_SERVER_KEYS",
    help="Where the log key <ledger>.key is written (default: $MLTRAIL_HOME/"
    "server-keys); encrypted with $MLTRAIL_KEY_PASSWORD when set.",
)
@json_option
def init(
    url: str,
    role: str,
    no_role: bool,
    ledger: str | None,
    origin: str | None,
    keys: Path | None,
    as_json: bool,
) -> None:
    """Create or upgrade the ledger tables (re-runnable) and the application role.

    The tables refuse UPDATE, DELETE and TRUNCATE by trigger, for everyone,
    owner included, replica mode too (a purged blob's bytes are the one thing deleted, see
    `mltrail purge`); the role lacks those privileges too. Run it as the owner,
    then point homes at the role: `mltrail init --store postgresql://ROLE@HOST/DB`.
    Give the role a password with your own tools (ALTER ROLE ... PASSWORD).

    With --ledger and --origin it sets up a ledger of the team server
    (`mltrail server`) instead, re-runnably: the server's control tables
    (schema mltrail_server), the ledger's schema and tables, its log key file
    and its genesis record.

    \b
    Examples:
      mltrail db init --db postgresql://postgres@127.0.0.1/audit
      mltrail db init --db postgresql://postgres@127.0.0.1/audit --ledger team-a \\
          --origin example.com/team-a --keys /etc/mltrail/keys
      mltrail db init --db 'postgresql://owner@db/audit?options=-csearch_path%3Dteam_a' \\
          --role team_a_app --json
    """
    if store_scheme(url) not in ("postgresql", "postgres"):
        raise InputError(
            "mltrail db init sets up PostgreSQL databases (postgresql://...)",
            hint="a SQLite ledger needs no setup: `mltrail init` creates it",
        )
    require_postgres()
    if ledger is not None or origin is not None:
        _init_ledger(url, ledger, origin, keys, None if no_role else role, as_json)
        return
    from mltrail.ledger.stored import KIND_ROLES
    from mltrail.storage.postgres import init_database

    result = init_database(url, roles=KIND_ROLES, role=None if no_role else role)
    if as_json:
        emit_json(result.to_dict())
        return
    applied = ", ".join(map(str, result.applied)) or "none (already current)"
    console.print(
        f"ledger tables in {result.location} (schema {result.schema}) at version "
        f"{result.version}; migrations applied: {applied}"
    )
    if result.restored:
        console.print(
            "mltrail's protections found dropped or not in force, set right: "
            + ", ".join(result.restored)
        )
    if result.role:
        made = "created" if result.role_created else "updated"
        console.print(f"role {result.role} {made}: SELECT and INSERT only")


def _init_ledger(
    url: str,
    ledger: str | None,
    origin: str | None,
    keys: Path | None,
    role: str | None,
    as_json: bool,
) -> None:
    if not ledger or not origin:
        raise InputError("a team-server ledger needs both --ledger and --origin")
    from mltrail.server.control import default_keys_dir, init_ledger

    result = init_ledger(url, ledger, origin, keys or default_keys_dir(), role=role)
    if as_json:
        emit_json(result)
        return
    what = "created" if result["created"] else "already set up"
    console.print(
        f"ledger {ledger} ({origin}) {what} in schema {result['schema']}; "
        f"log key {result['key_file']}"
    )
    if role:
        console.print(f"role {role}: SELECT and INSERT only")
