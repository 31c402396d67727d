"""``Ledger``: sign entries, chain them into a store, checkpoint, prove and verify.

Example::

    from mltrail.ledger.ledger import Ledger
    from mltrail.testing import MemoryStore, fixed_signer
    ledger = Ledger.create(MemoryStore(), fixed_signer(), origin="example.org/demo")
    ledger.append("note", {"text": "hello"})
    ledger.checkpoint()
    assert ledger.verify().ok
"""

from __future__ import annotations

import contextlib
import copy
import os
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from mltrail.core.canonical import (
    compute_blob_digest,
    compute_leaf_hash,
    compute_record_hash,
)
from mltrail.core.erasure import PURGE_KIND
from mltrail.core.head import KEY_KINDS, TIME_TOLERANCE
from mltrail.core.keyring import KeyRing, compute_key_proof_message, identity_problem
from mltrail.core.merkle import (
    ConsistencyProof,
    InclusionProof,
    consistency_proof,
    inclusion_proof,
)
from mltrail.core.signing import (
    Signer,
    compute_key_id,
    decode_b64,
    encode_b64,
    sign_many,
    verify_signature,
)
from mltrail.errors import (
    AppendConflictError,
    ConfigError,
    InputError,
    IntegrityError,
    MltrailError,
    UncoveredRecordsError,
)
from mltrail.ledger.stored import chain_head, new_batch
from mltrail.values import Frozen, replace

# Sealing, checkpoint signing and parsing, run locks, entry signing and record
# decoding are imported where they are used: a home opened for reading needs
# none of them until it reads a record (`mltrail runs` reads none).
if TYPE_CHECKING:
    from collections.abc import (
        Callable,
        Collection,
        Iterable,
        Iterator,
        Mapping,
        Sequence,
    )

    from mltrail.core.chain import Batch, ChainHead
    from mltrail.core.checkpoint import Checkpoint, CheckpointSigner, SignedCheckpoint
    from mltrail.core.codec import BlobRef, DecodedRecord
    from mltrail.core.entry import Entry, Record, TemplateSigner
    from mltrail.core.report import StoredCheckpoint, VerificationReport
    from mltrail.ledger.remote_append import RemoteTrust
    from mltrail.storage.base import NewBatch, Store, StoredRow, StoreHead

__all__ = [
    "BlobPurgedError",
    "Clock",
    "Draft",
    "Ledger",
    "SystemClock",
    "UncoveredRecordsError",
]

DEFAULT_TOLERANCE = TIME_TOLERANCE
TRUST_KEY_HINT = "run `mltrail verify --trust-key KEY` with the key you expect"
"""The hint of a refusal to write or sign for a ledger the key may not be the
key of (a ledger put in place beside the key file)."""


class Clock(Protocol):
    """Where entry times come from."""

    def now(self) -> datetime:
        """The current time, timezone-aware."""
        ...


class SystemClock:
    """The machine's clock, in UTC."""

    def now(self) -> datetime:
        """The current time in UTC."""
        return datetime.now(UTC)


class Draft(Frozen):
    """An entry to append: kind, body and optionally the run it belongs to."""

    __slots__ = __match_args__ = ("kind", "body", "run")
    kind: str
    body: Mapping[str, Any]
    run: str | None

    def __init__(
        self, kind: str, body: Mapping[str, Any], run: str | None = None
    ) -> None:
        object.__setattr__(self, "kind", kind)
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "run", run)


class _StaleKeysError(AppendConflictError):
    """The key ring changed under an append; refresh and retry."""

    def __init__(self, *, backwards: bool = False) -> None:
        super().__init__("the ledger's keys changed during the append")
        self.backwards = backwards
        """The store's key epoch is below the ring's: key rows it applied are
        no longer listed (the store was rewritten), so read every one again."""


class BlobPurgedError(InputError):
    """The blob asked for was purged: a ``blob.purged`` record (``seq``) erased it."""

    def __init__(self, digest: str, seq: int) -> None:
        super().__init__(
            f"blob {digest} was purged (seq {seq}): its bytes were erased, the "
            "records that referenced it keep its hash",
            hint=f"`mltrail show {seq}` says who purged it, when and why",
        )
        self.digest = digest
        self.seq = seq


