"""``POST /verify``: bounded, and shared by the requests that come while it runs.

A full verification reads every record and blob of the ledger and is CPU-bound.
A request that comes while a verification of the same ledger runs, and finds
the ledger's head (size and last hash) where that verification found it, waits
for that verification's report instead of starting another: nothing was
appended since it began, so it checks what the request would have checked, and
every auditor polling a busy ledger costs one verification, not one each.
Any other request takes a verification slot (per user, per ledger, per process:
:mod:`mltrail.server.limits`), 429 or 503 with ``Retry-After`` when none is
left. Waiting holds no thread. A user whose verification of a ledger ended,
while another user was refused for want of the ledger's or the process's
slot, starts another of that ledger only after a pause (``verify_pause``
times the one's duration, and at least the refusal's ``Retry-After``; 429
until then), so that one user asking again as soon as each ends leaves the
slot to the others in turn. ADR 0027, amendments of 2026-12-07.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from typing import TYPE_CHECKING, Any

from fastapi.concurrency import run_in_threadpool

if TYPE_CHECKING:
    from mltrail.server.app import ApiError, Ctx

__all__ = ["RETRY_SECONDS", "Verifications"]

RETRY_SECONDS = 5
"""``Retry-After`` of a verification refused for want of a slot: a pause is
at least this long, so the refused request finds the slot free when it
comes back."""
Head = tuple[int, bytes]
"""A ledger's size and last record hash."""


class Verifications:
    """The verification running for each ledger (at most the latest one
    started), with the head it started at."""

    def __init__(self) -> None:
        self._running: dict[str, tuple[Head, asyncio.Task[dict[str, Any]]]] = {}
        self._sharing: dict[str, int] = {}
        self._pauses: dict[tuple[str, str], float] = {}
        """(ledger, user) -> when (monotonic) the user may start another."""
        self._contended: set[str] = set()
        """Ledgers whose running verification kept another request out."""
        self._lock = threading.Lock()

    def sharing(self, ledger: str) -> int:
        """Requests waiting for the running verification of ``ledger``."""
        with self._lock:
            return self._sharing.get(ledger, 0)

    async def verify(self, ctx: Ctx) -> dict[str, Any]:
        """The report of a verification of ``ctx``'s ledger, begun at its
        present head (the running one's when it began there).

        The verification runs as a task of its own, so a request that goes
        away neither stops it for the others nor gives its slot back before
        its thread is done.

        Raises:
            ApiError: 429 or 503 (no verification slot left), 429 (the
                user's pause after its last verification of the ledger).
        """
        from mltrail.server.app import ApiError, take_slot  # app imports this

        name = ctx.handle.row.name
        head = await run_in_threadpool(_head, ctx)
        with self._lock:
            found = self._running.get(name)
            shared = found is not None and found[0] == head
            if shared:
                self._sharing[name] = self._sharing.get(name, 0) + 1
        if found is not None and shared:
            try:
                return dict(await asyncio.shield(found[1]))
            finally:
                with self._lock:
                    self._sharing[name] -= 1
        user = (name, ctx.principal.name)
        self._check_pause(user)
        try:
            done = take_slot(ctx.state, "verifies", ctx.principal)
        except ApiError as e:
            self._refused(name, e)
            raise
        began = time.monotonic()
        task = asyncio.ensure_future(run_in_threadpool(_verify, ctx))
        with self._lock:
            self._running[name] = (head, task)

        def finished(task: asyncio.Task[dict[str, Any]]) -> None:
            done()
            ended = time.monotonic()
            pause = (ended - began) * ctx.state.limits.verify_pause
            with self._lock:
                self._pauses = {k: t for k, t in self._pauses.items() if t > ended}
                if name in self._contended:
                    self._contended.discard(name)
                    self._pauses[user] = ended + max(pause, RETRY_SECONDS)
                if self._running.get(name, (None, None))[1] is task:
                    del self._running[name]
            if not task.cancelled():
                task.exception()  # retrieved: no "never retrieved" warning

        task.add_done_callback(finished)
        return dict(await asyncio.shield(task))

    def _refused(self, ledger: str, refusal: ApiError) -> None:
        """A request of ``ledger`` was refused: when for want of the ledger's
        slot, its running verification was contended; when for want of the
        process's, every running one was."""
        limit = refusal.extra.get("limit")
        with self._lock:
            if limit == "verifies_per_ledger" and ledger in self._running:
                self._contended.add(ledger)
            elif limit == "verifies_per_server":
                self._contended.update(self._running)

    def _check_pause(self, user: tuple[str, str]) -> None:
        """429 while ``user`` (ledger, name) pauses after its last verification."""
        with self._lock:
            left = self._pauses.get(user, 0.0) - time.monotonic()
        if left <= 0:
            return
        from mltrail.server.app import ApiError  # app imports this module

        wait = math.ceil(left)
        raise ApiError(
            429,
            f"{user[1]!r} verified ledger {user[0]!r} moments ago while others "
            f"waited: another may start in {wait} s, so that they get their turn",
            hint=f"try again in {wait} s, or ask while one runs to share its report",
            extra={"retry_after": wait, "limit": "verify_pause"},
            retry_after=wait,
        )


def _head(ctx: Ctx) -> Head:
    with ctx.handle.reader() as ledger:
        found = ledger.store.head()
    return found.size, found.last_hash


def _verify(ctx: Ctx) -> dict[str, Any]:
    with ctx.handle.reader() as ledger:
        return ledger.verify().to_dict()
