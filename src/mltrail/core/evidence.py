"""Evidence about a checkpoint from outside the ledger: timestamps and cosignatures.

An :class:`Evidence` is one piece kept beside a signed checkpoint (the store's
``checkpoint_evidence`` table, or a proof bundle):

- ``rfc3161``: a TSA's ``TimeStampResp`` (DER) over the checkpoint's signed note
  text (see :mod:`mltrail.core.timestamp`): the checkpoint existed before the
  TSA's time;
- ``cosignature``: the checkpoint's note with a witness's cosignature/v1 lines
  (see :mod:`mltrail.core.cosignature`): a party without the ledger key saw
  this tree head and that it extends every earlier one it saw.

Each is signed by its issuer, so it needs no signature of ours. Checking is
pure and offline: :func:`verify_evidence` takes the CA certificates and
witness keys the verifier trusts, and never looks anything up.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from mltrail.core.chain import describe_gap
from mltrail.core.checkpoint import parse_note
from mltrail.core.cosignature import find_cosignature
from mltrail.core.head import TIME_TOLERANCE
from mltrail.core.report import Problem, Severity
from mltrail.core.timestamp import check_imprint, verify_timestamp
from mltrail.errors import MltrailError, SchemaError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from cryptography.x509 import Certificate

    from mltrail.core.cosignature import WitnessKey

__all__ = [
    "COSIGNATURE",
    "EVIDENCE_KINDS",
    "RFC3161",
    "Evidence",
    "EvidenceCheck",
    "EvidenceStatus",
    "signed_in_the_future",
    "verify_evidence",
]

RFC3161 = "rfc3161"
COSIGNATURE = "cosignature"
EVIDENCE_KINDS = (RFC3161, COSIGNATURE)


@dataclass(frozen=True, slots=True)
class Evidence:
    """One timestamp token or cosigned note about the checkpoint ``checkpoint``.

    Args:
        kind: ``rfc3161`` or ``cosignature``.
        checkpoint: the ledger's signed checkpoint note text it is about.
        data: the TSA reply (DER), or the cosigned note (UTF-8 text).
    """

    kind: str
    checkpoint: str
    data: bytes

    def __post_init__(self) -> None:
        if self.kind not in EVIDENCE_KINDS:
            raise ValueError(f"unknown evidence kind {self.kind!r}")

    def to_dict(self) -> dict[str, Any]:
        """JSON form (without the checkpoint, which a bundle keeps once)."""
        if self.kind == RFC3161:
            return {"kind": RFC3161, "token": base64.b64encode(self.data).decode()}
        return {"kind": COSIGNATURE, "note": self.data.decode("utf-8")}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], checkpoint: str) -> Evidence:
        """Read :meth:`to_dict`'s form back.

        Raises:
            SchemaError: the mapping is not evidence.
        """
        kind = data.get("kind")
        try:
            if kind == RFC3161:
                raw = base64.b64decode(str(data["token"]), validate=True)
            elif kind == COSIGNATURE:
                raw = str(data["note"]).encode("utf-8")
            else:
                raise SchemaError(f"unknown evidence kind {kind!r}")
        except (KeyError, binascii.Error, UnicodeEncodeError) as e:
            raise SchemaError(f"malformed {kind} evidence: {e}") from e
        return cls(str(kind), checkpoint, raw)


class EvidenceStatus(StrEnum):
    """What checking one piece of evidence found."""

    VERIFIED = "verified"
    """Signed by a TSA chaining to a trusted CA, or by a trusted witness key."""
    UNVERIFIED = "unverified"
    """Over this checkpoint, but its issuer is not one the verifier trusts."""
    FAILED = "failed"
    """Not over this checkpoint, unreadable, or its signature does not verify."""


@dataclass(frozen=True, slots=True)
class EvidenceCheck:
    """The outcome for one piece of evidence (and, for cosignatures, one key)."""

    kind: str
    status: EvidenceStatus
    issuer: str
    """The TSA's name, or the witness ``name+keyhash``."""
    time: datetime | None
    """The attested time (TSA ``genTime`` + accuracy, or cosignature time), when
    readable: the records existed before it."""
    message: str
    earliest: datetime | None = None
    """For a verified token, the earliest its TSA's true time can be (``genTime``
    - accuracy): later than the verifying clock, the TSA signed a future time."""

    @property
    def ok(self) -> bool:
        """True unless it failed."""
        return self.status is not EvidenceStatus.FAILED

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "kind": self.kind,
            "status": str(self.status),
            "issuer": self.issuer,
            "time": _rfc3339(self.time),
            "message": self.message,
        }


def verify_evidence(
    checkpoint_text: str,
    evidence: Sequence[Evidence],
    *,
    tsa_roots: Sequence[Certificate] = (),
    witness_keys: Sequence[WitnessKey] = (),
) -> list[EvidenceCheck]:
    """Check every piece of evidence about ``checkpoint_text``, offline.

    A token is ``verified`` when it stamps the checkpoint text and chains to
    one of ``tsa_roots``; ``unverified`` (its time is only claimed) when no CA
    is given; ``failed`` otherwise. A cosigned note yields one check per key of
    ``witness_keys`` that cosigned it (others are ignored, as signed notes
    require); ``failed`` when its body is not the checkpoint's or a trusted
    witness's line does not verify.
    """
    checks: list[EvidenceCheck] = []
    for item in evidence:
        if item.checkpoint != checkpoint_text:
            checks.append(_failed(item.kind, "?", "it is about another checkpoint"))
        elif item.kind == RFC3161:
            checks.append(_check_token(item.data, checkpoint_text, tsa_roots))
        else:
            checks.extend(_check_cosigned(item.data, checkpoint_text, witness_keys))
    return checks


