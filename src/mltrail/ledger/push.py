"""``mltrail push``: an embedded ledger's entries, uploaded to a team server.

A training machine that is offline records into its own (embedded) ledger;
once it can reach the team server, ``push`` copies its entries there
unchanged, with their original signatures and times (ADR 0031). Each batch
is one atomic append: a ``ledger.pushed`` header signed by the home's key
(dated now, naming the embedded ledger's origin and genesis key, the local
seqs ``from``..``to`` and its signed checkpoint), then the entries it
announces (see :mod:`mltrail.core.pushed` for the time rule they follow).

Only entries an author may sign are pushed: the embedded ledger's own key,
clock-reset and purge records stay home. The home's key must be an author key
of the server's ledger for the token's name (``push`` registers it when it is
not), and every pushed entry must name that user (``actor.user``).

Pushing is idempotent and resumable: the server's ``ledger.pushed`` records
of this origin and key say how far earlier pushes got (the highest ``to``),
and a push starts after it. Each batch's idempotency key is derived from the
ledger and the seqs it covers, so two pushes of one ledger running at once
cannot both land the same batch (the second is refused, HTTP 409).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mltrail.core.chain import is_later
from mltrail.core.checkpoint import parse_signed_checkpoint
from mltrail.core.codec import find_blob_refs, format_time
from mltrail.core.entry import Entry, sign_entry
from mltrail.core.keyring import make_key_proof
from mltrail.core.pushed import NOT_PUSHED_KINDS, PUSHED_KIND
from mltrail.errors import ConfigError, InputError, IntegrityError, MltrailError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from mltrail.core.entry import Record
    from mltrail.ledger.client_mode import RemoteLedger
    from mltrail.ledger.home import Home
    from mltrail.ledger.ledger import Ledger

__all__ = ["BATCH_SIZE", "PushResult", "push_ledger"]

BATCH_SIZE = 500
"""Entries per append (the server takes up to 1000 per request)."""
BATCH_BYTES = 8 * 2**20
"""Canonical entry bytes per append (the server takes 16 MiB per request)."""


@dataclass
class PushResult:
    """What a push did (or, dry, would do)."""

    origin: str
    key: str
    start: int
    """The first local seq this push looked at (after earlier pushes)."""
    local_size: int
    pushed: int = 0
    skipped: int = 0
    """Local records never pushed (key, clock-reset and purge records)."""
    batches: int = 0
    blobs: int = 0
    """Blobs uploaded (the server had the others)."""
    key_registered: bool = False
    server_size: int = 0
    checkpoint: str | None = None
    """The server's checkpoint after the last batch (None: nothing pushed)."""
    dry_run: bool = False

    def to_json(self) -> dict[str, Any]:
        """The ``--json`` answer of ``mltrail push``."""
        return {
            "origin": self.origin,
            "key": self.key,
            "from": self.start,
            "to": self.local_size,
            "pushed": self.pushed,
            "skipped": self.skipped,
            "batches": self.batches,
            "blobs": self.blobs,
            "key_registered": self.key_registered,
            "server_size": self.server_size,
            "checkpoint": self.checkpoint,
            "dry_run": self.dry_run,
        }


@dataclass(frozen=True, slots=True)
class _Batch:
    start: int
    stop: int
    entries: tuple[Entry, ...]


