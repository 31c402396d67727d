"""Checkpoint evidence kept by a store: read it, hand it out, check it in ``verify``.

The store keeps, beside the checkpoints, evidence their issuers signed (see
:mod:`mltrail.core.evidence` and ADR 0015): RFC 3161 tokens (``rfc3161``),
witness-cosigned notes (``cosignature``), and markers that a run's end
checkpoint still waits for its timestamp (``rfc3161-pending``).

For verification, the checkpoint each piece is about takes part in the walk
like a stored checkpoint (so a token over a checkpoint of records since cut or
rewritten is ``truncated`` or ``root``), then :func:`check_ledger_evidence`
checks every token and the cosignatures of the witnesses the verifier names,
and reports what they prove as anchors: the time before which a checkpoint
existed, and the size up to which a witness vouches that the log only grew.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mltrail.core.checkpoint import parse_signed_checkpoint
from mltrail.core.evidence import (
    COSIGNATURE,
    RFC3161,
    Evidence,
    EvidenceCheck,
    EvidenceStatus,
    failed_evidence,
    signed_in_the_future,
    verify_evidence,
)
from mltrail.core.merkle import range_root
from mltrail.core.report import Anchor, Problem, Severity, StoredCheckpoint
from mltrail.errors import ConfigError, MltrailError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime

    from cryptography.x509 import Certificate

    from mltrail.core.cosignature import WitnessKey
    from mltrail.core.report import VerificationReport
    from mltrail.storage.base import Store, StoredEvidence

__all__ = [
    "PENDING",
    "EvidencePolicy",
    "check_ledger_evidence",
    "evidence_checkpoints",
    "evidence_for",
    "list_timestamps",
    "pending_checkpoints",
]

PENDING = "rfc3161-pending"
"""A run's end checkpoint whose timestamp could not be had (the TSA was down)."""


@dataclass(frozen=True)
class EvidencePolicy:
    """What the verifier trusts from outside: TSA CAs and witness keys.

    Args:
        tsa_roots: CA certificates a TSA must chain to (none: token times are
            reported as unverified).
        tsa_source: where they came from, for the report.
        tsa_external: whether that file lies outside the ledger home.
        witness_keys: witnesses whose cosignature some checkpoint must carry.
        notes: cosigned checkpoint notes kept elsewhere (``--trust-checkpoint``).
        problems: what the report must say about the policy itself (a CA file
            ledger.json names that cannot be read).
        now: the verifying machine's clock: a token signed more than the
            tolerance after it is the warning ``timestamp-future`` (None: not
            compared).
    """

    tsa_roots: Sequence[Certificate] = ()
    tsa_source: str = ""
    tsa_external: bool = True
    witness_keys: Sequence[WitnessKey] = ()
    notes: Sequence[tuple[str, str]] = field(default_factory=tuple)
    problems: Sequence[Problem] = ()
    now: datetime | None = None


def evidence_for(store: Store, checkpoint_text: str) -> list[Evidence]:
    """Every token and cosigned note the store keeps about ``checkpoint_text``.

    For proof bundles: ``[e.to_dict() for e in evidence_for(...)]`` goes beside
    the checkpoint, and :func:`mltrail.core.evidence.verify_evidence` checks it
    offline.
    """
    return [
        Evidence(row.kind, row.checkpoint, row.data)
        for row in store.evidence()
        if row.kind in (RFC3161, COSIGNATURE) and row.checkpoint == checkpoint_text
    ]


def list_timestamps(
    store: Store, policy: EvidencePolicy | None = None
) -> list[dict[str, Any]]:
    """The store's RFC 3161 tokens, each with what can be re-derived about it.

    ``size`` is the size the stamped checkpoint signs, given only when the
    token stamps that checkpoint and the store's records have its root; never
    the evidence row's own ``size`` column, which whoever stores a row writes
    (ADR 0015). Otherwise ``size`` is None: the row is unverified. ``token``
    says whether the token chains to one of ``policy.tsa_roots`` (``verified``),
    stamps the checkpoint but no CA was given (``unverified``), or neither
    (``failed``); ``time`` is its ``genTime`` as the token claims it. ``ca``
    names the CA file it was checked against and ``ca_external`` whether it
    lies outside the home (a CA ledger.json names does not: whoever writes the
    home chooses it, and can stamp any time with a TSA of their own under it).
    """
    roots = policy.tsa_roots if policy is not None else ()
    ca = policy.tsa_source if policy is not None and roots else None
    external = bool(policy.tsa_external) if policy is not None and roots else None
    listed = []
    for row in store.evidence():
        if row.kind != RFC3161:
            continue
        item = Evidence(RFC3161, row.checkpoint, row.data)
        check = verify_evidence(row.checkpoint, [item], tsa_roots=roots)[0]
        derived = check.ok and _holds(store, row.checkpoint)
        listed.append(
            {
                "id": row.id,
                "size": _size(row.checkpoint) if derived else None,
                "token": str(check.status),
                "issuer": check.issuer if check.ok else None,
                "time": _utc(check) if check.ok else None,
                "added": row.added,
                "ca": ca,
                "ca_external": external,
            }
        )
    return listed


