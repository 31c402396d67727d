"""Legal holds as the ledger states them: the kinds, and what an entry names.

Pure helpers shared by ``mltrail hold`` / ``mltrail purge`` (which refuse to
purge a held blob) and verification (which reports a purge that did anyway).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mltrail.core.entry import Entry

__all__ = ["HOLD_ADDED", "HOLD_KINDS", "HOLD_RELEASED", "runs_named"]

HOLD_ADDED, HOLD_RELEASED = "hold.added", "hold.released"
HOLD_KINDS = (HOLD_ADDED, HOLD_RELEASED)


def runs_named(entry: Entry) -> Iterator[str]:
    """The runs an entry names: its own, and a body's ``run`` or ``runs``."""
    if entry.run:
        yield entry.run
    run = entry.body.get("run")
    if isinstance(run, str):
        yield run
    runs = entry.body.get("runs")
    if isinstance(runs, list):
        yield from (r for r in runs if isinstance(r, str))
