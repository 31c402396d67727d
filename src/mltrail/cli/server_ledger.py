"""The options of a ``mltrail keys`` command that acts on a team server's ledger
instead of the home (``--db``, ``--ledger``, ``--keys``), and their check."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

import click

from mltrail.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Callable

__all__ = ["require_server_ledger", "server_ledger_options"]

F = TypeVar("F", bound="Callable[..., object]")


def server_ledger_options(doing: str, done: str) -> Callable[[F], F]:
    """``--db`` (as ``db_url``), ``--ledger`` and ``--keys`` (as ``keys_dir``):
    ``doing`` says what the command does to a server's ledger instead ("Rotate
    the log key"), ``done`` what of the ledger ("log key is rotated")."""
    options = (
        click.option(
            "--db",
            "db_url",
            help=f"{doing} of a team server's ledger instead (with --ledger): "
            "the postgresql:// URL its admin sets it up with.",
        ),
        click.option("--ledger", help=f"The server's ledger whose {done}."),
        click.option(
            "--keys",
            "keys_dir",
            type=click.Path(file_okay=False, path_type=Path),
            envvar="MLTRAIL_SERVER_KEYS",
            help="Where the server's log keys <ledger>.key are (default: "
            "$MLTRAIL_HOME/server-keys).",
        ),
    )

    def decorate(command: F) -> F:
        for option in reversed(options):  # as if stacked in this order
            command = option(command)
        return command

    return decorate


def require_server_ledger(
    db_url: str | None, ledger: str | None, *, doing: str, example: str
) -> tuple[str, str]:
    """(db_url, ledger) when both are given and the URL is PostgreSQL's, and the
    server's extra is installed.

    Raises:
        InputError: one is missing, or the URL is not postgresql:// (``doing``
            says what needs them, ``example`` the command line before them).
        ConfigError: psycopg is not installed.
    """
    from mltrail.storage.registry import require_postgres, store_scheme

    if (
        not db_url
        or not ledger
        or store_scheme(db_url) not in ("postgresql", "postgres")
    ):
        raise InputError(
            f"{doing} needs --db postgresql://... and --ledger",
            hint=f"e.g. {example} --db postgresql://postgres@db/audit --ledger team-a",
        )
    require_postgres()
    return db_url, ledger
