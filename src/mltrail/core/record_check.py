"""Per-record verification: a pure function of one stored row, run in workers.

``check_record`` decodes a row and checks its signature; whether the key was
*valid* at that seq, and everything that needs order, is decided later by
:class:`mltrail.core.verify.LedgerVerifier`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any, NamedTuple

from mltrail.core.canonical import compute_leaf_hash
from mltrail.core.chain import CLOCK_RESET_KIND, KEY_KINDS
from mltrail.core.checkpoint import (
    check_note_signatures,
    is_valid_key_name,
    parse_checkpoint_body,
    parse_note,
)
from mltrail.core.codec import BlobRef, decode_record, find_blob_refs
from mltrail.core.erasure import PURGE_KIND
from mltrail.core.lock import LOCK_KIND
from mltrail.core.pushed import PUSHED_KIND
from mltrail.core.signing import decode_b64, verify_signature
from mltrail.errors import MltrailError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = [
    "CheckpointCheck",
    "PlainRun",
    "RecordCheck",
    "SigStatus",
    "check_checkpoint_text",
    "check_record",
    "summarise_checks",
]


class SigStatus(StrEnum):
    """Outcome of a record's signature check in a worker."""

    VALID = "valid"
    INVALID = "invalid"
    UNKNOWN_KEY = "unknown-key"


class RecordCheck(NamedTuple):
    """What a worker learned from one stored row.

    A named tuple, not a dataclass: workers send one per record to the parent,
    and a tuple is made, pickled and unpickled several times faster.
    """

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
    """The body of key, clock-reset, blob.purged, ledger.pushed and model.sealed
    records, which the walk reads."""
    user: object = None
    """The entry's ``actor.user`` (an author key may sign only its own)."""
    blob_refs: tuple[BlobRef, ...] = ()
    known_kind: bool = True
    signing_bytes: bytes = b""
    signature: bytes = b""
    time: str = ""
    version: str = ""
    newer: bool = False
    run: str | None = None
    """The entry's ``run`` (the walk names records of a run another user added)."""
    columns_differ: tuple[tuple[str, str | None, str | None], ...] = ()
    """(column, stored value, signed value) of each column the store derived
    from the bytes (kind, run, time) that no longer says what they say."""


_BODY_KINDS = (*KEY_KINDS, CLOCK_RESET_KIND, PURGE_KIND, PUSHED_KIND, LOCK_KIND)


def check_record(
    row_seq: int,
    row_hash: bytes,
    data: bytes,
    public_keys: Mapping[str, bytes],
    columns: tuple[str, str | None, str] | None = None,
) -> RecordCheck:
    """Decode one stored row and check its signature against ``public_keys``.

    ``public_keys`` maps key ids to raw public keys; since a key id is the hash
    of its key, the map may come from anywhere. Whether the key was *valid*
    at this seq is decided later, in order, by ``LedgerVerifier``. ``columns``:
    the (kind, run, time) the store keeps beside the bytes, compared with them.
    """
    try:
        decoded = decode_record(data)
    except MltrailError as e:
        return _unreadable(row_seq, row_hash, data, str(e))
    except RecursionError:
        return _unreadable(row_seq, row_hash, data, "the record is nested too deeply")
    entry = decoded.record.entry
    if entry.sig is None:
        return _unreadable(row_seq, row_hash, data, "the entry carries no signature")
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
        key_body=dict(entry.body) if entry.kind in _BODY_KINDS else None,
        user=entry.actor.get("user"),
        # canonical bytes name a "blob" member as exactly this: none, no reference
        blob_refs=tuple(find_blob_refs(entry.body)) if b'"blob":' in data else (),
        known_kind=decoded.known_kind,
        signing_bytes=decoded.signing_bytes if unknown else b"",
        signature=signature if unknown else b"",
        time=entry.time,
        version=entry.v,
        newer=decoded.newer,
        run=entry.run,
        columns_differ=()
        if columns is None or columns == (entry.kind, entry.run, entry.time)
        else _columns_differ(columns, (entry.kind, entry.run, entry.time)),
    )


class PlainRun(NamedTuple):
    """Consecutive records in which the ordered walk is sure to find nothing to
    report, given a few facts about the records before them.

    ``summarise_checks`` makes one (in a worker) for records that each decoded,
    verify under the key ``key_id`` names, are stored at the seq they state
    under their own hash, link to the record before them in the run, are of a
    known kind that is not a key, clock-reset, purge or push record, refer to no
    blob, and are dated no earlier than the record before them in the full
    fixed-width form, and whose stored kind, run and time columns say what the
    bytes say; all signed by one key for one ``user``.
    ``LedgerVerifier.accept_plain`` takes the run whole only when the rest
    holds at its start (the seq and prev expected, the key valid over the run
    for every kind in it, no push window open, the first time not before the
    newest so far); otherwise its records take the per-record walk.
    """

    position: int
    """Index of the run's first record among those given to ``summarise_checks``."""
    first_seq: int
    prev: str
    """The first record's ``prev``."""
    last_hash: bytes
    key_id: str
    user: object
    kinds: tuple[str, ...]
    """Each kind in the run, once."""
    times: tuple[str, ...]
    """Each record's time, in order."""
    leaves: bytes
    """The records' Merkle leaf hashes, 32 bytes each, in order."""
    runs: tuple[tuple[int, str, str], ...]
    """(seq, run, kind) of each record that names a run."""


