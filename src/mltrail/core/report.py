"""What verification found: problems, the trust anchors it used, and the verdict.

A ``VerificationReport`` is falsy when tampering was found (any error), or when
there was nothing to check. Warnings (a newer format, a recorded clock reset,
anchors that all lie inside the ledger home, a blob purged by policy) never make
it fail.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from mltrail.errors import IntegrityError

if TYPE_CHECKING:
    from mltrail.core.anchored_time import LatestDated
    from mltrail.core.erasure import PurgeNote

__all__ = ["Anchor", "Problem", "Severity", "StoredCheckpoint", "VerificationReport"]


class Severity(StrEnum):
    """How bad a problem is: errors mean tampering, warnings do not."""

    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing verification found wrong, at a seq (or None for ledger-wide)."""

    seq: int | None
    code: str
    message: str
    severity: Severity = Severity.ERROR

    def __str__(self) -> str:
        where = f"seq {self.seq}" if self.seq is not None else "ledger"
        return f"{where}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "seq": self.seq,
            "code": self.code,
            "message": self.message,
            "severity": str(self.severity),
        }


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A checkpoint as kept by a store (or a witness): where it came from and its text.

    ``external`` marks a checkpoint kept outside the ledger home (an auditor's
    copy, a witness elsewhere): one that an attacker able to write the home
    could not have replaced. ``in_store`` is False for checkpoints brought from
    elsewhere (a witness file, an auditor's copy), which reports always name.
    """

    label: str
    size: int
    text: str
    external: bool = False
    in_store: bool = True


@dataclass(frozen=True, slots=True)
class Anchor:
    """Something verification trusted, and whether it lies outside the home."""

    kind: str
    """``key`` (a pinned or configured key) or ``checkpoint``."""
    description: str
    external: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "kind": self.kind,
            "description": self.description,
            "external": self.external,
        }


def _latest_dated() -> LatestDated:
    from mltrail.core.anchored_time import LatestDated  # it makes Problems

    return LatestDated()


@dataclass
class VerificationReport:
    """The outcome of verifying a ledger; falsy when tampering was found."""

    origin: str
    size: int = 0
    root: bytes | None = None
    records_checked: int = 0
    checkpoints_checked: int = 0
    blobs_checked: int = 0
    nodes_checked: int = 0
    covered: int = 0
    """Records covered by a valid checkpoint signed by a trusted key."""
    anchors: list[Anchor] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    purged: list[PurgeNote] = field(default_factory=list)
    """Blobs erased by a valid ``blob.purged`` record (their bytes are gone)."""
    dated: LatestDated = field(default_factory=_latest_dated)
    """The latest entry time at each checkpoint size walked (anchors' times are
    compared with it after the walk); not part of the JSON form."""

    @property
    def errors(self) -> list[Problem]:
        """Problems that mean the ledger was altered."""
        return [p for p in self.problems if p.severity is Severity.ERROR]

    @property
    def warnings(self) -> list[Problem]:
        """Problems that do not mean tampering, but limit what was proven."""
        return [p for p in self.problems if p.severity is Severity.WARNING]

    @property
    def ok(self) -> bool:
        """True when no error was found (warnings allowed) and there was something to check."""
        return not self.errors and self.records_checked > 0

    def __bool__(self) -> bool:
        return self.ok

    @property
    def first_bad_seq(self) -> int | None:
        """The lowest seq with an error, if any."""
        seqs = [p.seq for p in self.errors if p.seq is not None]
        return min(seqs) if seqs else None

    @property
    def external_anchors(self) -> list[Anchor]:
        """Anchors kept outside the ledger home."""
        return [a for a in self.anchors if a.external]

    def verdict(self) -> str:
        """One line for humans."""
        if self.ok:
            return (
                f"OK: {self.records_checked} records, {self.checkpoints_checked} "
                f"checkpoints and {self.blobs_checked} blobs verified; ledger intact"
                + self._purged_note()
            )
        if self.records_checked == 0:
            return "FAILED: the ledger holds no records"
        return (
            f"TAMPERED: {len(self.errors)} problem(s) found in {self.size} records; "
            f"first bad seq {self.first_bad_seq}"
        )

    def _purged_note(self) -> str:
        count = len(self.purged)
        if not count:
            return ""
        return f"; {count} blob{'s' if count > 1 else ''} purged by policy"

    def raise_for_failure(self, refusing: str | None = None) -> None:
        """Raise ``IntegrityError`` naming the first problem unless the ledger is
        intact; ``refusing`` (``"sign provenance"``) says what is then not done."""
        if self.ok:
            return
        first = self.errors[0] if self.errors else "the ledger holds no records"
        if refusing is None:
            raise IntegrityError(f"{self.verdict()}: {first}")
        raise IntegrityError(
            f"refusing to {refusing}: the ledger fails verification "
            f"({self.verdict()}; {first})",
            hint="run `mltrail verify` to see every problem",
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "ok": self.ok,
            "verdict": self.verdict(),
            "origin": self.origin,
            "size": self.size,
            "root": self.root.hex() if self.root else None,
            "records_checked": self.records_checked,
            "checkpoints_checked": self.checkpoints_checked,
            "blobs_checked": self.blobs_checked,
            "nodes_checked": self.nodes_checked,
            "covered": self.covered,
            "first_bad_seq": self.first_bad_seq,
            "anchors": [a.to_dict() for a in self.anchors],
            "problems": [p.to_dict() for p in self.problems],
            "purged": [p.to_dict() for p in self.purged],
        }
