"""RFC 3161 timestamps over checkpoints: what is stamped, and checking a token.

A time-stamping authority (TSA) signs ``(hash of a message, its own time)``.
mltrail stamps a checkpoint by its *signed note text exactly as the store keeps
it* (origin, size, root, the blank line and the ledger's signature line, UTF-8),
hashed with SHA-256: the token then proves that this signed tree head, so every
record it covers, existed before the TSA's time.

What is kept is the TSA's whole ``TimeStampResp`` (DER, as received: a status
and the ``timeStampToken``, a CMS SignedData). Checking one is pure and offline:

- its ``messageImprint`` is the hash of the checkpoint text (:func:`check_imprint`);
- its CMS signature verifies and its signing certificate (extendedKeyUsage
  timeStamping, critical) chains to a CA the verifier trusts, valid at the
  stamped time (:func:`verify_timestamp`).

Parsing and CMS verification come from ``rfc3161-client`` (the
``mltrail[timestamps]`` extra), imported on first use.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from mltrail.errors import BadSignatureError, ConfigError, IntegrityError, SchemaError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from cryptography.x509 import Certificate

__all__ = [
    "MAX_TOKEN_SIZE",
    "TimestampInfo",
    "check_imprint",
    "load_rfc3161_client",
    "load_tsa_roots",
    "parse_timestamp",
    "timestamp_digest",
    "timestamp_message",
    "verify_timestamp",
]

MAX_TOKEN_SIZE = 64 * 1024
"""Largest TSA reply accepted (a token with a certificate chain is a few KiB)."""

_HASHES = {
    "2.16.840.1.101.3.4.2.1": "sha256",
    "2.16.840.1.101.3.4.2.2": "sha384",
    "2.16.840.1.101.3.4.2.3": "sha512",
}
_EXTRA_HINT = "pip install 'mltrail[timestamps]' (it brings rfc3161-client)"


@dataclass(frozen=True, slots=True)
class TimestampInfo:
    """What a token says: the TSA's time and name, and the hash it signed."""

    time: datetime
    """``genTime``: the TSA's time, UTC."""
    digest: bytes
    hash_name: str
    tsa: str
    """The TSA's name in the token, else its signing certificate's issuer; once
    verified (:func:`verify_timestamp`), its signing certificate's subject and
    SHA-256 fingerprint."""
    serial: int
    policy: str
    nonce: int | None
    accuracy: timedelta = timedelta(0)
    """The token's ``accuracy``: its true time lies within ``time`` ± this
    (zero when the token gives none)."""
    fractional: bool = False
    """``genTime`` has a fraction of a second, which ``time`` (as rfc3161-client
    reads it) leaves out: the TSA's time lies within the second after ``time``."""

    @property
    def latest(self) -> datetime:
        """The latest the TSA's true time can be: ``genTime`` (its fraction
        included) + ``accuracy``, rounded up to the whole second. A token proves
        its message existed before this, not before ``genTime``; times are
        printed to the second, so a bound with a fraction would read early."""
        bound = self.time + self.accuracy
        if self.fractional:
            bound += timedelta(seconds=1)
        if bound.microsecond:
            bound = bound.replace(microsecond=0) + timedelta(seconds=1)
        return bound

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "time": self.time.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "hash": self.hash_name,
            "digest": self.digest.hex(),
            "tsa": self.tsa,
            "serial": self.serial,
            "policy": self.policy,
        }


def timestamp_message(checkpoint_text: str) -> bytes:
    """The bytes a checkpoint's timestamp covers: its signed note text, UTF-8."""
    return checkpoint_text.encode("utf-8")


def timestamp_digest(checkpoint_text: str) -> bytes:
    """SHA-256 of :func:`timestamp_message`: the ``messageImprint`` requested."""
    return hashlib.sha256(timestamp_message(checkpoint_text)).digest()


