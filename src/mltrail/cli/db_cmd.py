"""``mltrail db init``: set up a PostgreSQL database for a team ledger."""

from __future__ import annotations

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
@json_option
def init(url: str, role: str, no_role: bool, as_json: bool) -> None:
    """Create or upgrade the ledger tables (re-runnable) and the application role.

    The tables refuse UPDATE, DELETE and TRUNCATE by trigger, for everyone,
    owner included (a purged blob's bytes are the one thing deleted, see
    `mltrail purge`); the role lacks those privileges too. Run it as the owner,
    then point homes at the role: `mltrail init --store postgresql://ROLE@HOST/DB`.
    Give the role a password with your own tools (ALTER ROLE ... PASSWORD).

    \b
    Examples:
      mltrail db init --db postgresql://postgres@127.0.0.1/audit
      mltrail db init --db 'postgresql://owner@db/audit?options=-csearch_path%3Dteam_a' \\
          --role team_a_app --json
    """
    if store_scheme(url) not in ("postgresql", "postgres"):
        raise InputError(
            "mltrail db init sets up PostgreSQL databases (postgresql://...)",
            hint="a SQLite ledger needs no setup: `mltrail init` creates it",
        )
    require_postgres()
    from mltrail.storage.postgres import init_database

    result = init_database(url, role=None if no_role else role)
    if as_json:
        emit_json(result.to_dict())
        return
    applied = ", ".join(map(str, result.applied)) or "none (already current)"
    console.print(
        f"ledger tables in {result.location} (schema {result.schema}) at version "
        f"{result.version}; migrations applied: {applied}"
    )
    if result.role:
        made = "created" if result.role_created else "updated"
        console.print(f"role {result.role} {made}: SELECT and INSERT only")
