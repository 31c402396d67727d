"""Model locks: after a ``model.sealed`` record, its runs take no more entries.

``mltrail model lock MODEL`` writes ``model.sealed`` naming the runs that made
the model; from then on an entry whose ``run`` is one of them is refused, except
a ``note`` (corrections and remarks stay possible). Pure: records in, locks out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mltrail.core.codec import parse_json
from mltrail.errors import InputError, MltrailError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

    from mltrail.core.entry import Entry

__all__ = [
    "ALLOWED_KINDS",
    "LOCK_KIND",
    "ModelLock",
    "check_not_locked",
    "compute_locks",
    "locks_of_body",
]

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
        except (MltrailError, KeyError, TypeError):
            continue
        for lock in locks_of_body(seq, body):
            locks.setdefault(lock.run, lock)
    return locks


def locks_of_body(seq: int, body: Any) -> list[ModelLock]:
    """The runs the ``model.sealed`` body of the record at ``seq`` locks (none
    when the body is not one)."""
    if not isinstance(body, dict):
        return []
    model, runs = body.get("model"), body.get("runs")
    if not isinstance(model, str) or not isinstance(runs, list):
        return []
    return [ModelLock(seq, model, run) for run in runs if isinstance(run, str)]


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
