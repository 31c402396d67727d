"""Reading a file a user named: bounded, never blocking on a pipe, one clear error.

``read_user_file`` is how mltrail reads key files, ``--config`` files, ``--body @FILE``
and ``--attach`` files. It reads at most ``limit + 1`` bytes (so ``/dev/zero`` or a
runaway file is refused instead of filling memory) and, unless told otherwise,
refuses anything that is not a regular file before reading a byte: a FIFO would
block forever, a device would never end.
"""

from __future__ import annotations

import os
import stat
from typing import IO, TYPE_CHECKING

from mltrail.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

__all__ = ["decode_user_text", "read_limited", "read_user_file", "read_user_text"]

_CHUNK = 1 << 20
_KINDS = (
    (stat.S_ISDIR, "a directory"),
    (stat.S_ISFIFO, "a named pipe (FIFO)"),
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISSOCK, "a socket"),
)


def read_user_file(
    path: Path,
    *,
    what: str,
    limit: int | None,
    regular_only: bool = True,
    error: type[InputError] = InputError,
    hint: str | None = None,
    check: Callable[[int], None] | None = None,
) -> bytes:
    """The bytes of the file at ``path``, at most ``limit`` of them.

    Args:
        path: the file the user named.
        what: what it is, for messages (``config file``, ``signing key``).
        limit: the most bytes accepted (None: no limit; only with ``regular_only``).
        regular_only: refuse FIFOs, devices, sockets and directories (else only
            directories), without blocking.
        error: the ``InputError`` subclass to raise.
        hint: the hint given when it is too large.
        check: called with the open descriptor before a byte is read (a key
            file's mode check); what it raises goes through.

    Raises:
        InputError: (or ``error``) it cannot be opened or read, is not a regular
            file (with ``regular_only``), or holds more than ``limit`` bytes.
    """
    flags = os.O_RDONLY | os.O_CLOEXEC | (os.O_NONBLOCK if regular_only else 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from e
    try:
        mode = os.fstat(fd).st_mode
        kind = _kind(mode)
        if kind is not None and (regular_only or stat.S_ISDIR(mode)):
            raise error(
                f"{what} {path} is {kind}, not a regular file",
                hint="name a regular file",
            )
        if check is not None:
            check(fd)
        with os.fdopen(fd, "rb", closefd=False) as stream:
            return read_limited(
                stream, limit, what=f"{what} {path}", error=error, hint=hint
            )
    except OSError as e:
        raise error(f"cannot read {what} {path}: {e.strerror or e}") from e
    finally:
        os.close(fd)


def read_user_text(
    path: Path,
    *,
    what: str,
    limit: int,
    error: type[InputError] = InputError,
    hint: str | None = "save it as UTF-8 (e.g. iconv -t UTF-8)",
) -> str:
    """The text of a small file the user named, bounded and UTF-8.

    Raises:
        InputError: (or ``error``) as ``read_user_file``, or the bytes are not UTF-8.
    """
    data = read_user_file(path, what=what, limit=limit, error=error)
    return decode_user_text(data, f"{what} {path}", error=error, hint=hint)


def decode_user_text(
    data: bytes,
    what: str,
    *,
    error: type[InputError] = InputError,
    hint: str | None = "save it as UTF-8 (e.g. iconv -t UTF-8)",
) -> str:
    """``data`` as UTF-8 text, or one error naming ``what`` and where it breaks.

    Raises:
        InputError: (or ``error``) the bytes are not UTF-8.
    """
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise error(
            f"{what} is not UTF-8 text ({e.reason} at byte {e.start})", hint=hint
        ) from e


def read_limited(
    stream: IO[bytes],
    limit: int | None,
    *,
    what: str,
    error: type[InputError] = InputError,
    hint: str | None = None,
) -> bytes:
    """Read ``stream`` to its end, refusing it once it passes ``limit`` bytes.

    Raises:
        InputError: (or ``error``) more than ``limit`` bytes.
    """
    if limit is None:
        return stream.read()
    chunks, size = [], 0
    while size <= limit:
        chunk = stream.read(min(_CHUNK, limit + 1 - size))
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)
        size += len(chunk)
    raise error(f"{what} is larger than the limit of {limit:,} bytes", hint=hint)


def _kind(mode: int) -> str | None:
    for test, name in _KINDS:
        if test(mode):
            return name
    return None
