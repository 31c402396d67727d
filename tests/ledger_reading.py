"""Reading a home's records from tests, the way an auditor's code would."""

from __future__ import annotations

from typing import TYPE_CHECKING

import mltrail

if TYPE_CHECKING:
    from pathlib import Path

    from mltrail.core.entry import Entry


def entries(home: Path, run_id: str | None = None) -> list[Entry]:
    """Every entry of the home (of run ``run_id`` when given), oldest first."""
    opened = mltrail.open_home(home, writable=False, env={})
    try:
        found = [r.entry for r in opened.ledger.records()]
    finally:
        opened.close()
    return [e for e in found if run_id is None or e.run == run_id]
