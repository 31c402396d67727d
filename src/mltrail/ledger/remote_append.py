"""Appending through an mltrail server: post signed entries, check the answer.

A store an mltrail server sequences (``store.remote``, see
:mod:`mltrail.storage.http`) assigns seq and prev itself. What it answers is
not taken on trust: each record's hash is recomputed from the entry sent and
the seq and prev given, every ``prev`` must chain on, the new checkpoint must
be signed by a pinned log key and be consistent with the newest one this
client saw (a :class:`RemoteTrust`, :class:`mltrail.ledger.server_trust.ServerTrust`),
cover the batch, and include its first and last record (the server's
inclusion proofs, checked here).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from mltrail.core.canonical import compute_leaf_hash, compute_record_hash
from mltrail.core.entry import Record
from mltrail.errors import ConfigError, InputError, IntegrityError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from mltrail.core.checkpoint import Checkpoint
    from mltrail.core.entry import Entry

__all__ = ["RemoteTrust", "post_entries"]


class RemoteTrust(Protocol):
    """What a client trusts of the server that sequences a remote store."""

    def accept(self, text: str) -> Checkpoint:
        """Check a checkpoint the server gave (pinned key, consistent with the
        newest one seen), keep it if newest, and return it verified."""
        ...

    def check_inclusion(self, seq: int, leaf: bytes, checkpoint: Checkpoint) -> None:
        """Check the server's proof that leaf ``seq`` is in ``checkpoint``'s tree."""
        ...


def post_entries(
    store: Any,
    trust: RemoteTrust | None,
    entries: Sequence[Entry],
    origin: str,
    *,
    key: str | None = None,
) -> list[Record]:
    """Post ``entries`` (signed) to the server behind ``store``; return their
    records once the answer is checked against ``trust``. ``key`` is the
    request's idempotency key (None: a new one).

    Raises:
        ConfigError: no trust to check against, or the signing key is not
            registered on the server's ledger.
        IntegrityError: the answer does not fit the entries, or its checkpoint
            is not signed by a pinned key, not consistent, or leaves them out.
        AuthError, InputError, StoreError: the server refused or failed.
    """
    if trust is None:
        raise ConfigError(
            "appending to a ledger kept by an mltrail server needs the server's "
            "pinned log keys",
            hint="open it with mltrail.open_home in client mode (MLTRAIL_URL and "
            "MLTRAIL_TOKEN set)",
        )
    try:
        answer = store.append_entries([e.to_dict() for e in entries], key=key)
    except InputError:
        _refuse_unregistered(store, entries, origin)
        raise
    records, leaves = answered_records(answer, entries)
    checkpoint = trust.accept(str(answer.get("checkpoint") or ""))
    if checkpoint.size <= records[-1].seq:
        raise IntegrityError(
            f"the server's checkpoint of {checkpoint.size} records does not "
            f"cover record {records[-1].seq} it just appended"
        )
    for seq, leaf in {(records[0].seq, leaves[0]), (records[-1].seq, leaves[-1])}:
        trust.check_inclusion(seq, leaf, checkpoint)
    return records


def _refuse_unregistered(store: Any, entries: Sequence[Entry], origin: str) -> None:
    """After the server refused entries: say so plainly when the signing key is
    not registered on its ledger (the usual first mistake)."""
    keys = {k.get("key") for k in store.list_keys()}
    for entry in entries:
        assert entry.sig is not None
        if entry.sig.key not in keys:
            raise ConfigError(
                f"your key {entry.sig.key[:16]}... is not registered on the "
                f"server's ledger {origin}",
                hint="run `mltrail keys register` (it registers the home's key "
                "for your token's name)",
            )


def answered_records(
    answer: Mapping[str, Any], entries: Sequence[Entry]
) -> tuple[list[Record], list[bytes]]:
    """The records a server says it appended (and their leaf hashes), once each
    hash is recomputed from what was sent and every ``prev`` chains on.

    Raises:
        IntegrityError: the answer does not fit the entries sent.
    """
    try:
        placed = [
            (int(r["seq"]), str(r["prev"]), str(r["hash"])) for r in answer["records"]
        ]
        if len(placed) != len(entries):
            raise ValueError(f"{len(placed)} records for {len(entries)} entries")
        records = [
            Record(seq, prev, e)
            for (seq, prev, _), e in zip(placed, entries, strict=True)
        ]
    except (KeyError, TypeError, ValueError) as e:
        raise IntegrityError(
            f"the server's answer to an append is malformed: {e}"
        ) from e
    leaves = []
    for n, (record, (_, _, claimed)) in enumerate(zip(records, placed, strict=True)):
        data = record.to_bytes()
        digest = compute_record_hash(data).hex()
        following = records[n + 1] if n + 1 < len(records) else None
        if digest != claimed or (
            following is not None
            and (following.prev != digest or following.seq != record.seq + 1)
        ):
            raise IntegrityError(
                f"the server's answer for record {record.seq} does not match the "
                "entries sent (hash, prev or seq)",
                hint="report it to the server's admin",
            )
        leaves.append(compute_leaf_hash(data))
    return records, leaves
