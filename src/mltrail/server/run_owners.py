"""A writer adds records to its own runs only (ADR 0027, amendment of 2026-12-07).

A run is its starter's (:mod:`mltrail.core.run_owner`): an append in which an
entry names a run that another user started (its first ``run.started``, stored
or earlier in the same group) is refused, 403, and nothing of it is stored;
notes, which anyone may add to any run, and an admin's entries pass. A run not
started yet belongs to whoever wrote its first record (other than a note), so
that the ranks of a distributed run, which may write before rank 0's start,
pass, and no one can write into a run id before its owner starts it: its
``run.started`` by another user is then refused.

The check runs in the append's transaction under the ledger's append lock
(:meth:`~mltrail.server.ledgers.ServerStore.run_owner`), so server processes
sharing a database cannot both take one run. A run's first ``run.started``
never changes once stored, so its owner is kept in memory after the first
look-up: a run's later appends cost no query.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mltrail.core.lock import LOCK_KIND
from mltrail.core.run_owner import ANYONE_KINDS, START_KIND
from mltrail.errors import AuthError

if TYPE_CHECKING:
    from collections.abc import Sequence

    from mltrail.core.entry import Entry

__all__ = ["MAX_KNOWN", "AppendOwnerCheck"]

MAX_KNOWN = 100_000
"""Owners kept in memory at most (then forgotten at once, and looked up again)."""

Owner = tuple[str, bool]
"""(user, started): ``started`` is False while the run has not started."""


class AppendOwnerCheck:
    """The owners of the runs an appender has seen started, and the check that
    refuses an append into another user's run.

    It decides before a record is stored: a run not started yet is its first
    writer's. Not to be confused with :class:`mltrail.core.run_owner.RunAuthorship`,
    verify's look back over stored records, which compares records before a
    start with the user who eventually starts the run.
    """

    def __init__(self) -> None:
        self._known: dict[str, str] = {}
        self._pending: dict[str, str] = {}

    def check(
        self,
        store: object,
        jobs: Sequence[tuple[Sequence[Entry], bool]],
    ) -> None:
        """Refuse (AuthError) the first entry of ``jobs`` (each its entries and
        whether an admin sent them) that names another user's run.

        ``store`` is the appender's :class:`~mltrail.server.ledgers.ServerStore`,
        in the append's transaction."""
        owners: dict[str, Owner | None] = {}
        for entries, admin in jobs:
            for index, entry in enumerate(entries):
                if entry.kind == LOCK_KIND and not admin:
                    self._check_lock(store, owners, index, entry)
                run = entry.run
                if run is None or entry.kind in ANYONE_KINDS:
                    continue
                if run not in owners:
                    owners[run] = self._lookup(store, run)
                owner = owners[run]
                user = entry.actor.get("user")
                if owner is not None and owner[0] != user and not admin:
                    raise _refusal(index, entry, owner)
                if owner is None or (not owner[1] and entry.kind == START_KIND):
                    owners[run] = (str(user), entry.kind == START_KIND)
        self._pending = {run: o[0] for run, o in owners.items() if o and o[1]}

    def _check_lock(
        self,
        store: object,
        owners: dict[str, Owner | None],
        index: int,
        entry: Entry,
    ) -> None:
        """A ``model.sealed`` locks the runs its body names (every record of
        them but notes refused from then on): a writer locks its own runs only,
        and no run id that nobody wrote yet (that would refuse its owner's
        start)."""
        runs = entry.body.get("runs")
        user = entry.actor.get("user")
        for run in runs if isinstance(runs, list) else ():
            if not isinstance(run, str):
                continue
            if run not in owners:
                owners[run] = self._lookup(store, run)
            owner = owners[run]
            if owner is None or owner[0] != user:
                raise _lock_refusal(index, entry, run, owner)

    def committed(self) -> None:
        """The checked group is stored: keep the owners of the runs it started."""
        if len(self._known) + len(self._pending) > MAX_KNOWN:
            self._known.clear()
        self._known.update(self._pending)
        self._pending = {}

    def _lookup(self, store: object, run: str) -> Owner | None:
        user = self._known.get(run)
        if user is not None:
            return user, True
        return store.run_owner(run)  # type: ignore[attr-defined, no-any-return]


def _refusal(index: int, entry: Entry, owner: Owner) -> AuthError:
    user, started = owner
    whose = (
        f"it was started by {user!r}"
        if started
        else f"it has not started and its records are {user!r}'s"
    )
    return AuthError(
        f"entries[{index}]: cannot append {entry.kind} to run {entry.run}: {whose}, "
        f"not {entry.actor.get('user')!r}'s; only the user who started a run, or "
        "an admin, adds records to it; nothing was stored",
        hint="record into a run of your own; a note (mltrail append --kind note "
        "--run RUN) may remark on another user's run",
    )


def _lock_refusal(index: int, entry: Entry, run: str, owner: Owner | None) -> AuthError:
    whose = (
        "no one has written to it yet" if owner is None else (f"it is {owner[0]!r}'s")
    )
    return AuthError(
        f"entries[{index}]: cannot lock run {run} with model.sealed: {whose}, not "
        f"{entry.actor.get('user')!r}'s; a writer locks only runs of its own, an "
        "admin any; nothing was stored",
        hint="ask the run's owner or the ledger's admin to lock the model",
    )
