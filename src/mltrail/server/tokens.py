"""API tokens and roles: the token text, its stored hash, and what each role may do.

A token reads ``mlt_<id>_<secret>``: ``id`` is 16 hex characters (the row's key,
shown in listings), ``secret`` 32 random bytes in URL-safe base64 without
padding. The server stores only the id and SHA-256 of the secret and compares
in constant time. A token belongs to one ledger and has one role:

=========  ================================================================
writer     reads; appends run, data, source and model-lifecycle entries
           (and ``ledger.pushed``: ``mltrail push``); uploads blobs;
           registers its own key
approver   reads; appends ``model.approved``, ``stage.gated`` and ``note``;
           uploads blobs; registers its own key
auditor    reads, proofs, verification; no writes
admin      everything on its ledger: every author kind, keys of anyone, tokens
=========  ================================================================
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from datetime import datetime

__all__ = [
    "READ_ROLES",
    "ROLES",
    "UPLOAD_ROLES",
    "ParsedToken",
    "Principal",
    "kind_allowed",
    "new_token",
    "parse_token",
    "secret_digest",
    "secrets_match",
]

ROLES: Final = ("writer", "approver", "auditor", "admin")
READ_ROLES: Final = frozenset(ROLES)
UPLOAD_ROLES: Final = frozenset({"writer", "approver", "admin"})

_TOKEN = re.compile(r"mlt_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")

_WRITER_PREFIXES = ("run.", "source.")
_WRITER_KINDS = frozenset(
    {
        "note",
        "model.promoted",
        "model.flagged",
        "model.described",
        "model.sealed",
        "ledger.pushed",
    }
)
_APPROVER_KINDS = frozenset({"model.approved", "stage.gated", "note"})
_LEDGER_ONLY = frozenset({"key.added", "key.revoked", "blob.purged"})


@dataclass(frozen=True, slots=True)
class ParsedToken:
    """A token split into its id and secret (nothing checked against the database)."""

    id: str
    secret: str


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request's valid token says it comes from."""

    token_id: str
    ledger: str
    name: str
    role: str
    expires: datetime | None


def new_token() -> tuple[str, str, bytes]:
    """A fresh token: (id, full token text, SHA-256 of its secret)."""
    token_id = secrets.token_hex(8)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()
    return token_id, f"mlt_{token_id}_{secret}", secret_digest(secret)


def parse_token(text: str) -> ParsedToken | None:
    """Split ``mlt_<id>_<secret>``; None for anything else."""
    found = _TOKEN.fullmatch(text)
    return None if found is None else ParsedToken(found[1], found[2])


def secret_digest(secret: str) -> bytes:
    """What is stored for a secret: its SHA-256."""
    return hashlib.sha256(secret.encode()).digest()


def secrets_match(secret: str, stored: bytes) -> bool:
    """Compare a presented secret with the stored digest in constant time."""
    return hmac.compare_digest(secret_digest(secret), bytes(stored))


def kind_allowed(role: str, kind: str) -> bool:
    """May a token of ``role`` append an entry of ``kind``?

    Key and purge entries are never appended by an author (the server writes
    key records itself; purges are the owner's, ``mltrail purge``). ``hold.*``
    (legal holds) and ``clock.reset`` are the admin's.
    """
    if kind in _LEDGER_ONLY:
        return False
    if role == "admin":
        return True
    if role == "writer":
        return kind in _WRITER_KINDS or kind.startswith(_WRITER_PREFIXES)
    if role == "approver":
        return kind in _APPROVER_KINDS
    return False
