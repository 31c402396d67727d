"""The ``mltrail model`` group: fingerprints and deltas, plus stage history."""

from __future__ import annotations

from mltrail.cli.model_cmd import model
from mltrail.cli.stage_cmd import demote, history, lock, promote

__all__ = ["model"]

for command in (promote, demote, history, lock):
    model.add_command(command)