class Ledger:
    """A signed, hash-chained, Merkle-tree ledger over a ``Store``.

    Args:
        store: where records live.
        signer: the key that signs new entries and checkpoints (None: read-only).
        origin: the ledger's name, bound into every checkpoint.
        clock: where entry times come from.
        actor: who is writing, put into every entry.
        trusted_key: the genesis key id verification must find (None: any).
        remote_trust: for a store an mltrail server sequences (``store.remote``):
            the pinned keys and newest checkpoint every append's answer is
            checked against.
    """

    def __init__(
        self,
        store: Store,
        signer: Signer | None,
        *,
        origin: str,
        clock: Clock | None = None,
        actor: Mapping[str, Any] | None = None,
        trusted_key: str | None = None,
        tolerance: timedelta = DEFAULT_TOLERANCE,
        remote_trust: RemoteTrust | None = None,
    ) -> None:
        self.store = store
        self.remote_trust = remote_trust
        self.signer = signer
        self.origin = origin
        self.clock = clock or SystemClock()
        self.actor = dict(actor or {})
        self.trusted_key = trusted_key
        self.tolerance = tolerance
        self._keyring = KeyRing(origin=origin)
        self._key_epoch = -1
        self._key_anchor: StoredRow | None = None
        """The newest key row the ring was built from, as read: a refresh reads
        the key rows from its seq on, and only when the store still lists it
        first, with the same bytes, applies the later ones to the ring."""
        self._trusted_head: tuple[int, tuple[bytes, ...]] | None = None
        """(size, frontier) of a head this object checked or wrote: covered and signed."""
        self.writes = 0
        """Appends (and adopted checkpoints) this object has written."""
        self._checkpoint_signer: CheckpointSigner | None = None
        self._template_signer: tuple[Signer, str, TemplateSigner] | None = None
        self._written: tuple[StoreHead, ChainHead] | None = None
        """The store's head after this object's last append, and the same head
        as the core's: a store that hands it back is not converted again."""

    @classmethod
    def create(
        cls, store: Store, signer: Signer, *, origin: str, **kwargs: Any
    ) -> Ledger:
        """Start a new ledger in an empty store: write its genesis ``key.added``."""
        if store.head().size:
            raise InputError(f"store {store.location} already holds a ledger")
        _check_origin(origin)
        store.init_meta({"origin": origin, "format": "mltrail/1"})
        ledger = cls(store, signer, origin=origin, trusted_key=signer.key_id, **kwargs)
        body = _key_body(signer, origin=origin, reason="ledger created")
        ledger._append_signed(ledger._sign([Draft("key.added", body)]))
        return ledger

    # -- writing -----------------------------------------------------------

    def append(
        self, kind: str, body: Mapping[str, Any], *, run: str | None = None
    ) -> Record:
        """Validate, sign and append one entry; durable when this returns.

        Raises:
            InputError: unknown kind, body off-schema, missing blob, bad time.
        """
        return self.append_many([Draft(kind, body, run)])[0]

    def append_many(self, drafts: Sequence[Draft]) -> list[Record]:
        """Append several entries atomically: all of them land, or none."""
        for draft in drafts:
            if draft.kind in KEY_KINDS or draft.kind == PURGE_KIND:
                command = "purge" if draft.kind == PURGE_KIND else "keys"
                raise InputError(
                    f"{draft.kind} entries are written by `mltrail {command}`, "
                    "not appended directly"
                )
        return self._append_signed(self._sign(drafts))

    def append_entries(self, entries: Sequence[Entry]) -> list[Record]:
        """Append entries an author signed elsewhere (a server's client), atomically.

        This is the seam between signing and sequencing (ADR 0004): the author
        signs its entry with its own key; the ledger checks it (schema, size,
        blobs, the signature, and under the append lock that the key may sign it
        at that seq), assigns seq and prev and signs the checkpoint with its own
        key. An AUTHOR key (``register_key``) may sign only entries whose
        ``actor.user`` is its identity, and no ``clock.reset``. Key and purge
        entries are written by their own commands only.

        Raises:
            InputError: off-schema, unsigned, oversized, missing blob, a key or
                purge kind, a signature that does not verify, or an author key
                signing another user's entry or a kind only a log key signs.
            ConfigError: the signing key may not sign at that seq.
        """
        from mltrail.core.codec import check_entry_size, find_blob_refs, validate_entry
        from mltrail.core.entry import SIG_MEMBER_BYTES, compute_entry_bytes

        checked: list[Entry] = []
        for entry in entries:
            if entry.kind in KEY_KINDS or entry.kind == PURGE_KIND:
                raise InputError(
                    f"{entry.kind} entries cannot be appended by an author; "
                    "they are written by the ledger's own commands"
                )
            if entry.sig is None:
                raise InputError(f"cannot append an unsigned {entry.kind} entry")
            # the sig too: verify reads every stored record's envelope with its
            # sig, so one it refuses (sig.alg 'rsa') would fail verify for good
            validate_entry(entry.to_dict())
            self._check_blobs(find_blob_refs(entry.body))
            data = compute_entry_bytes(entry)
            check_entry_size(len(data) - SIG_MEMBER_BYTES)
            checked.append(replace(entry, signed_bytes=data))
        if self._key_epoch < 0:  # a later key change is caught under the lock (_seal)
            self._refresh_keys()
        return self._append_signed(checked, foreign=True)

    def record_purge(self, body: Mapping[str, Any]) -> Record:
        """Append a ``blob.purged`` entry (see :mod:`mltrail.ledger.erasure`, which then
        erases the blob); the store learns of the purge in the same transaction."""
        return self._append_signed(self._sign([Draft(PURGE_KIND, body)]))[0]

    def _sign(self, drafts: Sequence[Draft]) -> list[Entry]:
        """Validate, blob-check and sign each draft; the actor's and key's bytes are
        made once per signer and actor (``_template``), and the writing code is
        imported here, once per append, not per entry (reading never loads it).
        Every draft is checked before any is signed; the signatures of a large
        batch are made on several cores at once (``core.signing.sign_many``)."""
        from mltrail.core.codec import (
            check_entry_size,
            find_blob_refs,
            format_time,
            is_plain_body,
            validate_entry,
        )
        from mltrail.core.entry import ENTRY_VERSION

        template = self._template()
        parts: list[
            tuple[str, str, dict[str, Any], str | None, tuple[bytes, bytes]]
        ] = []
        for draft in drafts:
            time = format_time(self.clock.now())
            body = dict(draft.body)
            data = {"v": ENTRY_VERSION, "kind": draft.kind, "time": time, "body": body}
            if draft.run is not None:
                data["run"] = draft.run
            # the actor was checked once, when the template was made: {} stands in
            plain = is_plain_body(body)  # one walk for the limits and the bytes
            validate_entry(data | {"actor": {}}, check_size=False, plain_body=plain)
            self._check_blobs(find_blob_refs(body))
            message = template.message(draft.kind, time, body, draft.run, plain=plain)
            check_entry_size(len(message[0]) + len(message[1]))
            parts.append((draft.kind, time, body, draft.run, message))
        signatures = sign_many(
            template.signer,
            [head + tail for *_, (head, tail) in parts],
            _usable_cores(),
        )
        return [
            template.finish(*part, signature)
            for part, signature in zip(parts, signatures, strict=True)
        ]

    def _template(self) -> TemplateSigner:
        """The entry signer of this key and actor, made again when either changes
        (``repr`` tells a changed actor: it differs for any changed JSON value)."""
        from mltrail.core.codec import validate_actor
        from mltrail.core.entry import TemplateSigner

        signer = self._require_signer()
        shown = repr(self.actor)
        cached = self._template_signer
        if cached is not None and cached[0] is signer and cached[1] == shown:
            return cached[2]
        actor = copy.deepcopy(self.actor)
        validate_actor(actor)
        template = TemplateSigner(signer, actor)
        self._template_signer = (signer, shown, template)
        return template

    def _check_blobs(self, refs: Iterable[BlobRef]) -> None:
        for ref in refs:
            data = self.store.get_blob(ref.digest)
            if data is None and self._purged_size(ref.digest) == ref.size:
                continue  # the same bytes again: they stay erased
            if data is None or len(data) != ref.size:
                raise InputError(
                    f"{ref.path} references blob {ref.digest} "
                    f"({ref.size} bytes) which is not stored",
                    hint="store it first with Ledger.put_blob",
                )

    def _append_signed(
        self,
        entries: list[Entry],
        checkpoint_signer: Signer | None = None,
        *,
        foreign: bool = False,
    ) -> list[Record]:
        from mltrail.core.entry import Record

        if getattr(self.store, "remote", False):
            return self._post_signed(entries, checkpoint_signer)
        sealed: list[Batch] = []

        def prepare(head: StoreHead) -> NewBatch:
            written = self._written
            core = written[1] if written and written[0] is head else chain_head(head)
            batch = self._seal(core, entries, checkpoint_signer, foreign)
            sealed.append(batch)
            plain = new_batch(batch)
            self._written = (plain.head, batch.head)
            return plain

        for _ in range(5):
            try:
                self.store.append(prepare)
            except _StaleKeysError as stale:
                self._refresh_keys(full=stale.backwards)
                continue
            batch = sealed[-1]
            self._trusted_head = (batch.head.size, batch.head.frontier)
            self.writes += 1
            return [
                Record(r.seq, r.prev, e)
                for r, e in zip(batch.records, entries, strict=True)
            ]
        raise AppendConflictError("the ledger's keys kept changing during the append")

    def _post_signed(
        self, entries: list[Entry], checkpoint_signer: Signer | None
    ) -> list[Record]:
        """Post signed entries to the server that sequences the store and check
        its answer (see :func:`mltrail.ledger.remote_append.post_entries`)."""
        from mltrail.ledger.remote_append import post_entries

        if checkpoint_signer is not None or any(
            e.kind in KEY_KINDS or e.kind == PURGE_KIND for e in entries
        ):
            raise ConfigError(
                "key rotation and purges on a ledger kept by an mltrail server are "
                "the server admin's work, not a client's",
                hint="ask the server's admin; `mltrail keys register` adds your own key",
            )
        records = post_entries(self.store, self.remote_trust, entries, self.origin)
        self.writes += 1
        return records

    def _seal(
        self,
        head: ChainHead,
        entries: list[Entry],
        checkpoint_signer: Signer | None,
        foreign: bool = False,
    ) -> Batch:
        """Runs under the store's append lock: check the head and signers, chain,
        then sign the checkpoint of the new head (stored with the records)."""
        from mltrail.core.chain import seal_entries
        from mltrail.core.pushed import PUSHED_KIND

        if head.key_epoch != self._key_epoch:
            raise _StaleKeysError(backwards=head.key_epoch < self._key_epoch)
        self._check_head(head)
        self._check_locks(entries, head.size)
        rotating = any(entry.kind in KEY_KINDS for entry in entries)
        keyring = self._keyring.copy() if rotating else self._keyring
        for seq, entry in enumerate(entries, start=head.size):
            assert entry.sig is not None
            problem = _signer_problem(keyring, seq, entry)
            if problem and getattr(problem, "code", "").startswith("author-"):
                raise InputError(
                    f"cannot append {entry.kind}: seq {seq} would be {problem}",
                    hint="an author key signs only entries of its own identity; "
                    "key records, clock resets and purges need the log key",
                )
            if problem:
                raise ConfigError(
                    f"cannot append: seq {seq} would be {problem}",
                    hint="use the ledger's current key (mltrail keys list)",
                )
            if foreign:
                _check_signature(keyring, entry)
            if entry.kind == PUSHED_KIND:
                _check_pushed_checkpoint(keyring, seq, entry)
            if entry.kind in KEY_KINDS:
                problem = keyring.apply(
                    seq, entry.kind, dict(entry.body), entry.sig.key
                )
                if problem:
                    raise InputError(f"cannot append: {problem}")
        try:
            batch = seal_entries(
                head, entries, now=self.clock.now(), tolerance=self.tolerance
            )
        except InputError:
            floor = self._recorded_floor(head)
            if floor == head.floor_time:
                raise
            head = replace(head, floor_time=floor)
            batch = seal_entries(
                head, entries, now=self.clock.now(), tolerance=self.tolerance
            )
        return batch.with_checkpoint(
            self._sign_head(batch.head, keyring, checkpoint_signer)
        )

    def _recorded_floor(self, head: ChainHead) -> str | None:
        """The newest time read from the records themselves (since the last
        clock reset), for when an append is refused: the store's copy (a cache
        beside each checkpoint, no key needed to change it) may have been set
        ahead to refuse every append, which no clock reset could lift. Only a
        copy later than the last record's own time is read again (the records
        since the last reset are scanned)."""
        from mltrail.core.chain import CLOCK_RESET_KIND, compute_floor, is_later
        from mltrail.core.codec import decode_record

        if head.floor_time is None or head.size == 0:
            return head.floor_time
        rows = self.store.rows(head.size - 1, head.size)
        last = [decode_record(row.data).record.entry.time for row in rows]
        if not last or not is_later(head.floor_time, last[0]):
            return head.floor_time

        from mltrail.ledger.columns import checked_rows_of_kinds

        start = 0
        for row, _ in checked_rows_of_kinds(self.store, (CLOCK_RESET_KIND,)):
            start = row.seq
        records = (decode_record(row.data).record for row in self.store.rows(start))
        return compute_floor(
            (r.seq, r.entry.kind, r.entry.body, r.entry.time) for r in records
        )

    def _check_locks(self, entries: list[Entry], size: int) -> None:
        """Under the append lock: refuse entries amending a run a
        ``model.sealed`` record locked (see :mod:`mltrail.core.lock`), one
        stored or one earlier in this batch (verify reads it so: ``locked-run``)."""
        from mltrail.core.lock import (
            ALLOWED_KINDS,
            LOCK_KIND,
            check_not_locked,
            compute_locks,
            locks_of_body,
        )

        if all(e.run is None or e.kind in ALLOWED_KINDS for e in entries):
            return
        from mltrail.ledger.columns import checked_rows_of_kinds

        rows = checked_rows_of_kinds(self.store, (LOCK_KIND,))
        locks = compute_locks((r.seq, r.data) for r, _ in rows)
        for seq, entry in enumerate(entries, start=size):
            check_not_locked([entry], locks)
            if entry.kind == LOCK_KIND:
                for lock in locks_of_body(seq, entry.body):
                    locks.setdefault(lock.run, lock)

    def _sign_head(
        self, head: ChainHead, keyring: KeyRing, signer: Signer | None = None
    ) -> str:
        signer = signer or self._require_signer()
        problem = keyring.signer_problem(signer.key_id, head.size)
        if problem:
            raise ConfigError(
                f"cannot sign a checkpoint of {head.size} records: the key "
                f"{signer.key_id[:16]}... is {problem.removeprefix('signed by ')}",
                hint="the signing key file is not a current key of this ledger "
                "(mltrail keys list)",
            )
        cached = self._checkpoint_signer
        if cached is None or cached.signer is not signer:
            from mltrail.core.checkpoint import CheckpointSigner

            cached = self._checkpoint_signer = CheckpointSigner(self.origin, signer)
        return cached.sign(head.size, head.root())

    def _check_head(self, head: ChainHead) -> None:
        """Refuse to build on a head no valid signed checkpoint covers (see
        ``core.chain.check_head``); a head this object checked or wrote passes."""
        if head.size == 0 or self._trusted_head == (head.size, head.frontier):
            return
        from mltrail.core.chain import check_head

        check_head(head, origin=self.origin, keys=self._keyring.valid_keys(head.size))
        self._check_own_checkpoint(head)
        self._check_last_hash(head)
        self._trusted_head = (head.size, head.frontier)

    def _check_own_checkpoint(self, head: ChainHead) -> None:
        """A writer whose key is a log key of the ledger builds only on a
        checkpoint that key signed: each append checkpoints with the writer's
        key (a rotation with the new key), so a newest checkpoint by another key
        means this is not the ledger the key has been writing. A log key's
        ``key.added`` needs no proof of possession, so a ledger swapped in
        beside the key file can name the key; it cannot show its signature
        (ADR 0011 amendment)."""
        signer = self.signer
        if (
            signer is None
            or head.checkpoint is None
            or self._keyring.signer_problem(signer.key_id, head.size) is not None
        ):
            return  # no key, or one the checks of each entry refuse anyway
        if self.signed_by(head.checkpoint, signer) is None:
            raise IntegrityError(
                f"refusing to write: the newest checkpoint (of {head.size} records) "
                f"is not signed by this writer's key {signer.key_id[:16]}...: the "
                "ledger was last written with another key (a ledger put in place "
                "beside this key file?)",
                hint=TRUST_KEY_HINT,
            )

    def signed_by(self, text: str, signer: Signer) -> Checkpoint | None:
        """The checkpoint ``text`` when ``signer`` signed it for this ledger's
        origin, else None (unreadable, another origin, no valid line of it)."""
        from mltrail.core.checkpoint import verify_checkpoint

        try:
            return verify_checkpoint(
                text, origin=self.origin, public_keys=[signer.public_key]
            )
        except (MltrailError, ValueError):
            return None

    def _check_last_hash(self, head: ChainHead) -> None:
        """The next record's ``prev`` is the head's hash, which the store reads
        from its hash column: it must be the hash of the last row's bytes, else
        the writer would sign a record chained to a value no record has."""
        rows = list(self.store.rows(head.size - 1, head.size))
        if not rows or compute_record_hash(rows[0].data) != head.last_hash:
            from mltrail.ledger.columns import column_refusal

            raise column_refusal(
                f"the store's hash column of seq {head.size - 1} is not the hash "
                "of its bytes",
                "hash-column",
            )

    def _refresh_keys(self, *, full: bool = False) -> None:
        """Bring the key ring up to the store's key records.

        The key rows after the newest one the ring was built from (its anchor)
        are read, checked and applied to a copy of the ring: a key record costs
        what it adds, not what the ledger holds (ADR 0025 amendment of
        2026-12-08). Every key row is read and checked again, into a new ring,
        when nothing was read yet, when ``full`` (the store's key epoch went
        below the ring's), and when the read from the anchor does not start
        with the anchor as it was read, or lists a row at or before a row it
        already gave: the store was rewritten under this writer (a key row
        relabelled, changed or taken away), or does not read from a seq.
        """
        from mltrail.ledger.columns import checked_rows

        anchor = self._key_anchor
        if not full and anchor is not None:
            rows = self.store.rows_of_kinds(KEY_KINDS, anchor.seq)
            first = next(rows, None)
            if (
                first is not None
                and first.seq == anchor.seq
                and first.data == anchor.data
                and self._apply_key_rows(
                    self._keyring.copy(), checked_rows(rows, KEY_KINDS), anchor
                )
            ):
                return
        rows = self.store.rows_of_kinds(KEY_KINDS)
        self._apply_key_rows(KeyRing(origin=self.origin), checked_rows(rows, KEY_KINDS))

    def _apply_key_rows(
        self,
        keyring: KeyRing,
        rows: Iterator[tuple[StoredRow, DecodedRecord]],
        anchor: StoredRow | None = None,
    ) -> bool:
        """Apply the checked key ``rows`` after ``anchor`` (None: every key row,
        to a new ring) to ``keyring`` and make it the ledger's; False (nothing
        changed) when a row is not after the one before it."""
        epoch, last = (0, None) if anchor is None else (anchor.seq + 1, anchor)
        # a row listed as a key record must be one by its signed bytes (its kind
        # column can be changed without a key): else the writer refuses
        for row, decoded in rows:
            if anchor is not None and row.seq < epoch:
                return False
            entry = decoded.record.entry
            assert entry.sig is not None
            # a key record changes the keys only if its signature verifies (the
            # key ring refuses one by a key that may not sign it): else anyone who
            # can write the store could add a key of their own, sign a checkpoint
            # with it, and have this ledger build on what they wrote
            if _key_record_signed(keyring, row.seq, entry, decoded.signing_bytes):
                keyring.apply(row.seq, entry.kind, dict(entry.body), entry.sig.key)
            epoch, last = row.seq + 1, row
        self._keyring, self._key_epoch, self._key_anchor = keyring, epoch, last
        return True

    def _require_signer(self) -> Signer:
        if self.signer is None:
            raise ConfigError("this ledger was opened read-only: no signing key")
        return self.signer

    def put_blob(self, data: bytes) -> dict[str, Any]:
        """Store bytes content-addressed; return the reference to put in a body."""
        digest = compute_blob_digest(data)
        self.store.put_blob(digest, data)
        return {"blob": digest, "size": len(data)}

    def put_blobs(self, blobs: Sequence[bytes]) -> list[dict[str, Any]]:
        """``put_blob`` for each of ``blobs``, written together (one disk sync on
        SQLite, where each ``put_blob`` is one); their references, in order."""
        digests = [compute_blob_digest(data) for data in blobs]
        self.store.put_blobs(list(zip(digests, blobs, strict=True)))
        return [
            {"blob": d, "size": len(data)}
            for d, data in zip(digests, blobs, strict=True)
        ]

    def get_blob(self, digest: str) -> bytes:
        """A blob's bytes, once they hash to ``digest``.

        Raises:
            BlobPurgedError: it was purged.
            InputError: the store does not hold it.
            IntegrityError: the stored bytes are not the blob's (they were
                replaced, e.g. by other bytes of the same size).
        """
        data = self.store.get_blob(digest)
        if data is None:
            purge = self.store.purge_of(digest)
            if purge is not None and self._purge_recorded(purge.seq, digest):
                raise BlobPurgedError(digest, purge.seq)
            raise InputError(
                f"blob {digest} is not in this ledger",
                hint="run `mltrail verify`: a referenced blob that is not stored "
                "was deleted without a purge",
            )
        found = compute_blob_digest(data)
        if found != digest:
            raise IntegrityError(
                f"blob {digest} was altered in the store: its bytes hash to {found}",
                hint="run `mltrail verify`; restore the blob from a copy of the home",
            )
        return data

    def _purge_recorded(self, seq: int, digest: str) -> bool:
        """Whether record ``seq`` is a purge of ``digest``: the store's table of
        purges is derived from those records, and whoever can write the store
        can add a row to it, making a blob deleted without a purge look purged
        by policy."""
        try:
            entry = self.record(seq).entry
        except MltrailError:
            return False
        return entry.kind == PURGE_KIND and entry.body.get("digest") == digest

    def _purged_size(self, digest: str) -> int | None:
        purge = self.store.purge_of(digest)
        return None if purge is None else purge.size

    def reset_clock(self, reason: str) -> Record:
        """Record that the ledger's newest entries were dated ahead of this clock.

        A writer whose clock ran ahead leaves entries no correct clock may be
        dated before (by more than the tolerance), so every later append is
        refused. This signed ``clock.reset`` entry says so, names the newest time
        it overrides, and lets later entries be checked against this clock.
        Verification reports every reset.

        Raises:
            InputError: the ledger is not dated ahead of this clock.
        """
        floor = self.append_floor()
        if floor is None:
            raise InputError("no clock reset is needed: the ledger holds no records")
        body: dict[str, Any] = {"reason": reason, "newest_time": floor[0]}
        if floor[1] is not None:
            body["newest_seq"] = floor[1]
        return self.append("clock.reset", body)

    def time_floor(self) -> tuple[str, int] | None:
        """(time, seq) of the newest-dated entry since the last clock reset, as
        the store's columns give it, checked against the signed rows it names.

        Raises:
            IntegrityError: the store's kind or time columns were edited.
        """
        from mltrail.core.chain import CLOCK_RESET_KIND
        from mltrail.ledger.columns import checked_time_floor

        return checked_time_floor(self.store, CLOCK_RESET_KIND)

    def append_floor(self) -> tuple[str, int | None] | None:
        """The newest time the next append must not go back from, as that
        append decides it (``_seal``): the store's newest time (the cache beside
        its newest checkpoint), read again from the signed records when it
        would refuse an entry dated by this ledger's clock. With the seq of the
        record so dated when the store names it (None otherwise); None for an
        empty ledger.
        """
        from mltrail.core.codec import parse_time
        from mltrail.ledger.columns import find_floor_seq

        head = chain_head(self.store.append_head())
        floor = head.floor_time
        if floor is not None and parse_time(floor) - self.clock.now() > self.tolerance:
            floor = self._recorded_floor(head)
        if floor is None:
            return None
        return floor, find_floor_seq(self.store, floor)

    # -- keys --------------------------------------------------------------

    def rotate_key(
        self, new_signer: Signer, *, reason: str = "key rotation"
    ) -> list[Record]:
        """Add ``new_signer``'s key and revoke the current one, atomically."""
        from mltrail.core.codec import format_time, validate_entry
        from mltrail.core.entry import Entry, sign_entry

        old = self._require_signer()
        now = format_time(self.clock.now())
        added_entry = Entry(
            "key.added", now, self.actor, _key_body(new_signer, reason=reason)
        )
        revoked_entry = Entry(
            "key.revoked",
            now,
            self.actor,
            {"key": old.key_id, "reason": reason, "replaced_by": new_signer.key_id},
        )
        for entry in (added_entry, revoked_entry):
            validate_entry(entry.to_dict(with_sig=False))
        added = sign_entry(added_entry, old)
        revoked = sign_entry(revoked_entry, new_signer)
        records = self._append_signed([added, revoked], checkpoint_signer=new_signer)
        self.signer = new_signer
        return records

    def register_key(
        self,
        public_key: bytes,
        identity: str,
        proof: bytes,
        *,
        reason: str = "registered",
    ) -> Record:
        """Register an AUTHOR key: ``public_key`` may then sign entries whose
        ``actor.user`` is ``identity`` (and nothing else; see ADR 0025).

        ``proof`` is the key's signature over ``compute_key_proof_message(origin,
        identity, key_id)``: its holder asked for it. The ``key.added`` record is
        signed by this ledger's own key, which must be a log key.

        Raises:
            InputError: a bad identity or public key, a proof that does not
                verify, or a key the ledger already added.
        """
        bad = identity_problem(identity)
        if bad:
            raise InputError(f"cannot register the key: {bad}")
        try:
            key_id = compute_key_id(public_key)
        except ValueError as e:
            raise InputError(f"cannot register the key: {e}") from e
        message = compute_key_proof_message(self.origin, identity, key_id)
        if not verify_signature(public_key, message, proof):
            raise InputError(
                f"cannot register key {key_id[:16]}...: the proof does not verify "
                f"(it must be that key's signature for identity {identity!r} in "
                f"ledger {self.origin!r})",
                hint="make it with mltrail.core.keyring.compute_key_proof_message",
            )
        known = self.keys().keys.get(key_id)
        if known is not None:
            raise InputError(
                f"key {key_id[:16]}... is already a key of this ledger (added at "
                f"seq {max(known.added_seq, 0)})"
            )
        if getattr(self.store, "remote", False):  # the server's log key signs it
            answer = self.store.register_key(public_key, identity, proof)  # type: ignore[attr-defined]
            return self.record(int(answer["seq"]))
        body = {
            "alg": "ed25519",
            "key": key_id,
            "public_key": encode_b64(public_key),
            "identity": identity,
            "proof": encode_b64(proof),
            "reason": reason,
        }
        return self._append_signed(self._sign([Draft("key.added", body)]))[0]

    def revoke_key(self, key_id: str, *, reason: str) -> Record:
        """Revoke an author key: entries it signs from here on are refused.

        Raises:
            InputError: unknown or already revoked key, or a log key (those are
                replaced with ``rotate_key``).
        """
        state = self.keys().keys.get(key_id)
        if state is None:
            raise InputError(
                f"key {key_id[:16]}... is not a key of this ledger",
                hint="mltrail keys list",
            )
        if state.identity is None:
            raise InputError(
                f"key {key_id[:16]}... is a log key, not an author key",
                hint="replace the ledger's own key with `mltrail keys rotate`",
            )
        if state.revoked_seq is not None:
            raise InputError(
                f"key {key_id[:16]}... was already revoked at seq {state.revoked_seq}"
            )
        body = {"key": key_id, "reason": reason}
        return self._append_signed(self._sign([Draft("key.revoked", body)]))[0]

    def signer_revoked(self) -> bool:
        """True when the key ring as last read (by :meth:`check_head`, an append
        or :meth:`keys`) says the signing key was revoked."""
        if self.signer is None:
            return False
        state = self._keyring.keys.get(self.signer.key_id)
        return state is not None and state.revoked_seq is not None

    def rotated_to(self, key_id: str) -> str | None:
        """The log key a rotation from ``key_id`` stored, when the ledger holds
        exactly what :meth:`rotate_key` writes; else None.

        That is: the key ring revoked ``key_id`` at some seq R; the record at
        R - 1 is the ``key.added`` of a log key K signed by ``key_id``, whose
        signature verifies with ``key_id``'s public key; the record at R is the
        ``key.revoked`` of ``key_id`` naming K as ``replaced_by``, signed by K
        (verified with K's public key). A revocation of ``key_id`` that anyone
        else signed, or a key someone else added, is no rotation from it.
        """
        from mltrail.core.codec import decode_record

        ring = self.keys()
        old = ring.keys.get(key_id)
        if old is None or old.revoked_seq is None or old.revoked_seq < 2:
            return None
        at = old.revoked_seq
        rows = list(self.store.rows(at - 1, at + 1))
        if [row.seq for row in rows] != [at - 1, at]:
            return None
        try:
            added, revoked = (decode_record(row.data) for row in rows)
        except MltrailError:
            return None
        add, rev = added.record.entry, revoked.record.entry
        new_id = add.body.get("key")
        new = ring.keys.get(new_id) if isinstance(new_id, str) else None
        if (
            new is None
            or not new.is_log_key
            or new.added_seq != at - 1
            or (added.record.seq, revoked.record.seq) != (at - 1, at)
            or add.kind != "key.added"
            or rev.kind != "key.revoked"
            or add.sig is None
            or rev.sig is None
            or add.sig.key != key_id
            or rev.sig.key != new_id
            or rev.body.get("key") != key_id
            or rev.body.get("replaced_by") != new_id
        ):
            return None
        signed = _signature_verifies(
            old.public_key, add, added.signing_bytes
        ) and _signature_verifies(new.public_key, rev, revoked.signing_bytes)
        return new_id if signed else None

    def keys(self) -> KeyRing:
        """The key ring as of the newest record: a copy, which the caller may
        change without changing the ring this writer checks appends with."""
        self._refresh_keys()
        return self._keyring.copy()

    # -- reading -----------------------------------------------------------

    def head(self) -> ChainHead:
        """The current head."""
        return chain_head(self.store.head())

    def records(self, start: int = 0, stop: int | None = None) -> Iterator[Record]:
        """Records in seq order, decoded and schema-checked (not signature-checked)."""
        from mltrail.core.codec import decode_record

        for row in self.store.rows(start, stop):
            yield decode_record(row.data).record

    def records_of_kinds(self, kinds: Sequence[str]) -> Iterator[Record]:
        """Records of the given kinds in seq order, decoded (not signature-checked)."""
        from mltrail.core.codec import decode_record

        for row in self.store.rows_of_kinds(kinds):
            yield decode_record(row.data).record

    def record(self, seq: int) -> Record:
        """One record by seq.

        Raises:
            InputError: no such seq.
        """
        for record in self.records(seq, seq + 1):
            return record
        raise InputError(
            f"no record with seq {seq} (the ledger has {self.head().size})"
        )

    # -- checkpoints and proofs -------------------------------------------

    def checkpoint(self, *, adopt: bool = False) -> SignedCheckpoint:
        """The signed checkpoint of the whole ledger, checked before it is returned.

        Every append stores one, so this normally returns the newest stored
        checkpoint after checking that it covers every record, is signed by a
        key valid at its size, and that the cached Merkle nodes give its root.
        Nothing is signed over a head that fails those checks.

        Args:
            adopt: when records at the end are not covered (a ledger written by
                mltrail 0.1), verify the whole ledger and, if nothing but the
                missing coverage is wrong, sign a checkpoint of the recomputed
                root.

        Raises:
            UncoveredRecordsError: records are not covered and ``adopt`` is False.
            IntegrityError: the head cannot be trusted (see ``_check_head``).
        """
        try:
            head = self._checked_head()
        except UncoveredRecordsError:
            if not adopt:
                raise
            return self._adopt(chain_head(self.store.head()))
        if head.size == 0 or head.checkpoint is None:
            raise InputError("the ledger holds no records")
        from mltrail.core.checkpoint import parse_signed_checkpoint

        return parse_signed_checkpoint(head.checkpoint)

    def check_head(self) -> None:
        """Check the head as an append would, before anything is written.

        Records not covered by a checkpoint (a ledger from mltrail 0.1) are let
        through here: appends refuse them, ``checkpoint(adopt=True)`` covers them.

        Raises:
            IntegrityError: the newest checkpoint is bad, records were cut from
                the end, or the cached Merkle nodes do not give its root.
        """
        with contextlib.suppress(UncoveredRecordsError):
            self._checked_head()

    def _checked_head(self) -> ChainHead:
        self._refresh_keys()
        latest = self.store.latest_checkpoint()
        for _ in range(10):  # another process may append between the two reads
            stored = self.store.head()
            again = self.store.latest_checkpoint()
            if again == latest:
                break
            latest = again
        head = replace(chain_head(stored), checkpoint=latest.text if latest else None)
        self._check_head(head)
        return head

    def _adopt(self, head: ChainHead) -> SignedCheckpoint:
        self._refresh_keys()
        report = self.verify()
        problems = [p for p in report.errors if p.code != "uncovered"]
        if problems:
            raise IntegrityError(
                f"refusing to adopt uncovered records: {report.verdict()}: "
                f"{problems[0]}",
                hint="run `mltrail verify` to see every problem",
            )
        if (report.size, report.root) != (head.size, head.root()):
            raise IntegrityError(
                "refusing to adopt: the stored Merkle nodes do not match the records",
                hint="run `mltrail verify`",
            )
        self._check_adoptable(head)
        text = self._sign_head(head, self._keyring)
        self.store.add_checkpoint(head.size, text)
        self._trusted_head = (head.size, head.frontier)
        self.writes += 1
        from mltrail.core.checkpoint import parse_signed_checkpoint

        return parse_signed_checkpoint(text)

    def _check_adoptable(self, head: ChainHead) -> None:
        """Adopt only what this writer's key wrote: the newest stored checkpoint
        (if any) is its own and holds the root of the records it covers, every
        record after it is signed by that key, and the records read for this
        hash to the root verified (``head``'s).

        A ledger put in place beside the key file, whose own key added this key
        as a log key (no proof of possession is asked) and whose checkpoints were
        removed, verifies except for the missing coverage; adopting it signed
        the forged history with the real key. The records are read again and
        hashed: a store that answers a second read otherwise (a view, a file
        rewritten meanwhile) could show this key's id on rows the verification
        saw signed by another (ADR 0011 amendment).
        """
        from mltrail.core.codec import decode_record
        from mltrail.core.merkle import CompactRange
        from mltrail.ledger.pinned import read_leaves

        signer = self._require_signer()

        def refuse(why: str) -> IntegrityError:
            return IntegrityError(f"refusing to adopt: {why}", hint=TRUST_KEY_HINT)

        latest = self.store.latest_checkpoint()
        checkpoint = None if latest is None else self.signed_by(latest.text, signer)
        if latest is not None and checkpoint is None:
            raise refuse(
                f"the newest checkpoint (of {latest.size} records) is not signed "
                f"by this writer's key {signer.key_id[:16]}... (a ledger put in "
                "place beside this key file?)"
            )
        covered = 0 if checkpoint is None else checkpoint.size
        if covered > head.size:
            raise refuse(
                f"the newest checkpoint covers {covered} of {head.size} records"
            )
        tree = CompactRange(0, ())
        covered_root = tree.root() if covered == 0 else None
        for row, _leaf in read_leaves(self.store, head.size, tree, refuse):
            if row.seq >= covered:
                sig = decode_record(row.data).record.entry.sig
                if sig is None or sig.key != signer.key_id:
                    raise refuse(
                        f"record seq {row.seq} is not signed by this writer's key "
                        f"{signer.key_id[:16]}...; only what this key wrote is adopted"
                    )
            if tree.size == covered:
                covered_root = tree.root()
        if tree.size != head.size or tree.root() != head.root():
            raise refuse("the records read again are not the records verified")
        if checkpoint is not None and checkpoint.root != covered_root:
            raise refuse(
                f"the newest checkpoint's root is not that of the first {covered} "
                "records"
            )

    def latest_checkpoint(self) -> tuple[int, str] | None:
        """(size, text) of the newest checkpoint, if any."""
        latest = self.store.latest_checkpoint()  # one row, not every checkpoint
        return None if latest is None else (latest.size, latest.text)

    def prove_inclusion(self, seq: int, size: int | None = None) -> InclusionProof:
        """RFC 9162 inclusion proof of record ``seq`` in the tree of ``size`` records."""
        head_size = self.head().size
        size = head_size if size is None else size
        if not 0 <= seq < size <= head_size:
            raise InputError(
                f"seq {seq} is not in a tree of {size} records "
                f"(the ledger has {head_size})"
            )
        hashes = inclusion_proof(seq, size, self.store.node)
        return InclusionProof(index=seq, size=size, hashes=tuple(hashes))

    def prove_consistency(self, old: int, new: int | None = None) -> ConsistencyProof:
        """RFC 9162 consistency proof from the tree of ``old`` to ``new`` records."""
        new = self.head().size if new is None else new
        if not 0 < old <= new <= self.head().size:
            raise InputError(
                f"need 0 < OLD <= NEW <= {self.head().size}, got {old} and {new}"
            )
        hashes = consistency_proof(old, new, self.store.node)
        return ConsistencyProof(size1=old, size2=new, hashes=tuple(hashes))

    def leaf_hash(self, seq: int) -> bytes:
        """The Merkle leaf hash of record ``seq``."""
        for row in self.store.rows(seq, seq + 1):
            return compute_leaf_hash(row.data)
        raise InputError(f"no record with seq {seq}")

    def verify(
        self,
        *,
        trusted_keys: Collection[str] | None = None,
        witness: Sequence[StoredCheckpoint] = (),
        progress: Callable[[int, int], None] | None = None,
        workers: int | None = None,
    ) -> VerificationReport:
        """Verify the whole ledger; see :func:`mltrail.ledger.verification.verify_store`.

        ``trusted_keys`` defaults to the genesis key this ledger was opened with.
        """
        from mltrail.ledger.verification import verify_store

        if trusted_keys is None:
            trusted_keys = (self.trusted_key,) if self.trusted_key else ()
        report = verify_store(
            self.store,
            origin=self.origin,
            trusted_keys=trusted_keys,
            witness=witness,
            progress=progress,
            workers=workers,
        )
        future = report.dated.after(self.clock.now())
        if future is not None:
            report.problems.append(future)
        return report

    def close(self) -> None:
        """Close the store."""
        self.store.close()


