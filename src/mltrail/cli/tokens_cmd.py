"""``mltrail tokens``: API tokens of the team server, made directly in its database."""

from __future__ import annotations

import os
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import click

from mltrail.cli.output import console, emit_json, json_option
from mltrail.errors import AuthError, InputError, StoreError
from mltrail.shown import terminal_text

if TYPE_CHECKING:
    from mltrail.server.control import Control

__all__ = ["tokens"]

_DB = click.option(
    "--db",
    "url",
    envvar="MLTRAIL_SERVER_DB",
    help="postgresql:// URL of the server's database (default: $MLTRAIL_SERVER_DB). "
    "Without it: through the API of $MLTRAIL_URL with an admin $MLTRAIL_TOKEN.",
)
_DAYS = re.compile(r"([0-9]{1,4})d")


class _Api:
    """The token routes of a server (MLTRAIL_URL names the ledger, MLTRAIL_TOKEN an admin)."""

    def __init__(self) -> None:
        url, token = os.environ.get("MLTRAIL_URL"), os.environ.get("MLTRAIL_TOKEN")
        if not url or not token:
            raise InputError(
                "name the database (--db) or the server (MLTRAIL_URL and an admin "
                "MLTRAIL_TOKEN)",
                hint="e.g. MLTRAIL_URL=https://host/ledgers/team-a",
            )
        parts = urlsplit(url)
        prefix, sep, ledger = parts.path.rstrip("/").rpartition("/ledgers/")
        if parts.scheme not in ("http", "https") or not sep or "/" in ledger:
            raise InputError(
                f"MLTRAIL_URL {url!r} does not name a ledger of a server",
                hint="e.g. MLTRAIL_URL=https://host/ledgers/team-a",
            )
        prefix = prefix.removesuffix("/api/v1")
        self.ledger = ledger
        self.base = urlunsplit((parts.scheme, parts.netloc, prefix, "", ""))
        self.base += f"/api/v1/ledgers/{ledger}/tokens"
        self._token = token

    def call(self, method: str, path: str = "", body: Any = None) -> Any:
        """One request; HTTP errors become mltrail errors (401/403 AuthError)."""
        import json
        import urllib.error
        import urllib.request

        data = None if body is None else json.dumps(body).encode()
        request = urllib.request.Request(  # noqa: S310 - http(s) checked above
            self.base + path, data=data, method=method
        )
        request.add_header("Authorization", f"Bearer {self._token}")
        if data is not None:
            request.add_header("Content-Type", "application/json")
        try:
            with urllib.request.urlopen(request, timeout=30) as response:  # noqa: S310
                return json.loads(response.read())
        except urllib.error.HTTPError as e:
            try:
                error = json.loads(e.read())["error"]
                message, hint = error["message"], error.get("hint")
            except (ValueError, KeyError, TypeError):
                message, hint = f"HTTP {e.code}", None
            kind = AuthError if e.code in (401, 403) else InputError
            if e.code >= 500:
                kind = StoreError
            raise kind(f"the server refused: {message}", hint=hint) from None
        except (urllib.error.URLError, OSError) as e:
            raise StoreError(f"cannot reach the server: {e}") from None


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
    is printed once, when made. With --db (the owner's URL) the commands work
    on the database; without it, through the server named by MLTRAIL_URL, as
    the admin whose token is MLTRAIL_TOKEN.

    \b
    Examples:
      mltrail tokens create --db postgresql://postgres@db/audit --ledger team-a \\
          --role writer --name alice --expires 90d
      mltrail tokens list --db postgresql://postgres@db/audit --ledger team-a
      mltrail tokens revoke --db postgresql://postgres@db/audit 3f2a9c0d1e4b5a6f
      MLTRAIL_URL=https://host/ledgers/team-a MLTRAIL_TOKEN=mlt_... mltrail tokens list
    """


@tokens.command(name="create")
@_DB
@click.option(
    "--ledger", help="The ledger the token is for (through the API: MLTRAIL_URL's)."
)
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
    url: str | None,
    ledger: str | None,
    role: str,
    name: str,
    expires: str,
    by: str,
    as_json: bool,
) -> None:
    """Make a token and print it (the only time it is shown).

    \b
    Examples:
      mltrail tokens create --db postgresql://postgres@db/audit --ledger team-a \\
          --role auditor --name external-audit --expires 30d --json
      MLTRAIL_URL=https://host/ledgers/team-a MLTRAIL_TOKEN=mlt_... \\
          mltrail tokens create --role writer --name bob
    """
    days: int | None
    if expires == "never":
        days = None
    elif found := _DAYS.fullmatch(expires):
        days = int(found[1])
    else:
        raise InputError(f"--expires {expires!r} is not like 90d", hint="or 'never'")
    if url is None:
        api = _Api()
        if ledger not in (None, api.ledger):
            raise InputError(f"MLTRAIL_URL names ledger {api.ledger}, not {ledger}")
        ledger = api.ledger
        made = api.call("POST", body={"name": name, "role": role, "expires_days": days})
        made["ledger"] = ledger
    else:
        if ledger is None:
            raise InputError("--ledger is needed with --db")
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
def list_cmd(url: str | None, ledger: str | None, as_json: bool) -> None:
    """List tokens (never their secrets), oldest first.

    \b
    Examples:
      mltrail tokens list --db postgresql://postgres@db/audit --ledger team-a --json
    """
    if url is None:
        found = _Api().call("GET")["tokens"]
    else:
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
        name = terminal_text(t["name"])
        click.echo(f"{t['id']}  {t['ledger']}  {t['role']:<8}  {name}  ({state})")


@tokens.command(name="revoke")
@_DB
@click.argument("token_id")
@click.option(
    "--by", default="mltrail tokens", show_default=True, help="Recorded as revoker."
)
@json_option
def revoke(url: str | None, token_id: str, by: str, as_json: bool) -> None:
    """Revoke a token by its id: every later request with it is refused (401).

    \b
    Examples:
      mltrail tokens revoke --db postgresql://postgres@db/audit 3f2a9c0d1e4b5a6f
    """
    if url is None:
        if not re.fullmatch(r"[0-9a-f]{16}", token_id):
            raise InputError(f"{token_id!r} is not a token id (16 hex characters)")
        newly = not _Api().call("POST", f"/{token_id}/revoke")["already"]
    else:
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
