"""Run liveness for clients: a run held live while its recorder keeps a request open.

A client's recorder has no session with the database to hold its run with (see
``Store.hold_run`` and ADR 0029), so the server holds it for the client:
``POST /ledgers/{ledger}/runs/{run}/hold`` takes the run's hold in the database
(a session advisory lock on a connection of its own) and answers with a stream
that says ``held`` and then a newline every few seconds, for as long as the
client keeps the request open or until its ``lease`` (seconds, default an hour)
ends, when the client asks again (so no proxy's request limit cuts a long run).
When the client closes it, exits or its host goes away, the stream ends (a write
fails, or the disconnect is seen) and the hold is released, so every host sees
the run ``stale``; so it does, within a heartbeat, once the client's token is
revoked or expires.
``GET /ledgers/{ledger}/runs/live?runs=a,b`` says which of the runs are held.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse

from mltrail.core.limits import run_id_problem
from mltrail.server.app import ApiError, Ctx, need, take_slot
from mltrail.server.tokens import READ_ROLES, UPLOAD_ROLES

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable

    from mltrail.storage.base import RunHold

__all__ = [
    "HEARTBEAT_SECONDS",
    "LEASE_SECONDS",
    "MAX_LEASE_SECONDS",
    "MAX_LIVE_QUERY",
    "router",
]

router = APIRouter(prefix="/ledgers/{ledger}/runs", tags=["runs"])
Reader = Annotated[Ctx, Depends(need(READ_ROLES))]
Writer = Annotated[Ctx, Depends(need(UPLOAD_ROLES))]
HEARTBEAT_SECONDS = 5.0
LEASE_SECONDS = 3600.0
MAX_LEASE_SECONDS = 86400.0
MAX_LIVE_QUERY = 1000


def _check_run(run: str) -> str:
    problem = run_id_problem(run)
    if problem is not None:
        raise ApiError(400, problem)
    return run


@router.post(
    "/{run}/hold",
    responses={200: {"content": {"text/plain": {}}, "description": "a held stream"}},
)
async def hold_run(
    ctx: Writer,
    run: str,
    request: Request,
    lease: Annotated[float, Query(ge=0.1, le=MAX_LEASE_SECONDS)] = LEASE_SECONDS,
) -> StreamingResponse:
    """Hold run ``run`` live while this request stays open, ``lease`` seconds at
    most: a run not started yet, or one started by this token's name."""
    _check_run(run)
    slot = take_slot(ctx.state, "holds", ctx.principal)
    try:
        hold = await run_in_threadpool(_take_hold, ctx, run)
    except BaseException:
        slot()
        raise
    return StreamingResponse(
        _held(hold, request, lease, slot, lambda: _token_valid(ctx)),
        media_type="text/plain; charset=utf-8",
    )


async def _token_valid(ctx: Ctx) -> bool:
    """Is the hold's token still unexpired and unrevoked? (One query by key; a
    database that does not answer leaves the hold as it is.)"""
    from datetime import UTC, datetime

    principal = ctx.principal
    if principal.expires is not None and principal.expires <= datetime.now(UTC):
        return False

    def revoked() -> bool:
        with ctx.handle_control() as control:
            return control.revoked(principal.token_id)

    try:
        return not await run_in_threadpool(revoked)
    except Exception:  # the database is away: the hold's own session says more
        return True


def _take_hold(ctx: Ctx, run: str) -> RunHold:
    """The run's hold; 403 when the run is another user's by the rule appends
    follow (:mod:`~mltrail.server.run_owners`: its starter's, or while not
    started the user of its first record; an admin holds any run), 409 when
    it is held already."""
    from mltrail.storage.postgres import RunHeldError

    try:
        with ctx.handle.reader() as ledger:
            owner = ledger.store.run_owner(run)  # type: ignore[attr-defined]
            name = ctx.principal.name
            if owner is not None and owner[0] != name and ctx.principal.role != "admin":
                raise ApiError(
                    403,
                    f"run {run} is {owner[0]!r}'s, not {name!r}'s: only its "
                    "recorder holds it live",
                )
            hold = ledger.store.hold_run(run)
    except RunHeldError as e:
        raise ApiError(409, str(e), hint=e.hint) from e
    if hold is None:  # pragma: no cover - the server's stores always hold
        raise ApiError(501, "this ledger's store cannot hold runs")
    return hold


async def _held(
    hold: RunHold,
    request: Request,
    lease: float,
    slot: Callable[[], None],
    token_valid: Callable[[], Awaitable[bool]],
) -> AsyncIterator[bytes]:
    """``held``, then a newline each heartbeat until the client goes, the lease
    ends, or the token is revoked or expires (checked each heartbeat)."""
    loop = asyncio.get_running_loop()
    ends = loop.time() + lease
    try:
        yield b"held\n"
        while not await request.is_disconnected():
            left = ends - loop.time()
            if left <= 0:
                return
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(_forever(), min(HEARTBEAT_SECONDS, left))
            if not await token_valid():
                return
            yield b"\n"
    finally:
        hold.release()  # also when the stream is cancelled: closing is quick
        slot()


async def _forever() -> None:
    await asyncio.Event().wait()


@router.get("/live")
def live_runs(
    ctx: Reader,
    runs: Annotated[str, Query(max_length=200_000)] = "",
) -> dict[str, Any]:
    """Which of the comma-separated ``runs`` some client holds live now."""
    wanted = [r for r in runs.split(",") if r]
    if len(wanted) > MAX_LIVE_QUERY:
        raise ApiError(400, f"at most {MAX_LIVE_QUERY} runs per question")
    for run in wanted:
        _check_run(run)
    with ctx.handle.reader() as ledger:
        live = ledger.store.live_runs(wanted) or set()
    return {"live": sorted(live)}
