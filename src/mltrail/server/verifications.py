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
from concurrent.futures import Future
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
        self._running: dict[str, tuple[Head, Future[dict[str, Any]]]] = {}
        self._sharing: dict[str, int] = {}
        self._lock = threading.Lock()

    def sharing(self, ledger: str) -> int:
        """Requests waiting for the running verification of ``ledger``."""
        with self._lock:
            return self._sharing.get(ledger, 0)

    async def verify(self, ctx: Ctx) -> dict[str, Any]:
        """The report of a verification of ``ctx``'s ledger, begun at its
        present head (the running one's when it began there).

        Raises:
            ApiError: 429 or 503 (no verification slot left).
        """
        from mltrail.server.app import take_slot  # app imports this module

        name = ctx.handle.row.name
        head = await run_in_threadpool(_head, ctx)
        with self._lock:
            found = self._running.get(name)
            if found is not None and found[0] == head:
                self._sharing[name] = self._sharing.get(name, 0) + 1
        if found is not None and found[0] == head:
            try:
                return dict(await asyncio.wrap_future(found[1]))
            finally:
                with self._lock:
                    self._sharing[name] -= 1
        done = take_slot(ctx.state, "verifies", ctx.principal)
        future: Future[dict[str, Any]] = Future()
        with self._lock:
            self._running[name] = (head, future)
        try:
            report = await run_in_threadpool(_verify, ctx)
        except BaseException as e:
            future.set_exception(e)
            future.exception()  # retrieved: no "never retrieved" warning
            raise
        else:
            future.set_result(report)
            return dict(report)
        finally:
            with self._lock:
                if self._running.get(name, (None, None))[1] is future:
                    del self._running[name]
            done()


def _head(ctx: Ctx) -> Head:
    with ctx.handle.reader() as ledger:
        found = ledger.store.head()
    return found.size, found.last_hash


def _verify(ctx: Ctx) -> dict[str, Any]:
    with ctx.handle.reader() as ledger:
        return ledger.verify().to_dict()
