"""DSSE envelopes (Dead Simple Signing Envelope, secure-systems-lab/dsse v1).

Pure functions: the pre-authentication encoding (PAE) that is signed, and the
envelope JSON. The signature is Ed25519 over ``PAE(payloadType, payload)``, so a
signature can never be replayed as one over another payload type.

    >>> pae("t", b"hi")
    b'DSSEv1 1 t 2 hi'
"""

from __future__ import annotations

import base64
from typing import TYPE_CHECKING, Any

from mltrail.core.signing import verify_signature
from mltrail.errors import IntegrityError

if TYPE_CHECKING:
    from mltrail.core.signing import Signer

__all__ = ["INTOTO_PAYLOAD_TYPE", "open_envelope", "pae", "sign_envelope"]

INTOTO_PAYLOAD_TYPE = "application/vnd.in-toto+json"


def pae(payload_type: str, payload: bytes) -> bytes:
    """The DSSE v1 pre-authentication encoding of ``payload``."""
    kind = payload_type.encode("utf-8")
    return b"DSSEv1 %d %b %d %b" % (len(kind), kind, len(payload), payload)


def sign_envelope(payload: bytes, payload_type: str, signer: Signer) -> dict[str, Any]:
    """A DSSE envelope of ``payload`` signed by ``signer`` (key id = its mltrail key id)."""
    signature = signer.sign(pae(payload_type, payload))
    return {
        "payload": base64.b64encode(payload).decode("ascii"),
        "payloadType": payload_type,
        "signatures": [
            {"keyid": signer.key_id, "sig": base64.b64encode(signature).decode("ascii")}
        ],
    }


def open_envelope(envelope: dict[str, Any], public_keys: dict[str, bytes]) -> bytes:
    """The payload of ``envelope`` once a signature by one of ``public_keys`` (key id ->
    raw Ed25519 public key) checks; for tests and tools without a DSSE library.

    Raises:
        IntegrityError: malformed, or no signature by a given key verifies.
    """
    try:
        payload = base64.b64decode(str(envelope["payload"]), validate=True)
        message = pae(str(envelope["payloadType"]), payload)
        signatures = list(envelope["signatures"])
    except (KeyError, TypeError, ValueError) as e:
        raise IntegrityError(f"not a DSSE envelope: {e}") from e
    for item in signatures:
        if not isinstance(item, dict):
            continue
        key = public_keys.get(str(item.get("keyid")))
        if key is None:
            continue
        try:
            sig = base64.b64decode(str(item["sig"]), validate=True)
        except (KeyError, TypeError, ValueError):
            continue
        if verify_signature(key, message, sig):
            return payload
    raise IntegrityError(
        "no signature of the DSSE envelope verifies with a trusted key"
    )
