"""Offline proof bundles (``mltrail-bundle/1``): what one carries, and checking one.

A bundle holds some records of one ledger (a run or a model and its lineage),
each as its canonical bytes with an RFC 9162 inclusion proof to one signed
checkpoint, the ledger's key records, the blobs they reference, and the
timestamps and cosignatures kept about that checkpoint or an earlier one (with
a consistency proof to it). :func:`verify_bundle` checks all of it with no
ledger at hand, and never raises on what the bundle holds: every fault is a
problem of the report, naming the record it is in. See docs/format.md
("Proof bundles") and ADR 0016.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mltrail.core.bundle_checks import (
    BundleContext,
    check_blobs,
    check_checkpoint,
    check_evidence,
    check_future,
    check_gates,
    check_records,
    check_subject,
    check_trusted_checkpoints,
)
from mltrail.core.canonical import canonical_bytes, compute_record_hash
from mltrail.core.codec import parse_json
from mltrail.core.report import Anchor, Problem, Severity
from mltrail.errors import MltrailError

if TYPE_CHECKING:
    from collections.abc import Collection, Mapping, Sequence
    from datetime import datetime

    from cryptography.x509 import Certificate

    from mltrail.core.cosignature import WitnessKey
    from mltrail.core.evidence import EvidenceCheck

__all__ = [
    "BUNDLE_FORMAT",
    "MAX_BUNDLE_DEPTH",
    "BundlePolicy",
    "BundleReport",
    "compose_bundle",
    "compute_bundle_digest",
    "verify_bundle",
    "verify_bundle_bytes",
]

BUNDLE_FORMAT = "mltrail-bundle/1"
MAX_BUNDLE_DEPTH = 16
"""A bundle nests a few levels; its records are carried as text."""

_TOP_KEYS = frozenset(
    {"format", "origin", "subject", "checkpoint", "records", "blobs", "evidence"}
)


def compose_bundle(
    *,
    origin: str,
    subject: Mapping[str, Any],
    checkpoint: str,
    records: Sequence[tuple[int, bytes, Sequence[bytes]]],
    blobs: Sequence[tuple[str, int, bytes | None]],
    evidence: Sequence[tuple[str, Sequence[bytes], Sequence[Mapping[str, Any]]]],
) -> dict[str, Any]:
    """The JSON form of a bundle.

    Args:
        origin: the ledger's origin.
        subject: ``{"node"}``: what was asked for, as a lineage node
            (``run:<id>``, ``model:<hex>``, ``file:<hex>``, ``data:<hex>``).
        checkpoint: the signed checkpoint note every proof leads to.
        records: ``(seq, canonical record bytes, inclusion proof)``.
        blobs: ``(digest, size, bytes or None)``, None where not carried.
        evidence: ``(checkpoint text, consistency proof to ``checkpoint``,
            [Evidence.to_dict(), ...])``.
    """
    ordered = sorted(records, key=lambda r: r[0])
    return {
        "format": BUNDLE_FORMAT,
        "origin": origin,
        "subject": {**subject, "seqs": [seq for seq, _, _ in ordered]},
        "checkpoint": checkpoint,
        "records": [
            {
                "seq": seq,
                "record": data.decode("utf-8"),
                "inclusion": [h.hex() for h in proof],
            }
            for seq, data, proof in ordered
        ],
        "blobs": [
            {
                "digest": digest,
                "size": size,
                "data": None if data is None else base64.b64encode(data).decode(),
            }
            for digest, size, data in sorted(blobs)
        ],
        "evidence": [
            {
                "checkpoint": text,
                "consistency": [h.hex() for h in proof],
                "items": list(items),
            }
            for text, proof, items in evidence
        ],
    }


def compute_bundle_digest(bundle: Any) -> str:
    """``sha256:<hex>`` of the bundle's RFC 8785 bytes (what a report quotes)."""
    return "sha256:" + compute_record_hash(canonical_bytes(bundle)).hex()


@dataclass(frozen=True)
class BundlePolicy:
    """What the verifier trusts from outside the bundle.

    Args:
        trusted_keys: key ids pinned with ``--trust-key`` (none: the keys the
            bundle's own key records give are used, and the report says so).
        tsa_roots: CA certificates a TSA must chain to.
        witness_keys: witnesses whose cosignature the bundle must carry.
    """

    trusted_keys: Collection[str] = ()
    trusted_origins: Collection[str] = ()
    """Ledger origins the pinned verifier keys name: the bundle's must be one."""
    tsa_roots: Sequence[Certificate] = ()
    witness_keys: Sequence[WitnessKey] = ()
    trusted_checkpoints: Sequence[tuple[str, str]] = ()
    """``(where from, text)`` of signed checkpoints the verifier kept
    (``--trust-checkpoint``): the bundle's checkpoint must be proven to extend
    each (see :func:`mltrail.core.bundle_checks.check_trusted_checkpoints`)."""
    now: datetime | None = None
    """The verifying machine's clock: a carried record dated more than the
    tolerance after it is the warning ``future``, as ``mltrail verify`` says it
    (None: not compared; core reads no clock)."""


