"""Verification: per-record checks (parallelisable) and the sequential ledger walk.

``check_record`` is a pure function of one stored row, safe to run in worker
processes. ``LedgerVerifier`` consumes its results in seq order and checks what
needs order: seq continuity, the prev chain, key validity, Merkle roots against
checkpoints. Problems are collected into a ``VerificationReport``; nothing is
raised until the caller asks with ``raise_for_failure()``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from mltrail.core.canonical import compute_leaf_hash
from mltrail.core.chain import KEY_KINDS, KeyRing
from mltrail.core.checkpoint import parse_signed_checkpoint, verify_checkpoint
from mltrail.core.codec import BlobRef, decode_record, find_blob_refs
from mltrail.core.merkle import CompactRange
from mltrail.core.signing import decode_b64, verify_signature
from mltrail.errors import IntegrityError, MltrailError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "LedgerVerifier",
    "Problem",
    "RecordCheck",
    "Severity",
    "SigStatus",
    "StoredCheckpoint",
    "VerificationReport",
    "check_record",
]


_MAX_GAP_FILL = 1_000_000


class Severity(StrEnum):
    """How bad a problem is: errors mean tampering, warnings do not."""

    ERROR = "error"
    WARNING = "warning"


class SigStatus(StrEnum):
    """Outcome of a record's signature check in a worker."""

    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN_KEY = "unknown-key"


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
class RecordCheck:
    """What a worker learned from one stored row."""

    row_seq: int
    row_hash: bytes
    error: str | None = None
    seq: int = -1
    prev: str = ""
    hash: bytes = b""
    leaf_hash: bytes = b""
    kind: str = ""
    key_id: str = ""
    sig: SigStatus = SigStatus.INVALID
    key_body: dict[str, Any] | None = None
    blob_refs: tuple[BlobRef, ...] = ()
    known_kind: bool = True
    signing_bytes: bytes = b""
    signature: bytes = b""


def check_record(
    row_seq: int, row_hash: bytes, data: bytes, public_keys: Mapping[str, bytes]
) -> RecordCheck:
    """Decode one stored row and check its signature against ``public_keys``.

    ``public_keys`` maps key ids to raw public keys; since a key id is the hash
    of its key, the map may come from anywhere. Whether the key was *valid*
    at this seq is decided later, in order, by ``LedgerVerifier``.
    """
    try:
        decoded = decode_record(data)
    except MltrailError as e:
        return RecordCheck(row_seq, row_hash, error=str(e))
    entry = decoded.record.entry
    if entry.sig is None:
        return RecordCheck(row_seq, row_hash, error="the entry carries no signature")
    try:
        signature = decode_b64(entry.sig.value)
    except ValueError:
        signature = b""
    public_key = public_keys.get(entry.sig.key)
    status = SigStatus.UNKNOWN_KEY if signature else SigStatus.INVALID
    if public_key is not None and signature:
        ok = verify_signature(public_key, decoded.signing_bytes, signature)
        status = SigStatus.VALID if ok else SigStatus.INVALID
    unknown = status is SigStatus.UNKNOWN_KEY
    return RecordCheck(
        row_seq=row_seq,
        row_hash=row_hash,
        seq=decoded.record.seq,
        prev=decoded.record.prev,
        hash=decoded.hash,
        leaf_hash=compute_leaf_hash(data),
        kind=entry.kind,
        key_id=entry.sig.key,
        sig=status,
        key_body=dict(entry.body) if entry.kind in KEY_KINDS else None,
        blob_refs=tuple(find_blob_refs(entry.body)),
        known_kind=decoded.known_kind,
        signing_bytes=decoded.signing_bytes if unknown else b"",
        signature=signature if unknown else b"",
    )


@dataclass(frozen=True, slots=True)
class StoredCheckpoint:
    """A checkpoint as kept by a store (or a witness): where it came from and its text."""

    label: str
    size: int
    text: str


