"""Canonical bytes (RFC 8785, JCS) and the domain-separated hashes built on them.

Every byte that is signed or hashed in mltrail is produced here and nowhere else.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import rfc8785

from mltrail.errors import SchemaError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "ZERO_HASH",
    "canonical_bytes",
    "canonical_object",
    "compute_blob_digest",
    "compute_leaf_hash",
    "compute_record_hash",
]

ZERO_HASH = "0" * 64
"""The ``prev`` of the first record."""


def canonical_bytes(value: Any) -> bytes:
    """Return the RFC 8785 canonical JSON bytes of ``value``.

    Raises:
        SchemaError: the value holds something JSON cannot carry canonically
            (NaN, infinities, integers beyond 2**53 - 1, non-string keys,
            nesting deeper than Python's recursion limit).
    """
    try:
        return rfc8785.dumps(value)
    except (rfc8785.CanonicalizationError, TypeError, ValueError, RecursionError) as e:
        raise SchemaError(f"value cannot be written as canonical JSON: {e}") from e


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


def compute_record_hash(record_bytes: bytes) -> bytes:
    """SHA-256 of the canonical bytes of a whole record (the ``prev`` of the next)."""
    return hashlib.sha256(record_bytes).digest()


def compute_leaf_hash(record_bytes: bytes) -> bytes:
    """RFC 9162 leaf hash of a record: SHA-256(0x00 || canonical record bytes)."""
    return hashlib.sha256(b"\x00" + record_bytes).digest()


def compute_blob_digest(data: bytes) -> str:
    """Content address of a blob: ``sha256:<hex>``."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