@dataclass
class BundleReport:
    """What checking a bundle found; falsy when anything was altered."""

    digest: str = ""
    origin: str = ""
    subject: str = ""
    size: int = 0
    root: bytes | None = None
    records_checked: int = 0
    blobs_checked: int = 0
    blobs_absent: int = 0
    evidence: list[EvidenceCheck] = field(default_factory=list)
    anchors: list[Anchor] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    errors_unlisted: int = 0
    """Errors past the listing limit, beyond the one problem that counts them."""

    @property
    def errors(self) -> list[Problem]:
        """Problems that mean the bundle was altered or proves nothing."""
        return [p for p in self.problems if p.severity is Severity.ERROR]

    @property
    def ok(self) -> bool:
        """True when no error was found and some record was checked."""
        return not self.errors and self.records_checked > 0

    def __bool__(self) -> bool:
        return self.ok

    def verdict(self) -> str:
        """One line: intact or not, and how much was checked."""
        if self.ok:
            blobs = f"{self.blobs_checked} blob(s)"
            if self.blobs_absent:
                blobs += f" ({self.blobs_absent} more by hash only)"
            unpinned = any(a.kind == "key" and not a.external for a in self.anchors)
            whose = (
                "; its keys came from the bundle itself (unpinned: anyone can make "
                "such a bundle; pass --trust-key)"
                if unpinned
                else ""
            )
            if any(p.code == "unwitnessed" for p in self.problems):
                whose += (
                    "; carried records newer than a --witness-key witness cosigned "
                    "(unwitnessed)"
                )
            return (
                f"bundle intact: {self.records_checked} record(s) of {self.origin} "
                f"proven in its checkpoint of size {self.size}, {blobs} checked{whose}"
            )
        first = self.errors[0] if self.errors else "no record was checked"
        count = len(self.errors) + self.errors_unlisted or 1
        return f"bundle NOT intact: {count:,} error(s); first: {first}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "ok": self.ok,
            "verdict": self.verdict(),
            "digest": self.digest,
            "origin": self.origin,
            "subject": self.subject,
            "size": self.size,
            "root": self.root.hex() if self.root else None,
            "records_checked": self.records_checked,
            "blobs_checked": self.blobs_checked,
            "blobs_absent": self.blobs_absent,
            "evidence": [e.to_dict() for e in self.evidence],
            "anchors": [a.to_dict() for a in self.anchors],
            "problems": [p.to_dict() for p in self.problems],
        }


def verify_bundle_bytes(data: bytes, policy: BundlePolicy) -> BundleReport:
    """Parse (strictly, through the codec) and check a bundle; never raises on its content."""
    try:
        bundle = parse_json(data, what="bundle", max_depth=MAX_BUNDLE_DEPTH)
    except MltrailError as e:
        return _broken(str(e))
    report = verify_bundle(bundle, policy)
    actual = "sha256:" + compute_record_hash(data).hex()
    if report.digest and report.digest != actual:
        report.problems.append(
            Problem(
                None,
                "not-canonical",
                f"the file is not the canonical bytes export writes (its SHA-256 is "
                f"{actual}): the digest shown is of its canonical form, the same for "
                "any re-formatting of the same content; compare that one",
                Severity.WARNING,
            )
        )
    return report


def verify_bundle(bundle: Any, policy: BundlePolicy) -> BundleReport:
    """Check every record, proof, signature, blob and piece of evidence of ``bundle``."""
    problem = _shape_problem(bundle)
    if problem is not None:
        return _broken(problem)
    try:
        digest = compute_bundle_digest(bundle)
    except MltrailError as e:  # an unpaired surrogate escape, a number out of range
        return _broken(
            f"the bundle has no canonical form (RFC 8785), which every exported "
            f"bundle has: {e}"
        )
    report = BundleReport(
        digest=digest,
        origin=bundle["origin"],
        subject=str(bundle["subject"].get("node", "")),
    )
    ctx = BundleContext(report=report, policy=policy)
    if check_checkpoint(ctx, bundle["checkpoint"], bundle["origin"]):
        check_records(ctx, bundle["records"], bundle["subject"]["seqs"])
        check_blobs(ctx, bundle["blobs"])
        check_subject(ctx, bundle["subject"]["node"])
        check_gates(ctx)
        check_evidence(ctx, bundle["evidence"])
        check_trusted_checkpoints(ctx)
        check_future(ctx)
    ctx.finish()
    return report


def _broken(message: str) -> BundleReport:
    return BundleReport(problems=[Problem(None, "bundle", message)])


def _shape_problem(bundle: Any) -> str | None:
    """The top level of ``schema/bundle.json``, checked by hand (the rest is
    checked item by item, so a fault names its record)."""
    if not isinstance(bundle, dict):
        return "a bundle is a JSON object"
    if set(bundle) != _TOP_KEYS:
        got = ", ".join(sorted(map(str, bundle)))
        return f"a bundle has exactly the members {', '.join(sorted(_TOP_KEYS))}; got {got}"
    if bundle["format"] != BUNDLE_FORMAT:
        return f"format is {bundle['format']!r}, expected {BUNDLE_FORMAT!r}"
    subject = bundle["subject"]
    rules = (
        (isinstance(subject, dict) and isinstance(subject.get("seqs"), list),
         "subject must be an object with a seqs list"),
        (isinstance(subject, dict) and set(subject) == {"node", "seqs"}
         and isinstance(subject["node"], str),
         "subject must be an object with exactly node and seqs"),
        (isinstance(subject, dict) and isinstance(subject.get("seqs"), list)
         and all(type(s) is int for s in subject["seqs"]),
         "subject.seqs must hold integers"),
        (isinstance(bundle["origin"], str), "origin must be a string"),
        (isinstance(bundle["checkpoint"], str), "checkpoint must be a string"),
        (all(isinstance(bundle[n], list) for n in ("records", "blobs", "evidence")),
         "records, blobs and evidence must be lists"),
    )  # fmt: skip
    return next((message for holds, message in rules if not holds), None)