def _utc(check: EvidenceCheck) -> str | None:
    return check.time.strftime("%Y-%m-%dT%H:%M:%SZ") if check.time else None


def pending_checkpoints(store: Store) -> list[tuple[int, str]]:
    """(size, text) of checkpoints marked pending that no token stamps yet."""
    rows = store.evidence()
    stamped = {r.checkpoint for r in rows if r.kind == RFC3161}
    pending: dict[str, int] = {}
    for row in rows:
        if row.kind == PENDING and row.checkpoint not in stamped:
            pending.setdefault(row.checkpoint, _size(row.checkpoint) or row.size)
    return sorted(((size, text) for text, size in pending.items()), key=lambda p: p[0])


def evidence_checkpoints(store: Store) -> list[StoredCheckpoint]:
    """The checkpoints evidence is about, where the store no longer holds them.

    They join the walk, so a stamped or cosigned checkpoint of records since
    removed, cut or rewritten is reported (``truncated``, ``root``).
    """
    held = {cp.text for cp in store.checkpoints()}
    found: dict[str, StoredCheckpoint] = {}
    for row in store.evidence():
        if row.checkpoint in held or row.checkpoint in found:
            continue
        found[row.checkpoint] = StoredCheckpoint(
            f"the checkpoint {row.kind} evidence #{row.id} is about",
            _size(row.checkpoint),
            row.checkpoint,
        )
    return list(found.values())


def check_ledger_evidence(
    store: Store, report: VerificationReport, policy: EvidencePolicy
) -> None:
    """Check the store's evidence (and ``policy.notes``); add anchors and problems."""
    report.problems.extend(policy.problems)
    rows = store.evidence()
    try:
        _check_tokens(store, report, policy, [r for r in rows if r.kind == RFC3161])
    except ConfigError as e:  # rfc3161-client missing
        report.problems.append(
            Problem(
                None,
                "timestamp-unchecked",
                f"timestamp tokens were not checked: {e} ({e.hint})",
                Severity.WARNING,
            )
        )
    for size, _ in pending_checkpoints(store):
        report.problems.append(
            Problem(
                size - 1,
                "timestamp-pending",
                f"the checkpoint of size {size} was to be timestamped but the TSA "
                "could not be reached; `mltrail timestamp --pending` stamps it",
                Severity.WARNING,
            )
        )
    if policy.witness_keys:
        _check_witnesses(
            store, report, policy, [r for r in rows if r.kind == COSIGNATURE]
        )


def _check_tokens(
    store: Store,
    report: VerificationReport,
    policy: EvidencePolicy,
    rows: Sequence[StoredEvidence],
) -> None:
    checked = []
    for row in rows:
        item = Evidence(RFC3161, row.checkpoint, row.data)
        check = verify_evidence(row.checkpoint, [item], tsa_roots=policy.tsa_roots)[0]
        held = check.status is EvidenceStatus.VERIFIED and _holds(store, row.checkpoint)
        # the size the checkpoint signs, never the row's own size column: a row
        # filed under a larger size would stretch the token over later records
        checked.append((row, check, _size(row.checkpoint), held))
    stamped = max((size for _, _, size, held in checked if held), default=0)
    for row, check, size, held in checked:
        where = f"timestamp #{row.id} of the checkpoint of size {size}"
        if row.size != size:
            report.problems.append(
                Problem(
                    max(size, 1) - 1,
                    "timestamp",
                    f"{where} is filed under size {row.size}: it stamps records 0 "
                    f"to {size - 1} only (evidence rows were added by hand)",
                )
            )
        if check.status is EvidenceStatus.FAILED:
            report.problems.append(
                failed_evidence(
                    check,
                    code="timestamp",
                    seq=max(size, 1) - 1,
                    where=where,
                    size=size,
                    anchored=stamped,
                )
            )
        elif check.status is EvidenceStatus.UNVERIFIED:
            report.problems.append(
                Problem(
                    max(size, 1) - 1,
                    "timestamp-unverified",
                    f"{where}: {check.message} (--tsa-ca FILE checks it)",
                    Severity.WARNING,
                )
            )
        elif held:
            report.anchors.append(_time_anchor(size, check, policy))
            _check_dates(report, size, check, f"timestamp #{row.id}")
            future = (
                signed_in_the_future(
                    check, policy.now, f"timestamp #{row.id}", max(size, 1) - 1
                )
                if policy.now is not None
                else None
            )
            if future is not None:
                report.problems.append(future)


