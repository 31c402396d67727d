"""A click group whose commands are imported on first use (start-up pays only
for the command that runs)."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["LazyGroup"]


class LazyGroup(click.Group):
    """A group whose commands are imported on first use.

    Args:
        lazy_commands: command name -> ``module:attribute``.
        sort_commands: list them sorted (else in ``lazy_commands``' order).
    """

    def __init__(
        self,
        *args: Any,
        lazy_commands: Mapping[str, str],
        sort_commands: bool = False,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._lazy = lazy_commands
        self._sort = sort_commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self._lazy) if self._sort else list(self._lazy)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = self._lazy.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command
