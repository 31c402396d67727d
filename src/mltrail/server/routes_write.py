"""Write routes: blobs, entries (group-committed), author keys, tokens.

Request bodies are read as raw bytes with a size limit (413 past it, before
anything is parsed or stored) and parsed with mltrail's own untrusted-JSON
parser (:func:`mltrail.core.codec.parse_json`: depth and duplicate-key limits),
never with pydantic models.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from mltrail.core.codec import format_time, parse_json, parse_time, validate_entry
from mltrail.core.entry import Entry
from mltrail.core.limits import MAX_DEPTH
from mltrail.core.signing import decode_b64
from mltrail.errors import MltrailError, SchemaError
from mltrail.server.app import (
    BEARER,
    ApiError,
    Ctx,
    authorize,
    check_access,
    need,
    raise_for,
    take_slot,
)
from mltrail.server.appender import IdempotencyConflictError, idempotency_scope
from mltrail.server.limits import LargeBody
from mltrail.server.routes_read import DIGEST
from mltrail.server.tokens import UPLOAD_ROLES, kind_allowed

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable
    from concurrent.futures import Future

    from mltrail.core.entry import Record
    from mltrail.ledger.ledger import Ledger
    from mltrail.server.tokens import Principal

__all__ = ["MAX_AHEAD", "MAX_BLOB_BYTES", "MAX_ENTRIES", "MAX_ENTRIES_BYTES", "router"]

router = APIRouter(prefix="/ledgers/{ledger}", tags=["write"])
Writer = Annotated[Ctx, Depends(need(UPLOAD_ROLES))]
Admin = Annotated[Ctx, Depends(need(("admin",)))]
MAX_ENTRIES_BYTES = 16 * 2**20
MAX_BLOB_BYTES = 256 * 2**20
MAX_ENTRIES = 1000
MAX_SMALL_BODY = 64 * 2**10
MAX_IDEMPOTENCY_KEY = 200
MAX_AHEAD = timedelta(seconds=30)
"""How far after the server's clock an entry may be dated."""
_SIG_KEYS = {"alg", "key", "value"}
_TOKEN_ID = re.compile(r"[0-9a-f]{16}")
_JSON_BODY = {
    "requestBody": {
        "required": True,
        "content": {"application/json": {"schema": {"type": "object"}}},
    }
}


async def read_body(
    request: Request, limit: int, large: LargeBody | None = None
) -> bytes:
    """The request body, refused (413) as soon as it passes ``limit`` bytes (see
    :func:`read_chunks`)."""
    return await read_chunks(
        request.headers.get("content-length", ""), request.stream(), limit, large
    )


async def read_chunks(
    declared: str,
    chunks: AsyncIterator[bytes],
    limit: int,
    large: LargeBody | None = None,
) -> bytes:
    """A body from its chunks: 413 when ``declared`` (Content-Length) or the bytes
    read pass ``limit``, before the rest is read. A body declared or read past
    ``large.threshold`` takes its large-body slot first (429 or 503 when its
    user or the process has none left, before more is read). A client gone
    before the body was read is its own error (400, not logged), as on the
    fast append route (:mod:`~mltrail.server.fast_append`), not a failure of
    the server (500, a traceback in the log for each aborted upload)."""
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"the body is over the limit of {limit:,} bytes")
    threshold = limit + 1 if large is None else large.threshold
    if declared.isdigit() and int(declared) >= threshold and large is not None:
        large.need()
    parts, size = [], 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise ApiError(413, f"the body is over the limit of {limit:,} bytes")
            if size >= threshold and large is not None:
                large.need()
            parts.append(chunk)
    except ClientDisconnect as e:
        raise ApiError(400, "the client went away before the body was read") from e
    return b"".join(parts)


def large_body(state: Any, principal: Principal) -> LargeBody:
    """The large-body slot of a request by ``principal`` (not taken yet)."""
    return LargeBody(
        lambda: take_slot(state, "large_bodies", principal),
        state.limits.large_body_bytes,
    )


def _json(body: bytes, what: str, depth: int = 8) -> Any:
    try:
        return parse_json(body, what=what, max_depth=depth, exact_ints=True)
    except SchemaError as e:
        raise ApiError(400, str(e)) from e


@router.put(
    "/blobs/{digest}",
    status_code=201,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/octet-stream": {
                    "schema": {"type": "string", "format": "binary"}
                }
            },
        }
    },
)
async def put_blob(ctx: Writer, digest: str, request: Request) -> dict[str, bool]:
    """Store bytes under their SHA-256 digest (``stored``: false if already there)."""
    if not DIGEST.fullmatch(digest):
        raise ApiError(400, "a digest is sha256:<64 lowercase hex>")
    large = large_body(ctx.state, ctx.principal)
    try:
        data = await read_body(request, MAX_BLOB_BYTES, large)
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise ApiError(400, "the body's SHA-256 is not the digest named")

        def store() -> bool:
            with ctx.handle.reader() as ledger:
                return ledger.store.put_blob(digest, data)

        return {"stored": await run_in_threadpool(store)}
    finally:
        large.release()


