"""Witness cosignatures: C2SP ``tlog-cosignature`` (cosignature/v1, Ed25519).

A witness that checked a checkpoint is consistent with every earlier one it
saw adds a signature line of its own to the checkpoint's note::

    — witness.example/w1 base64(key hash || u64 time || Ed25519 signature)

The key hash is ``SHA-256(name || 0x0A || 0x04 || public key)[:4]``, ``time`` is
the POSIX time of cosigning (big-endian), and the signature covers::

    cosignature/v1
    time <time, decimal>
    <the checkpoint note body, extension lines included>

The witness's verifier key is ``name+hexkeyhash+base64(0x04 || public key)``.
Lines are parsed and written by :mod:`mltrail.core.checkpoint` (a cosignature
is a note signature); this module only knows what they sign.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mltrail.core.checkpoint import (
    KEY_HASH_SIZE,
    MAX_NOTE_SIGNATURES,
    Note,
    NoteSignature,
    SignedCheckpoint,
    compute_note_key_hash,
    format_verifier_key,
    parse_typed_verifier_key,
)
from mltrail.core.signing import verify_signature
from mltrail.errors import BadSignatureError, SchemaError

if TYPE_CHECKING:
    from mltrail.core.signing import Signer

__all__ = [
    "MAX_COSIGNATURE_TIME",
    "SIG_TYPE_COSIGNATURE_V1",
    "WitnessKey",
    "cosign_checkpoint",
    "cosigned_message",
    "find_cosignature",
    "parse_witness_key",
]

SIG_TYPE_COSIGNATURE_V1 = 0x04
MAX_COSIGNATURE_TIME = 2**63 - 1
_TIME_SIZE = 8
_SIGNATURE_SIZE = 64


@dataclass(frozen=True, slots=True)
class WitnessKey:
    """A witness's name and Ed25519 public key (cosignature/v1)."""

    name: str
    public_key: bytes

    @property
    def key_hash(self) -> bytes:
        """The 4-byte key ID its signature lines carry."""
        return compute_note_key_hash(
            self.name, self.public_key, SIG_TYPE_COSIGNATURE_V1
        )

    def to_vkey(self) -> str:
        """The verifier key ``name+hash+base64(0x04 || key)`` witnesses publish."""
        return format_verifier_key(self.name, self.public_key, SIG_TYPE_COSIGNATURE_V1)

    def short(self) -> str:
        """How reports name it: ``name+keyhash``."""
        return f"{self.name}+{self.key_hash.hex()}"


def parse_witness_key(vkey: str) -> WitnessKey:
    """Parse a witness verifier key (signature type 0x04).

    Raises:
        SchemaError: the text is not a cosignature/v1 verifier key.
    """
    name, public_key = parse_typed_verifier_key(vkey.strip(), SIG_TYPE_COSIGNATURE_V1)
    return WitnessKey(name, public_key)


def cosigned_message(body: bytes, timestamp: int) -> bytes:
    """The bytes a cosignature/v1 signs: header, time line, the checkpoint body.

    Raises:
        ValueError: the time is negative or beyond 2**63 - 1.
    """
    _check_time(timestamp)
    return b"cosignature/v1\ntime %d\n" % timestamp + body


def cosign_checkpoint(
    signed: SignedCheckpoint, signer: Signer, name: str, timestamp: int
) -> SignedCheckpoint:
    """Add (or replace) the cosignature of ``signer`` as witness ``name``.

    Nothing is checked here: the caller verified the log's signature and the
    consistency of the checkpoint with what the witness saw before.

    Raises:
        ValueError: invalid name or time, or too many signature lines.
    """
    body = signed.checkpoint.body()
    key = WitnessKey(name, signer.public_key)
    signature = signer.sign(cosigned_message(body, timestamp))
    line = NoteSignature(
        name, key.key_hash, timestamp.to_bytes(_TIME_SIZE, "big") + signature
    )
    kept = tuple(
        s for s in signed.signatures if (s.name, s.key_hash) != (name, key.key_hash)
    )
    if len(kept) + 1 > MAX_NOTE_SIGNATURES:
        raise ValueError(f"a note carries at most {MAX_NOTE_SIGNATURES} signatures")
    return SignedCheckpoint(signed.checkpoint, (*kept, line))


def find_cosignature(note: Note, key: WitnessKey) -> int | None:
    """The time of ``key``'s cosignature on ``note``, or None when it has none.

    Every line with the witness's name and key hash must verify (a note may
    carry several; the newest time is returned).

    Raises:
        BadSignatureError: a line by the witness does not verify (altered
            checkpoint, altered time or forged signature).
        SchemaError: a line by the witness has the wrong length.
    """
    key_hash = key.key_hash
    times = []
    for line in note.signatures:
        if (line.name, line.key_hash) != (key.name, key_hash):
            continue
        if len(line.signature) != _TIME_SIZE + _SIGNATURE_SIZE:
            raise SchemaError(
                f"cosignature by {key.short()} is {KEY_HASH_SIZE + len(line.signature)}"
                f" bytes, a cosignature/v1 is {KEY_HASH_SIZE + _TIME_SIZE + _SIGNATURE_SIZE}"
            )
        timestamp = int.from_bytes(line.signature[:_TIME_SIZE], "big")
        if timestamp > MAX_COSIGNATURE_TIME or not verify_signature(
            key.public_key,
            cosigned_message(note.body, timestamp),
            line.signature[_TIME_SIZE:],
        ):
            raise BadSignatureError(
                f"the cosignature by witness {key.short()} does not verify",
                hint="the checkpoint or the cosignature was altered after cosigning",
            )
        times.append(timestamp)
    return max(times) if times else None


def _check_time(timestamp: int) -> None:
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise ValueError("a cosignature time must be an int")
    if not 0 <= timestamp <= MAX_COSIGNATURE_TIME:
        raise ValueError(f"a cosignature time must be in 0..2**63 - 1, got {timestamp}")
