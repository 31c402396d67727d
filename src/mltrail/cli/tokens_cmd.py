"""``mltrail tokens``: API tokens of the team server, made directly in its database."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

import click

from mltrail.cli.output import console, emit_json, json_option
from mltrail.errors import InputError

if TYPE_CHECKING:
    from mltrail.server.control import Control

__all__ = ["tokens"]

_DB = click.option(
    "--db",
    "url",
    required=True,
    envvar="MLTRAIL_SERVER_DB",
    help="postgresql:// URL of the server's database (default: $MLTRAIL_SERVER_DB).",
)
_DAYS = re.compile(r"([0-9]{1,4})d")


def _control(url: str) -> Control:
    from mltrail.storage.registry import require_postgres

    require_postgres()
    from mltrail.server.control import Control

    return Control(url)


@click.group()
def tokens() -> None:
    """Make, list and revoke the team server's API tokens.

    A token belongs to one ledger and has one role: writer, approver, auditor
    or admin (docs/server.md). Only SHA-256 of its secret is stored: the token
    is printed once, when made.

    \b
    Examples:
      mltrail tokens create --db postgresql://postgres@db/audit --ledger team-a \\
          --role writer --name alice --expires 90d
      mltrail tokens list --db postgresql://postgres@db/audit --ledger team-a
      mltrail tokens revoke --db postgresql://postgres@db/audit 3f2a9c0d1e4b5a6f
    """


@tokens.command(name="create")
@_DB
@click.option("--ledger", required=True, help="The ledger the token is for.")
@click.option(
    "--role",
    required=True,
    type=click.Choice(["writer", "approver", "auditor", "admin"]),
    help="What the token may do.",
)
@click.option(
    "--name", required=True, help="Who holds it: entries' actor.user must match."
)
@click.option("--expires", default="90d", show_default=True,
              help="Lifetime in days (e.g. 30d), or 'never'.")  # fmt: skip
@click.option(
    "--by", default="mltrail tokens", show_default=True, help="Recorded as maker."
)
@json_option
def create(
    url: str, ledger: str, role: str, name: str, expires: str, by: str, as_json: bool
) -> None:
    """Make a token and print it (the only time it is shown).

    \b
    Examples:
      mltrail tokens create --db postgresql://postgres@db/audit --ledger team-a \\
          --role auditor --name external-audit --expires 30d --json
    """
    days: int | None
    if expires == "never":
        days = None
    elif found := _DAYS.fullmatch(expires):
        days = int(found[1])
    else:
        raise InputError(f"--expires {expires!r} is not like 90d", hint="or 'never'")
    control = _control(url)
    try:
        made = control.create_token(
            ledger, name, role, expires_days=days, created_by=by
        )
    finally:
        control.close()
    if as_json:
        emit_json(made)
        return
    until = made["expires"] or "never"
    console.print(
        f"token {made['id']} for {name} ({role} of {ledger}, expires {until}):"
    )
    click.echo(made["token"])


@tokens.command(name="list")
@_DB
@click.option("--ledger", help="Only this ledger's tokens.")
@json_option
def list_cmd(url: str, ledger: str | None, as_json: bool) -> None:
    """List tokens (never their secrets), oldest first.

    \b
    Examples:
      mltrail tokens list --db postgresql://postgres@db/audit --ledger team-a --json
    """
    control = _control(url)
    try:
        found = control.list_tokens(ledger)
    finally:
        control.close()
    if as_json:
        emit_json(found)
        return
    for t in found:
        state = (
            f"revoked {t['revoked']}"
            if t["revoked"]
            else f"expires {t['expires'] or 'never'}"
        )
        click.echo(f"{t['id']}  {t['ledger']}  {t['role']:<8}  {t['name']}  ({state})")


@tokens.command(name="revoke")
@_DB
@click.argument("token_id")
@click.option(
    "--by", default="mltrail tokens", show_default=True, help="Recorded as revoker."
)
@json_option
def revoke(url: str, token_id: str, by: str, as_json: bool) -> None:
    """Revoke a token by its id: every later request with it is refused (401).

    \b
    Examples:
      mltrail tokens revoke --db postgresql://postgres@db/audit 3f2a9c0d1e4b5a6f
    """
    control = _control(url)
    try:
        newly = control.revoke_token(token_id, by)
    finally:
        control.close()
    if as_json:
        emit_json({"id": token_id, "revoked": True, "already": not newly})
        return
    console.print(
        f"token {token_id} " + ("revoked" if newly else "was already revoked")
    )
