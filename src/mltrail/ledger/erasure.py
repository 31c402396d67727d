"""Purging a blob: record why, then erase its bytes, never the other way round.

``purge_blob`` first appends a signed ``blob.purged`` record (durable, with its
checkpoint; the store learns of the purge in the same transaction), then drops
the hash cache's copies of the content, then has the store erase the bytes from
its files. A crash in between leaves a recorded purge whose bytes are still
stored: verification reports it (``purge-pending``, a warning), and the next
``purge_blob`` of it, ``finish_purges`` (``mltrail purge --resume``) or the next
writable open of the home finishes it. Bytes are never erased before the record
that says why is stored, nor before the whole ledger verifies: the holds that
keep a blob are read from its records, and a record edited in the file (so that
a hold no longer reads as one) must stop the erasure, which cannot be undone.

Example::

    from mltrail.ledger.erasure import purge_blob
    result = purge_blob(ledger, "sha256:9f86d081", reason="subject request 12",
                        policy="GDPR Art. 17")
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from typing import TYPE_CHECKING

from mltrail.capture.data.treecache import erase_cached_trees
from mltrail.core.codec import decode_record, find_blob_refs
from mltrail.core.erasure import PURGE_KIND, PurgeNote, purge_body
from mltrail.errors import InputError, IntegrityError, MltrailError, StoreError
from mltrail.ledger.holds import blob_hold, load_holds
from mltrail.ledger.purged import purge_note

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from mltrail.core.report import VerificationReport
    from mltrail.ledger.ledger import Ledger
    from mltrail.storage.base import StoredPurge

__all__ = [
    "PurgeResult",
    "finish_purges",
    "purge_blob",
    "purge_note",
    "referencing_seqs",
    "require_intact",
    "resolve_blob",
]

_BLOB = re.compile(r"(?:sha256:)?([0-9a-f]{8,64})")
_MAX_SHOWN = 5


@dataclass(frozen=True, slots=True)
class PurgeResult:
    """What a purge did: the ``blob.purged`` record, and what was erased."""

    note: PurgeNote
    resumed: bool
    """An interrupted purge was finished (no new record was written)."""
    held: bool
    """The store still held the bytes, and now does not."""
    cached: int
    """Whole-folder results dropped from the hash cache (they held the content)."""

    def to_dict(self) -> dict[str, object]:
        """JSON form."""
        return {
            **self.note.to_dict(),
            "resumed": self.resumed,
            "bytes_erased": self.held,
            "cache_entries_erased": self.cached,
        }


def resolve_blob(ledger: Ledger, text: str) -> str:
    """The digest ``text`` names: ``sha256:<hex>`` or a unique prefix of 8+ hex digits.

    Stored blobs and purged ones are both searched.

    Raises:
        InputError: malformed, unknown, or a prefix of several digests.
    """
    match = _BLOB.fullmatch(text.strip().lower())
    if match is None:
        raise InputError(
            f"{text!r} does not name a blob",
            hint="give its digest, sha256:<64 hex digits>, or 8 or more of its "
            "first hex digits",
        )
    prefix = f"sha256:{match[1]}"
    found = {d for d, _ in ledger.store.find_blobs(prefix, _MAX_SHOWN + 1)}
    found |= {p.digest for p in ledger.store.purges() if p.digest.startswith(prefix)}
    if len(found) == 1:
        return found.pop()
    if not found:
        raise InputError(
            f"no blob {prefix}{'' if len(match[1]) == 64 else '...'} is stored in "
            "this ledger",
            hint="`mltrail show SEQ` lists the blobs a record references",
        )
    shown = ", ".join(sorted(found)[:_MAX_SHOWN])
    raise InputError(
        f"{text!r} names more than one blob ({shown}, ...)",
        hint="give more hex digits",
    )


def purge_blob(
    ledger: Ledger,
    blob: str,
    *,
    reason: str,
    policy: str | None = None,
    cache_path: Path | None = None,
    verify: Callable[[], VerificationReport] | None = None,
) -> PurgeResult:
    """Record a signed ``blob.purged`` entry, then erase the blob's bytes.

    ``blob`` is a digest or a unique prefix (see :func:`resolve_blob`). A purge
    that was recorded but interrupted is finished instead, without a new record.

    Args:
        ledger: a writable ledger.
        blob: which blob.
        reason: why (kept in the record).
        policy: the rule it follows, e.g. ``GDPR Art. 17`` or ``secret leaked``.
        cache_path: the home's hash cache, whose copies of the content go too.
        verify: verifies the whole ledger before anything is written or erased
            (default ``ledger.verify``; a home passes its own, with its witness).

    Raises:
        InputError: no such blob, it was already purged, or a legal hold covers
            it (see :mod:`mltrail.ledger.holds`).
        IntegrityError: the ledger fails verification; nothing was written or
            erased.
        StoreError: the record is written but the bytes could not be erased yet
            (finish with :func:`finish_purges`).
    """
    digest = resolve_blob(ledger, blob)
    # the holds by their signed bytes: an erasure cannot be undone, and a hold
    # relabelled in the store's kind column must still keep the blob
    hold = blob_hold(ledger, digest, load_holds(ledger, signed=True))
    if hold is not None:
        raise InputError(
            f"blob {digest} is under legal hold: {hold.describe()}; it cannot be "
            "purged while the hold stands",
            hint=f"`mltrail hold release {hold.target}:{hold.id} --reason ...` "
            "lifts it, if the hold may end",
        )
    stored = ledger.store.purge_of(digest)
    if stored is not None and stored.erased:
        raise InputError(
            f"blob {digest} was already purged (seq {stored.seq})",
            hint=f"nothing is left to erase; `mltrail show {stored.seq}` says why",
        )
    found = ledger.store.find_blobs(digest, 1)
    if stored is None and (not found or found[0][0] != digest):
        raise InputError(f"blob {digest} is not stored in this ledger")
    require_intact(ledger, verify, f"purge blob {digest}")
    if stored is not None:
        return _erase(ledger, stored, cache_path, resumed=True)
    size = found[0][1]
    seqs = referencing_seqs(ledger, digest)
    body = purge_body(digest, size, reason=reason, policy=policy, referenced_by=seqs)
    record = ledger.record_purge(body)
    purge = ledger.store.purge_of(digest)
    if purge is None or purge.seq != record.seq:  # the store must learn of it
        raise StoreError(
            f"the purge of {digest} is recorded at seq {record.seq}, but the store "
            "does not list it: nothing was erased"
        )
    return _erase(ledger, purge, cache_path, resumed=False)


def finish_purges(
    ledger: Ledger,
    *,
    cache_path: Path | None = None,
    verify: Callable[[], VerificationReport] | None = None,
) -> list[PurgeResult]:
    """Finish every recorded purge whose erasure was interrupted, and clear the
    hash cache of every purged blob (a folder hashed again since puts its
    manifest back there: the cache mirrors what is on disk).

    When a purge is pending, the whole ledger is verified first (``verify``, as
    for :func:`purge_blob`): the store's ``purges`` rows name what is erased,
    and only an intact ledger shows they come from signed ``blob.purged``
    records a hold did not forbid.

    Raises:
        IntegrityError: a purge is pending and the ledger fails verification;
            nothing was erased.
        StoreError: one could not be finished (the others were tried first).
    """
    pending = [p for p in ledger.store.purges() if not p.erased]
    if not pending:
        _erase_cached(ledger, cache_path, None)
    else:
        shown = ", ".join(p.digest for p in pending[:_MAX_SHOWN])
        more = ", ..." if len(pending) > _MAX_SHOWN else ""
        require_intact(ledger, verify, f"finish the purge of {shown}{more}")
    results, failure = [], None
    for purge in pending:
        try:
            results.append(_erase(ledger, purge, cache_path, resumed=True))
        except StoreError as e:
            failure = failure or e
    if failure is not None:
        raise failure
    return results


def require_intact(
    ledger: Ledger, verify: Callable[[], VerificationReport] | None, doing: str
) -> None:
    """Verify the whole ledger; refuse ``doing`` (an erasure) unless it is intact.

    Warnings are allowed (a purge left pending is one). The cost is one
    verification of every record, checkpoint and blob per purge.

    Raises:
        IntegrityError: it fails verification.
    """
    report = ledger.verify() if verify is None else verify()
    if report.ok:
        return
    first = report.errors[0] if report.errors else "the ledger holds no records"
    raise IntegrityError(
        f"refusing to {doing}: the ledger fails verification ({report.verdict()}; "
        f"{first}). An erasure cannot be undone, so nothing was written or erased",
        hint="run `mltrail verify` to see every problem, and purge only once the "
        "ledger is intact",
    )


def _erase(
    ledger: Ledger, purge: StoredPurge, cache_path: Path | None, *, resumed: bool
) -> PurgeResult:
    note = purge_note(ledger, purge.digest) or PurgeNote(
        purge.seq, purge.digest, purge.size, ""
    )
    try:
        cached = _erase_cached(ledger, cache_path, purge)
        held = ledger.store.erase_blob(purge.digest)
    except (MltrailError, sqlite3.Error, OSError) as e:
        raise StoreError(
            f"the purge of blob {purge.digest} is recorded (seq {purge.seq}), but "
            f"its bytes could not be erased yet: {e}",
            hint="run `mltrail purge --resume` when no other mltrail process "
            "is using the home",
        ) from e
    return PurgeResult(note, resumed, held, cached)


def _erase_cached(
    ledger: Ledger, cache_path: Path | None, purge: StoredPurge | None
) -> int:
    """Drop the hash cache's copies of every purged blob's content."""
    if cache_path is None:
        return 0
    digests = {p.digest for p in ledger.store.purges()}
    try:
        return erase_cached_trees(cache_path, digests)
    except (sqlite3.Error, OSError) as e:
        if purge is not None:
            raise
        raise StoreError(
            f"the hash cache {cache_path} could not be cleared of purged blobs: {e}",
            hint="run `mltrail purge --resume` when no other mltrail process is "
            "using the home",
        ) from e


def referencing_seqs(ledger: Ledger, digest: str) -> list[int]:
    """Seqs of the records whose body references ``digest`` (purge records aside)."""
    needle = digest.encode()
    seqs = []
    for row in ledger.store.rows():
        if needle not in row.data:
            continue
        try:
            entry = decode_record(row.data).record.entry
        except MltrailError:
            continue  # unreadable: verification names it
        if entry.kind != PURGE_KIND and any(
            ref.digest == digest for ref in find_blob_refs(entry.body)
        ):
            seqs.append(row.seq)
    return seqs
