"""The ``mltrail model`` group: fingerprints and deltas, stages, approvals, cards."""

from __future__ import annotations

from mltrail.cli.governance_cmd import approve, describe, gate
from mltrail.cli.model_cmd import model
from mltrail.cli.stage_cmd import demote, history, lock, promote

__all__ = ["model"]

for command in (promote, demote, history, lock, approve, describe, gate):
    model.add_command(command)
