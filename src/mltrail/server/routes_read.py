"""Read routes: ledger, head, records, Merkle nodes, checkpoints, blobs, proofs, keys,
verification. Every role may read its own ledger."""

from __future__ import annotations

import base64
import json
import re
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response, StreamingResponse

from mltrail.server.app import ApiError, Ctx, need, take_slot
from mltrail.server.tokens import READ_ROLES

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable

    from mltrail.storage.base import Store

__all__ = ["DIGEST", "router"]

router = APIRouter(prefix="/ledgers/{ledger}", tags=["read"])
Reader = Annotated[Ctx, Depends(need(READ_ROLES))]
DIGEST = re.compile(r"sha256:[0-9a-f]{64}")
_MAX_SEQ = 2**62
Seq = Annotated[int, Query(ge=0, le=_MAX_SEQ)]
MAX_RECORDS = 5000
MAX_PAGE_BYTES = 16 * 2**20
MAX_NODES = 100_000
_CHUNK = 2**18
_NODE_JSON_BYTES = 89
"""The most JSON bytes one node of ``GET /nodes`` takes: ``"<index>":"<64 hex>",``."""
_JSON_OBJECT: dict[int | str, dict[str, Any]] = {
    200: {"content": {"application/json": {"schema": {"type": "object"}}}}
}