_FIXED_TIME = len("2026-01-01T00:00:00.000000Z")


def summarise_checks(checks: Iterable[RecordCheck]) -> list[RecordCheck | PlainRun]:
    """``checks`` (of consecutive stored rows) with runs of plain records folded
    into ``PlainRun``s (see there); every other record stays as it is."""
    out: list[RecordCheck | PlainRun] = []
    run: list[RecordCheck] = []
    start = 0
    last_seq, last_hex, last_key, last_user, last_time = -1, "", "", None, ""
    valid, body_kinds, fixed = SigStatus.VALID, _BODY_KINDS, _FIXED_TIME

    def close() -> None:
        if not run:
            return
        first = run[0]
        out.append(
            PlainRun(
                position=start,
                first_seq=first.seq,
                prev=first.prev,
                last_hash=run[-1].hash,
                key_id=first.key_id,
                user=first.user,
                kinds=tuple(dict.fromkeys(c.kind for c in run)),
                times=tuple(c.time for c in run),
                leaves=b"".join(c.leaf_hash for c in run),
                runs=tuple((c.seq, c.run, c.kind) for c in run if c.run is not None),
            )
        )
        run.clear()

    for position, check in enumerate(checks):
        # every field, in order (a field added to RecordCheck fails here at once):
        # locals are cheaper than a named tuple's attributes, once per record
        (row_seq, row_hash, error, seq, prev, digest, _, kind, key_id, sig,
         key_body, user, blob_refs, known_kind, _, _, time, _, newer, _,
         columns_differ) = check  # fmt: skip
        plain = (
            error is None
            and not columns_differ
            and sig is valid
            and seq == row_seq
            and row_hash == digest
            and known_kind
            and not newer
            and not blob_refs
            and key_body is None
            and kind not in body_kinds
            and not kind.startswith("key.")
            and len(time) == fixed
            and time[19] == "."
        )
        if not plain:
            close()
            out.append(check)
            continue
        if run and not (
            seq == last_seq + 1
            and key_id == last_key
            and type(user) is type(last_user)
            and user == last_user
            and last_time <= time  # both fixed-width: not is_later(last, time)
            and prev == last_hex
        ):
            close()
        if not run:
            start = position
        run.append(check)
        last_seq, last_hex, last_key, last_user, last_time = (
            seq, digest.hex(), key_id, user, time
        )  # fmt: skip
    close()
    return out


def _columns_differ(
    stored: tuple[str, str | None, str], signed: tuple[str, str | None, str]
) -> tuple[tuple[str, str | None, str | None], ...]:
    return tuple(
        (name, have, want)
        for name, have, want in zip(_COLUMNS, stored, signed, strict=True)
        if have != want
    )


_COLUMNS = ("kind", "run", "time")


def _unreadable(row_seq: int, row_hash: bytes, data: bytes, error: str) -> RecordCheck:
    """A row that does not decode: its leaf is still that of its stored bytes, so
    checkpoints over it fail only if those bytes were changed after signing."""
    return RecordCheck(
        row_seq, row_hash, error=error, leaf_hash=compute_leaf_hash(data)
    )


@dataclass(frozen=True, slots=True)
class CheckpointCheck:
    """What a worker learned from one checkpoint text: what it states, who signed it.

    ``good`` are the key ids whose every signature line verifies, ``bad`` those
    with a line that does not (see ``check_note_signatures``); whether those
    keys were valid at ``size`` is decided in the walk.
    """

    error: str | None = None
    origin: str = ""
    size: int = 0
    root: bytes = b""
    good: frozenset[str] = frozenset()
    bad: frozenset[str] = frozenset()


def check_checkpoint_text(
    text: str, public_keys: Mapping[str, bytes]
) -> CheckpointCheck:
    """Parse a signed checkpoint and check its signatures by every key given."""
    try:
        note = parse_note(text)
        checkpoint = parse_checkpoint_body(note.body)
    except MltrailError as e:
        return CheckpointCheck(error=str(e))
    by_key = {public: key_id for key_id, public in public_keys.items()}
    good: frozenset[bytes] = frozenset()
    bad: frozenset[bytes] = frozenset()
    if by_key and is_valid_key_name(checkpoint.origin):
        good, bad = check_note_signatures(
            note, name=checkpoint.origin, public_keys=list(by_key)
        )
    return CheckpointCheck(
        origin=checkpoint.origin,
        size=checkpoint.size,
        root=checkpoint.root,
        good=frozenset(by_key[k] for k in good),
        bad=frozenset(by_key[k] for k in bad),
    )