def _usable_cores() -> int:
    """The cores this process may run on (a batch's signatures spread over them)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1  # pragma: no cover (macOS, Windows)


def _signer_problem(keyring: KeyRing, seq: int, entry: Entry) -> str | None:
    assert entry.sig is not None
    if seq == 0:
        self_signed = (
            entry.kind == "key.added" and entry.body.get("key") == entry.sig.key
        )
        return (
            None
            if self_signed
            else "the genesis record, which must be a self-signed key.added"
        )
    return keyring.signer_problem(
        entry.sig.key, seq, entry.kind, entry.actor.get("user")
    )


def _key_record_signed(
    keyring: KeyRing, seq: int, entry: Entry, signing_bytes: bytes
) -> bool:
    """Whether the key record ``entry`` at ``seq`` carries a signature that
    verifies with its signer's key (at seq 0, with the key it adds)."""
    assert entry.sig is not None
    if seq == 0:
        try:
            public_key = decode_b64(str(entry.body.get("public_key")))
        except ValueError:
            return False
    else:
        state = keyring.keys.get(entry.sig.key)
        if state is None:
            return False
        public_key = state.public_key
    return _signature_verifies(public_key, entry, signing_bytes)


def _signature_verifies(public_key: bytes, entry: Entry, signing_bytes: bytes) -> bool:
    """Whether ``entry``'s signature (base64) verifies ``signing_bytes`` with
    ``public_key``; a signature that is not base64 does not."""
    assert entry.sig is not None
    try:
        signature = decode_b64(entry.sig.value)
    except ValueError:
        return False
    return verify_signature(public_key, signing_bytes, signature)