def _json_answer(
    ctx: Ctx, body: Any, release: Callable[[], None] | None = None
) -> Response:
    """``body`` as JSON (as FastAPI writes it). An answer of
    ``large_body_bytes`` or more is sent in the caller's large-body slot (429
    or 503 with ``Retry-After`` when its user or the process has none left),
    given back once sent, as a large blob is: a reader asking for large
    answers on connection after connection without reading them had the
    server hold each. ``release``: the slot already taken (given back at once
    when the answer is small)."""
    try:
        data = json.dumps(
            body, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
    except BaseException:
        if release is not None:
            release()
        raise
    if len(data) < ctx.state.limits.large_body_bytes:
        if release is not None:
            release()
        return Response(data, media_type="application/json")
    if release is None:
        release = take_slot(ctx.state, "large_bodies", ctx.principal)
    return _SentThenReleased(data, release, "application/json")


@router.get("")
def ledger_info(ctx: Reader) -> dict[str, Any]:
    """The ledger's name, origin, size, genesis key and current log keys, and who
    the caller's token says it is (``identity``, ``role``: a client writes the
    identity as its entries' ``actor.user``)."""
    handle = ctx.handle
    with handle.reader() as ledger:
        size = ledger.store.head().size
        keys = handle.keys(ledger)
    log_keys = [
        k["key"] for k in keys if k["identity"] is None and k["revoked_seq"] is None
    ]
    return {
        "name": handle.row.name,
        "origin": handle.row.origin,
        "size": size,
        "genesis_key": handle.genesis_key,
        "log_keys": log_keys,
        "identity": ctx.principal.name,
        "role": ctx.principal.role,
    }


@router.get("/head")
def head(ctx: Reader) -> dict[str, Any]:
    """The head: size, last hash and time, key epoch, time floor, frontier, checkpoint."""
    with ctx.handle.reader() as ledger:
        h = ledger.store.append_head()
    return {
        "size": h.size,
        "last_hash": h.last_hash.hex(),
        "last_time": h.last_time,
        "key_epoch": h.key_epoch,
        "floor_time": h.floor_time,
        "frontier": [f.hex() for f in h.frontier],
        "checkpoint": h.checkpoint,
    }


@router.get("/records", response_model=None, responses=_JSON_OBJECT)
def records(
    ctx: Reader,
    start: Seq = 0,
    stop: Annotated[int | None, Query(ge=0, le=_MAX_SEQ)] = None,
    limit: Annotated[int, Query(ge=1, le=MAX_RECORDS)] = 1000,
    kinds: Annotated[
        str | None, Query(max_length=2000, pattern=r"^[a-z0-9_.,]*$")
    ] = None,
) -> Response:
    """Stored records (base64 canonical bytes, and the stored hash, hex) from
    ``start``; ``next`` pages on. A page ends at ``limit`` records or once it
    holds ``MAX_PAGE_BYTES`` of them (records go up to 4 MiB each).
    A page may be large (22 MiB of JSON): it is read in the caller's
    large-body slot (429 or 503 when none is left, before anything is read),
    given back at once when the answer is small, else once it is sent.
    ``kinds``: comma-separated kind names (the characters a kind has; anything
    else, a NUL above all, is 400 rather than an error of the database)."""
    end = _MAX_SEQ if stop is None else stop
    wanted = tuple(k for k in (kinds or "").split(",") if k)
    release = take_slot(ctx.state, "large_bodies", ctx.principal)
    try:
        with ctx.handle.reader() as ledger:
            rows, more = ledger.store.records_page(  # type: ignore[attr-defined]
                start, end, limit, MAX_PAGE_BYTES, wanted
            )
        page = {
            "records": [
                {
                    "seq": r.seq,
                    "hash": r.hash.hex(),
                    "data": base64.b64encode(r.data).decode(),
                }
                for r in rows
            ],
            "next": rows[-1].seq + 1 if more else None,
        }
    except BaseException:
        release()
        raise
    del rows
    return _json_answer(ctx, page, release)


@router.get("/nodes", response_model=None, responses=_JSON_OBJECT)
def nodes(
    ctx: Reader,
    level: Annotated[int, Query(ge=0, le=63)],
    start: Seq,
    stop: Seq,
) -> Response:
    """Stored Merkle nodes at ``level`` with ``start <= index < stop``. A range
    whose answer may be large (``_NODE_JSON_BYTES`` a node) is read in the
    caller's large-body slot, taken before the read, as a page of records is."""
    if not 0 <= stop - start <= MAX_NODES:
        raise ApiError(400, f"need start <= stop <= start + {MAX_NODES}")
    release = None
    if (stop - start) * _NODE_JSON_BYTES >= ctx.state.limits.large_body_bytes:
        release = take_slot(ctx.state, "large_bodies", ctx.principal)
    try:
        with ctx.handle.reader() as ledger:
            found = ledger.store.node_range(level, start, stop)
        answer = {"nodes": {str(i): h.hex() for i, h in sorted(found.items())}}
    except BaseException:
        if release is not None:
            release()
        raise
    return _json_answer(ctx, answer, release)


@router.get("/nodes/{level}/{index}")
def node(ctx: Reader, level: int, index: int) -> dict[str, str]:
    """One stored Merkle node."""
    if not (0 <= level <= 63 and 0 <= index <= _MAX_SEQ):
        raise ApiError(400, "level is 0..63 and index 0..2^62")
    with ctx.handle.reader() as ledger:
        found = ledger.store.node_range(level, index, index + 1)
    if index not in found:
        raise ApiError(404, f"no Merkle node ({level}, {index})")
    return {"hash": found[index].hex()}


@router.get("/checkpoints", response_model=None, responses=_JSON_OBJECT)
def checkpoints(ctx: Reader) -> Response:
    """Every stored checkpoint, oldest first."""
    with ctx.handle.reader() as ledger:
        found = ledger.store.checkpoints()
    answer = {"checkpoints": [{"size": c.size, "text": c.text} for c in found]}
    return _json_answer(ctx, answer)


@router.get("/checkpoints/latest")
def latest_checkpoint(ctx: Reader) -> dict[str, Any]:
    """The newest stored checkpoint."""
    with ctx.handle.reader() as ledger:
        found = ledger.store.latest_checkpoint()
    if found is None:
        raise ApiError(404, "no checkpoint stored")
    return {"size": found.size, "text": found.text}


@router.get("/time-floor")
def time_floor(ctx: Reader) -> dict[str, Any]:
    """The newest entry time since the last clock.reset, and its seq."""
    with ctx.handle.reader() as ledger:
        found = ledger.store.time_floor()
    return {"time": None} if found is None else {"time": found[0], "seq": found[1]}


@router.get("/meta")
def meta(ctx: Reader) -> dict[str, str]:
    """The ledger's meta values (origin, format)."""
    with ctx.handle.reader() as ledger:
        return ledger.store.meta()


@router.get(
    "/evidence",
    response_model=None,
    responses={200: {"content": {"application/json": {"schema": {"type": "array"}}}}},
)
def evidence(ctx: Reader) -> Response:
    """Checkpoint evidence (timestamps, cosignatures), data in base64."""
    with ctx.handle.reader() as ledger:
        found = ledger.store.evidence()
    answer = [
        {
            "id": e.id,
            "kind": e.kind,
            "size": e.size,
            "checkpoint": e.checkpoint,
            "data": base64.b64encode(e.data).decode(),
            "added": e.added,
        }
        for e in found
    ]
    return _json_answer(ctx, answer)


@router.get("/purges")
def purges(ctx: Reader) -> list[dict[str, Any]]:
    """Purged blobs: digest, size, the purge record's seq, whether erased."""
    with ctx.handle.reader() as ledger:
        found = ledger.store.purges()
    return [
        {"digest": p.digest, "seq": p.seq, "size": p.size, "erased": p.erased}
        for p in found
    ]


@router.get("/blobs")
def find_blobs(
    ctx: Reader,
    prefix: Annotated[
        str, Query(max_length=71, pattern=r"^(sha256:[0-9a-f]{0,64})?$")
    ] = "",
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> dict[str, Any]:
    """Stored blobs whose digest starts with ``prefix``: [[digest, size]]."""
    with ctx.handle.reader() as ledger:
        found = ledger.store.find_blobs(prefix or "sha256:", limit)
    return {"blobs": [[d, s] for d, s in found]}


@router.api_route(
    "/blobs/{digest}",
    methods=["GET", "HEAD"],
    response_class=Response,
    responses={200: {"content": {"application/octet-stream": {}}}},
)
def get_blob(ctx: Reader, digest: str, request: Request) -> Response:
    """A blob's bytes; 410 (naming the purge seq) once purged.

    ``HEAD`` answers from the blob's size without reading it. A blob of
    ``large_body_bytes`` or more is read in a large-body slot, held until its
    bytes are sent (429 or 503 with ``Retry-After`` when the caller's user or
    the process has none left): any reader could otherwise have the server
    hold as many copies of a 256 MiB blob at once as it asked for."""
    if not DIGEST.fullmatch(digest):
        raise ApiError(400, "a digest is sha256:<64 lowercase hex>")
    with ctx.handle.reader() as ledger:
        found = dict(ledger.store.find_blobs(digest, 1))
        size = found.get(digest)
        if size is None:
            _raise_gone(ledger.store, digest)
        if request.method == "HEAD":
            return Response(
                media_type="application/octet-stream",
                headers={"content-length": str(size)},
            )
        release = None
        if size >= ctx.state.limits.large_body_bytes:
            release = take_slot(ctx.state, "large_bodies", ctx.principal)
        try:
            data = ledger.store.get_blob(digest)
            if data is None:  # erased between the two reads: by a purge
                _raise_gone(ledger.store, digest)
        except BaseException:
            if release is not None:
                release()
            raise
    assert data is not None
    if release is None:
        return Response(data, media_type="application/octet-stream")
    return _SentThenReleased(data, release)


def _raise_gone(store: Store, digest: str) -> NoReturn:
    """410 naming the purge's seq when a purge record names ``digest``, else
    404. Also for a blob found, then erased before its bytes were read: a
    store erases only a blob a stored purge record names, so the second look
    finds that record (a 404 there read as a blob missing with no purge, which
    a verification reports as tampering)."""
    purge = store.purge_of(digest)
    if purge is not None:
        raise ApiError(
            410,
            f"blob {digest} was purged (seq {purge.seq})",
            extra={"seq": purge.seq},
        )
    raise ApiError(404, f"no blob {digest}")


class _SentThenReleased(StreamingResponse):
    """An answer's bytes (a blob's, a large JSON answer's), sent in chunks
    so that a client not reading holds the send (flow control) rather than
    the server buffering the rest; its large-body slot is given back once
    they are sent or the client went away."""

    def __init__(
        self,
        data: bytes,
        release: Callable[[], None],
        media_type: str = "application/octet-stream",
    ) -> None:
        super().__init__(
            _chunks(data),
            media_type=media_type,
            headers={"content-length": str(len(data))},
        )
        self._release = release

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._release()


async def _chunks(data: bytes) -> AsyncIterator[bytes]:
    view = memoryview(data)
    for at in range(0, len(view), _CHUNK):
        yield bytes(view[at : at + _CHUNK])


@router.get("/proofs/inclusion")
def prove_inclusion(
    ctx: Reader, seq: Seq, size: Annotated[int, Query(ge=1, le=_MAX_SEQ)]
) -> dict[str, Any]:
    """RFC 9162 inclusion proof of record ``seq`` in the tree of ``size`` records."""
    with ctx.handle.reader() as ledger:
        have = ledger.store.head().size
        if not seq < size <= have:
            raise ApiError(
                404, f"seq {seq} is not in a tree of {size} (the ledger has {have})"
            )
        return ledger.prove_inclusion(seq, size).to_dict()


@router.get("/proofs/consistency")
def prove_consistency(
    ctx: Reader,
    old: Annotated[int, Query(ge=1, le=_MAX_SEQ)],
    new: Annotated[int, Query(ge=1, le=_MAX_SEQ)],
) -> dict[str, Any]:
    """RFC 9162 consistency proof from the tree of ``old`` to ``new`` records."""
    with ctx.handle.reader() as ledger:
        have = ledger.store.head().size
        if not old <= new <= have:
            raise ApiError(404, f"need 1 <= old <= new <= {have}")
        return ledger.prove_consistency(old, new).to_dict()


@router.post("/verify")
async def verify(ctx: Reader) -> dict[str, Any]:
    """Verify the whole ledger: the report ``mltrail verify --json`` prints.

    CPU-bound and as long as the ledger: shared by the requests that come
    while one runs at the same head, else bounded per user, per ledger and in
    the process (429 or 503 with ``Retry-After``; see
    :mod:`mltrail.server.verifications`)."""
    return await ctx.state.verifications.verify(ctx)


@router.get("/limits")
def limits(ctx: Reader) -> dict[str, Any]:
    """The process's bounds (``mltrail server --limit``) and the slots this
    token's user, its ledger and the process hold now (and how many requests
    share the ledger's running verification): why a request was answered 429
    or 503."""
    import dataclasses

    principal, state = ctx.principal, ctx.state
    in_use = state.shares.usage(principal.ledger, principal.name)
    in_use["verifies"]["sharing"] = state.verifications.sharing(principal.ledger)
    return {"limits": dataclasses.asdict(state.limits), "in_use": in_use}


@router.get("/keys")
def keys(ctx: Reader) -> dict[str, Any]:
    """Every key the ledger added: log keys (identity null) and author keys."""
    with ctx.handle.reader() as ledger:
        return {"keys": ctx.handle.keys(ledger)}
