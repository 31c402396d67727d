"""Shared CLI plumbing: the app state, JSON output, opening the home."""

from __future__ import annotations

import json
import sys
from typing import Any

import click
from rich.console import Console

from mltrail.cli.state import AppState
from mltrail.home import Home, open_home

__all__ = [
    "AppState",
    "console",
    "emit_json",
    "err_console",
    "json_option",
    "open_from",
]

# Piped or redirected output is read by tools or saved: do not cut tables to 80
# columns there. A terminal gets its own width.
_WIDTH = None if sys.stdout.isatty() else 160
console = Console(highlight=False, soft_wrap=True, width=_WIDTH)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)

json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print machine-readable JSON instead of text.",
)


def open_from(ctx: click.Context, *, writable: bool = False) -> Home:
    """Open the ledger home named by ``--home`` / ``$MLTRAIL_HOME``.

    It is closed when the command ends (a writing command moves the witness
    checkpoint forward then).
    """
    state: AppState = ctx.find_object(AppState) or AppState(None, False)
    home = open_home(state.home, writable=writable)
    ctx.call_on_close(home.close)
    return home


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))
