"""Canonical bytes (RFC 8785, JCS) and the domain-separated hashes built on them.

Every byte that is signed or hashed in mltrail is produced here and nowhere else.
"""

from __future__ import annotations

import json
from functools import lru_cache

from mltrail.errors import SchemaError

TYPE_CHECKING = False  # not typing's: a cold `data hash` imports no typing
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = [
    "ZERO_HASH",
    "canonical_bytes",
    "canonical_object",
    "compute_blob_digest",
    "compute_leaf_hash",
    "compute_record_hash",
    "fast_canonical_bytes",
    "json_compatible",
    "plain_json",
]

ZERO_HASH = "0" * 64
"""The ``prev`` of the first record."""


def canonical_bytes(value: Any) -> bytes:
    """Return the RFC 8785 canonical JSON bytes of ``value``.

    Values made only of objects, arrays, strings, exact integers, booleans and
    null, whose keys sort the same by code point as by UTF-16 code unit, are
    written by the C ``json`` encoder, which gives exactly the RFC 8785 bytes for
    them (tests/property prove it against ``rfc8785``); anything else (floats,
    keys with characters from U+D800 on) goes through ``rfc8785``.

    Raises:
        SchemaError: the value holds something JSON cannot carry canonically
            (NaN, infinities, integers beyond 2**53 - 1, non-string keys,
            nesting deeper than Python's recursion limit).
    """
    fast = fast_canonical_bytes(value)
    if fast is not None:
        return fast
    import rfc8785  # the slow path only: a reader that never gets here skips ~3 ms

    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as e:
        raise SchemaError(f"value cannot be written as canonical JSON: {e}") from e


def fast_canonical_bytes(value: Any, *, checked: bool = False) -> bytes | None:
    """The RFC 8785 bytes of ``value`` from the C ``json`` encoder, or None when
    that encoder might write something else (floats, keys from U+D800 on, a lone
    surrogate): then :func:`canonical_bytes` goes through ``rfc8785``.

    ``checked`` says :func:`json_compatible` already holds for ``value`` (say, a
    part of a value that was checked whole).
    """
    if not checked and not json_compatible(value):
        return None
    try:
        return _dumps(value).encode("utf-8")
    except (UnicodeEncodeError, RecursionError, ValueError):
        return None  # a lone surrogate, or a cycle: rfc8785 says what is wrong


_dumps = json.JSONEncoder(
    ensure_ascii=False, sort_keys=True, separators=(",", ":"), allow_nan=False
).encode
_MAX_EXACT = 2**53 - 1
_UTF16_SAFE = "\ud800"  # below it, code point order is UTF-16 code unit order
_MAX_CONTAINERS = 1 << 22  # more objects and arrays than any entry may hold: a cycle


def json_compatible(value: Any) -> bool:
    """Whether the C ``json`` encoder writes ``value`` exactly as RFC 8785 does:
    only objects (keys all below U+D800, where code point order is UTF-16 order),
    arrays, strings, exact integers, booleans and null."""
    stack = [value]
    budget = _MAX_CONTAINERS
    while stack:
        node = stack.pop()
        kind = type(node)
        if kind is str or kind is bool or node is None:
            continue
        if kind is int:
            if -_MAX_EXACT <= node <= _MAX_EXACT:
                continue
            return False
        budget -= 1
        if budget < 0:
            return False
        if kind is dict:
            try:
                keys = "".join(node)
            except TypeError:
                return False  # a key that is not a string
            if keys and max(keys) >= _UTF16_SAFE:
                return False
            stack.extend(node.values())
        elif kind is list or kind is tuple:
            stack.extend(node)
        else:
            return False  # floats (ES6 number form), and anything else
    return True


def plain_json(value: Any, max_depth: int) -> bool:
    """:func:`json_compatible` and no deeper than ``max_depth`` objects and arrays
    (``value`` itself, when one, is level 1), in one walk: such a value is one
    ``core.limits.value_problem`` finds nothing in (it looks for deeper nesting
    and inexact integers), so an append checks it and writes its canonical
    bytes (``fast_canonical_bytes(value, checked=True)``) without walking it
    twice more. Anything else (a float, a subclass, a key from U+D800) is False:
    the caller then takes the full checks."""
    stack = [(value, 1)]
    pop, extend = stack.pop, stack.extend
    while stack:
        node, depth = pop()
        kind = type(node)
        if kind is str or kind is bool or node is None:
            continue
        if kind is int:
            if -_MAX_EXACT <= node <= _MAX_EXACT:
                continue
            return False
        if depth > max_depth:
            return False
        depth += 1
        if kind is dict:
            try:
                keys = "".join(node)
            except TypeError:
                return False  # a key that is not a string
            if keys and max(keys) >= _UTF16_SAFE:
                return False
            extend([(item, depth) for item in node.values()])
        elif kind is list or kind is tuple:
            extend([(item, depth) for item in node])
        else:
            return False
    return True


def canonical_object(members: Mapping[str, bytes]) -> bytes:
    """Join already-canonical member values into a canonical JSON object.

    RFC 8785 sorts keys by their UTF-16 code units; this lets a record be
    assembled from the canonical bytes of its entry without canonicalising
    the entry twice. ``members`` maps each key to the canonical bytes of its value.
    """
    try:
        keys = sorted(members, key=_utf16_key)
    except (AttributeError, UnicodeEncodeError) as e:
        raise SchemaError(f"object keys must be Unicode strings: {e}") from e
    return b"{" + b",".join([_member_name(k) + members[k] for k in keys]) + b"}"


@lru_cache(maxsize=4096)
def _utf16_key(key: str) -> bytes:
    return key.encode("utf-16-be")


@lru_cache(maxsize=4096)
def _member_name(key: str) -> bytes:
    return canonical_bytes(key) + b":"


def _sha256(data: bytes) -> Any:
    """``hashlib.sha256(data)``. hashlib loads OpenSSL (~3 ms), which a reading
    command that hashes nothing should not pay: the first call imports it and
    rebinds this name to ``hashlib.sha256`` itself, so later calls cost nothing
    extra."""
    global _sha256  # noqa: PLW0603 (a lazily bound function)
    from hashlib import sha256

    _sha256 = sha256
    return sha256(data)


def compute_record_hash(record_bytes: bytes) -> bytes:
    """SHA-256 of the canonical bytes of a whole record (the ``prev`` of the next)."""
    return _sha256(record_bytes).digest()


def compute_leaf_hash(record_bytes: bytes) -> bytes:
    """RFC 9162 leaf hash of a record: SHA-256(0x00 || canonical record bytes)."""
    return _sha256(b"\x00" + record_bytes).digest()


def compute_blob_digest(data: bytes) -> str:
    """Content address of a blob: ``sha256:<hex>``."""
    return "sha256:" + _sha256(data).hexdigest()
