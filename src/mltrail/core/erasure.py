"""Erasure: what a ``blob.purged`` record says, and when verification believes it.

A blob's bytes may be erased (the right to erasure, a secret that got through)
after a signed ``blob.purged`` record names it: who (the entry's actor), when
(its time), why (``reason``), under which ``policy``, the blob's digest and size,
and the seqs of the records that referenced it. Those records are not touched:
they keep the blob's hash, so their hashes, signatures and the Merkle tree still
verify. Only a blob's bytes can be erased; a value inline in a body cannot, which
is why everything that may need erasing is stored as a blob.

Verification reads a missing blob as *purged by policy* only when a valid
``blob.purged`` record names it: signed by a key valid at its seq, covered by a
checkpoint signed by a trusted key, with no error at its seq. A blob deleted any
other way (someone who can write the database drops the triggers and deletes
it) stays ``blob-missing``, which is tampering.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mltrail.values import Frozen

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence

__all__ = ["MAX_LISTED_REFERENCES", "PURGE_KIND", "PurgeNote", "purge_body"]

_set = object.__setattr__  # how a frozen value sets its fields in __init__
PURGE_KIND = "blob.purged"
MAX_LISTED_REFERENCES = 10_000
"""``referenced_by`` lists at most this many seqs (``references`` counts them all)."""


class PurgeNote(Frozen):
    """A ``blob.purged`` record as verification and readers use it."""

    __slots__ = __match_args__ = (
        "seq", "digest", "size", "reason", "policy", "referenced_by", "by", "time"
    )  # fmt: skip
    seq: int
    digest: str
    size: int
    reason: str
    policy: str | None
    referenced_by: tuple[int, ...]
    by: str | None
    """Who purged it: the record's ``actor.user`` (signed with the entry)."""
    time: str | None
    """When: the record's time."""

    def __init__(
        self,
        seq: int,
        digest: str,
        size: int,
        reason: str,
        policy: str | None = None,
        referenced_by: tuple[int, ...] = (),
        by: str | None = None,
        time: str | None = None,
    ) -> None:
        _set(self, "seq", seq)
        _set(self, "digest", digest)
        _set(self, "size", size)
        _set(self, "reason", reason)
        _set(self, "policy", policy)
        _set(self, "referenced_by", referenced_by)
        _set(self, "by", by)
        _set(self, "time", time)

    @classmethod
    def from_body(
        cls,
        seq: int,
        body: Mapping[str, Any],
        by: object = None,
        time: object = None,
    ) -> PurgeNote | None:
        """The note of a schema-valid body (None for anything else); ``by`` and
        ``time`` are the record's ``actor.user`` and time."""
        digest, size, reason = body.get("digest"), body.get("size"), body.get("reason")
        if not (
            isinstance(digest, str) and type(size) is int and isinstance(reason, str)
        ):
            return None
        policy = body.get("policy")
        refs = body.get("referenced_by")
        return cls(
            seq,
            digest,
            size,
            reason,
            policy if isinstance(policy, str) else None,
            tuple(r for r in refs if type(r) is int) if isinstance(refs, list) else (),
            by if isinstance(by, str) else None,
            time if isinstance(time, str) and time else None,
        )

    def describe(self) -> str:
        """``by 'ana' at 2026-12-07T10:00:00Z, policy 'GDPR Art. 17', reason
        'subject request #12'`` (for messages; who and when when known)."""
        parts = [f"by {self.by!r}"] if self.by is not None else []
        if self.time:
            parts.append(f"at {self.time}")
        said = [" ".join(parts)] if parts else []
        said.append(f"policy {self.policy!r}" if self.policy else "no policy named")
        return ", ".join([*said, f"reason {self.reason!r}"])

    def erased_others_work(self, authors: Iterable[tuple[int, str]]) -> str | None:
        """The ``purge-by-other`` message when this purge's author wrote none of
        the records, given as (seq, ``actor.user``), that referenced the blob
        before it; None when they wrote one, or none is known (``verify`` and
        ``verify-bundle`` say it alike)."""
        earlier = {seq: user for seq, user in authors if seq < self.seq}
        owners = sorted(set(earlier.values()))
        if not owners or self.by in owners:
            return None
        seqs = sorted(earlier)
        shown = ", ".join(map(str, seqs[:10])) + (", ..." if len(seqs) > 10 else "")
        return (
            f"blob {self.digest} was purged by {self.by!r}, who wrote none of the "
            f"records that referenced it (record(s) {shown}, written by "
            f"{', '.join(map(repr, owners))}): the provenance of another user's "
            "work was erased"
        )

    def to_dict(self) -> dict[str, Any]:
        """JSON form."""
        return {
            "seq": self.seq,
            "digest": self.digest,
            "size": self.size,
            "reason": self.reason,
            "policy": self.policy,
            "referenced_by": list(self.referenced_by),
            "by": self.by,
            "time": self.time,
        }


def purge_body(
    digest: str,
    size: int,
    *,
    reason: str,
    policy: str | None,
    referenced_by: Sequence[int],
) -> dict[str, Any]:
    """The body of a ``blob.purged`` entry (``referenced_by`` listed up to a bound)."""
    body: dict[str, Any] = {
        "digest": digest,
        "size": size,
        "reason": reason,
        "referenced_by": list(referenced_by[:MAX_LISTED_REFERENCES]),
        "references": len(referenced_by),
    }
    if policy:
        body["policy"] = policy
    return body