def _check_dates(
    report: VerificationReport,
    size: int,
    check: EvidenceCheck,
    what: str,
    severity: Severity = Severity.ERROR,
) -> None:
    """Report a record the anchor shows existed before the time it is dated
    (once per record, however many anchors show it)."""
    if check.time is None:
        return
    when = f"{what} ({_utc(check)})"
    found = report.dated.problem(size, check.time, when, severity=severity)
    if found is not None and not any(
        p.code == found.code and p.seq == found.seq for p in report.problems
    ):
        report.problems.append(found)


def _time_anchor(size: int, check: EvidenceCheck, policy: EvidencePolicy) -> Anchor:
    when = _utc(check) or "?"
    return Anchor(
        "timestamp",
        f"records 0 to {size - 1} existed before {when}: the checkpoint of size "
        f"{size} is stamped by {check.issuer} (RFC 3161, TSA CA {policy.tsa_source})",
        policy.tsa_external,
    )


def _check_witnesses(
    store: Store,
    report: VerificationReport,
    policy: EvidencePolicy,
    rows: Sequence[StoredEvidence],
) -> None:
    notes = [(f"cosigned checkpoint #{r.id}", r.checkpoint, r.data) for r in rows]
    notes += [(where, text, text.encode()) for where, text in policy.notes]
    for key in policy.witness_keys:
        best: tuple[int, EvidenceCheck] | None = None
        failed: list[tuple[int, str, EvidenceCheck]] = []
        for where, checkpoint, data in notes:
            item = Evidence(COSIGNATURE, checkpoint, data)
            for check in verify_evidence(checkpoint, [item], witness_keys=[key]):
                size = _size(checkpoint)
                if check.status is EvidenceStatus.FAILED:
                    failed.append((size, where, check))
                elif _holds(store, checkpoint):
                    what = f"{where} (witness {key.short()})"
                    _check_dates(report, size, check, what, Severity.WARNING)
                    if best is None or size > best[0]:
                        best = (size, check)
        witnessed = best[0] if best is not None else 0
        for size, where, check in failed:
            report.problems.append(
                failed_evidence(
                    check,
                    code="cosignature",
                    seq=max(size, 1) - 1,
                    where=where,
                    size=size,
                    anchored=witnessed,
                )
            )
        _report_witness(report, key, best)


def _report_witness(
    report: VerificationReport, key: WitnessKey, best: tuple[int, EvidenceCheck] | None
) -> None:
    if best is None:
        report.problems.append(
            Problem(
                None,
                "witness-missing",
                f"no checkpoint of this ledger carries a valid cosignature by witness "
                f"{key.short()}: nobody without the ledger key vouches that it only "
                "grew (`mltrail checkpoint --cosigned FILE` stores one)",
            )
        )
        return
    size, check = best
    when = _utc(check) or "?"
    report.anchors.append(
        Anchor(
            "cosignature",
            f"witness {key.short()} cosigned the checkpoint of size {size} at {when}: "
            f"records 0 to {size - 1} are as that witness saw them, and the log "
            "only grew before it",
            True,
        )
    )
    if size < report.size:
        report.problems.append(
            Problem(
                size,
                "unwitnessed",
                f"{_records(size, report.size)} newer than the newest checkpoint "
                f"witness {key.short()} cosigned",
                Severity.WARNING,
            )
        )


def _records(start: int, stop: int) -> str:
    if stop - start == 1:
        return f"record {start} is"
    return f"records {start} to {stop - 1} are"


def _holds(store: Store, checkpoint_text: str) -> bool:
    """Whether the store's tree at that size has the checkpoint's root."""
    try:
        checkpoint = parse_signed_checkpoint(checkpoint_text).checkpoint
        if not 0 < checkpoint.size <= store.head().size:
            return False
        return range_root(0, checkpoint.size, store.node) == checkpoint.root
    except MltrailError:
        return False


def _size(text: str) -> int:
    try:
        return parse_signed_checkpoint(text).checkpoint.size
    except MltrailError:
        return 0