@router.post(
    "/entries",
    status_code=201,
    dependencies=[Depends(BEARER)],
    openapi_extra={
        **_JSON_BODY,
        "parameters": [
            {
                "name": "Idempotency-Key",
                "in": "header",
                "required": False,
                "schema": {"type": "string", "maxLength": MAX_IDEMPOTENCY_KEY},
            }
        ],
    },
)
async def post_entries(ledger: str, request: Request) -> JSONResponse:
    """Append entries their authors signed, atomically (group-committed).

    The hot route, kept lean: the token is checked before the body is read
    (401, 403; from the one-second cache of authenticated tokens without a
    thread); then the body (413 past the limit), then in one worker thread the
    entries (role, actor, schema), and the appender's answer is awaited
    without holding a thread.
    """
    state = request.app.state.mltrail
    return JSONResponse(
        await append_request(state, ledger, request.headers.get, request.stream()),
        status_code=201,
    )


async def append_request(
    state: Any,
    ledger: str,
    header: Callable[[str], str | None],
    chunks: AsyncIterator[bytes],
) -> dict[str, Any]:
    """``POST /entries`` from its headers and body chunks to the answer's body
    (raising ApiError); shared by the route and :mod:`~mltrail.server.fast_append`.

    The token is checked before the body is read, so no caller without a valid
    token of this ledger and an upload role makes the server buffer a byte of
    it (401, 403). A token authenticated in the last second is checked here
    without a query or a thread; any other costs one worker thread first."""
    scheme, _, token = (header("authorization") or "").partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise ApiError(401, "a bearer token is required", hint="set MLTRAIL_TOKEN")
    key = header("idempotency-key")
    if key is not None and len(key) > MAX_IDEMPOTENCY_KEY:
        raise ApiError(
            400, f"Idempotency-Key is at most {MAX_IDEMPOTENCY_KEY} characters"
        )
    found = state.recent_tokens.get(token)
    if found is None:
        ctx = await run_in_threadpool(authorize, state, ledger, token, UPLOAD_ROLES)
        found = ctx.principal
    else:
        check_access(found, ledger, UPLOAD_ROLES)
    large = large_body(state, found)
    try:
        declared = header("content-length") or ""
        body = await read_chunks(declared, chunks, MAX_ENTRIES_BYTES, large)
        future = await run_in_threadpool(_queue_append, state, ledger, token, body, key)
        del body  # the appender keeps the entries; the slot covers them until done
        try:
            return await asyncio.wrap_future(future)
        except IdempotencyConflictError as e:
            raise ApiError(409, str(e), hint=e.hint) from e
        except MltrailError as e:
            raise raise_for(e) from e
    finally:
        large.release()


def _queue_append(
    state: Any, ledger: str, token: str, body: bytes, key: str | None
) -> Future[dict[str, Any]]:
    ctx = authorize(state, ledger, token, UPLOAD_ROLES)
    data = _json(body, "the request body", depth=MAX_DEPTH + 4)
    if not isinstance(data, dict) or set(data) != {"entries"}:
        raise ApiError(400, 'the body is {"entries": [entry, ...]}')
    items = data["entries"]
    if not isinstance(items, list) or not 1 <= len(items) <= MAX_ENTRIES:
        raise ApiError(400, f"entries is a list of 1 to {MAX_ENTRIES} entries")
    entries = [_entry(ctx, i, item) for i, item in enumerate(items)]
    return ctx.handle.appender.append(
        entries,
        key=None if key is None else idempotency_scope(ctx.principal.name, key),
        token_id=ctx.principal.token_id,
        request_sha256=hashlib.sha256(body).digest(),
        admin=ctx.principal.role == "admin",
    )


def _entry(ctx: Ctx, index: int, item: Any) -> Entry:
    """Check one entry before it is queued: shape, schema, role, actor."""
    where = f"entries[{index}]"
    if not isinstance(item, dict):
        raise ApiError(400, f"{where} is not an object")
    sig = item.get("sig")
    if not isinstance(sig, dict) or set(sig) != _SIG_KEYS:
        raise ApiError(400, f"{where} needs sig {{alg, key, value}}")
    kind, actor = item.get("kind"), item.get("actor")
    if not isinstance(kind, str) or not isinstance(actor, dict):
        raise ApiError(400, f"{where} needs kind (a string) and actor (an object)")
    if not kind_allowed(ctx.principal.role, kind):
        raise ApiError(403, f"{where}: role {ctx.principal.role} may not append {kind}")
    if actor.get("user") != ctx.principal.name:
        raise ApiError(
            403,
            f"{where}: actor.user {actor.get('user')!r} is not this token's name "
            f"{ctx.principal.name!r}",
        )
    try:
        validate_entry({k: v for k, v in item.items() if k != "sig"})
    except SchemaError as e:
        raise ApiError(400, f"{where}: {e}") from e
    _check_not_ahead(where, item["time"])
    try:
        return Entry.from_dict(item)
    except (KeyError, TypeError) as e:
        raise ApiError(400, f"{where}: {e}") from e


