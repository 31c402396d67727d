"""The FastAPI application: errors, authentication, and the route modules.

Every route is under ``/api/v1``; every route but ``/health`` needs
``Authorization: Bearer mlt_<id>_<secret>``. Errors are JSON
``{"error": {"code", "message", "hint"}}`` (see docs/server.md).
"""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from mltrail import __version__
from mltrail.errors import (
    AppendConflictError,
    AuthError,
    InputError,
    IntegrityError,
    MltrailError,
    SchemaError,
    StoreError,
)
from mltrail.server.ledgers import LedgerHandle, ServerState
from mltrail.server.limits import (
    LIMITS_ENV,
    ServerLimits,
    ThrottledErrors,
    parse_limits,
)
from mltrail.server.verifications import RETRY_SECONDS

if TYPE_CHECKING:
    from collections.abc import AsyncIterator, Callable, Collection
    from contextlib import AbstractContextManager

    from mltrail.server.control import Control
    from mltrail.server.tokens import Principal

__all__ = [
    "API_PREFIX",
    "BEARER",
    "UNHANDLED",
    "ApiError",
    "Ctx",
    "RedactTokens",
    "TagUnhandled",
    "app_from_env",
    "authorize",
    "bearer_token",
    "check_access",
    "create_app",
    "log_error",
    "need",
    "raise_for",
    "redact_tokens_in_logs",
    "take_slot",
    "throttle_error_log",
]

API_PREFIX = "/api/v1"
_log = logging.getLogger("mltrail.server")
_TOKEN_TEXT = re.compile(r"(mlt_[0-9a-f]{16}_)[A-Za-z0-9_-]{43}")
_TOKEN_SHOWN = re.compile(r"mlt_[0-9a-f]{16}_\*\*\*")
_QUERY_VALUE = re.compile(r"([?&;]([^=&;#\s?]+)=)([^&;#\s\"]*)")
_REDACTED_LOGGERS = ("uvicorn.access", "uvicorn.error", "mltrail.server")
_STATUS_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    410: "gone",
    413: "too_large",
    422: "refused",
    429: "too_many_requests",
    500: "internal",
    501: "not_implemented",
    503: "unavailable",
}


class ApiError(Exception):
    """An HTTP error with the contract's JSON body."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        code: str | None = None,
        hint: str | None = None,
        extra: dict[str, Any] | None = None,
        detail: str | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code or _STATUS_CODES.get(status, "error")
        self.message = message
        self.hint = hint
        self.extra = extra or {}
        self.detail = detail
        """What the server's log says instead of ``message`` (never sent)."""
        self.retry_after = retry_after
        """Seconds for ``Retry-After`` (a refusal for want of a slot)."""

    @property
    def headers(self) -> dict[str, str]:
        """The response headers this error adds."""
        headers = {"WWW-Authenticate": "Bearer"} if self.status == 401 else {}
        if self.retry_after is not None:
            headers["Retry-After"] = str(self.retry_after)
        return headers

    @property
    def throttle(self) -> str:
        """The kind of log line of this error (:class:`ThrottledErrors`): its
        status, and for a refusal for want of a slot the bound, so that a flood
        of refusals never uses up the lines of a failure (a database error)."""
        limit = self.extra.get("limit")
        return f"HTTP {self.status}" + (f" {limit}" if limit else "")

    @property
    def level(self) -> int:
        """The log level of this error: a refusal for want of a slot is the
        server keeping its bounds (a warning), anything else an error."""
        return logging.WARNING if self.extra.get("limit") else logging.ERROR

    @property
    def logged(self) -> str:
        """The text the server logs for this error."""
        return self.detail or self.message

    def response(self) -> JSONResponse:
        """The JSON response of this error."""
        body: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.hint:
            body["hint"] = self.hint
        body.update(self.extra)
        return JSONResponse(
            {"error": body}, status_code=self.status, headers=self.headers or None
        )


