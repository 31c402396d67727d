"""Whose run it is, and the records of a run that another user added.

A run belongs to the user who started it: the ``actor.user`` of its first
``run.started`` record. Every other record of the run (``run.params``,
``run.data``, ``run.artifact``, ``run.ended`` ...) is its owner's too, except
a ``note``: a remark anyone may add to any run, as on a locked one
(:mod:`mltrail.core.lock`). A team server refuses the others from anyone but
the owner or an admin (ADR 0027); readers name the records of a run another
user added (a copied ledger, a home several accounts write to, or a ledger
written before the server refused them), so that another person's params,
data or outputs are never shown as the run's own without a word (ADR 0008).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from mltrail.core.entry import Record

__all__ = [
    "ANYONE_KINDS",
    "MAX_RUN_WARNINGS",
    "START_KIND",
    "RunAuthorship",
    "added_by_others",
    "describe_others",
    "run_owner",
]

START_KIND = "run.started"
ANYONE_KINDS = frozenset({"note"})
"""Kinds any user may add to another user's run."""
MAX_RUN_WARNINGS = 20
"""Runs named one by one by ``RunAuthorship.warnings``; the rest are counted."""


def _user(record: Record) -> str:
    user = record.entry.actor.get("user")
    return user if isinstance(user, str) else ""


def run_owner(records: Iterable[Record]) -> str | None:
    """The user of the run's first ``run.started`` among ``records`` (in seq
    order), or None when it has none."""
    for record in records:
        if record.entry.kind == START_KIND:
            return _user(record)
    return None


def added_by_others(records: Iterable[Record]) -> dict[str, Any] | None:
    """The run's records (other than notes) whose user is not the owner's, or
    None when there are none: ``{"owner": user, "count": n, "by": [{"user",
    "count", "kinds", "seqs"}, ...]}`` (users in order of their first record)."""
    records = list(records)
    owner = run_owner(records)
    if owner is None:
        return None
    by: dict[str, list[Record]] = {}
    for record in records:
        user = _user(record)
        if user != owner and record.entry.kind not in ANYONE_KINDS:
            by.setdefault(user, []).append(record)
    if not by:
        return None
    return {
        "owner": owner,
        "count": sum(len(found) for found in by.values()),
        "by": [
            {
                "user": user,
                "count": len(found),
                "kinds": sorted({r.entry.kind for r in found}),
                "seqs": [r.seq for r in found],
            }
            for user, found in by.items()
        ],
    }


def describe_others(found: dict[str, Any]) -> list[str]:
    """One line per other user, for a person: ``2 record(s) of this run were
    added by bob, not alice (run.ended, run.params; seq 7, 9)``."""
    lines = []
    for other in found["by"]:
        seqs = other["seqs"]
        shown = ", ".join(str(s) for s in seqs[:8]) + (", ..." if len(seqs) > 8 else "")
        lines.append(
            f"{other['count']} record(s) of this run were added by "
            f"{other['user'] or '(no user)'}, not {found['owner'] or '(no user)'} "
            f"({', '.join(other['kinds'])}; seq {shown})"
        )
    return lines


class RunAuthorship:
    """The records of each run another user than its starter added, gathered in
    one walk of a ledger in seq order (``mltrail verify``'s warnings).

    It looks back over records already stored: records before a run's start are
    compared with the user who eventually starts it. Not to be confused with
    :class:`mltrail.server.run_owners.AppendOwnerCheck`, the server's refusal at
    append time, for which a run not started yet is its first writer's.
    """

    def __init__(self) -> None:
        self._owner: dict[str, str] = {}
        self._early: dict[str, list[tuple[int, str, str]]] = {}
        """(seq, user, kind) of a run's records before its start."""
        self._others: dict[str, list[tuple[int, str, str]]] = {}

    def add(self, seq: int, run: str, kind: str, user: object) -> None:
        """Take the next record of ``run``."""
        if kind in ANYONE_KINDS:
            return
        name = user if isinstance(user, str) else ""
        owner = self._owner.get(run)
        if owner is None:
            if kind != START_KIND:
                self._early.setdefault(run, []).append((seq, name, kind))
                return
            owner = self._owner[run] = name
            for early in self._early.pop(run, ()):
                if early[1] != owner:
                    self._others.setdefault(run, []).append(early)
        if name != owner:
            self._others.setdefault(run, []).append((seq, name, kind))

    def warnings(self) -> Iterator[tuple[int, str]]:
        """(first seq, message) per run with records another user added."""
        runs = list(self._others.items())
        for run, found in runs[:MAX_RUN_WARNINGS]:
            users = sorted({user or "(no user)" for _, user, _ in found})
            kinds = sorted({kind for _, _, kind in found})
            yield (
                found[0][0],
                f"run {run} was started by {self._owner[run] or '(no user)'}, but "
                f"{len(found)} of its records were added by {', '.join(users)} "
                f"({', '.join(kinds)}): `mltrail show {run}` lists them",
            )
        if len(runs) > MAX_RUN_WARNINGS:
            rest = runs[MAX_RUN_WARNINGS:]
            yield (
                rest[0][1][0][0],
                f"{len(rest)} more run(s) have records another user than their "
                "starter added",
            )
