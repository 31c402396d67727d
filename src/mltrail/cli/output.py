"""Shared CLI plumbing: the app state, JSON output, opening the home."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any

import click

from mltrail.cli.state import AppState
from mltrail.errors import InputError, MltrailError

if TYPE_CHECKING:
    from rich.console import Console

    from mltrail.index import Index
    from mltrail.ledger.home import Home

__all__ = [
    "COUNT",
    "WORKERS",
    "AppState",
    "console",
    "emit_json",
    "err_console",
    "json_option",
    "open_from",
    "open_index",
]

# Piped or redirected output is read by tools or saved: do not cut tables to 80
# columns there. A terminal gets its own width.
_WIDTH = None if sys.stdout.isatty() else 160


class LazyConsole:
    """A ``rich`` console made on first use: rich costs tens of milliseconds to
    import, which a command printing JSON (or nothing) should not pay."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def get(self) -> Console:
        """The console itself (for rich objects that need a real one)."""
        if self._console is None:
            from rich.console import Console

            self._console = Console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


console = LazyConsole(highlight=False, soft_wrap=True, width=_WIDTH)
err_console = LazyConsole(stderr=True, highlight=False, soft_wrap=True)

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
    ctx.call_on_close(lambda: _close(home))
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


def _close(home: Home) -> None:
    """Close the home; a witness that cannot be moved forward is a warning here.

    What the command wrote is in the ledger by then, so its outcome stands.
    """
    try:
        home.close()
    except MltrailError as e:
        err_console.print(f"warning: {e}", style="yellow", markup=False)
        if e.hint:
            err_console.print(f"hint: {e.hint}", markup=False)


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def open_index(home: Home) -> Index:
    """The home's index, caught up; warns on stderr of records left out of it."""
    from mltrail.index import open_index as open_caught_up

    index = open_caught_up(home)
    if skipped := index.skipped:
        shown = ", ".join(map(str, skipped[:10])) + (
            ", ..." if len(skipped) > 10 else ""
        )
        err_console.print(
            f"warning: record(s) {shown} cannot be read and are left out of the "
            "answer; run `mltrail verify`",
            style="yellow",
            markup=False,
        )
    return index