def load_rfc3161_client() -> Any:
    """The ``rfc3161_client`` module, or a ConfigError naming the extra."""
    try:
        import rfc3161_client
    except ImportError as e:
        raise ConfigError(
            "RFC 3161 timestamps need the rfc3161-client package", hint=_EXTRA_HINT
        ) from e
    return rfc3161_client


def _decode(data: bytes) -> Any:
    if len(data) > MAX_TOKEN_SIZE:
        raise SchemaError(f"timestamp reply is larger than {MAX_TOKEN_SIZE} bytes")
    rfc3161 = load_rfc3161_client()
    try:
        response = rfc3161.decode_timestamp_response(bytes(data))
        granted = int(response.status) in (0, 1)  # granted, grantedWithMods
    except (ValueError, TypeError) as e:
        raise SchemaError(f"timestamp token is not a valid RFC 3161 reply: {e}") from e
    if not granted:
        raise SchemaError(
            f"the TSA refused the request (status {response.status}): "
            f"{_shown(' '.join(response.status_string)) or 'no reason given'}"
        )
    return response


def parse_timestamp(data: bytes) -> TimestampInfo:
    """Read a TSA reply (DER ``TimeStampResp``); nothing is verified.

    Raises:
        SchemaError: not a granted, well-formed RFC 3161 reply.
        ConfigError: rfc3161-client is not installed.
    """
    response = _decode(data)
    try:
        return _info(response)
    except (KeyError, IndexError, TypeError, AttributeError, ValueError) as e:
        # the library decodes some members only when read: a name of an unknown
        # kind raised KeyError out of every reader of tokens (verify-bundle too)
        raise SchemaError(
            f"timestamp token is not a valid RFC 3161 reply: {type(e).__name__} "
            f"{str(e)[:80]}"
        ) from e


def _info(response: Any) -> TimestampInfo:
    tst = response.tst_info
    fractional, accuracy = _time_fields(bytes(tst.as_bytes()))
    imprint = tst.message_imprint
    oid = imprint.hash_algorithm.dotted_string
    name = getattr(tst.name, "value", None)
    tsa = name.rfc4514_string() if hasattr(name, "rfc4514_string") else str(name or "")
    if not tsa:
        tsa = next(
            (s.issuer.rfc4514_string() for s in response.signed_data.signer_infos), "?"
        )
    return TimestampInfo(
        time=tst.gen_time,
        digest=bytes(imprint.message),
        hash_name=_HASHES.get(oid, oid),
        tsa=tsa,
        serial=int(tst.serial_number),
        policy=tst.policy.dotted_string if tst.policy is not None else "",
        nonce=tst.nonce,
        accuracy=accuracy,
        fractional=fractional,
    )


_MAX_ACCURACY_S = 366 * 86400
"""A token claiming a coarser accuracy than a year is refused as malformed."""

_GENERALIZED_TIME, _SEQUENCE, _INTEGER, _MILLIS, _MICROS = 0x18, 0x30, 0x02, 0x80, 0x81


def _time_fields(tst_info: bytes) -> tuple[bool, timedelta]:
    """Whether ``genTime`` has a fraction of a second, and the ``accuracy``, read
    from the TSTInfo's DER: rfc3161-client drops the fraction, and reads an
    accuracy of 2**127 seconds or more as no seconds at all.

    Raises:
        ValueError: not a TSTInfo, or an accuracy out of range.
    """
    [(tag, body)] = _der_items(tst_info)
    fields = _der_items(body) if tag == _SEQUENCE else []
    at = [i for i, (kind, _) in enumerate(fields) if kind == _GENERALIZED_TIME][:1]
    if not at:
        raise ValueError("TSTInfo without a genTime")
    fraction = fields[at[0]][1].partition(b".")[2].rstrip(b"Z")
    fractional = fraction.strip(b"0") != b""
    after = fields[at[0] + 1 : at[0] + 2]
    if not after or after[0][0] != _SEQUENCE:  # no accuracy: ordering, nonce, ...
        return fractional, timedelta(0)
    return fractional, _accuracy(_der_items(after[0][1]))