@dataclass
class VerificationReport:
    """The outcome of verifying a ledger; falsy when tampering was found."""

    origin: str
    size: int = 0
    root: bytes | None = None
    records_checked: int = 0
    checkpoints_checked: int = 0
    blobs_checked: int = 0
    problems: list[Problem] = field(default_factory=list)

    @property
    def errors(self) -> list[Problem]:
        """Problems that mean the ledger was altered."""
        return [p for p in self.problems if p.severity is Severity.ERROR]

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

    def verdict(self) -> str:
        """One line for humans."""
        if self.ok:
            return (
                f"OK: {self.records_checked} records, {self.checkpoints_checked} "
                f"checkpoints and {self.blobs_checked} blobs verified; ledger intact"
            )
        if self.records_checked == 0:
            return "FAILED: the ledger holds no records"
        return (
            f"TAMPERED: {len(self.errors)} problem(s) found in {self.size} records; "
            f"first bad seq {self.first_bad_seq}"
        )

    def raise_for_failure(self) -> None:
        """Raise ``IntegrityError`` naming the first problem unless the ledger is intact."""
        if not self.ok:
            first = self.errors[0] if self.errors else "the ledger holds no records"
            raise IntegrityError(f"{self.verdict()}: {first}")

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
            "first_bad_seq": self.first_bad_seq,
            "problems": [p.to_dict() for p in self.problems],
        }


