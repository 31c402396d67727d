"""``POST /verify``: bounded, and shared by the requests that come while it runs.

A full verification reads every record and blob of the ledger and is CPU-bound.
A request that comes while a verification of the same ledger runs, and finds
the ledger's head (size and last hash) where that verification found it, waits
for that verification's report instead of starting another: nothing was
appended since it began, so it checks what the request would have checked, and
every auditor polling a busy ledger costs one verification, not one each.
Any other request takes a verification slot (per user, per ledger, per process:
:mod:`mltrail.server.limits`), 429 or 503 with ``Retry-After`` when none is
left. Waiting holds no thread. ADR 0027, amendment of 2026-12-07.
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING, Any

from fastapi.concurrency import run_in_threadpool

if TYPE_CHECKING:
    from mltrail.server.app import Ctx

__all__ = ["Verifications"]

Head = tuple[int, bytes]
"""A ledger's size and last record hash."""


class Verifications:
    """The verification running for each ledger (at most the latest one
    started), with the head it started at."""

    def __init__(self) -> None:
        self._running: dict[str, tuple[Head, asyncio.Task[dict[str, Any]]]] = {}
        self._sharing: dict[str, int] = {}
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
            ApiError: 429 or 503 (no verification slot left).
        """
        from mltrail.server.app import take_slot  # app imports this module

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
        done = take_slot(ctx.state, "verifies", ctx.principal)
        task = asyncio.ensure_future(run_in_threadpool(_verify, ctx))
        with self._lock:
            self._running[name] = (head, task)

        def finished(task: asyncio.Task[dict[str, Any]]) -> None:
            done()
            with self._lock:
                if self._running.get(name, (None, None))[1] is task:
                    del self._running[name]
            if not task.cancelled():
                task.exception()  # retrieved: no "never retrieved" warning

        task.add_done_callback(finished)
        return dict(await asyncio.shield(task))


def _head(ctx: Ctx) -> Head:
    with ctx.handle.reader() as ledger:
        found = ledger.store.head()
    return found.size, found.last_hash


def _verify(ctx: Ctx) -> dict[str, Any]:
    with ctx.handle.reader() as ledger:
        return ledger.verify().to_dict()