def raise_for(error: MltrailError, *, refused: int = 422) -> ApiError:
    """The ApiError for an mltrail error (``refused``: the status of InputError).

    A store's failure (other than an append conflict) is answered 503 with a
    message of its own: what the store said (the database's location, its
    error text) goes to the server's log only."""
    if isinstance(error, SchemaError):
        status = 400
    elif isinstance(error, AuthError):
        status = 403
    elif isinstance(error, InputError):
        status = refused
    elif isinstance(error, AppendConflictError):
        status = 503
    elif isinstance(error, StoreError):
        return ApiError(
            503,
            "the server's database failed or cannot be reached",
            hint="try again; the server's log says why",
            detail=str(error),
        )
    elif isinstance(error, IntegrityError):
        status = 500
    else:
        status = 500
    return ApiError(status, str(error), hint=error.hint)


_SHARES = {
    "holds": ("live-run holds", 30),
    "verifies": ("verifications running", RETRY_SECONDS),
    "large_bodies": ("large request bodies in flight", 2),
}
"""A kind of slot: what its slots are, and the ``Retry-After`` of a refusal."""


def take_slot(
    state: ServerState, kind: str, principal: Principal
) -> Callable[[], None]:
    """A slot of ``kind`` (``holds``, ``verifies``, ``large_bodies``) for
    ``principal``'s user, ledger and this process; call what it returns once
    done (see :mod:`mltrail.server.limits`).

    Raises:
        ApiError: 429 when the user holds its share, 503 when the ledger or the
            process holds its own (``Retry-After`` either way).
    """
    slots = getattr(state.shares, kind)
    ledger, name = principal.ledger, principal.name
    taken = slots.take({"user": (ledger, name), "ledger": ledger, "server": None})
    if not isinstance(taken, str):
        return taken
    what, retry = _SHARES[kind]
    cap = slots.caps[taken]
    who = {
        "user": (f"{name!r} has", "one user"),
        "ledger": (f"ledger {ledger!r} has", "one ledger"),
        "server": ("this server has", "this server"),
    }[taken]
    raise ApiError(
        429 if taken == "user" else 503,
        f"{who[0]} {cap} {what} already, the most {who[1]} may have",
        hint=f"try again in {retry} s, once one of them has ended",
        extra={"retry_after": retry, "limit": f"{kind}_per_{taken}"},
        retry_after=retry,
    )


class Ctx:
    """A request's authenticated principal, its ledger, and the server's state."""

    def __init__(
        self, principal: Principal, handle: LedgerHandle, state: ServerState
    ) -> None:
        self.principal = principal
        self.handle = handle
        self.state = state

    def handle_control(self) -> AbstractContextManager[Control]:
        """Borrow a control-table connection."""
        return self.state.control.borrow()


BEARER = HTTPBearer(auto_error=False, description="mlt_<id>_<secret>")


def authorize(
    state: ServerState, ledger: str, token: str | None, roles: Collection[str]
) -> Ctx:
    """The context of a request with bearer ``token`` on ``ledger``, if its role is
    one of ``roles`` (401, 403, 404 otherwise). Blocking: one query, unless the
    token was authenticated less than a second ago (``RecentTokens``)."""
    if not token:
        raise ApiError(401, "a bearer token is required", hint="set MLTRAIL_TOKEN")
    found = state.recent_tokens.get(token)
    if found is None:
        with state.control.borrow() as control:
            found = control.authenticate(token)
        if isinstance(found, str):
            raise ApiError(401, found, hint="ask the ledger's admin for a token")
        state.recent_tokens.put(token, found)
    check_access(found, ledger, roles)
    handle = state.handle(ledger)
    if handle is None:
        raise ApiError(404, f"no ledger {ledger!r}")
    return Ctx(found, handle, state)


def check_access(found: Principal, ledger: str, roles: Collection[str]) -> None:
    """403 unless ``found`` is a token of ``ledger`` with one of ``roles``."""
    if found.ledger != ledger:
        raise ApiError(403, f"this token is for another ledger, not {ledger!r}")
    if found.role not in roles:
        raise ApiError(403, f"role {found.role} may not do this")


