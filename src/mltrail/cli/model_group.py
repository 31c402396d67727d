"""The ``mltrail model`` group: fingerprints and deltas, stages, approvals, cards.

Each subcommand's module is imported only when that subcommand runs (or
``--help`` lists them), as for the top-level group: ``mltrail model history``
does not load the fingerprint, delta or approval commands (ADR 0021).
"""

from __future__ import annotations

import importlib

import click

__all__ = ["model"]

_COMMANDS = {
    "approve": "mltrail.cli.governance_cmd:approve",
    "delta": "mltrail.cli.model_cmd:delta",
    "demote": "mltrail.cli.stage_cmd:demote",
    "describe": "mltrail.cli.governance_cmd:describe",
    "fingerprint": "mltrail.cli.model_cmd:fingerprint",
    "gate": "mltrail.cli.governance_cmd:gate",
    "history": "mltrail.cli.stage_cmd:history",
    "lock": "mltrail.cli.stage_cmd:lock",
    "promote": "mltrail.cli.stage_cmd:promote",
}
"""Subcommand name -> ``module:attribute``, sorted as click lists them."""


class _LazyGroup(click.Group):
    """A group whose subcommands are imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(_COMMANDS)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        target = _COMMANDS.get(cmd_name)
        if target is None:
            return None
        module, _, attr = target.partition(":")
        command: click.Command = getattr(importlib.import_module(module), attr)
        return command


@click.group(cls=_LazyGroup)
def model() -> None:
    """Model fingerprints (model ids over tensor bytes) and weight deltas.

    \b
    Examples:
      mltrail model fingerprint ./llama-7b                 # id, tensors, dtypes
      mltrail model fingerprint model.safetensors --tensors
      mltrail model delta ./base ./merged --top 5          # what fine-tuning changed
      mltrail model delta ./base --adapter ./lora --json   # LoRA update norms
    """