def _check_not_ahead(where: str, time: str) -> None:
    """Refuse an entry dated more than ``MAX_AHEAD`` after the server's clock.

    The format allows its tolerance (5 minutes) ahead, and refuses an entry
    dated more than that before the ledger's newest time: one writer dating
    its entries 5 minutes ahead would have every other user's entry refused
    that is more than moments old when it arrives. Bounding dates from above
    at 30 s bounds that to entries 4.5 minutes old (ADR 0027)."""
    now = datetime.now(UTC)
    if parse_time(time) > now + MAX_AHEAD:
        raise ApiError(
            422,
            f"{where}: refusing an entry dated {time}: it is in the future (the "
            f"clock of the machine appending it says {format_time(now)}, and the "
            f"server takes entries dated at most {MAX_AHEAD.seconds} s after "
            "the server's clock)",
            hint="set this machine's clock right (NTP); the server takes entries "
            f"dated at most {MAX_AHEAD.seconds} s ahead of its own",
        )


@router.post("/keys", status_code=201, openapi_extra=_JSON_BODY)
async def register_key(ctx: Writer, request: Request) -> dict[str, Any]:
    """Register an author key for an identity; the log key signs its key.added."""
    data = _json(await read_body(request, MAX_SMALL_BODY), "the request body")
    if not isinstance(data, dict) or set(data) != {"public_key", "identity", "proof"}:
        raise ApiError(400, 'the body is {"public_key", "identity", "proof"}')
    identity = data["identity"]
    if not all(isinstance(data[k], str) for k in data):
        raise ApiError(400, "public_key, identity and proof are strings")
    if identity != ctx.principal.name and ctx.principal.role != "admin":
        raise ApiError(403, "only an admin registers a key for another identity")
    try:
        public_key, proof = decode_b64(data["public_key"]), decode_b64(data["proof"])
    except ValueError as e:
        raise ApiError(400, f"public_key and proof are base64: {e}") from e

    def register(ledger: Ledger) -> Record:
        return ledger.register_key(public_key, identity, proof)

    try:
        record = await run_in_threadpool(ctx.handle.appender.call, register)
    except MltrailError as e:
        raise raise_for(e) from e
    return {"seq": record.seq, "key": record.entry.body["key"]}


@router.post("/tokens", status_code=201, openapi_extra=_JSON_BODY, tags=["admin"])
async def create_token(ctx: Admin, request: Request) -> dict[str, Any]:
    """Make a token for this ledger; the text is in this answer only."""
    data = _json(await read_body(request, MAX_SMALL_BODY), "the request body")
    if not isinstance(data, dict) or not {"name", "role"} <= set(data) <= {
        "name",
        "role",
        "expires_days",
    }:
        raise ApiError(400, 'the body is {"name", "role", "expires_days"}')
    days = data.get("expires_days", 90)
    if not isinstance(data["name"], str) or not isinstance(data["role"], str):
        raise ApiError(400, "name and role are strings")
    if days is not None and (
        isinstance(days, bool) or not isinstance(days, (int, float))
    ):
        raise ApiError(400, "expires_days is a number of days or null")

    def create() -> dict[str, Any]:
        with ctx.handle_control() as control:
            return control.create_token(
                ctx.handle.row.name,
                data["name"],
                data["role"],
                expires_days=days,
                created_by=ctx.principal.name,
            )

    try:
        made = await run_in_threadpool(create)
    except MltrailError as e:
        raise raise_for(e, refused=400) from e
    return {k: made[k] for k in ("id", "token", "expires", "name", "role")}


@router.get("/tokens", tags=["admin"])
def list_tokens(ctx: Admin) -> dict[str, Any]:
    """This ledger's tokens, without secrets."""
    with ctx.handle_control() as control:
        return {"tokens": control.list_tokens(ctx.handle.row.name)}


@router.post("/tokens/{token_id}/revoke", tags=["admin"])
def revoke_token(ctx: Admin, token_id: str) -> dict[str, Any]:
    """Revoke a token of this ledger: refused at once by this server process, and
    within a second by others (they reuse an authentication for 1 s)."""
    if not _TOKEN_ID.fullmatch(token_id):  # a NUL would fail in the database
        raise ApiError(404, f"no token {token_id!r} on {ctx.handle.row.name}")
    with ctx.handle_control() as control:
        try:
            newly = control.revoke_token(
                token_id, ctx.principal.name, ledger=ctx.handle.row.name
            )
        except MltrailError as e:
            raise ApiError(404, str(e)) from e
    ctx.state.recent_tokens.forget(token_id)
    return {"id": token_id, "revoked": True, "already": not newly}