def bearer_token(request: Request) -> str | None:
    """The token of ``Authorization: Bearer <token>``, or None."""
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None


def need(roles: Collection[str]) -> Callable[..., Ctx]:
    """A dependency: a valid token of ``ledger`` whose role is one of ``roles``."""

    def check(
        request: Request,
        ledger: str,
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(BEARER)],
    ) -> Ctx:
        token = None if credentials is None else credentials.credentials
        return authorize(request.app.state.mltrail, ledger, token, roles)

    return check


def create_app(
    url: str | None = None,
    keys: Path | None = None,
    limits: ServerLimits | None = None,
) -> FastAPI:
    """The application over the database ``url`` (default ``$MLTRAIL_SERVER_DB``)
    with log keys in ``keys`` (default ``$MLTRAIL_SERVER_KEYS``) and ``limits``
    (default: ``$MLTRAIL_SERVER_LIMITS`` over the defaults)."""
    from contextlib import asynccontextmanager

    from mltrail.server import routes_read, routes_runs, routes_write
    from mltrail.server.control import default_keys_dir

    url = url or os.environ["MLTRAIL_SERVER_DB"]
    keys = keys or Path(os.environ.get("MLTRAIL_SERVER_KEYS") or default_keys_dir())
    if limits is None:
        limits = parse_limits(os.environ.get(LIMITS_ENV, ""))
    state = ServerState(url, keys, limits)
    redact_tokens_in_logs()
    throttled = throttle_error_log(limits)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        import asyncio

        reporting = asyncio.ensure_future(throttled.report_each_interval(_log))
        try:
            yield
        finally:
            reporting.cancel()
            throttled.flush(_log)
            state.close()

    app = FastAPI(
        title="mltrail team server",
        version=__version__,
        openapi_url=f"{API_PREFIX}/openapi.json",
        # no interactive docs page: FastAPI's loads Swagger UI's JavaScript from a
        # CDN into this origin, where people paste tokens (docs/server.md)
        docs_url=None,
        redoc_url=None,
        swagger_ui_oauth2_redirect_url=None,
        lifespan=lifespan,
    )
    app.state.mltrail = state
    _install_error_handlers(app)
    root = APIRouter(prefix=API_PREFIX)

    @root.get("/health", tags=["server"])
    def health() -> dict[str, str]:
        """Liveness: no token needed."""
        return {"status": "ok", "version": __version__}

    app.include_router(root)
    # appends first: the hot route is matched before the others
    app.include_router(routes_write.router, prefix=API_PREFIX)
    app.include_router(routes_read.router, prefix=API_PREFIX)
    app.include_router(routes_runs.router, prefix=API_PREFIX)
    return app


class RedactTokens(logging.Filter):
    """Replaces the secret of any token, and secret query values, in a log
    record by ``***`` (:func:`redact_log_text`): a client that puts its token
    or another credential in the URL (``?token=...``, refused, 401) would
    otherwise leave it in the access log (``--log-level info``)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str):
            record.msg = redact_log_text(record.msg)
        if isinstance(record.args, tuple):
            record.args = tuple(
                redact_log_text(a) if isinstance(a, str) else a for a in record.args
            )
        return True


def redact_log_text(text: str) -> str:
    """``text`` with the secret of any mltrail token (its id kept), and the
    value of every other secret-named query parameter (``?api_key=``, ``X-Amz-Signature=``,
    ``password=``, ``sig=``), replaced by ``***``: the access log line is the
    request's path and query as the caller sent them."""
    text = _TOKEN_TEXT.sub(r"\1***", text)
    if "=" not in text or not any(c in text for c in "?&;"):
        return text
    return _QUERY_VALUE.sub(_query_value, text)


