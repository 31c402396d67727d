"""The sequential ledger walk: what needs records in order.

``LedgerVerifier`` consumes :func:`~mltrail.core.record_check.check_record`
results in seq order and checks seq continuity, the prev chain, key validity,
entry times, Merkle roots against checkpoints, and that the newest record is
covered by a valid checkpoint signed by a trusted key. Problems are collected
into a :class:`~mltrail.core.report.VerificationReport`; nothing is raised
until the caller asks with ``raise_for_failure()``.

Trust: ``trusted_keys`` are the keys the verifier was told to trust (pinned by
an auditor, or the genesis key named in the home's settings). A key added by a
``key.added`` record signed by a trusted key is trusted in turn. Every record
must be covered by a checkpoint that verifies under a trusted key, so records
appended, replayed, reordered or removed without such a key are named.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from mltrail.core.chain import (
    CLOCK_RESET_KIND,
    TIME_TOLERANCE,
    KeyRing,
    describe_gap,
    is_later,
)
from mltrail.core.codec import BlobRef, parse_time
from mltrail.core.erasure import PURGE_KIND, PurgeNote
from mltrail.core.lock import ALLOWED_KINDS, LOCK_KIND, ModelLock, locks_of_body
from mltrail.core.merkle import CompactRange
from mltrail.core.pushed import PushWindow, open_window, pushed_checkpoint_problem
from mltrail.core.record_check import (
    CheckpointCheck,
    PlainRun,
    RecordCheck,
    SigStatus,
    check_checkpoint_text,
    check_record,
)
from mltrail.core.report import (
    Anchor,
    Problem,
    Severity,
    StoredCheckpoint,
    VerificationReport,
)
from mltrail.core.run_owner import RunAuthorship
from mltrail.core.signing import verify_signature

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Mapping, Sequence
    from datetime import datetime, timedelta

__all__ = [
    "Anchor",
    "LedgerVerifier",
    "PlainRun",
    "Problem",
    "RecordCheck",
    "Severity",
    "SigStatus",
    "StoredCheckpoint",
    "VerificationReport",
    "check_checkpoint_text",
    "check_record",
]


_MAX_GAP_FILL = 1_000_000


class LedgerVerifier:
    """Walks ``RecordCheck`` results in seq order and records every problem.

    Args:
        origin: the ledger's origin, bound into every checkpoint.
        checkpoints: checkpoints to check against the recomputed roots (the
            store's own, and any kept elsewhere, marked ``external``).
        checks: ``check_checkpoint_text`` of each checkpoint, in the same order
            (signatures are checked up front, in parallel, by the caller).
        trusted_keys: key ids to trust (empty: trust the ledger's own genesis).
        tolerance: how far entry times may go back (part of the format).
    """

    def __init__(
        self,
        origin: str,
        checkpoints: Sequence[StoredCheckpoint],
        checks: Sequence[CheckpointCheck],
        trusted_keys: Collection[str] = (),
        *,
        tolerance: timedelta = TIME_TOLERANCE,
    ) -> None:
        self.report = VerificationReport(origin=origin)
        self.keyring = KeyRing(origin=origin)
        self.tree = CompactRange()
        self.blob_refs: dict[str, list[tuple[int, BlobRef]]] = {}
        self.purges: dict[str, PurgeNote] = {}
        """The first validly signed ``blob.purged`` record of each digest."""
        self.nodes: list[tuple[int, int, bytes]] = []
        """Merkle nodes the walk completed, for the caller to compare with the store."""
        self.nodes_comparable = True
        """False once a record was missing or unreadable: stored nodes then differ."""
        self._pins = frozenset(trusted_keys)
        self._trusted: set[str] = set(self._pins)
        self._tolerance = tolerance
        self._checkpoints = sorted(
            self._readable(checkpoints, checks), key=lambda c: c[0].size
        )
        self._next_cp = 0
        self._prev_hash: bytes | None = None
        self._expected_seq = 0
        self._floor: tuple[datetime | None, int, str] | None = None
        """(parsed time or None, seq, time) of the newest entry so far."""
        self._window: PushWindow | None = None
        """The rest of the window a ``ledger.pushed`` record opened, if any."""
        self._newer: list[int] = []
        self._failed_sizes: list[int] = []
        """Sizes of checkpoints that failed (bad signature or root)."""
        self._root_reported = False
        self._more_roots: list[int] = []
        """Sizes of later stored checkpoints whose root also differs (summarised)."""
        self._runs = RunAuthorship()
        """Whose each run is, and records of it other users added (warnings)."""
        self._locks: dict[str, ModelLock] = {}
        """Runs locked by a validly signed ``model.sealed`` record so far."""

    def _readable(
        self, checkpoints: Sequence[StoredCheckpoint], checks: Sequence[CheckpointCheck]
    ) -> list[tuple[StoredCheckpoint, CheckpointCheck]]:
        """Checkpoints of this ledger whose note parses, scheduled by their signed size."""
        readable = []
        for cp, check in zip(checkpoints, checks, strict=True):
            self.report.checkpoints_checked += 1
            if check.error is not None:
                self.problem(
                    None, "checkpoint", f"{cp.label} is unreadable: {check.error}"
                )
                continue
            if check.origin != self.report.origin:
                self.problem(
                    None,
                    "foreign-checkpoint",
                    f"{cp.label} is a checkpoint of another ledger "
                    f"({check.origin!r}, not {self.report.origin!r}): it proves "
                    "nothing about this one",
                )
                continue
            if check.size != cp.size:
                self.problem(
                    None,
                    "checkpoint",
                    f"{cp.label} is stored as size {cp.size} "
                    f"but its signed text says {check.size}",
                )
            if check.size > 0:
                readable.append((dataclasses.replace(cp, size=check.size), check))
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

    # -- the walk ---------------------------------------------------------------

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
            self._window = self._window and self._window.after(None)
            self._advance(seq, check.row_hash, check.leaf_hash)
            return
        self._check_place(seq, check)
        for column, stored, signed in check.columns_differ:
            self._column_differs(seq, column, stored, signed)
        self._check_signer(seq, check)
        self._check_time(seq, check)
        self.report.dated.see(seq, check.kind, check.time)
        if check.run is not None:
            self._runs.add(seq, check.run, check.kind, check.user)
            self._check_not_locked(seq, check.run, check.kind)
        if check.newer:
            self._newer.append(seq)
        self._advance(seq, check.hash, check.leaf_hash)

    def accept_plain(
        self,
        run: PlainRun,
        node_batch: int = 0,
        flush: Callable[[], None] | None = None,
    ) -> bool:
        """Take a ``PlainRun`` whole, as ``accept`` would take its records one by
        one, when that is sure to find nothing; else change nothing and answer
        False (the caller then gives ``accept`` each of its records).

        ``accept`` stays the definition. Given how ``summarise_checks`` made the
        run, it reports nothing on the run's records when: the first is the
        seq expected and links to the record before it; the key is valid at the
        first and last seq for every kind in the run (validity by seq is an
        interval, and no key record is in the run to change it) and, for an
        author key, may sign those kinds as ``user``; no push window is open
        (none opens inside: no ``ledger.pushed``); and the first time is not
        before the newest so far (each later one is not before the one ahead
        of it, so each becomes the newest in turn). With ``flush``, it is called
        whenever ``nodes`` holds ``node_batch`` or more after a record, as the
        caller would after each ``accept``.
        """
        first, count = run.first_seq, len(run.times)
        last = first + count - 1
        expected = self._prev_hash.hex() if self._prev_hash is not None else "0" * 64
        if (
            first == 0
            or first != self._expected_seq
            or run.prev != expected
            or self._window is not None
        ):
            return False
        floor = self._floor
        if floor is not None and is_later(floor[2], run.times[0]):
            return False
        if self._locks and any(
            name in self._locks and kind not in ALLOWED_KINDS
            for _, name, kind in run.runs
        ):
            return False
        signer_problem = self.keyring.signer_problem
        for kind in run.kinds:
            if signer_problem(run.key_id, first, kind, run.user) or signer_problem(
                run.key_id, last, kind, run.user
            ):
                return False
        # sure now: the walk's state after the run, in the order accept makes it
        self.report.records_checked += count
        for seq, name, kind in run.runs:
            self._runs.add(seq, name, kind, run.user)
        self._floor = (None, last, run.times[-1])
        self._prev_hash = run.last_hash
        self._expected_seq = last + 1
        self._append_leaves(run, node_batch, flush)
        return True

    def _append_leaves(
        self, run: PlainRun, node_batch: int, flush: Callable[[], None] | None
    ) -> None:
        """The run's leaves into the tree, checkpoints at their sizes, and the
        latest-dated record as of each (``dated.see`` for each record, in effect)."""
        tree, leaves, times = self.tree, run.leaves, run.times
        cps = self._checkpoints
        due = cps[self._next_cp][0].size if self._next_cp < len(cps) else -1
        dated, seen = self.report.dated, 0
        for i in range(len(times)):
            completed = tree.append(leaves[32 * i : 32 * i + 32])
            if self.nodes_comparable:
                self.nodes.extend(completed)
            if tree.size == due:
                dated.see_sorted(run.first_seq + seen, times[seen : i + 1])
                seen = i + 1
                self._check_checkpoints_at(tree.size)
                due = cps[self._next_cp][0].size if self._next_cp < len(cps) else -1
            if flush is not None and len(self.nodes) >= node_batch:
                flush()
        if seen < len(times):
            dated.see_sorted(run.first_seq + seen, times[seen:])

    def _column_differs(
        self, seq: int, column: str, stored: str | None, signed: str | None
    ) -> None:
        self.problem(
            seq,
            "column-differs",
            f"the store's {column} column says {stored!r} but the signed record "
            f"says {signed!r}: the store lies about a signed record (reads by "
            f"{column}, and appends, would trust it)",
        )

    def _fill_gap(self, start: int, stop: int) -> None:
        """Stand an empty leaf in for each missing seq, so checkpoint sizes still line up."""
        self.nodes_comparable = False
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
        if not check.known_kind and not check.newer:
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
        problem = self.keyring.signer_problem(check.key_id, seq, check.kind, check.user)
        valid = False
        if problem is not None:
            self.problem(seq, problem.code, str(problem))
        elif not self._signature_valid(check):
            self.problem(
                seq,
                "signature",
                "signature does not verify: the entry was altered after it was signed",
            )
        else:
            valid = True
        if valid and check.kind == PURGE_KIND and check.key_body is not None:
            note = PurgeNote.from_body(seq, check.key_body, check.user, check.time)
            if note is not None:
                self.purges.setdefault(note.digest, note)
        if valid and check.kind == LOCK_KIND:
            for lock in locks_of_body(seq, check.key_body):
                self._locks.setdefault(lock.run, lock)
        # a key record whose signature does not verify changes no key; one signed
        # by a key that may not sign it is refused by the key ring (`key-signer`):
        # else whoever holds a revoked key, or forges a signature, could add a key
        # of their own and sign what follows with it
        forged = problem is None and not valid
        if seq > 0 and check.kind.startswith("key.") and check.key_body and not forged:
            key_problem = self.keyring.apply(
                seq, check.kind, check.key_body, check.key_id
            )
            if key_problem:
                self.problem(seq, key_problem.code, str(key_problem))
            elif valid and check.kind == "key.added" and check.key_id in self._trusted:
                self._trusted.add(str(check.key_body.get("key")))

    def _check_not_locked(self, seq: int, run: str, kind: str) -> None:
        """A record of a run a ``model.sealed`` record locked before it, other
        than a ``note``: appends refuse it (see :mod:`mltrail.core.lock`), so it
        was written past that check (a relabelled kind column, an older or
        altered mltrail, or the store written directly)."""
        lock = self._locks.get(run)
        if lock is not None and lock.seq < seq and kind not in ALLOWED_KINDS:
            self.problem(
                seq,
                "locked-run",
                f"{kind} amends run {run}, which model.sealed at seq {lock.seq} "
                f"locked (model {lock.model[:16]}...): a locked run takes nothing "
                "but notes",
            )

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
        elif not self._pins:
            self._trusted.add(check.key_id)

    def _signature_valid(self, check: RecordCheck) -> bool:
        if check.sig is not SigStatus.UNKNOWN_KEY:
            return check.sig is SigStatus.VALID
        state = self.keyring.keys[check.key_id]
        return verify_signature(state.public_key, check.signing_bytes, check.signature)

    def _check_pushed_checkpoint(
        self, seq: int, body: Mapping[str, Any], signer: str
    ) -> None:
        """A push header's ``checkpoint`` must be signed by the key it names (a key
        this ledger holds) for the pushed ledger's origin, and cover ``to``: so the
        pushed entries are shown to come from that ledger as far as it had grown."""
        problem = pushed_checkpoint_problem(body, self.keyring, signer)
        if problem is not None:
            self.problem(seq, "pushed-checkpoint", problem)

    def _check_time(self, seq: int, check: RecordCheck) -> None:
        """Entry times may not go back more than the tolerance, except at a reset
        or inside a pushed window (see :mod:`mltrail.core.pushed`)."""
        window = self._window
        if window is not None:
            problem = window.problem(check.kind, check.time, self._tolerance)
            if problem is not None:
                self.problem(seq, "pushed-time", f"{problem}")
            self._window = window.after(check.time)
            return
        self._window = open_window(seq, check.kind, check.key_body, check.time)
        if self._window is not None:
            self._check_pushed_checkpoint(seq, check.key_body or {}, check.key_id)
        floor = self._floor
        # the first readable record (a clock reset too, when rows were swapped or
        # removed) has nothing before it to be dated against
        if floor is None or (
            check.kind != CLOCK_RESET_KIND and not is_later(floor[2], check.time)
        ):
            self._floor = (None, seq, check.time)  # the newest so far: nothing to parse
            return
        moment, newest = parse_time(check.time), floor[0] or parse_time(floor[2])
        if check.kind == CLOCK_RESET_KIND:
            if moment < newest:
                reason = (check.key_body or {}).get("reason", "")
                self.problem(
                    seq,
                    "clock-reset",
                    f"clock reset recorded ({reason!r}): entries from here on are "
                    f"dated up to {describe_gap(newest - moment)} before seq "
                    f"{floor[1]} ({floor[2]}); a writer's clock was ahead, or this "
                    "one is behind",
                    Severity.WARNING,
                )
            self._floor = (moment, seq, check.time)
        elif newest - moment > self._tolerance:  # never overflows, near year 1
            self.problem(
                seq,
                "time",
                f"dated {check.time}, {describe_gap(newest - moment)} before seq "
                f"{floor[1]} ({floor[2]}): entry times may go back at most "
                f"{describe_gap(self._tolerance)}; the entry was back-dated, or a "
                "clock was wrong and no `mltrail clock reset` was recorded",
            )

    def _advance(self, seq: int, record_hash: bytes, leaf_hash: bytes | None) -> None:
        self._prev_hash = record_hash
        self._expected_seq = seq + 1
        if leaf_hash is None:
            self.nodes_comparable = False
        completed = self.tree.append(leaf_hash if leaf_hash is not None else bytes(32))
        if self.nodes_comparable:
            self.nodes.extend(completed)
        self._check_checkpoints_at(self.tree.size)

    # -- checkpoints ------------------------------------------------------------

    def _check_checkpoints_at(self, size: int) -> None:
        while (
            self._next_cp < len(self._checkpoints)
            and self._checkpoints[self._next_cp][0].size == size
        ):
            cp, check = self._checkpoints[self._next_cp]
            self.report.dated.mark(size)
            self._check_checkpoint(cp, check, self.tree.root())
            self._next_cp += 1

    def _check_checkpoint(
        self, cp: StoredCheckpoint, check: CheckpointCheck, root: bytes
    ) -> None:
        valid = set(self.keyring.valid_keys(cp.size))
        problem = _signature_problem(check, valid, self.report.origin)
        if problem is not None:
            self._failed_sizes.append(cp.size)
            code, problem = self._author_signed(check, cp.size) or (
                "checkpoint",
                problem,
            )
            self.problem(cp.size - 1, code, f"{cp.label} (size {cp.size}) {problem}")
            return
        if check.root != root:
            self._failed_sizes.append(cp.size)
            if self._root_reported and cp.in_store:
                self._more_roots.append(cp.size)
                return
            self._root_reported = True
            self.problem(
                cp.size - 1,
                "root",
                f"{cp.label} (size {cp.size}) root "
                f"{check.root.hex()[:16]}... does not match the records' root "
                f"{root.hex()[:16]}...: records up to seq {cp.size - 1} were changed, "
                "removed, reordered or replaced",
            )
            return
        if check.good & valid & self._trusted:
            self.report.covered = max(self.report.covered, cp.size)
            if not cp.in_store:
                self.report.anchors.append(
                    Anchor("checkpoint", f"{cp.label}, size {cp.size}", cp.external)
                )

    def _author_signed(
        self, check: CheckpointCheck, size: int
    ) -> tuple[str, str] | None:
        """("author-checkpoint", why) when an author key signed the checkpoint."""
        for key_id in sorted(check.good):
            problem = self.keyring.signer_problem(key_id, size)
            if problem is not None and problem.code == "author-checkpoint":
                return problem.code, f"is not valid: {problem}"
        return None

    def trusted_purge(self, digest: str) -> PurgeNote | None:
        """The ``blob.purged`` record of ``digest`` if it can be believed (after
        ``finish``): validly signed, covered by a checkpoint signed by a trusted
        key, and with no error at its seq. A blob missing without one is tampering."""
        note = self.purges.get(digest)
        if note is None or note.seq >= self.report.covered:
            return None
        if any(p.seq == note.seq for p in self.report.errors):
            return None
        return note

    # -- the end ----------------------------------------------------------------

    def finish(self) -> VerificationReport:
        """Close the walk: checkpoints beyond the end, coverage, ledger size and root."""
        size = self.tree.size
        for cp, _ in self._checkpoints[self._next_cp :]:
            self.problem(
                size,
                "truncated",
                f"{cp.label} covers {cp.size} records but the "
                f"ledger has only {size}: records were removed from the end or the "
                "ledger was rolled back to an older state",
            )
        if size == 0:
            self.problem(None, "empty", "the ledger holds no records")
        if self._window is not None:
            self.problem(
                self._window.header_seq,
                "pushed-count",
                f"{self._window.overrun('the ledger')}: records were removed from "
                "the end, or the header's count is wrong",
            )
        if self._more_roots:
            sizes = self._more_roots
            self.problem(
                None,
                "root",
                f"{len(sizes)} later checkpoint(s) (sizes {sizes[0]} to {sizes[-1]}) "
                "do not match the records either",
            )
        if self._check_pins():
            self._check_coverage(size)
        if self._newer:
            self.problem(
                self._newer[0],
                "newer-format",
                f"{len(self._newer)} record(s) from seq {self._newer[0]} on were "
                "written by a newer mltrail: their signatures, chain and tree "
                "positions were checked, their bodies were not; upgrade mltrail to "
                "check them fully",
                Severity.WARNING,
            )
        for seq, message in self._runs.warnings():
            self.problem(seq, "run-added-by-other", message, Severity.WARNING)
        self.report.size = size
        self.report.root = self.tree.root()
        return self.report

    def _check_pins(self) -> bool:
        """False (and a problem) when no trusted key is a key of this ledger."""
        if not self._pins or self._pins & set(self.keyring.keys):
            return True
        genesis = self.keyring.genesis_key or "?"
        pinned = ", ".join(f"{k[:16]}..." for k in sorted(self._pins))
        self.problem(
            0,
            "genesis",
            f"ledger was started by key {genesis[:16]}... and none of the trusted "
            f"keys ({pinned}) is a key of it: this is not the ledger you trust, "
            "or it was rewritten",
        )
        return False

    def _check_coverage(self, size: int) -> None:
        covered = self.report.covered
        if size == 0 or covered >= size:
            return
        if any(failed > covered for failed in self._failed_sizes):
            return  # a checkpoint beyond ``covered`` failed: that is the finding
        by = "a trusted key" if self._pins else "a valid key"
        if covered == 0:
            message = (
                f"no checkpoint signed by {by} covers the ledger: records seq 0 to "
                f"{size - 1} were written without the ledger key, or the "
                "checkpoints were deleted"
            )
        else:
            message = (
                f"records seq {covered} to {size - 1} are not covered by a "
                f"checkpoint signed by {by} (the newest covers {covered}): they were "
                "appended, replayed or reordered without the ledger key, or the "
                "checkpoints covering them were deleted (a ledger last written by "
                "mltrail 0.1: `mltrail checkpoint --adopt`)"
            )
        self.problem(covered, "uncovered", message)


def _signature_problem(
    check: CheckpointCheck, valid: set[str], origin: str
) -> str | None:
    """Why a checkpoint is not validly signed at its size, or None."""
    if not valid:
        return "cannot be checked: the ledger has no valid key at that size"
    bad = check.bad & valid
    if bad:
        key = sorted(bad)[0]
        return (
            f"is not valid: invalid signature for key {key[:16]}...: the checkpoint "
            "was altered after signing, or the signature is forged"
        )
    if not check.good & valid:
        return (
            f"is not valid: note has no signature by a trusted key named {origin!r} "
            "(no key valid at that size signed it)"
        )
    return None
