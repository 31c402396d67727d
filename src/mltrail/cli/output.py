"""Shared CLI plumbing: the app state, JSON output, opening the home.

What needs no click lives in :mod:`mltrail.cli.printing` and is re-exported here.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from mltrail.cli.printing import (
    LazyConsole,
    close_home,
    console,
    derived_index,
    emit_json,
    err_console,
    open_index,
    raise_if_tampered,
    verdict_of_store_error,
)
from mltrail.cli.state import AppState
from mltrail.errors import InputError

if TYPE_CHECKING:
    from mltrail.ledger.home import Home

__all__ = [
    "COUNT",
    "WORKERS",
    "AppState",
    "LazyConsole",
    "console",
    "derived_index",
    "emit_json",
    "err_console",
    "json_option",
    "open_from",
    "open_index",
    "raise_if_tampered",
    "verdict_of_store_error",
]

COUNT = click.IntRange(0, 10**9)
"""How many things to show or keep: a bounded, non-negative integer."""

WORKERS = click.IntRange(1, max(64, 4 * (os.cpu_count() or 1)))
"""How many processes to start: at least one, at most 4 per core (64 on small machines)."""

json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print machine-readable JSON instead of text.",
)


def open_from(
    ctx: click.Context,
    *,
    writable: bool = False,
    finish_purges: bool = True,
    local_only: str | None = None,
) -> Home:
    """Open the ledger home named by ``--home`` / ``$MLTRAIL_HOME``.

    It is closed when the command ends (a writing command moves the witness
    checkpoint forward then). A writable home finishes interrupted purges first
    unless ``finish_purges`` is False. ``local_only`` names a command that
    cannot work on a ledger kept by an mltrail server (client mode): it is
    refused with one line.
    """
    from mltrail.ledger.home import open_home

    state: AppState = ctx.find_object(AppState) or AppState(None, False)
    if local_only is not None:
        _refuse_client_mode(state, local_only)
    home = open_home(state.home, writable=writable, finish_purges=finish_purges)
    ctx.call_on_close(lambda: close_home(home))
    if not writable:
        state.read_home = home
    return home


def _refuse_client_mode(state: AppState, command: str) -> None:
    """Raise before anything is opened when the home works against a server."""
    from mltrail.config import SETTINGS_FILE, Settings, resolve_home
    from mltrail.ledger.client_mode import server_url

    path = resolve_home(state.home)
    settings = Settings.load(path) if (path / SETTINGS_FILE).exists() else None
    if server_url(os.environ, settings) is not None:
        raise InputError(
            f"`mltrail {command}` works on a ledger kept in this home, not on one "
            "kept by an mltrail server (MLTRAIL_URL)",
            hint="the server's admin does this on the server",
        )
