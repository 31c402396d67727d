"""Bounds on what mltrail accepts: nesting depth, entry size, exact integers, run ids.

Every limit here is checked when an entry is appended (``codec.validate_entry``),
so nothing is written that a reader cannot read back. Readers check the depth of
stored text before parsing it (``codec.parse_json``), so an over-deep record
written by an older version is refused with a ``SchemaError`` instead of
exhausting the stack. docs/format.md ("Limits") publishes these numbers.
"""

from __future__ import annotations

import json
import re
import sys
from itertools import accumulate
from typing import Any

__all__ = [
    "MAX_DEPTH",
    "MAX_ENTRY_BYTES",
    "MAX_RECORD_DEPTH",
    "MAX_RUN_ID",
    "MAX_SAFE_INT",
    "canonical_size_bound",
    "exceeds_text_depth",
    "inexact_int_message",
    "run_id_problem",
    "value_problem",
]

MAX_DEPTH = 64
"""Objects and arrays nest at most this deep in a body (the body itself is level 1),
and in every other member of an entry."""

MAX_RECORD_DEPTH = MAX_DEPTH + 2
"""The depth of a stored record: record -> entry -> body."""

MAX_ENTRY_BYTES = 4 * 2**20
"""The RFC 8785 canonical bytes of a new entry (without ``sig``) are at most 4 MiB;
larger payloads belong in blobs (``Ledger.put_blob``)."""

MAX_SAFE_INT = 2**53 - 1
"""Integers beyond +-(2**53 - 1) have no exact JSON form (RFC 8785, I-JSON)."""

MAX_RUN_ID = 128
_RUN_ID = re.compile(r"[A-Za-z0-9._:-]{1,%d}" % MAX_RUN_ID)  # noqa: UP031


def run_id_problem(value: object) -> str | None:
    """Why ``value`` is not a run id a new entry may carry, or None when it is one.

    A run id is 1 to 128 characters of ``A-Z a-z 0-9 . _ : -``, and neither ``.``
    nor ``..``, so it is safe as a file name everywhere (mltrail keeps a lock file
    per live run) and in URLs and shells.
    """
    if not isinstance(value, str):
        return f"a run id must be a string, not {type(value).__name__}"
    if not _RUN_ID.fullmatch(value) or value in (".", ".."):
        return (
            f"run id {value[:140]!r} is not 1 to {MAX_RUN_ID} characters of "
            "letters, digits, '.', '_', ':' and '-' (and not '.' or '..')"
        )
    return None


def inexact_int_message(value: int, where: str = "") -> str:
    """The one message for an integer JSON cannot carry exactly."""
    at = f"{where}: " if where else ""
    shown = str(value) if abs(value) < 10**40 else f"{str(value)[:20]}... (huge)"
    return (
        f"{at}integer {shown} is beyond +-(2**53 - 1) and cannot be stored "
        "exactly in JSON; write it as a string"
    )


def value_problem(
    value: Any, where: str, max_depth: int = MAX_DEPTH, *, exact_ints: bool = True
) -> str | None:
    """The first reason a JSON-able value cannot be stored, or None.

    Walks without recursion, so it is safe on any input (a cycle shows up as too
    deep): objects and arrays (dicts, lists, tuples) nested deeper than
    ``max_depth`` (``value`` itself, when one, is level 1), or, with
    ``exact_ints``, an integer (not a bool) beyond +-(2**53 - 1). ``where`` names
    ``value`` in the message, e.g. ``body``.
    """
    stack: list[tuple[Any, int, str, object]] = [(value, 1, where, None)]
    while stack:
        node, depth, parent, key = stack.pop()
        if isinstance(node, dict | list | tuple):
            path = parent if key is None else f"{parent}.{key}"
            if depth > max_depth:
                return (
                    f"{_short(path)} nests deeper than {max_depth} levels "
                    "of objects and arrays"
                )
            items = node.items() if isinstance(node, dict) else enumerate(node)
            stack.extend((item, depth + 1, path, k) for k, item in items)
        elif (
            exact_ints
            and type(node) is int
            and not -MAX_SAFE_INT <= node <= MAX_SAFE_INT
        ):
            path = parent if key is None else f"{parent}.{key}"
            return inexact_int_message(node, _short(path))
    return None


def canonical_size_bound(value: Any) -> int:
    """An upper bound of the length of ``value``'s RFC 8785 bytes, without making them.

    ``json.dumps`` (in C) writes the same strings as RFC 8785, sorted or not, with
    more whitespace; only a float can grow, by at most 17 characters (ES6 writes
    ``1e20`` as 21 digits) while taking at least 3 in ``json.dumps``. So 8 times
    its UTF-8 length bounds the canonical length. When the bound is under a limit,
    the exact (and far costlier) canonical size need not be computed. A value
    ``json.dumps`` cannot write gets an infinite bound (the exact path reports it).
    """
    try:
        text = json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError, RecursionError):
        return sys.maxsize
    return 8 * len(text.encode("utf-8", "surrogatepass"))


def _short(path: str) -> str:
    return path if len(path) <= 80 else f"{path[:60]}...{path[-16:]}"


_STRING_BYTES = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
"""A JSON string, or an unterminated one up to the end of the text. The closing
quote is optional so that a match never fails once started: with it required,
each quote of an unterminated ``\\"\\"\\"...`` started a scan to the end and
failed, and the text took time quadratic in its length (80 KB: 36 s) before
the parser could refuse it. An unterminated string is not JSON; the brackets
it swallows are never reached by the parser, which stops at it."""
_OTHER_BYTES = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = [0] * 256
_STEP[ord("[")] = _STEP[ord("{")] = 1
_STEP[ord("]")] = _STEP[ord("}")] = -1


def exceeds_text_depth(text: bytes | str, max_depth: int) -> bool:
    """Whether JSON ``text`` opens more than ``max_depth`` nested objects and arrays.

    Runs in C-speed passes (no recursion, no per-character Python loop): strings are
    cut out, then the running count of the brackets left is taken. Text that is not
    JSON gets some answer; the parser that runs next reports it.
    """
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
    if data.count(b"[") + data.count(b"{") <= max_depth:
        return False
    brackets = _STRING_BYTES.sub(b"", data).translate(None, _OTHER_BYTES)
    return max(accumulate(map(_STEP.__getitem__, brackets)), default=0) > max_depth
