"""Model locks: after a ``model.sealed`` record, its runs take no more entries.

``mltrail model lock MODEL`` writes ``model.sealed`` naming the runs that made
the model; from then on an entry whose ``run`` is one of them is refused, except
a ``note`` (corrections and remarks stay possible). Pure: records in, locks out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mltrail.core.codec import parse_json
from mltrail.errors import InputError, MltrailError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from mltrail.core.entry import Entry

__all__ = ["LOCK_KIND", "ModelLock", "check_not_locked", "compute_locks"]

LOCK_KIND = "model.sealed"
ALLOWED_KINDS = frozenset({"note"})


@dataclass(frozen=True, slots=True)
class ModelLock:
    """The ``model.sealed`` record (``seq``) that locked ``run``."""

    seq: int
    model: str
    run: str


def compute_locks(rows: Iterable[tuple[int, bytes]]) -> dict[str, ModelLock]:
    """Locked runs from (seq, record bytes) of ``model.sealed`` records.

    An unreadable record locks nothing (verification names it).
    """
    locks: dict[str, ModelLock] = {}
    for seq, data in rows:
        try:
            body = parse_json(data)["entry"]["body"]
            model, runs = body["model"], body["runs"]
        except (MltrailError, KeyError, TypeError):
            continue
        if isinstance(model, str) and isinstance(runs, list):
            for run in runs:
                if isinstance(run, str):
                    locks.setdefault(run, ModelLock(seq, model, run))
    return locks


def check_not_locked(entries: Sequence[Entry], locks: Mapping[str, ModelLock]) -> None:
    """Refuse an entry that would amend a locked run.

    Raises:
        InputError: one names a locked run and is not a ``note``.
    """
    for entry in entries:
        lock = locks.get(entry.run) if entry.run else None
        if lock is not None and entry.kind not in ALLOWED_KINDS:
            raise InputError(
                f"cannot append {entry.kind} to run {entry.run}: the run is locked "
                f"by model.sealed at seq {lock.seq} (model {lock.model[:16]}...), "
                "which finalised that model's audit",
                hint="a note can still refer to it (mltrail append note ...)",
            )
