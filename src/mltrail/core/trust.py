"""Trusted keys as an auditor writes them down: parse every form ``keys export`` prints.

An auditor pins a ledger key outside the ledger home and hands it to
``mltrail verify --trust-key``. Any of these identifies the same Ed25519 key:

* its key id, the hex SHA-256 of the raw public key (64 hex digits);
* a C2SP signed-note verifier key, ``<origin>+<key hash>+<base64(0x01 || key)>``;
* the raw 32-byte public key in standard base64;
* a PEM ``PUBLIC KEY`` block (SubjectPublicKeyInfo, RFC 8410).

A key id certifies its public key (it is its hash), so an id is enough: the
ledger's own ``key.added`` records carry the public keys.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass

from mltrail.core.checkpoint import parse_verifier_key
from mltrail.core.signing import compute_key_id, decode_b64, encode_b64
from mltrail.errors import SchemaError

__all__ = [
    "MAX_TRUSTED_KEY_TEXT",
    "TrustedKey",
    "format_public_pem",
    "parse_trusted_key",
]

MAX_TRUSTED_KEY_TEXT = 4096
"""Longest text accepted as one trusted key (a PEM block is about 113 bytes)."""

_KEY_ID = re.compile(r"[0-9a-f]{64}")
# SubjectPublicKeyInfo of an Ed25519 key (RFC 8410): these 12 bytes, then the key.
_SPKI_ED25519_PREFIX = bytes.fromhex("302a300506032b6570032100")
_PEM_BEGIN = "-----BEGIN PUBLIC KEY-----"
_PEM_END = "-----END PUBLIC KEY-----"


@dataclass(frozen=True, slots=True)
class TrustedKey:
    """A key to trust: its id, and its public key and ledger name when the text had them."""

    key_id: str
    public_key: bytes | None = None
    name: str | None = None
    """The ledger origin a verifier key names (None for the other forms)."""


def parse_trusted_key(text: str) -> TrustedKey:
    """Parse one trusted key in any form ``mltrail keys export`` prints.

    Raises:
        SchemaError: the text is none of the accepted forms.
    """
    text = text.strip()
    if len(text) > MAX_TRUSTED_KEY_TEXT:
        raise SchemaError("a trusted key is at most a few lines of text")
    if _KEY_ID.fullmatch(text.lower()):
        return TrustedKey(text.lower())
    if text.startswith(_PEM_BEGIN):
        return _from_public_key(_pem_public_key(text))
    if len(text) == 44 and text.endswith("="):  # base64 of 32 bytes
        try:
            return _from_public_key(decode_b64(text))
        except ValueError as e:
            raise SchemaError(f"public key is not valid base64: {e}") from e
    if text.count("+") >= 2:
        name, public_key = parse_verifier_key(text)
        return TrustedKey(compute_key_id(public_key), public_key, name)
    raise SchemaError(
        "not a key this can read: give a key id (64 hex digits), a verifier key "
        "(origin+hash+base64), a base64 Ed25519 public key, or a PEM public key",
        hint="`mltrail keys export` prints each of these",
    )


def _from_public_key(public_key: bytes) -> TrustedKey:
    return TrustedKey(compute_key_id(public_key), public_key)


def _pem_public_key(text: str) -> bytes:
    if not text.endswith(_PEM_END):
        raise SchemaError("PEM public key has no END line")
    body = "".join(text[len(_PEM_BEGIN) : -len(_PEM_END)].split())
    try:
        der = base64.b64decode(body, validate=True)
    except binascii.Error as e:
        raise SchemaError(f"PEM public key is not valid base64: {e}") from e
    if len(der) != 44 or not der.startswith(_SPKI_ED25519_PREFIX):
        raise SchemaError("PEM public key is not an Ed25519 key")
    return der[len(_SPKI_ED25519_PREFIX) :]


def format_public_pem(public_key: bytes) -> str:
    """A raw Ed25519 public key as a PEM ``PUBLIC KEY`` block (RFC 8410)."""
    der = encode_b64(_SPKI_ED25519_PREFIX + public_key)
    return f"{_PEM_BEGIN}\n{der}\n{_PEM_END}\n"