def _check_token(
    data: bytes, checkpoint_text: str, roots: Sequence[Certificate]
) -> EvidenceCheck:
    try:
        info = check_imprint(data, checkpoint_text)
    except MltrailError as e:
        return _failed(RFC3161, "?", str(e))
    if not roots:
        return EvidenceCheck(
            RFC3161,
            EvidenceStatus.UNVERIFIED,
            info.tsa,
            info.time,
            f"token by {info.tsa} says {_rfc3339(info.time)}, unverified: no "
            "trusted TSA CA was given",
        )
    try:
        info = verify_timestamp(data, checkpoint_text, roots)
    except MltrailError as e:
        return _failed(RFC3161, info.tsa, str(e), info.time)
    # what the token proves: existence before genTime + accuracy, the latest
    # its TSA's true time can be (genTime alone claimed up to that much more)
    within = (
        f", genTime {_rfc3339(info.time)} +/- {info.accuracy}" if info.accuracy else ""
    )
    return EvidenceCheck(
        RFC3161,
        EvidenceStatus.VERIFIED,
        info.tsa,
        info.latest,
        f"existed before {_rfc3339(info.latest)} (RFC 3161 token by {info.tsa}"
        f"{within})",
        info.time - info.accuracy,
    )


def signed_in_the_future(
    check: EvidenceCheck, now: datetime, what: str, seq: int | None
) -> Problem | None:
    """The warning ``timestamp-future`` when a verified token's earliest time
    (genTime - accuracy) is more than :data:`TIME_TOLERANCE` after ``now`` (the
    verifying machine's clock); None otherwise.

    Its anchor stays true ("existed before" a later time proves no less), but a
    TSA that signs a time yet to come has a clock running ahead, or a key
    signing any time asked: its other tokens' times are not to be relied on.
    """
    if check.earliest is None or check.status is not EvidenceStatus.VERIFIED:
        return None
    gap = check.earliest - now
    if gap <= TIME_TOLERANCE:
        return None
    return Problem(
        seq,
        "timestamp-future",
        f"{what} by {check.issuer} says {_rfc3339(check.earliest)} at the "
        f"earliest, {describe_gap(gap)} after this machine's clock "
        f"({_rfc3339(now)}): the TSA's clock runs ahead or its key signed a time "
        "asked for (or this clock is behind); its tokens' times are not to be "
        "relied on",
        Severity.WARNING,
    )


def failed_evidence(
    check: EvidenceCheck,
    *,
    code: str,
    seq: int | None,
    where: str,
    size: int,
    anchored: int,
) -> Problem:
    """The problem of a token or cosignature that does not verify (``check``),
    about the checkpoint of ``size``, said at ``seq``.

    An error (``code``), unless a verified one of the same kind (for a
    cosignature, by the same witness) is about a checkpoint of the same or a
    larger size (``anchored``): then the records it would cover are anchored by
    that genuine one, and it is the warning ``<code>-ignored``. Evidence rows
    are never removed, so a forged reply of a TSA reached over plain HTTP, or a
    forged line in a cosigned file, would otherwise fail every later
    verification of the ledger (and every bundle carrying it) for good;
    stamping or cosigning the checkpoint again turns it into this warning (ADR
    0015 amendment of 2026-12-08). ``mltrail verify`` and ``verify-bundle``
    both say it through here.
    """
    if 0 < size <= anchored:
        noun = "cosignature" if check.kind == COSIGNATURE else "timestamp"
        return Problem(
            seq,
            f"{code}-ignored",
            f"{where}: {check.message}; it proves nothing and is ignored: a "
            f"verified {noun} of the checkpoint of size {anchored} covers its records",
            Severity.WARNING,
        )
    return Problem(seq, code, f"{where}: {check.message}")


def _check_cosigned(
    data: bytes, checkpoint_text: str, keys: Sequence[WitnessKey]
) -> list[EvidenceCheck]:
    try:
        note = parse_note(data)
        body = parse_note(checkpoint_text).body
    except MltrailError as e:
        return [_failed(COSIGNATURE, "?", f"unreadable cosigned note: {e}")]
    if note.body != body:
        return [_failed(COSIGNATURE, "?", "the cosigned note is of another checkpoint")]
    checks = []
    for key in keys:
        try:
            when = find_cosignature(note, key)
        except MltrailError as e:
            checks.append(_failed(COSIGNATURE, key.short(), str(e)))
            continue
        if when is not None:
            moment = datetime.fromtimestamp(min(when, 2**37), UTC)
            checks.append(
                EvidenceCheck(
                    COSIGNATURE,
                    EvidenceStatus.VERIFIED,
                    key.short(),
                    moment,
                    f"cosigned by witness {key.short()} at {_rfc3339(moment)}",
                )
            )
    return checks


def _failed(
    kind: str, issuer: str, message: str, time: datetime | None = None
) -> EvidenceCheck:
    return EvidenceCheck(kind, EvidenceStatus.FAILED, issuer, time, message)


def _rfc3339(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%SZ")