class LedgerVerifier:
    """Walks ``RecordCheck`` results in seq order and records every problem.

    Args:
        origin: the ledger's origin, bound into every checkpoint.
        checkpoints: checkpoints to check against the recomputed roots.
        trusted_key: the genesis key id this verifier trusts (None: accept any).
    """

    def __init__(
        self,
        origin: str,
        checkpoints: list[StoredCheckpoint],
        trusted_key: str | None = None,
    ) -> None:
        self.report = VerificationReport(origin=origin)
        self.keyring = KeyRing()
        self.tree = CompactRange()
        self.blob_refs: dict[str, list[tuple[int, BlobRef]]] = {}
        self._trusted_key = trusted_key
        self.heads: list[tuple[str, int, bytes]] = []
        """(label, size, root) of every readable checkpoint, as its text states."""
        self._checkpoints = sorted(self._readable(checkpoints), key=lambda c: c.size)
        self._next_cp = 0
        self._prev_hash: bytes | None = None
        self._expected_seq = 0

    def _readable(self, checkpoints: list[StoredCheckpoint]) -> list[StoredCheckpoint]:
        """Checkpoints whose note parses, scheduled by the size their signed text states."""
        readable = []
        for cp in checkpoints:
            self.report.checkpoints_checked += 1
            try:
                parsed = parse_signed_checkpoint(cp.text).checkpoint
            except MltrailError as e:
                self.problem(None, "checkpoint", f"{cp.label} is unreadable: {e}")
                continue
            size = parsed.size
            if size != cp.size:
                self.problem(
                    None,
                    "checkpoint",
                    f"{cp.label} is stored as size {cp.size} "
                    f"but its signed text says {size}",
                )
            if size > 0:
                readable.append(StoredCheckpoint(cp.label, size, cp.text))
                self.heads.append((cp.label, size, parsed.root))
        return readable

    def problem(
        self,
        seq: int | None,
        code: str,
        message: str,
        severity: Severity = Severity.ERROR,
    ) -> None:
        """Record a problem."""
        self.report.problems.append(Problem(seq, code, message, severity))

    def accept(self, check: RecordCheck) -> None:
        """Take the next stored row's check, in order."""
        seq = self._expected_seq
        self.report.records_checked += 1
        if check.row_seq != seq:
            self.problem(
                seq,
                "missing",
                f"record is missing: the next stored record is seq "
                f"{check.row_seq}; a record was removed",
            )
            self._fill_gap(seq, check.row_seq)
            seq = self._expected_seq = check.row_seq
        if check.error is not None:
            self.problem(
                seq, "malformed", f"record is unreadable or altered: {check.error}"
            )
            self._advance(seq, check.row_hash, None)
            return
        self._check_place(seq, check)
        self._check_signer(seq, check)
        self._advance(seq, check.hash, check.leaf_hash)

    def _fill_gap(self, start: int, stop: int) -> None:
        """Stand an empty leaf in for each missing seq, so checkpoint sizes still line up."""
        if stop - start > _MAX_GAP_FILL:
            return
        for _ in range(start, stop):
            self.tree.append(bytes(32))
            self._check_checkpoints_at(self.tree.size)

    def _check_place(self, seq: int, check: RecordCheck) -> None:
        if check.seq != seq:
            self.problem(
                seq,
                "misplaced",
                f"the record stored at seq {seq} says it is seq "
                f"{check.seq}: records were moved or swapped",
            )
        if check.row_hash != check.hash:
            self.problem(
                seq,
                "hash-column",
                "stored hash column does not match the record "
                "bytes: the record was changed",
            )
        expected = self._prev_hash.hex() if self._prev_hash is not None else "0" * 64
        if check.prev != expected:
            before = f"seq {seq - 1}" if seq else "the start of the ledger"
            self.problem(
                seq,
                "prev",
                f"prev hash does not match {before}: a record was changed or removed",
            )
        if not check.known_kind:
            self.problem(
                seq,
                "unknown-kind",
                f"kind {check.kind!r} is unknown to this "
                "mltrail version; its body schema was not checked",
                Severity.WARNING,
            )
        for ref in check.blob_refs:
            self.blob_refs.setdefault(ref.digest, []).append((seq, ref))

    def _check_signer(self, seq: int, check: RecordCheck) -> None:
        if seq == 0:
            self._check_genesis(check)
        problem = self.keyring.signer_problem(check.key_id, seq)
        if problem is not None:
            self.problem(seq, "signer", problem)
        elif not self._signature_valid(check):
            self.problem(
                seq,
                "signature",
                "signature does not verify: the entry was altered after it was signed",
            )
        if check.key_body is not None and seq > 0:
            key_problem = self.keyring.apply(
                seq, check.kind, check.key_body, check.key_id
            )
            if key_problem:
                self.problem(seq, "key", key_problem)

    def _check_genesis(self, check: RecordCheck) -> None:
        if check.kind != "key.added" or check.key_body is None:
            self.problem(0, "genesis", "the first record is not the ledger's key.added")
            return
        problem = self.keyring.apply(0, check.kind, check.key_body, check.key_id)
        origin = check.key_body.get("origin", self.report.origin)
        if problem:
            self.problem(0, "genesis", problem)
        elif origin != self.report.origin:
            self.problem(
                0,
                "genesis",
                f"the ledger was created as {origin!r}, not "
                f"{self.report.origin!r}: it is another ledger",
            )
        elif self._trusted_key and self.keyring.genesis_key != self._trusted_key:
            self.problem(
                0,
                "genesis",
                f"ledger was started by key {check.key_id[:16]}... "
                f"but the trusted key is {self._trusted_key[:16]}...: this is not "
                "the ledger you trust, or it was rewritten",
            )

    def _signature_valid(self, check: RecordCheck) -> bool:
        if check.sig is not SigStatus.UNKNOWN_KEY:
            return check.sig is SigStatus.VALID
        state = self.keyring.keys[check.key_id]
        return verify_signature(state.public_key, check.signing_bytes, check.signature)

    def _advance(self, seq: int, record_hash: bytes, leaf_hash: bytes | None) -> None:
        self._prev_hash = record_hash
        self._expected_seq = seq + 1
        self.tree.append(leaf_hash if leaf_hash is not None else bytes(32))
        self._check_checkpoints_at(self.tree.size)

    def _check_checkpoints_at(self, size: int) -> None:
        while (
            self._next_cp < len(self._checkpoints)
            and self._checkpoints[self._next_cp].size == size
        ):
            self._check_checkpoint(self._checkpoints[self._next_cp], self.tree.root())
            self._next_cp += 1

    def _check_checkpoint(self, cp: StoredCheckpoint, root: bytes) -> None:
        keys = list(self.keyring.valid_keys(cp.size).values())
        if not keys:
            self.problem(
                cp.size - 1,
                "checkpoint",
                f"{cp.label} (size {cp.size}) cannot "
                "be checked: the ledger has no valid key at that size",
            )
            return
        try:
            checked = verify_checkpoint(
                cp.text, origin=self.report.origin, public_keys=keys
            )
        except MltrailError as e:
            self.problem(
                cp.size - 1,
                "checkpoint",
                f"{cp.label} (size {cp.size}) is not valid: {e}",
            )
            return
        if checked.root != root:
            self.problem(
                cp.size - 1,
                "root",
                f"{cp.label} (size {cp.size}) root "
                f"{checked.root.hex()[:16]}... does not match the records' root "
                f"{root.hex()[:16]}...: records up to seq {cp.size - 1} were changed",
            )

    def finish(self) -> VerificationReport:
        """Close the walk: checkpoints beyond the end, ledger size and root."""
        size = self.tree.size
        for cp in self._checkpoints[self._next_cp :]:
            self.problem(
                size,
                "truncated",
                f"{cp.label} covers {cp.size} records but the "
                f"ledger has only {size}: records were removed from the end or the "
                "ledger was rolled back to an older state",
            )
        if size == 0:
            self.problem(None, "empty", "the ledger holds no records")
        self.report.size = size
        self.report.root = self.tree.root()
        return self.report