def _accuracy(parts: list[tuple[int, bytes]]) -> timedelta:
    """RFC 3161 ``Accuracy`` (seconds, [0] millis, [1] micros; each optional)."""
    value = {tag: int.from_bytes(raw, "big", signed=True) for tag, raw in parts}
    seconds = value.get(_INTEGER, 0)
    if not 0 <= seconds <= _MAX_ACCURACY_S:
        big = abs(seconds).bit_length() > 256  # str() of a 4300-digit int fails
        shown = f"2**{abs(seconds).bit_length() - 1} or more" if big else seconds
        raise ValueError(f"accuracy of {shown} seconds is out of range")
    if not all(0 <= value.get(tag, 0) <= 999 for tag in (_MILLIS, _MICROS)):
        raise ValueError("accuracy millis or micros out of range")
    return timedelta(
        seconds=seconds,
        milliseconds=value.get(_MILLIS, 0),
        microseconds=value.get(_MICROS, 0),
    )


def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    """The (tag, contents) of each DER element in ``data`` (one-byte tags).

    Raises:
        ValueError: truncated, or a form a TSTInfo does not use.
    """
    items, at = [], 0
    while at < len(data):
        if at + 2 > len(data) or data[at] & 0x1F == 0x1F:
            raise ValueError("malformed DER in the TSTInfo")
        tag, length, at = data[at], data[at + 1], at + 2
        if length & 0x80:
            size = length & 0x7F
            if not 0 < size <= 4 or at + size > len(data):
                raise ValueError("malformed DER length in the TSTInfo")
            length, at = int.from_bytes(data[at : at + size], "big"), at + size
        if at + length > len(data):
            raise ValueError("truncated DER in the TSTInfo")
        items.append((tag, data[at : at + length]))
        at += length
    return items


def check_imprint(data: bytes, checkpoint_text: str) -> TimestampInfo:
    """Parse a reply and check it stamps ``checkpoint_text``; no signature checked.

    Raises:
        SchemaError: not a granted, well-formed reply, or an unknown hash.
        IntegrityError: the token stamps something else.
        ConfigError: rfc3161-client is not installed.
    """
    info = parse_timestamp(data)
    if info.hash_name not in _HASHES.values():
        raise SchemaError(f"timestamp token uses an unsupported hash {info.hash_name}")
    expected = hashlib.new(info.hash_name, timestamp_message(checkpoint_text)).digest()
    if info.digest != expected:
        raise IntegrityError(
            "the timestamp token stamps another message, not this checkpoint "
            f"(imprint {info.digest.hex()[:16]}..., the checkpoint hashes to "
            f"{expected.hex()[:16]}...)",
            hint="the token belongs to another checkpoint, or was altered",
        )
    return info


def load_tsa_roots(data: bytes) -> list[Certificate]:
    """The CA certificates in a PEM bundle (or one DER certificate).

    Raises:
        SchemaError: no certificate could be read.
    """
    from cryptography import x509

    try:
        if b"-----BEGIN" in data:
            roots = x509.load_pem_x509_certificates(data)
        else:
            roots = [x509.load_der_x509_certificate(data)]
    except ValueError as e:
        raise SchemaError(f"not a PEM or DER certificate: {e}") from e
    if not roots:
        raise SchemaError("no certificate found")
    return roots


