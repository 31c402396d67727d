"""What ``mltrail append`` reads: the ``--body`` object and ``--attach`` files, bounded."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from mltrail.capture.run.userfiles import decode_user_text, read_limited, read_user_file
from mltrail.core.codec import parse_json
from mltrail.core.limits import MAX_DEPTH, MAX_ENTRY_BYTES
from mltrail.errors import InputError

__all__ = ["read_attachment", "read_body"]

_BODY_HINT = "store large payloads as blobs: --attach FILE"


def read_body(text: str) -> dict[str, Any]:
    """The ``--body`` object: inline JSON, ``@FILE`` or ``-`` (stdin).

    At most ``MAX_ENTRY_BYTES`` are read, nesting past ``MAX_DEPTH`` and integers
    JSON cannot carry exactly are refused.

    Raises:
        InputError: unreadable, too large, not UTF-8, not JSON, or not an object.
    """
    limit = MAX_ENTRY_BYTES
    if text == "-":
        data = read_limited(sys.stdin.buffer, limit, what="stdin", hint=_BODY_HINT)
        text = decode_user_text(data, "stdin")
    elif text.startswith("@"):
        path = Path(text[1:])
        data = read_user_file(
            path, what="body file", limit=limit, regular_only=False, hint=_BODY_HINT
        )
        text = decode_user_text(data, f"body file {path}")
    body = parse_json(text, what="--body", max_depth=MAX_DEPTH, exact_ints=True)
    if not isinstance(body, dict):
        raise InputError("--body must be a JSON object")
    return body


def read_attachment(path: Path) -> bytes:
    """An ``--attach`` file's bytes: a regular file only (never a pipe or device)."""
    return read_user_file(path, what="attachment", limit=None)
