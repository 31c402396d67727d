"""The ``mltrail model`` group: fingerprints and deltas, stages, approvals, cards.

Each subcommand's module is imported only when that subcommand runs (or
``--help`` lists them), as for the top-level group: ``mltrail model history``
does not load the fingerprint, delta or approval commands (ADR 0021).
"""

from __future__ import annotations

import click

from mltrail.cli.lazy_group import LazyGroup

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


@click.group(cls=LazyGroup, lazy_commands=_COMMANDS, sort_commands=True)
def model() -> None:
    """Model fingerprints (model ids over tensor bytes) and weight deltas.

    \b
    Examples:
      mltrail model fingerprint ./llama-7b                 # id, tensors, dtypes
      mltrail model fingerprint model.safetensors --tensors
      mltrail model delta ./base ./merged --top 5          # what fine-tuning changed
      mltrail model delta ./base --adapter ./lora --json   # LoRA update norms
    """
