"""The errors of fsspec and its backends (aiohttp, botocore, huggingface_hub,
requests) as mltrail errors that name the URL without its credentials."""

from __future__ import annotations

import contextlib
import socket
import sys
from typing import TYPE_CHECKING

from mltrail.capture.data.urls import scrub_urls
from mltrail.errors import CaptureError, ConfigError, InputError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = ["translate_errors"]


@contextlib.contextmanager
def translate_errors(url: str, shown: str) -> Iterator[None]:
    """Turn the errors of fsspec and its backends into mltrail errors naming ``shown``."""
    try:
        yield
    except (OSError, *_backend_errors()) as e:
        raise _classify(e, url, shown) from e


def _backend_errors() -> tuple[type[BaseException], ...]:
    """Base errors of the backends already imported (one not loaded cannot raise)."""
    found: list[type[BaseException]] = []
    for module, name in (
        ("aiohttp", "ClientError"),
        ("botocore.exceptions", "BotoCoreError"),
        ("botocore.exceptions", "ClientError"),
        ("huggingface_hub.errors", "HfHubHTTPError"),
        ("requests", "RequestException"),
    ):
        error = getattr(sys.modules.get(module), name, None)
        if isinstance(error, type) and issubclass(error, BaseException):
            found.append(error)
    return tuple(found)


def _classify(error: BaseException, url: str, shown: str) -> Exception:
    cause = _root_cause(error)
    status = _status(cause)
    if isinstance(cause, PermissionError) or status in (401, 403):
        return InputError(
            f"access denied to {shown}",
            hint="check the credentials (storage_options or the environment)",
        )
    if isinstance(cause, FileNotFoundError) or status in (404, 410):
        return InputError(
            f"no such remote file or folder: {shown}", hint="check the URL"
        )
    reason = scrub_urls(f"{type(cause).__name__}: {cause}", url, shown)
    if "NoCredentials" in type(cause).__name__:  # botocore
        return ConfigError(
            f"no credentials to read {shown}",
            hint="set them in the environment or pass storage_options",
        )
    if status is not None:
        return CaptureError(f"cannot read {shown}: HTTP {status} ({reason})")
    if _is_connection_error(cause):
        return CaptureError(
            f"cannot reach {shown}: {reason}",
            hint="check the host, the network and the endpoint; nothing was recorded",
        )
    return CaptureError(f"cannot read {shown}: {reason}", hint="nothing was recorded")


def _is_connection_error(error: BaseException) -> bool:
    if isinstance(error, (ConnectionError, TimeoutError, socket.gaierror)):
        return True
    return "connect" in type(error).__name__.lower()  # aiohttp, botocore


def _root_cause(error: BaseException) -> BaseException:
    """The deepest error that has a meaning of its own (fsspec wraps many as 404s)."""
    seen = {id(error)}
    while error.__cause__ is not None and id(error.__cause__) not in seen:
        error = error.__cause__
        seen.add(id(error))
        if _status(error) is not None:
            break
    return error


def _status(error: BaseException) -> int | None:
    status = getattr(error, "status", None)
    if isinstance(status, int):
        return status
    response = getattr(error, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code if isinstance(code, int) else None
    code = getattr(response, "status_code", None)  # requests / huggingface_hub
    return code if isinstance(code, int) else None