def push_ledger(
    home: Home,
    remote: RemoteLedger,
    *,
    batch_size: int = BATCH_SIZE,
    dry_run: bool = False,
    max_batches: int | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> PushResult:
    """Push the entries of ``home``'s (embedded) ledger not yet on ``remote``.

    The caller verifies the local ledger first. ``progress`` is called with
    (local records done, local records to do); ``max_batches`` stops early
    (a later push resumes).

    Raises:
        InputError: an entry names another user than the token's, is dated
            after this machine's clock, or was signed by a key other than the
            home's.
        ConfigError: the home has no checkpoint covering its records.
        IntegrityError: the server holds more of this ledger than the home, or
            its answer does not check out (see
            :func:`mltrail.ledger.remote_append.post_entries`).
        AuthError, StoreError: the server refused or failed.
    """
    if not 1 <= batch_size <= 999:
        raise InputError("--batch-size is 1 to 999 entries")
    ledger, signer = home.ledger, home.ledger.signer
    assert signer is not None
    genesis = ledger.record(0).entry.body["key"]
    size = ledger.head().size
    stored = ledger.store.latest_checkpoint()
    if stored is None or stored.size < size:
        raise ConfigError(
            "the local ledger's newest records are not covered by a checkpoint",
            hint="run `mltrail verify`, then `mltrail checkpoint`",
        )
    identity = str(remote.identity or "")
    start = _pushed_to(remote, ledger, genesis, identity)
    if start > size:
        raise IntegrityError(
            f"the server holds records pushed from {ledger.origin} up to local seq "
            f"{start - 1}, but this ledger has only {size} records: it was rolled "
            "back or replaced since",
            hint="run `mltrail verify`; compare with the server's ledger.pushed "
            "records (mltrail log in client mode)",
        )
    result = PushResult(ledger.origin, genesis, start, size, dry_run=dry_run)
    batches = list(_batches(ledger.records(start), size, batch_size, result))
    _check_entries(batches, identity, signer.key_id, ledger.clock.now())
    if dry_run or not batches:
        result.batches = len(batches)
        result.pushed = sum(len(b.entries) for b in batches)
        result.server_size = remote.ledger.head().size
        return result
    result.key_registered = _register(remote, signer, identity)
    for batch in batches[:max_batches]:
        result.blobs += _upload_blobs(home, remote, batch.entries)
        _post(remote, home, batch, stored.text, genesis, result)
        if progress is not None:
            progress(batch.stop - start, size - start)
    return result


def _pushed_to(remote: RemoteLedger, local: Ledger, key: str, identity: str) -> int:
    """One past the highest local seq earlier pushes of this ledger landed
    (:func:`_last_header`, checked by :func:`_check_header`)."""
    last = _last_header(remote.store, local.origin, key, identity)
    if last is None:
        return 0
    _check_header(remote, local, last[1], last[2])
    _check_extends_pushed(local, last[2])
    return last[0]


def _last_header(
    store: Any, origin: str, key: str, identity: str
) -> tuple[int, Any, Any] | None:
    """(to, row, decoded record) of the server's ``ledger.pushed`` record of
    this ledger (``origin``, genesis ``key``) with the highest ``to``, or None.

    Only headers of ``identity`` (the token's user, whose key pushes) count:
    another user's header naming this ledger (which servers before 2026-12-07
    stored, and which verify reports as ``pushed-checkpoint``) must not make
    this push skip entries it never sent. The header that decides is checked
    as an append's answer is: signed by a key of this home's ledger and
    included in the server's checkpoint, which this client pins; a server
    that lists a header it made up (or one of another server) would
    otherwise have the push skip entries and say all was sent."""
    from mltrail.ledger.columns import checked_rows_of_kinds

    best: tuple[int, Any, Any] | None = None
    for row, decoded in checked_rows_of_kinds(store, (PUSHED_KIND,)):
        entry = decoded.record.entry
        if entry.actor.get("user") != identity:
            continue
        body = entry.body
        if body.get("origin") == origin and body.get("key") == key:
            to = int(body.get("to", 0))
            if best is None or to > best[0]:
                best = (to, row, decoded)
    return best


def _check_header(remote: RemoteLedger, local: Ledger, row: Any, decoded: Any) -> None:
    """Refuse (IntegrityError) a push header not signed by a key of ``local``
    or not in the server's checkpoint."""
    from mltrail.core.canonical import compute_leaf_hash
    from mltrail.core.entry import compute_signing_bytes
    from mltrail.core.signing import decode_b64, verify_signature

    entry, seq = decoded.record.entry, decoded.record.seq
    state = local.keys().keys.get(entry.sig.key) if entry.sig else None
    try:
        signed = state is not None and verify_signature(
            state.public_key, compute_signing_bytes(entry), decode_b64(entry.sig.value)
        )
    except ValueError:
        signed = False
    if not signed:
        raise IntegrityError(
            f"the server lists a ledger.pushed record (seq {seq}) of "
            f"{local.origin} that no key of this home signed",
            hint="report it to the server's admin; nothing was pushed",
        )
    checkpoint = remote.trust.refresh()
    if checkpoint is None or checkpoint.size <= seq:
        raise IntegrityError(
            f"the server lists a ledger.pushed record (seq {seq}) of "
            f"{local.origin} that its checkpoint does not cover",
            hint="report it to the server's admin; nothing was pushed",
        )
    remote.trust.check_inclusion(seq, compute_leaf_hash(row.data), checkpoint)


def _check_extends_pushed(local: Ledger, decoded: Any) -> None:
    """Refuse (IntegrityError) a push from a ledger that no longer extends the
    checkpoint its last push header carries: one rolled back and written on
    since, or replaced by another of the same origin and key. Its records past
    that header's ``to`` would continue, on the server, a history other than
    the one the server already holds."""
    from mltrail.core.merkle import verify_consistency

    seq, body = decoded.record.seq, decoded.record.entry.body
    head = local.head()
    try:
        pushed = parse_signed_checkpoint(str(body.get("checkpoint"))).checkpoint
        if pushed.origin != local.origin:
            raise IntegrityError(f"it is a checkpoint of {pushed.origin!r}")
        if pushed.size > head.size:
            raise IntegrityError(
                f"it covers {pushed.size} records, this ledger has {head.size}"
            )
        proof = local.prove_consistency(pushed.size, head.size)
        verify_consistency(
            pushed.size, head.size, pushed.root, head.root(), proof.hashes
        )
    except MltrailError as e:
        raise IntegrityError(
            f"this ledger does not extend the checkpoint it pushed to the server "
            f"(ledger.pushed at seq {seq}): it was rolled back, rewritten or "
            f"replaced since ({e}); pushing the rest would put a history on the "
            "server that conflicts with the one it holds",
            hint="nothing was pushed; restore the ledger that was pushed, or push "
            "this one as a new ledger (another origin, `mltrail init`)",
        ) from e


def _batches(
    records: Iterator[Record], size: int, batch_size: int, result: PushResult
) -> Iterator[_Batch]:
    """Local records in batches of pushable entries (with the local seqs each
    covers, skipped records included)."""
    start, entries, used = result.start, [], 0
    for record in records:
        if record.seq >= size:
            break
        entry = record.entry
        if entry.kind in NOT_PUSHED_KINDS:
            result.skipped += 1
            continue
        cost = len(entry.signed_bytes or b"") or len(record.to_bytes())
        if entries and (len(entries) >= batch_size or used + cost > BATCH_BYTES):
            yield _Batch(start, record.seq, tuple(entries))
            start, entries, used = record.seq, [], 0
        entries.append(entry)
        used += cost
    if entries:
        yield _Batch(start, size, tuple(entries))


def _check_entries(batches: list[_Batch], identity: str, key: str, now: Any) -> None:
    """Refuse, before anything is sent, what the server would refuse half way."""
    newest = format_time(now)
    for batch in batches:
        for entry in batch.entries:
            assert entry.sig is not None
            where = f"the local {entry.kind} dated {entry.time}"
            if entry.actor.get("user") != identity:
                raise InputError(
                    f"{where} was recorded as user {entry.actor.get('user')!r}, but "
                    f"the token is {identity!r}'s: the server takes entries of the "
                    "token's user only",
                    hint="push with a token named after the account that recorded "
                    "the runs (mltrail tokens create --name USER)",
                )
            if entry.sig.key != key:
                raise InputError(
                    f"{where} is signed by key {entry.sig.key[:16]}..., not the "
                    "home's current key: entries signed before a key rotation "
                    "cannot be pushed",
                )
            if is_later(entry.time, newest):
                raise InputError(
                    f"{where} is after this machine's clock ({newest}): pushed "
                    "entries must be older than the push",
                    hint="check the clock; push again once it has passed that time",
                )


def _register(remote: RemoteLedger, signer: Any, identity: str) -> bool:
    """Register the home's key on the server for ``identity`` unless it is."""
    for key in remote.store.list_keys():
        if key.get("key") == signer.key_id and key.get("revoked_seq") is None:
            if key.get("identity") != identity:
                raise ConfigError(
                    f"the home's key is registered on the server for "
                    f"{key.get('identity')!r}, not the token's user {identity!r}",
                    hint="push with that user's token",
                )
            return False
    proof = make_key_proof(signer, remote.trust.origin, identity)
    remote.store.register_key(signer.public_key, identity, proof)
    return True


def _upload_blobs(home: Home, remote: RemoteLedger, entries: tuple[Entry, ...]) -> int:
    """PUT the blobs ``entries`` reference that the server lacks; how many."""
    uploaded, seen = 0, set()
    for entry in entries:
        for ref in find_blob_refs(entry.body):
            if ref.digest in seen:
                continue
            seen.add(ref.digest)
            path = f"/blobs/{ref.digest}"
            found = remote.store.request("HEAD", path, allow=(404, 410))
            if found.status_code == 200:
                continue
            data = home.ledger.store.get_blob(ref.digest)
            if data is None:
                raise InputError(
                    f"the local {entry.kind} references blob {ref.digest}, which "
                    "is not in this home (purged?), so the server would refuse it"
                )
            remote.store.put_blob(ref.digest, data)
            uploaded += 1
    return uploaded


def _post(
    remote: RemoteLedger,
    home: Home,
    batch: _Batch,
    checkpoint: str,
    genesis: str,
    result: PushResult,
) -> None:
    from mltrail.ledger.remote_append import post_entries

    signer = home.ledger.signer
    assert signer is not None
    body = {
        "origin": home.ledger.origin,
        "key": genesis,
        "from": batch.start,
        "to": batch.stop,
        "count": len(batch.entries),
        "checkpoint": checkpoint,
    }
    now = format_time(home.ledger.clock.now())
    header = sign_entry(Entry(PUSHED_KIND, now, remote.ledger.actor, body), signer)
    tag = f"{home.ledger.origin}\n{genesis}\n{batch.start}\n{batch.stop}\n"
    key = "mltrail-push-" + hashlib.sha256(tag.encode()).hexdigest()
    try:
        records = post_entries(
            remote.store, remote.trust, [header, *batch.entries], remote.trust.origin,
            key=key,
        )  # fmt: skip
    except InputError as e:
        if "(HTTP 409)" in str(e):
            raise InputError(
                f"records {batch.start} to {batch.stop - 1} were pushed meanwhile by "
                "another push of this ledger",
                hint="run `mltrail push` again once the other one is done",
            ) from e
        raise
    result.pushed += len(batch.entries)
    result.batches += 1
    result.checkpoint = remote.trust.checkpoint
    result.server_size = records[-1].seq + 1
    if result.checkpoint is not None:
        result.server_size = parse_signed_checkpoint(result.checkpoint).checkpoint.size
