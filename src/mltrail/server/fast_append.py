"""The hot route without the framework: ``POST /api/v1/ledgers/{ledger}/entries``.

An ASGI wrapper around the FastAPI application that answers append requests
itself, with the very code of the declared route
(:func:`~mltrail.server.routes_write.append_request`: same checks, limits,
errors and answers), and passes everything else (the other routes, the
OpenAPI spec, lifespan events) to FastAPI. FastAPI's middleware, routing and
dependency machinery cost about as much CPU per request as the append itself;
skipping them for this one route is most of what lets one process keep up with
16 concurrent writers (benchmarks/README.md).
"""

from __future__ import annotations

import json
import logging
import re
from typing import TYPE_CHECKING, Any

from mltrail.errors import MltrailError
from mltrail.server.app import API_PREFIX, ApiError, log_error, raise_for
from mltrail.server.routes_write import append_request

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping

    Scope = MutableMapping[str, Any]
    Message = MutableMapping[str, Any]
    Receive = Callable[[], Awaitable[Message]]
    Send = Callable[[Message], Awaitable[None]]

__all__ = ["FastAppend"]

_ENTRIES = re.compile(re.escape(API_PREFIX) + r"/ledgers/([^/]+)/entries")
_log = logging.getLogger("mltrail.server")


class FastAppend:
    """ASGI: append requests answered here, the rest by ``app`` (FastAPI)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["method"] == "POST":
            found = _ENTRIES.fullmatch(scope["path"])
            if found is not None:
                await self._append(found[1], scope, receive, send)
                return
        await self.app(scope, receive, send)

    async def _append(
        self, ledger: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        headers: dict[str, str] = {}
        for name, value in scope["headers"]:
            headers.setdefault(name.decode("latin-1").lower(), value.decode("latin-1"))
        state = self.app.state.mltrail
        try:
            answer = await append_request(state, ledger, headers.get, _chunks(receive))
            status, extra = 201, {}
        except (ApiError, MltrailError) as e:
            error = e if isinstance(e, ApiError) else raise_for(e, refused=400)
            answer, status, extra = _error(error), error.status, error.headers
            if status >= 500:
                log_error("POST", scope["path"], error)
        except Exception as e:
            _log.error(
                "POST %s failed",
                scope["path"],
                exc_info=e,
                extra={"throttle": "HTTP 500"},
            )
            answer, status = _error(ApiError(500, "internal server error")), 500
            extra = {}
        body = json.dumps(answer, separators=(",", ":")).encode()
        response_headers = [
            (b"content-type", b"application/json"),
            (b"content-length", str(len(body)).encode()),
        ]
        response_headers += [(k.lower().encode(), v.encode()) for k, v in extra.items()]
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": response_headers,
            }
        )
        await send({"type": "http.response.body", "body": body})


async def _chunks(receive: Receive) -> AsyncIterator[bytes]:
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ApiError(400, "the client went away before the body was read")
        yield message.get("body", b"")
        if not message.get("more_body", False):
            return


def _error(error: ApiError) -> dict[str, Any]:
    body: dict[str, Any] = {"code": error.code, "message": error.message}
    if error.hint:
        body["hint"] = error.hint
    body.update(error.extra)
    return {"error": body}