def _query_value(m: re.Match[str]) -> str:
    from urllib.parse import unquote_plus

    from mltrail.capture.run.secret_names import SECRET_QUERY_NAMES, is_secret_name

    name = unquote_plus(m[2])
    secret = is_secret_name(name) or name.lower() in SECRET_QUERY_NAMES
    if not secret or not m[3] or _TOKEN_SHOWN.fullmatch(m[3]):
        return m[0]  # a token already cut to its id says which token it was
    return m[1] + "***"


def redact_tokens_in_logs() -> None:
    """Add :class:`RedactTokens` to the server's and uvicorn's loggers (once)."""
    for name in _REDACTED_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, RedactTokens) for f in logger.filters):
            logger.addFilter(RedactTokens())


def app_from_env() -> Any:
    """The ASGI application configured by ``MLTRAIL_SERVER_DB`` and
    ``MLTRAIL_SERVER_KEYS`` (what ``mltrail server`` sets for uvicorn's workers):
    :func:`create_app` behind :class:`~mltrail.server.fast_append.FastAppend`.

    The interpreter's thread switch interval drops from 5 ms to 0.5 ms: the
    appender thread waits on PostgreSQL with the GIL released, and with the
    default it can wait up to 5 ms for it again while request threads run.
    """
    import sys

    from mltrail.server.fast_append import FastAppend

    sys.setswitchinterval(0.0005)
    return FastAppend(create_app())


def log_error(method: str, path: str, error: ApiError) -> None:
    """One line for an error answer, counted in its kind's allowance
    (:attr:`ApiError.throttle`, ``ThrottledErrors``)."""
    _log.log(
        error.level,
        "%s %s: %s",
        method,
        path,
        error.logged,
        extra={"throttle": error.throttle},
    )


UNHANDLED = "Exception in ASGI application"
"""What uvicorn logs, with the traceback, for an exception the application
raised: Starlette re-raises each one after the handler of ``Exception``
answered 500 and logged it."""


class TagUnhandled(logging.Filter):
    """Marks uvicorn's line for an exception the application raised for
    :class:`ThrottledErrors` (``HTTP 500 (uvicorn)``): a flood of failures
    would otherwise log a traceback each there, unthrottled."""

    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.msg, str) and record.msg.startswith(UNHANDLED):
            record.throttle = "HTTP 500 (uvicorn)"
        return True


def throttle_error_log(limits: ServerLimits) -> ThrottledErrors:
    """The server logger's :class:`ThrottledErrors` (added once, then retuned),
    also on uvicorn's error logger, after :class:`TagUnhandled`."""
    uvicorn_errors = logging.getLogger("uvicorn.error")
    for found in _log.filters:
        if isinstance(found, ThrottledErrors):
            found.lines, found.interval = limits.error_lines, limits.error_interval
            return found
    made = ThrottledErrors(limits.error_lines, limits.error_interval)
    _log.addFilter(made)
    uvicorn_errors.addFilter(TagUnhandled())
    uvicorn_errors.addFilter(made)
    return made


def _install_error_handlers(app: FastAPI) -> None:
    async def api_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, ApiError)
        if exc.status >= 500:
            log_error(request.method, request.url.path, exc)
        return exc.response()

    async def http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        return ApiError(exc.status_code, str(exc.detail)).response()

    async def invalid(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        problems = [
            f"{'.'.join(map(str, e.get('loc', ())))}: {e.get('msg', '')}"
            for e in exc.errors()[:5]
        ]
        return ApiError(400, "; ".join(problems) or "bad request").response()

    async def mltrail_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, MltrailError)
        error = raise_for(exc, refused=400)
        if error.status >= 500:
            log_error(request.method, request.url.path, error)
        return error.response()

    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        _log.error(
            "%s %s failed",
            request.method,
            request.url.path,
            exc_info=exc,
            extra={"throttle": "HTTP 500"},
        )
        return ApiError(500, "internal server error").response()

    app.add_exception_handler(ApiError, api_error)
    app.add_exception_handler(StarletteHTTPException, http_error)
    app.add_exception_handler(RequestValidationError, invalid)
    app.add_exception_handler(MltrailError, mltrail_error)
    app.add_exception_handler(Exception, unexpected)
