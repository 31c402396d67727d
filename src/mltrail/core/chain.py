"""The hash chain: sealing signed entries into records, and the key ring.

``seal_entries`` is the only place that assigns ``seq`` and computes ``prev``;
stores call it under their append lock (see ``Store.append``) and persist what it
returns, so storage never hashes anything itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mltrail.core.canonical import compute_leaf_hash, compute_record_hash
from mltrail.core.codec import format_time, parse_time
from mltrail.core.entry import Entry, compose_record_bytes, compute_entry_bytes
from mltrail.core.head import (
    CLOCK_RESET_KIND,
    EMPTY_HEAD,
    KEY_KINDS,
    TIME_TOLERANCE,
    ChainHead,
)
from mltrail.core.keyring import KeyRing, KeyState
from mltrail.core.pushed import PushWindow, open_window
from mltrail.errors import (
    InputError,
    IntegrityError,
    MltrailError,
    UncoveredRecordsError,
)

# Checkpoint parsing is imported where a head is checked.
if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from datetime import datetime, timedelta

__all__ = [
    "CLOCK_RESET_KIND",
    "EMPTY_HEAD",
    "KEY_KINDS",
    "TIME_TOLERANCE",
    "Batch",
    "ChainHead",
    "KeyRing",
    "KeyState",
    "SealedRecord",
    "check_entry_time",
    "check_head",
    "compute_floor",
    "describe_gap",
    "is_later",
    "next_floor",
    "seal_entries",
]


@dataclass(frozen=True, slots=True)
class SealedRecord:
    """A record ready to store: its bytes plus the columns stores index."""

    seq: int
    prev: str
    hash: bytes
    record_bytes: bytes
    kind: str
    run: str | None
    time: str


@dataclass(frozen=True, slots=True)
class Batch:
    """What one append writes: records, new Merkle nodes, the new head, and the
    signed checkpoint of the new head (stored in the same transaction)."""

    records: tuple[SealedRecord, ...]
    nodes: tuple[tuple[int, int, bytes], ...]
    head: ChainHead
    checkpoint: str | None = None

    def with_checkpoint(self, text: str) -> Batch:
        """This batch carrying ``text``, the signed checkpoint of its head."""
        h = self.head
        head = ChainHead(
            h.size,
            h.last_hash,
            h.last_time,
            h.frontier,
            h.key_epoch,
            h.floor_time,
            text,
        )
        return Batch(self.records, self.nodes, head, text)


def seal_entries(
    head: ChainHead,
    entries: Sequence[Entry],
    *,
    now: datetime,
    tolerance: timedelta = TIME_TOLERANCE,
) -> Batch:
    """Chain signed entries after ``head`` (the batch carries no checkpoint yet).

    The entries a ``ledger.pushed`` header announces follow the rule of
    :mod:`mltrail.core.pushed` and must all be in this append.

    Raises:
        InputError: an entry is unsigned, dated beyond ``tolerance`` in the
            future, or dated more than ``tolerance`` before the ledger's newest
            time (only a ``clock.reset`` entry, or a pushed one, may go back);
            a pushed entry breaks its window's rule, or a header announces more
            entries than the append holds.
    """
    if not entries:
        raise InputError("nothing to append: no entries given")
    tree, nodes, records = head.compact_range(), [], []
    size, prev, key_epoch = head.size, head.prev, head.key_epoch
    floor, window = head.floor_time, None
    for entry in entries:
        check_entry_time(entry, floor, now, tolerance, window)
        data = compose_record_bytes(size, prev, _signed_entry_bytes(entry))
        digest = compute_record_hash(data)
        nodes.extend(tree.append(compute_leaf_hash(data)))
        records.append(
            SealedRecord(size, prev, digest, data, entry.kind, entry.run, entry.time)
        )
        key_epoch = size + 1 if entry.kind in KEY_KINDS else key_epoch
        if window is not None:
            window = window.after(entry.time)  # a pushed entry leaves the floor
        else:
            floor = next_floor(floor, entry.kind, entry.time)
            window = open_window(size, entry.kind, entry.body, entry.time)
        size, prev = size + 1, digest.hex()
    if window is not None:
        raise InputError(
            f"refusing the append: {window.overrun('the append')}",
            hint="a ledger.pushed record and the entries it announces are "
            "appended together",
        )
    new_head = ChainHead(
        size,
        bytes.fromhex(prev),
        entries[-1].time,
        tree.hashes,
        key_epoch,
        floor_time=floor,
    )
    return Batch(tuple(records), tuple(nodes), new_head)


def check_head(head: ChainHead, *, origin: str, keys: Mapping[str, bytes]) -> None:
    """Refuse to build on a head that no valid signed checkpoint covers.

    ``head.checkpoint`` (the newest stored checkpoint) must cover exactly
    ``head.size`` records, be signed for ``origin`` by one of ``keys`` (those
    valid at that size), and have the root the head's frontier gives.

    Raises:
        UncoveredRecordsError: records after the newest checkpoint.
        IntegrityError: the checkpoint is unreadable or badly signed, records
            were cut from the end, or the cached Merkle nodes were altered.
    """
    if head.size == 0:
        return
    from mltrail.core.checkpoint import parse_signed_checkpoint, verify_checkpoint

    try:
        parsed = (
            parse_signed_checkpoint(head.checkpoint).checkpoint
            if head.checkpoint
            else None
        )
    except MltrailError as e:
        raise _refusal(f"the newest stored checkpoint is unreadable: {e}") from e
    covered = 0 if parsed is None else parsed.size
    if covered < head.size:
        raise UncoveredRecordsError(
            f"refusing to write: records seq {covered} to {head.size - 1} are not "
            "covered by a signed checkpoint, so they were written without the "
            "ledger key (or by mltrail 0.1)",
            hint="run `mltrail verify`; if the records are genuine, "
            "`mltrail checkpoint --adopt` covers them",
        )
    if covered > head.size:
        raise _refusal(
            f"the newest checkpoint covers {covered} records but the ledger holds "
            f"{head.size}: records were cut from the end"
        )
    if not keys:
        raise _refusal(
            "no key record of this ledger verifies, so nothing can be trusted to "
            "have signed its checkpoints: its key records (the first one, at seq 0, "
            "included) were changed"
        )
    try:
        verify_checkpoint(
            head.checkpoint or "", origin=origin, public_keys=list(keys.values())
        )
    except (MltrailError, ValueError) as e:
        raise _refusal(
            f"the newest checkpoint is not signed by a valid key of this ledger: {e}"
        ) from e
    if parsed is not None and parsed.root != head.root():
        raise _refusal(
            "the stored Merkle nodes do not give the root of the newest signed "
            f"checkpoint (size {head.size}): the cached tree was altered"
        )


def _refusal(why: str) -> IntegrityError:
    return IntegrityError(f"refusing to write: {why}", hint="run `mltrail verify`")


def next_floor(floor: str | None, kind: str, time: str) -> str:
    """The ledger's newest time after a record of ``kind`` dated ``time``.

    A ``clock.reset`` sets the floor to its own time: the entries before it that
    were dated ahead of it no longer hold later appends back.
    """
    if kind == CLOCK_RESET_KIND or floor is None:
        return time
    return time if is_later(time, floor) else floor


def compute_floor(
    records: Iterable[tuple[int, str, Mapping[str, Any] | None, str]],
) -> str | None:
    """The ledger's newest time after ``records`` (seq, kind, body, time), in seq
    order from the last ``clock.reset`` (or the start), as ``seal_entries``
    keeps it: pushed entries do not move it."""
    floor: str | None = None
    window: PushWindow | None = None
    for seq, kind, body, time in records:
        if window is not None:
            window = window.after(time)
        else:
            floor = next_floor(floor, kind, time)
            window = open_window(seq, kind, body, time)
    return floor


def is_later(a: str, b: str) -> bool:
    """Whether entry time ``a`` is after ``b``.

    Times mltrail writes have one fixed width (``YYYY-MM-DDTHH:MM:SS.ffffffZ``),
    so they compare as text; any other form is parsed.
    """
    if len(a) == len(b) == _FIXED_WIDTH and a[19] == b[19] == ".":
        return a > b
    return parse_time(a) > parse_time(b)


_FIXED_WIDTH = len("2026-01-01T00:00:00.000000Z")


def _signed_entry_bytes(entry: Entry) -> bytes:
    if entry.sig is None:
        raise InputError(f"entry of kind {entry.kind} is not signed")
    return compute_entry_bytes(entry)


def check_entry_time(
    entry: Entry,
    floor: str | None,
    now: datetime,
    tolerance: timedelta,
    window: PushWindow | None = None,
) -> None:
    """Refuse an entry dated in the future, or back-dated before ``floor``
    (inside a ``window`` a ``ledger.pushed`` opened: one breaking its rule).

    Raises:
        InputError: with what to do about it.
    """
    moment = parse_time(entry.time)
    if moment - now > tolerance:  # differences never overflow (years 1, 9999)
        raise InputError(
            f"entry time {entry.time} is in the future (the clock of the machine "
            f"appending it says {format_time(now)})",
            hint="entries are dated by the clock of the machine that signs them and "
            "checked against the one that appends them (an mltrail server's, in "
            "client mode): check both",
        )
    if window is not None:
        problem = window.problem(entry.kind, entry.time, tolerance)
        if problem is not None:
            raise InputError(f"refusing the append: {problem}")
        return
    if entry.kind == CLOCK_RESET_KIND:
        _check_reset(entry, floor, moment, tolerance)
        return
    if floor is None or not is_later(floor, entry.time):
        return
    newest = parse_time(floor)
    if newest - moment > tolerance:
        ahead = describe_gap(newest - moment)
        raise InputError(
            f"refusing an entry dated {entry.time}: the ledger already holds an "
            f"entry dated {floor}, {ahead} later (times may go back at most "
            f"{describe_gap(tolerance)})",
            hint="if this machine's clock is right and a writer's clock was ahead, "
            "record that with `mltrail clock reset --reason TEXT`; otherwise fix "
            "this machine's clock",
        )


def _check_reset(
    entry: Entry, floor: str | None, moment: datetime, tolerance: timedelta
) -> None:
    """A clock reset is only for a ledger dated ahead of the clock writing it."""
    if floor is None or parse_time(floor) - moment <= tolerance:
        raise InputError(
            "no clock reset is needed: the ledger's newest entry is dated "
            f"{floor}, not ahead of this machine's clock ({entry.time})",
        )
    if entry.body.get("newest_time") != floor:
        raise InputError(
            f"the clock reset names {entry.body.get('newest_time')} as the newest "
            f"entry time, but the ledger's is {floor}",
            hint="read it again (mltrail clock status) and retry",
        )


def describe_gap(gap: timedelta) -> str:
    """A duration in its largest whole unit: ``3 days``, ``1 hour``, ``42 seconds``."""
    seconds = int(gap.total_seconds())
    for unit, size in (("day", 86_400), ("hour", 3_600), ("minute", 60)):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''}"
    return f"{seconds} second{'s' if seconds != 1 else ''}"
