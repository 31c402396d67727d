"""Keyed commitments: a secret's stand-in that only the holder of a key can check.

A redacted value is stored as ``{"redacted": "hmac-sha256:<hex>", "salt": "<hex>",
"key": "<key id>"}``: HMAC-SHA-256 under a *commitment key* of a domain tag, a
random 16-byte salt and the value's UTF-8 bytes. The key is not in the ledger nor
in any bundle (``mltrail.ledger.keystore`` keeps it in the home's ``keys/`` folder, mode
0600), so a reader of the ledger cannot test guesses against a commitment, while an
auditor given the value and the key can confirm it::

    >>> key = CommitmentKey(bytes(32))
    >>> c = Committer(key).commit("hunter2")
    >>> check_commitment("hunter2", c, key), check_commitment("hunter3", c, key)
    (True, False)
    >>> check_commitment("hunter2", c)  # without the key nothing can be confirmed
    False

Ledgers written before keyed commitments hold ``{"redacted": "sha256:<hex>",
"salt": "<hex>"}`` (SHA-256 of salt and value): they are still checked, without a
key, and :func:`is_guessable` says so, since anyone can test a word list against
them. A commitment is also written as one string, ``<redacted hmac-sha256:<hex>
salt:<hex> key:<id>>``, where the value must stay a string (argv, URLs).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "KEY_BYTES",
    "MARKER_PATTERN",
    "CommitmentKey",
    "Committer",
    "check_commitment",
    "check_marker",
    "ephemeral_committer",
    "is_commitment",
    "is_guessable",
    "marker_commitment",
]

KEY_BYTES = 32
_SALT_BYTES = 16
_TAG = b"mltrail/commitment/v1\0"
_KEY_ID_TAG = b"mltrail/commitment-key-id/v1\0"
MARKER_PATTERN = (
    r"<redacted (?:hmac-)?sha256:[0-9a-f]{64} salt:[0-9a-f]*(?: key:[0-9a-f]{16})?>"
)
"""A regular expression for a commitment written as a string, keyed or old."""
_MARKER = re.compile(
    r"<redacted (hmac-sha256|sha256):([0-9a-f]{64}) salt:([0-9a-f]*)"
    r"(?: key:([0-9a-f]{16}))?>"
)


@dataclass(frozen=True)
class CommitmentKey:
    """The secret key of keyed commitments (32 random bytes)."""

    secret: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.secret) != KEY_BYTES:
            raise ValueError(f"a commitment key is {KEY_BYTES} bytes")

    @property
    def key_id(self) -> str:
        """16 hex digits naming the key (its hash reveals nothing of commitments)."""
        return hashlib.sha256(_KEY_ID_TAG + self.secret).hexdigest()[:16]

    @classmethod
    def generate(cls) -> CommitmentKey:
        """A fresh random key."""
        return cls(os.urandom(KEY_BYTES))


def _utf8(value: str | bytes) -> bytes:
    """UTF-8 bytes of ``value``; lone surrogates as the bytes they escape, if any."""
    if isinstance(value, bytes):
        return value
    try:
        return value.encode("utf-8", "surrogateescape")
    except UnicodeEncodeError:  # a surrogate that escapes no byte
        return value.encode("utf-8", "surrogatepass")


def _mac(key: bytes, salt: bytes, value: str | bytes) -> str:
    return hmac.new(key, _TAG + salt + _utf8(value), hashlib.sha256).hexdigest()


class Committer:
    """Makes keyed commitments under one :class:`CommitmentKey`."""

    def __init__(self, key: CommitmentKey) -> None:
        self.key = key

    @property
    def key_id(self) -> str:
        """The id of the key, written in every commitment."""
        return self.key.key_id

    def commit(
        self, value: str | bytes, *, salt: bytes | None = None
    ) -> dict[str, str]:
        """``{"redacted": "hmac-sha256:<hex>", "salt": "<hex>", "key": "<id>"}``."""
        salt = os.urandom(_SALT_BYTES) if salt is None else salt
        return {
            "redacted": "hmac-sha256:" + _mac(self.key.secret, salt, value),
            "salt": salt.hex(),
            "key": self.key_id,
        }

    def marker(self, value: str | bytes, *, salt: bytes | None = None) -> str:
        """The commitment as one string: ``<redacted hmac-sha256:… salt:… key:…>``."""
        c = self.commit(value, salt=salt)
        return f"<redacted {c['redacted']} salt:{c['salt']} key:{c['key']}>"


_EPHEMERAL = Committer(CommitmentKey.generate())


def ephemeral_committer() -> Committer:
    """A committer whose key lives only in this process: its commitments can never
    be checked by anyone, which is still better than a guessable hash. Used where
    no home (and so no commitment key) is at hand."""
    return _EPHEMERAL


def is_commitment(obj: object) -> bool:
    """Whether ``obj`` is a commitment mapping, keyed or old."""
    if not isinstance(obj, Mapping):
        return False
    keys = set(obj)
    if keys not in ({"redacted", "salt"}, {"redacted", "salt", "key"}):
        return False
    return all(isinstance(v, str) for v in obj.values())


def is_guessable(commitment: Mapping[str, object]) -> bool:
    """Whether anyone can test guesses against ``commitment`` (an old salted
    SHA-256 one, written before keyed commitments)."""
    redacted = commitment.get("redacted")
    return isinstance(redacted, str) and redacted.startswith("sha256:")


def check_commitment(
    value: str | bytes,
    commitment: Mapping[str, object],
    key: CommitmentKey | None = None,
) -> bool:
    """Whether ``value`` is the secret behind ``commitment`` (constant-time compare).

    A keyed commitment needs ``key`` (the one its ``key`` id names); an old salted
    SHA-256 one needs none. A malformed commitment is simply not matched.
    """
    redacted, salt_hex = commitment.get("redacted"), commitment.get("salt")
    if not isinstance(redacted, str) or not isinstance(salt_hex, str):
        return False
    try:
        salt = bytes.fromhex(salt_hex)
    except ValueError:
        return False
    scheme, _, digest = redacted.partition(":")
    if scheme == "sha256":
        actual = hashlib.sha256(salt + _utf8(value)).hexdigest()
    elif scheme == "hmac-sha256" and key is not None:
        if commitment.get("key") != key.key_id:
            return False
        actual = _mac(key.secret, salt, value)
    else:
        return False
    return hmac.compare_digest(actual.encode(), digest.encode("utf-8", "replace"))


def marker_commitment(marker: str) -> dict[str, str] | None:
    """The commitment a ``<redacted …>`` string stands for, or None."""
    m = _MARKER.fullmatch(marker)
    if m is None:
        return None
    commitment = {"redacted": f"{m[1]}:{m[2]}", "salt": m[3]}
    if m[4]:
        commitment["key"] = m[4]
    return commitment


def check_marker(
    value: str | bytes, marker: str, key: CommitmentKey | None = None
) -> bool:
    """Whether ``value`` is the secret behind a ``<redacted …>`` marker string."""
    commitment = marker_commitment(marker)
    return commitment is not None and check_commitment(value, commitment, key)