def verify_timestamp(
    data: bytes, checkpoint_text: str, roots: Sequence[Certificate]
) -> TimestampInfo:
    """Check a reply stamps ``checkpoint_text`` and is signed by a trusted TSA.

    The TSA's certificate must carry a critical extendedKeyUsage of
    timeStamping and chain to one of ``roots``, valid at the stamped time. The
    returned ``tsa`` names that certificate (subject, SHA-256 fingerprint), not
    the name the token writes, which must be one of the certificate's. TSA
    certificates among ``roots`` (timeStamping usage, not a CA) pin the TSA:
    the token must be signed by one of them.

    Raises:
        SchemaError: not a granted, well-formed reply.
        IntegrityError: the token stamps another message.
        BadSignatureError: the signature or the certificate chain does not
            verify against ``roots``, or the token names another TSA than the
            certificate that signed it.
        ConfigError: rfc3161-client is not installed.
        ValueError: ``roots`` is empty.
    """
    if not roots:
        raise ValueError("verify_timestamp needs at least one trusted CA certificate")
    info = check_imprint(data, checkpoint_text)
    rfc3161 = load_rfc3161_client()
    response = _decode(data)
    builder = rfc3161.VerifierBuilder()
    for root in roots:
        builder = builder.add_root_certificate(root)
    try:
        builder.build().verify(response, info.digest)
    except (rfc3161.VerificationError, ValueError) as e:
        reason = " ".join(str(e).split())[:160]
        raise BadSignatureError(
            f"the timestamp token by {_shown(info.tsa)} does not verify against the trusted "
            f"TSA CA: {reason}",
            hint="the token was altered, or was issued by a TSA whose CA is not "
            "the one given (--tsa-ca)",
        ) from e
    return _signed_by(response, info, [r for r in roots if _is_tsa_certificate(r)])


def _is_tsa_certificate(cert: Certificate) -> bool:
    """A TSA's own certificate (timeStamping usage, not a CA): given among the
    trusted certificates, it pins the TSA."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    extensions = cert.extensions
    try:
        if extensions.get_extension_for_class(x509.BasicConstraints).value.ca:
            return False
    except x509.ExtensionNotFound:
        pass
    try:
        usage = extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.TIME_STAMPING in usage


def _signed_by(
    response: Any, info: TimestampInfo, pinned: Sequence[Certificate]
) -> TimestampInfo:
    """``info`` naming the TSA by the certificate that signed the token.

    When ``pinned`` TSA certificates are given, it must be one of them: a CA
    vouches for every TSA it certified, the verifier may name the one it means.

    The token's own ``tsa`` field is written by whoever signs it: any TSA under
    the trusted CA could name another there (or, absent, the CA's name stood in
    for the TSA). RFC 3161 (2.4.2) requires it to be one of the signing
    certificate's names; a token whose name is not is refused.

    Raises:
        BadSignatureError: the token names a TSA its certificate is not.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    try:
        (signer,) = list(response.signed_data.signer_infos)
        cert = next(
            c
            for c in map(
                x509.load_der_x509_certificate, response.signed_data.certificates
            )
            if c.issuer == signer.issuer and c.serial_number == signer.serial_number
        )
        claimed = getattr(response.tst_info.name, "value", None)
    except (StopIteration, ValueError, TypeError, KeyError, AttributeError) as e:
        raise BadSignatureError(
            f"the timestamp token's signing certificate cannot be read: {e}"
        ) from e
    subject = cert.subject.rfc4514_string()
    if claimed is not None and claimed not in _names(cert):
        raise BadSignatureError(
            f"the timestamp token names its TSA {_shown(info.tsa)}, but it is signed by the "
            f"TSA certificate of {_shown(subject)}: another TSA under the trusted CA wrote "
            "that name",
            hint="RFC 3161 requires the token's TSA name to be one of its signing "
            "certificate's names",
        )
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    if pinned and cert not in pinned:
        raise BadSignatureError(
            f"the timestamp token is signed by the TSA certificate of {_shown(subject)} "
            f"(sha256:{fingerprint}), not by the TSA certificate given with the "
            "trusted CA",
            hint="another TSA under the same CA stamped it",
        )
    return replace(info, tsa=f"{subject} (TSA certificate sha256:{fingerprint})")


def _names(cert: Certificate) -> list[Any]:
    """The names a TSA certificate certifies: its subject and alternative names."""
    from cryptography import x509

    names: list[Any] = [cert.subject]
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return names
    return names + [getattr(n, "value", n) for n in alt.value]


def _shown(name: str) -> str:
    """A name the signer wrote, as an error quotes it: as it is, or by ``repr``
    when it holds a character that is not printable (a newline would print a
    line of its own under ``error:``; ADR 0040)."""
    return name if name.isprintable() else repr(name)