def _check_signature(keyring: KeyRing, entry: Entry) -> None:
    """Refuse an entry signed elsewhere whose signature does not verify."""
    from mltrail.core.entry import compute_signing_bytes

    assert entry.sig is not None
    state = keyring.keys.get(entry.sig.key)
    if state is None or not _signature_verifies(
        state.public_key, entry, compute_signing_bytes(entry)
    ):
        raise InputError(
            f"cannot append {entry.kind}: its signature does not verify with key "
            f"{entry.sig.key[:16]}..."
        )


def _check_pushed_checkpoint(keyring: KeyRing, seq: int, entry: Entry) -> None:
    """Refuse a ``ledger.pushed`` header whose checkpoint does not vouch for its
    window (what verify reports as ``pushed-checkpoint``), before it is stored."""
    from mltrail.core.pushed import pushed_checkpoint_problem

    assert entry.sig is not None
    problem = pushed_checkpoint_problem(entry.body, keyring, entry.sig.key)
    if problem is not None:
        raise InputError(
            f"cannot append the ledger.pushed header at seq {seq}: {problem}",
            hint="a push header carries a checkpoint of the pushed ledger, signed "
            "by the key it names (registered here), of at least `to` records; "
            "`mltrail push` writes one",
        )


def _check_origin(origin: str) -> None:
    """Refuse an origin no checkpoint could carry, before anything is written."""
    from mltrail.core.checkpoint import Checkpoint, is_valid_key_name

    try:
        Checkpoint(origin=origin, size=0, root=bytes(32))
    except ValueError as e:
        raise InputError(f"invalid ledger origin {origin!r}: {e}") from e
    if not is_valid_key_name(origin):
        raise InputError(
            f"invalid ledger origin {origin!r}: it must not contain spaces or '+'",
            hint="use a name like example.org/team-a",
        )


def _key_body(signer: Signer, **extra: str) -> dict[str, Any]:
    return {
        "alg": "ed25519",
        "key": signer.key_id,
        "public_key": encode_b64(signer.public_key),
        **extra,
    }
