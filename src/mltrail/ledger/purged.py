"""What readers say of purged blobs: which, by whom, when, why, under which policy.

Kept apart from :mod:`mltrail.ledger.erasure` (which erases) so that reading
commands (`show`, `trace`) load no writing code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mltrail.core.codec import find_blob_refs
from mltrail.core.erasure import PURGE_KIND, PurgeNote
from mltrail.errors import InputError, IntegrityError, MltrailError
from mltrail.values import Frozen

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

    from mltrail.core.entry import Record
    from mltrail.ledger.ledger import Ledger

__all__ = [
    "PurgedBlob",
    "describe_purged",
    "purge_note",
    "purged_refs",
    "read_verified_blob",
]

_set = object.__setattr__  # how a frozen value sets its fields in __init__


def purge_note(ledger: Ledger, digest: str) -> PurgeNote | None:
    """What the stored ``blob.purged`` record of ``digest`` says, if there is one."""
    stored = ledger.store.purge_of(digest)
    if stored is None:
        return None
    try:
        entry = ledger.record(stored.seq).entry
    except MltrailError:
        return None
    if entry.kind != PURGE_KIND or entry.body.get("digest") != digest:
        return None  # a planted purges row: not a purge record of this blob
    return PurgeNote.from_body(
        stored.seq, entry.body, entry.actor.get("user"), entry.time
    )


class PurgedBlob(Frozen):
    """A blob a purge record among the records read erased (``seq``), with what
    that record says (``note``; None when it cannot be read back)."""

    __slots__ = __match_args__ = ("digest", "seq", "note")
    digest: str
    seq: int
    note: PurgeNote | None

    def __init__(self, digest: str, seq: int, note: PurgeNote | None) -> None:
        _set(self, "digest", digest)
        _set(self, "seq", seq)
        _set(self, "note", note)

    def to_dict(self) -> dict[str, Any]:
        """blob, seq, reason, policy, by, time (None where the note is)."""
        note = self.note
        return {
            "blob": self.digest,
            "seq": self.seq,
            "reason": note.reason if note else None,
            "policy": note.policy if note else None,
            "by": note.by if note else None,
            "time": note.time if note else None,
        }

    def describe(self) -> str:
        """One line: ``blob sha256:... was purged (seq 9) ... (by 'ana' at ...)``."""
        from mltrail.ledger.ledger import BlobPurgedError

        line = str(BlobPurgedError(self.digest, self.seq))
        return line + (f" ({self.note.describe()})" if self.note is not None else "")


def read_verified_blob(
    ledger: Ledger, digest: str, *, refusing: str
) -> bytes | PurgedBlob:
    """A blob a verified record references, read after the verification: its
    bytes, or what the purge record that erased it says when one among the
    records read did (a reader states it as purged by policy).

    Anything else was changed in the store since it was verified, and
    ``refusing`` (what the caller will not do, e.g. "sign provenance") is
    refused, never made around a line of text (ADR 0024, amendments of
    2026-12-08).

    Raises:
        IntegrityError: the blob does not hash to its address, or is gone
            though no purge record names it.
        PurgedSinceVerifiedError: a purge record beyond the records verified
            erased it: run the command again.
    """
    from mltrail.ledger.ledger import BlobPurgedError

    try:
        return ledger.get_blob(digest)
    except BlobPurgedError as e:
        return PurgedBlob(e.digest, e.seq, purge_note(ledger, e.digest))
    except InputError as e:  # not stored, and no purge record names it
        raise IntegrityError(
            f"refusing to {refusing}: blob {digest} is gone from the store, and "
            "no purge record names it",
            hint="run `mltrail verify`: it was deleted without a purge",
        ) from e
    except IntegrityError as e:  # its bytes are not the verified blob's
        raise IntegrityError(f"refusing to {refusing}: {e}", hint=e.hint) from e


def purged_refs(ledger: Ledger, records: Iterable[Record]) -> list[dict[str, object]]:
    """The blob references of ``records`` whose blob was purged, each with what
    its purge record says (who, when, why, under which policy): readers name
    the provenance that was erased rather than leave it out silently. A purge
    is named only when a ``blob.purged`` record of that digest backs it (see
    :func:`purge_note`); ``mltrail verify`` judges its signature."""
    stored = {p.digest for p in ledger.store.purges()}
    found: list[dict[str, object]] = []
    if not stored:
        return found
    notes: dict[str, PurgeNote | None] = {}
    for record in records:
        for ref in find_blob_refs(record.entry.body):
            if ref.digest not in stored:
                continue
            if ref.digest not in notes:
                notes[ref.digest] = purge_note(ledger, ref.digest)
            note = notes[ref.digest]
            if note is not None:
                found.append(
                    {
                        "seq": record.seq,
                        "kind": record.entry.kind,
                        "path": ref.path,
                        "purge": note.to_dict(),
                    }
                )
    return found


def describe_purged(item: Mapping[str, Any]) -> str:
    """One line for a reader: ``run.data (seq 6) body.manifest: blob sha256:...
    (108 bytes) was purged at seq 9 (by 'ana' at ..., policy ..., reason ...)``."""
    purge = item["purge"]
    note = PurgeNote(
        purge["seq"], purge["digest"], purge["size"], purge["reason"],
        purge["policy"], (), purge["by"], purge["time"],
    )  # fmt: skip
    return (
        f"{item['kind']} (seq {item['seq']}) {item['path']}: blob {note.digest} "
        f"({note.size} bytes) was purged at seq {note.seq} ({note.describe()}); "
        "its content is no longer in the ledger"
    )
