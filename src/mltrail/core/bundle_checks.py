"""The checks :func:`mltrail.core.bundle.verify_bundle` runs, one part of a bundle each.

Each adds problems to the report and never raises on what the bundle holds; a
problem names the record (its seq) or the blob or checkpoint it is about.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from itertools import pairwise
from typing import TYPE_CHECKING, Any

from mltrail.core.anchored_time import LatestDated
from mltrail.core.bundle_gates import Carried, gate_warnings
from mltrail.core.canonical import (
    ZERO_HASH,
    compute_blob_digest,
    compute_leaf_hash,
)
from mltrail.core.chain import KEY_KINDS, KeyRing
from mltrail.core.checkpoint import (
    check_note_signatures,
    is_valid_key_name,
    parse_checkpoint_body,
    parse_note,
)
from mltrail.core.codec import (
    BlobRef,
    DecodedRecord,
    decode_record,
    find_blob_refs,
    parse_json,
)
from mltrail.core.erasure import PURGE_KIND, PurgeNote
from mltrail.core.evidence import (
    COSIGNATURE,
    Evidence,
    EvidenceStatus,
    failed_evidence,
    signed_in_the_future,
    verify_evidence,
)
from mltrail.core.merkle import verify_consistency, verify_inclusion
from mltrail.core.report import Anchor, Problem, Severity
from mltrail.core.signing import decode_b64, verify_signature
from mltrail.errors import ConfigError, MltrailError

if TYPE_CHECKING:
    from mltrail.core.bundle import BundlePolicy, BundleReport

__all__ = [
    "MAX_LISTED",
    "BundleContext",
    "check_blobs",
    "check_checkpoint",
    "check_evidence",
    "check_future",
    "check_gates",
    "check_records",
    "check_subject",
    "check_trusted_checkpoints",
]

_HEX = re.compile(r"[0-9a-f]{64}")

MAX_LISTED = 1000
"""Problems of one code a report lists; the rest are counted in one more."""


@dataclass
class BundleContext:
    """What the checks share: the report, the policy, and what was learned so far."""

    report: BundleReport
    policy: BundlePolicy
    note_text: str = ""
    note_signers: dict[str, bytes] = field(default_factory=dict)
    """Key hash lines of the checkpoint, checked once the key ring is known."""
    records: dict[int, DecodedRecord] = field(default_factory=dict)
    keyring: KeyRing = field(default_factory=KeyRing)
    bad_seqs: set[int] = field(default_factory=set)
    blobs: dict[str, bytes] = field(default_factory=dict)
    """Carried blobs whose bytes match their digest."""
    manifests: set[str] = field(default_factory=set)
    """Digests of the blobs a record gives as a dataset's ``manifest``."""
    listed: dict[str, int] = field(default_factory=dict)
    """Problems kept, by code."""
    unlisted: dict[tuple[str, Severity], int] = field(default_factory=dict)
    """Problems past :data:`MAX_LISTED` of their code, counted, not kept."""
    extends: dict[int, set[bytes]] = field(default_factory=dict)
    """Roots, by size, of the evidence checkpoints the bundle's checkpoint is
    proven to extend (consistency proof verified, signed by a valid key)."""
    unproven: set[int] = field(default_factory=set)
    """Sizes of evidence checkpoints whose consistency proof did not verify."""

    def problem(self, seq: int | None, code: str, message: str) -> None:
        self.add(Problem(seq, code, message))
        if seq is not None:
            self.bad_seqs.add(seq)

    def warn(self, seq: int | None, code: str, message: str) -> None:
        self.add(Problem(seq, code, message, Severity.WARNING))

    def add(self, problem: Problem) -> None:
        """Keep ``problem``, or only count it past :data:`MAX_LISTED` of its code
        (a bundle of a million malformed items made a million problems: gigabytes
        of report, and as many lines printed, from megabytes of input)."""
        kept = self.listed.get(problem.code, 0)
        if kept < MAX_LISTED:
            self.listed[problem.code] = kept + 1
            self.report.problems.append(problem)
            return
        key = (problem.code, problem.severity)
        self.unlisted[key] = self.unlisted.get(key, 0) + 1

    def finish(self) -> None:
        """Add one problem per code saying how many more were not listed."""
        for (code, severity), count in self.unlisted.items():
            if severity is Severity.ERROR:
                self.report.errors_unlisted += count - 1
            self.report.problems.append(
                Problem(
                    None,
                    code,
                    f"{count:,} more {code} problem(s) like the {MAX_LISTED:,} above "
                    "are not listed",
                    severity,
                )
            )
        self.unlisted.clear()


# -- the checkpoint ------------------------------------------------------------


def check_checkpoint(ctx: BundleContext, text: str, origin: str) -> bool:
    """Parse the checkpoint (its signature is checked once the keys are known)."""
    try:
        checkpoint = parse_checkpoint_body(parse_note(text).body)
    except MltrailError as e:
        ctx.problem(None, "checkpoint", f"the checkpoint is unreadable: {e}")
        return False
    if checkpoint.origin != origin:
        ctx.problem(
            None,
            "origin",
            f"the checkpoint is of the ledger {checkpoint.origin!r}, but the bundle "
            f"says {origin!r}: it was taken from another ledger",
        )
        return False
    pinned = set(ctx.policy.trusted_origins)
    if pinned and origin not in pinned:
        ctx.problem(
            None,
            "origin",
            f"the bundle is of the ledger {origin!r}, but the trusted key is of "
            f"{', '.join(sorted(pinned))}",
        )
        return False
    if not is_valid_key_name(origin) or checkpoint.size == 0:
        ctx.problem(None, "checkpoint", "the checkpoint names no valid ledger or tree")
        return False
    ctx.note_text = text
    ctx.report.size, ctx.report.root = checkpoint.size, checkpoint.root
    return True


def _check_note_signed(
    ctx: BundleContext,
    text: str,
    size: int,
    what: str,
    trusted: set[str] | None = None,
) -> bool:
    """Whether a key valid at ``size`` signed ``text`` and no such key's line fails.

    With ``trusted`` (key ids), one of the keys that signed it must be among them.
    """
    valid = ctx.keyring.valid_keys(size)
    try:
        note = parse_note(text)
    except MltrailError as e:
        ctx.problem(None, "checkpoint", f"{what} is unreadable: {e}")
        return False
    good, bad = check_note_signatures(
        note, name=ctx.report.origin, public_keys=list(valid.values())
    )
    if not bad and good and trusted is not None:
        signers = sorted(k for k, key in valid.items() if key in good)
        if not set(signers) & trusted:
            ctx.problem(
                None,
                "checkpoint-untrusted",
                f"{what} is signed by key {signers[0][:16]}..., which is neither a "
                "trusted key (--trust-key) nor a key one of them added: the bundle "
                "was made or re-signed by someone else, who made the trusted key "
                "one of their own ledger's keys",
            )
            return False
    if bad or not good:
        why = "a signature line does not verify" if bad else "no key of the ledger"
        author = _author_signature(ctx, note, size)
        ctx.problem(
            None,
            "author-checkpoint" if author else "checkpoint-signature",
            f"{what} is not signed by a key valid at size {size}: {why} "
            f"(the checkpoint was altered, or signed by another key){author}",
        )
        return False
    return True


def _author_signature(ctx: BundleContext, note: Any, size: int) -> str:
    """``"; it is signed by author key ..."`` when an author key signed it, else ""."""
    for key_id, state in ctx.keyring.keys.items():
        if state.identity is None:
            continue
        good, _ = check_note_signatures(
            note, name=ctx.report.origin, public_keys=[state.public_key]
        )
        problem = ctx.keyring.signer_problem(key_id, size)
        if good and problem is not None and problem.code == "author-checkpoint":
            return f"; it is {problem}"
    return ""


# -- records -------------------------------------------------------------------


def check_records(ctx: BundleContext, items: list[Any], listed: list[int]) -> None:
    """Decode each record, prove it in the checkpoint, then keys, signatures, links."""
    for i, item in enumerate(items):
        _check_one(ctx, i, item)
    seqs = set(ctx.records)
    for seq in sorted(set(listed) - seqs):
        ctx.problem(
            seq, "missing", f"record {seq} is in the bundle's contents but missing"
        )
    for seq in sorted(seqs - set(listed)):
        ctx.problem(seq, "unlisted", f"record {seq} is not in the bundle's contents")
    twice = next((b for a, b in pairwise(listed) if b <= a), None)
    if twice is not None:  # the contents say how many records are carried
        ctx.problem(
            twice,
            "unlisted",
            f"the bundle's contents (subject.seqs) list record {twice} twice or out "
            "of order: they list each carried record once, ascending",
        )
    _build_keyring(ctx)
    signed = _check_pins(ctx) and _check_note_signed(
        ctx,
        ctx.note_text,
        ctx.report.size,
        "the bundle's checkpoint",
        trusted=_trusted_keys(ctx) if ctx.policy.trusted_keys else None,
    )
    if signed:
        ctx.report.anchors.append(_key_anchor(ctx))
    for seq in sorted(ctx.records):
        _check_signature(ctx, ctx.records[seq])
        _check_link(ctx, seq)
    ctx.report.records_checked = len(ctx.records) if signed else 0


def _check_one(ctx: BundleContext, i: int, item: Any) -> None:
    if not isinstance(item, dict) or set(item) != {"seq", "record", "inclusion"}:
        ctx.problem(None, "record", f"records[{i}] is not {{seq, record, inclusion}}")
        return
    seq, text, proof = item["seq"], item["record"], item["inclusion"]
    if type(seq) is not int or not isinstance(text, str) or not isinstance(proof, list):
        ctx.problem(None, "record", f"records[{i}] has a member of the wrong type")
        return
    if seq in ctx.records:
        ctx.problem(seq, "duplicate", f"record {seq} is in the bundle twice")
        return
    try:
        data = text.encode("utf-8")
        decoded = decode_record(data)
    except (MltrailError, UnicodeEncodeError, RecursionError) as e:
        ctx.problem(seq, "record", f"record {seq} is unreadable: {e}")
        return
    if decoded.record.seq != seq:
        ctx.problem(seq, "seq", f"record {seq} says it is record {decoded.record.seq}")
        return
    if not _proven(ctx, seq, compute_leaf_hash(data), proof):
        return
    ctx.records[seq] = decoded


def _proven(ctx: BundleContext, seq: int, leaf: bytes, proof: list[Any]) -> bool:
    hashes = _hashes(proof)
    root, size = ctx.report.root, ctx.report.size
    try:
        if hashes is None or root is None:
            raise MltrailError("the proof is not a list of SHA-256 hashes in hex")
        verify_inclusion(seq, size, leaf, hashes, root)
    except MltrailError as e:
        ctx.problem(
            seq,
            "inclusion",
            f"record {seq} is not proven in the checkpoint of size {size} "
            f"(the record or its proof was altered): {e}",
        )
        return False
    return True


def _hashes(items: Any) -> list[bytes] | None:
    if not isinstance(items, list):
        return None
    if not all(isinstance(h, str) and _HEX.fullmatch(h) for h in items):
        return None
    return [bytes.fromhex(h) for h in items]


def _build_keyring(ctx: BundleContext) -> None:
    if 0 not in ctx.records:
        ctx.problem(
            0, "genesis", "the bundle lacks record 0 (the key that started the ledger)"
        )
    ctx.keyring.origin = ctx.report.origin or None
    for seq in sorted(ctx.records):
        entry = ctx.records[seq].record.entry
        if entry.kind in KEY_KINDS and entry.sig is not None:
            why = ctx.keyring.apply(seq, entry.kind, dict(entry.body), entry.sig.key)
            if why is not None:
                ctx.problem(seq, why.code, f"record {seq}: {why}")


def _check_pins(ctx: BundleContext) -> bool:
    """False (and a problem) when no pinned key is a key of the bundle's ledger."""
    pins = set(ctx.policy.trusted_keys)
    if not pins or pins & set(ctx.keyring.keys):
        return True
    genesis = ctx.keyring.genesis_key or "?"
    ctx.problem(
        0,
        "trust-key",
        f"the bundle's ledger was started by key {genesis[:16]}... and none of the "
        "trusted keys is a key of it: it is not of the ledger you trust, or it was "
        "re-signed",
    )
    return False


def _trusted_keys(ctx: BundleContext) -> set[str]:
    """The pinned keys and, in seq order, the keys a trusted key added.

    Being a key of the bundle's ledger is not enough: anyone can make a ledger of
    their own and add a published public key to it, with no need of its private
    key. Trust passes only along ``key.added`` records a trusted key signed (as
    ``mltrail verify --trust-key`` does).
    """
    trusted = set(ctx.policy.trusted_keys)
    for seq in sorted(ctx.records):
        decoded = ctx.records[seq]
        entry = decoded.record.entry
        if (
            entry.kind == "key.added"
            and entry.sig is not None
            and entry.sig.key in trusted
            and seq not in ctx.bad_seqs
            and _signature_problem(ctx, decoded) is None
        ):
            trusted.add(str(entry.body.get("key")))
    return trusted


def _key_anchor(ctx: BundleContext) -> Anchor:
    if ctx.policy.trusted_keys:
        names = ", ".join(f"{k[:16]}..." for k in sorted(ctx.policy.trusted_keys))
        return Anchor("key", f"key {names} (pinned with --trust-key)", True)
    # the whole key id: a reader compares it with the one the owner published,
    # and 16 hex digits (64 bits) is a prefix a forger can grind a key for
    genesis = ctx.keyring.genesis_key or "?"
    ctx.warn(
        None,
        "unpinned",
        f"the keys came from the bundle itself (unpinned; genesis key {genesis}):"
        " anyone can make a bundle that verifies this way; pass --trust-key with "
        "the ledger's key (`mltrail keys export`) to prove whose ledger it is",
    )
    return Anchor("key", f"genesis key {genesis} from the bundle (unpinned)", False)


def _check_signature(ctx: BundleContext, decoded: DecodedRecord) -> None:
    why = _signature_problem(ctx, decoded)
    if why is not None:
        seq = decoded.record.seq
        ctx.problem(seq, why[0], f"record {seq}: {why[1]}")


def _signature_problem(
    ctx: BundleContext, decoded: DecodedRecord
) -> tuple[str, str] | None:
    """(code, why) when the record is not validly signed by a key valid at its seq."""
    seq, entry = decoded.record.seq, decoded.record.entry
    if entry.sig is None:
        return "signature", "it carries no signature"
    why = ctx.keyring.signer_problem(
        entry.sig.key, seq, entry.kind, entry.actor.get("user")
    )
    if why is not None:
        return why.code, str(why)
    try:
        signature = decode_b64(entry.sig.value)
    except ValueError:
        signature = b""
    public_key = ctx.keyring.keys[entry.sig.key].public_key
    if not verify_signature(public_key, decoded.signing_bytes, signature):
        return "signature", "the signature does not verify"
    return None


def _check_link(ctx: BundleContext, seq: int) -> None:
    prev = ctx.records[seq].record.prev
    if seq == 0 and prev != ZERO_HASH:
        ctx.problem(0, "chain", "record 0 does not start the chain (prev is not zeros)")
    before = ctx.records.get(seq - 1)
    if before is not None and before.hash.hex() != prev:
        ctx.problem(
            seq, "chain", f"record {seq}'s prev is not the hash of record {seq - 1}"
        )


_SUBJECT_FIELDS = {
    "model": ("model",),
    "data": ("dataset", "model"),
    "file": ("sha256", "model"),
}
"""The body members (at any depth) a record names a model, dataset or file by (a
promotion names a dataset or file as its ``model``, with ``model_type``)."""


def check_subject(ctx: BundleContext, node: str) -> None:
    """A signed record names the subject: a run with records in the bundle, a source
    a ``source.*`` record is of, or a model, file or dataset id a record's body
    gives as its ``model``, ``sha256`` or ``dataset``, or a file a carried manifest
    lists (not any text that holds the id: the subject is what the reader is
    told the bundle is about; a manifest is a blob a record gives as a
    dataset's ``manifest``, not a log, script or attachment that happens to
    hold such a line). Runs after :func:`check_blobs`."""
    kind, _, ident = node.partition(":")
    entries = [d.record.entry for d in ctx.records.values()]
    if kind == "run":
        found = bool(ident) and any(e.run == ident for e in entries)
    elif kind == "source":
        found = any(
            e.kind.startswith("source.") and e.body.get("name") == ident
            for e in entries
        )
    elif kind in _SUBJECT_FIELDS and _HEX.fullmatch(ident):
        members = _SUBJECT_FIELDS[kind]
        found = any(ident in _named(e.body, members) for e in entries) or (
            kind == "file"
            and any(
                _lists_file(data, ident)
                for digest, data in ctx.blobs.items()
                if digest in ctx.manifests
            )
        )
    else:
        found = False
    if not found:
        unseen = ""
        if kind == "file" and ctx.report.blobs_absent:
            unseen = "; a manifest the bundle carries by hash only may list it"
        ctx.problem(
            None,
            "subject",
            f"no record of the bundle is of its subject {node[:80]!r} (a signed "
            f"record must name it as a run, source, model, file or dataset{unseen})",
        )


def _lists_file(manifest: bytes, sha: str) -> bool:
    """Whether a manifest (JSON lines) lists a file of content ``sha``."""
    needle = sha.encode()
    return any(
        needle in line and _line_sha(line) == sha for line in manifest.splitlines()
    )


def _line_sha(line: bytes) -> object:
    try:
        item = parse_json(line, what="manifest line")
    except MltrailError:
        return None
    return item.get("sha256") if isinstance(item, dict) else None


def _named(value: Any, members: tuple[str, ...]) -> set[str]:
    """The strings ``value`` holds under the keys ``members``, at any depth."""
    found: set[str] = set()
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, Mapping):
            for key, inner in item.items():
                if key in members and isinstance(inner, str):
                    found.add(inner)
                else:
                    stack.append(inner)
        elif isinstance(item, (list, tuple)):
            stack.extend(item)
    return found


# -- gates ---------------------------------------------------------------------


def check_gates(ctx: BundleContext) -> None:
    """A warning for each carried promotion that did not meet its stage's gate
    as the carried records before it stand (``gate-not-met``), or came under a
    gate just lowered (``gate-lowered``): see :mod:`mltrail.core.bundle_gates`.
    Warnings: a bundle is not proven complete. Runs after :func:`check_blobs`
    (a folder's files come from its carried manifest)."""
    records = {
        seq: Carried(seq, e.kind, e.run, e.actor.get("user"), e.body)
        for seq, decoded in ctx.records.items()
        if seq not in ctx.bad_seqs
        for e in (decoded.record.entry,)
    }
    for seq, code, message in gate_warnings(records, ctx.blobs):
        ctx.warn(seq, code, message)


# -- blobs ---------------------------------------------------------------------


def check_blobs(ctx: BundleContext, items: list[Any]) -> None:
    """Every blob a record references is listed; those carried match their hash."""
    refs: dict[str, list[tuple[int, BlobRef]]] = {}
    purged: dict[str, PurgeNote] = {}
    for seq, decoded in ctx.records.items():
        entry = decoded.record.entry
        if entry.kind == PURGE_KIND:
            note = PurgeNote.from_body(
                seq, entry.body, entry.actor.get("user"), entry.time
            )
            if note is not None:
                purged.setdefault(note.digest, note)
        for ref in find_blob_refs(entry.body):
            refs.setdefault(ref.digest, []).append((seq, ref))
            if ref.path.endswith(".manifest"):
                ctx.manifests.add(ref.digest)
    listed: dict[str, dict[str, Any]] = {}
    for i, item in enumerate(items):
        if not isinstance(item, dict) or set(item) != {"digest", "size", "data"}:
            ctx.problem(None, "blob", f"blobs[{i}] is not {{digest, size, data}}")
            continue
        digest = str(item["digest"])
        if digest in listed:
            ctx.problem(None, "blob", f"blob {digest} is listed twice")
        elif digest not in refs:
            ctx.problem(None, "blob", f"blob {digest} is referenced by no record")
        listed[digest] = item
    carried = any(item.get("data") is not None for item in listed.values())
    for digest, users in sorted(refs.items()):
        item = listed.get(digest)
        if (
            carried
            and item is not None
            and item["data"] is None
            and digest not in purged
        ):
            seq, ref = users[0]
            ctx.problem(
                seq,
                "blob-missing",
                f"blob {digest[:19]}... (record {seq}, {ref.path}): the bundle carries "
                "the other blobs' bytes but not this one's, and no blob.purged record "
                "names it",
            )
            continue
        _check_blob(ctx, digest, users, item, purged.get(digest))


def _check_blob(
    ctx: BundleContext,
    digest: str,
    users: list[tuple[int, BlobRef]],
    item: dict[str, Any] | None,
    purged: PurgeNote | None,
) -> None:
    seq, ref = users[0]
    where = f"blob {digest[:19]}... (record {seq}, {ref.path})"
    if item is None:
        ctx.problem(seq, "blob-missing", f"{where} is not in the bundle")
        return
    if item["size"] != ref.size:
        ctx.problem(
            seq, "blob", f"{where}: listed as {item['size']!r} bytes, not {ref.size}"
        )
        return
    if item["data"] is None:
        if purged is not None:
            ctx.warn(
                seq,
                "blob-purged",
                f"{where} was purged by the signed blob.purged record {purged.seq} "
                f"({purged.describe()})",
            )
            _purged_by_other(ctx, purged, users)
        ctx.report.blobs_absent += 1
        return
    data = _base64(item["data"])
    if data is None or len(data) != ref.size or compute_blob_digest(data) != digest:
        ctx.problem(seq, "blob", f"{where}: its content does not match its hash")
        return
    ctx.report.blobs_checked += 1
    ctx.blobs[digest] = data


def _purged_by_other(
    ctx: BundleContext, purged: PurgeNote, users: list[tuple[int, BlobRef]]
) -> None:
    """Warn when the purge's author signed none of the carried records that
    referenced the blob before it (as ``mltrail verify``'s ``purge-by-other``)."""
    authors: list[tuple[int, str]] = []
    for seq, _ in users:
        decoded = ctx.records.get(seq)
        user = decoded.record.entry.actor.get("user") if decoded else None
        if isinstance(user, str):
            authors.append((seq, user))
    message = purged.erased_others_work(authors)
    if message is not None:
        ctx.warn(purged.seq, "purge-by-other", message)


def _base64(text: Any) -> bytes | None:
    if not isinstance(text, str):
        return None
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None


# -- evidence ------------------------------------------------------------------


def check_evidence(ctx: BundleContext, groups: list[Any]) -> None:
    """Timestamps and cosignatures of the checkpoint, or of an earlier one it extends.

    An anchor names the records it covers (records 0 to ``size - 1`` of the
    checkpoint it is about), as ``mltrail verify``'s do; carried records newer
    than the newest checkpoint a required witness cosigned are ``unwitnessed``.
    """
    witnessed: dict[str, int] = {}
    failed: list[tuple[int, int, Any]] = []
    timed: list[tuple[int, Any, str]] = []
    for i, group in enumerate(groups):
        found = _evidence_checkpoint(ctx, i, group)
        if found is None:
            continue
        text, size = found
        for check in _checks(ctx, i, text, group["items"]):
            ctx.report.evidence.append(check)
            if check.status is EvidenceStatus.FAILED:
                failed.append((i, size, check))
            elif check.status is EvidenceStatus.UNVERIFIED:
                ctx.warn(
                    None, f"{check.kind}-unverified", f"evidence[{i}]: {check.message}"
                )
            else:
                if check.kind == COSIGNATURE:
                    witnessed[check.issuer] = max(size, witnessed.get(check.issuer, 0))
                _add_anchor(ctx, Anchor(check.kind, _covers(check, size), True))
                timed.append((size, check, f"evidence[{i}] ({check.issuer})"))
                future = (
                    signed_in_the_future(check, ctx.policy.now, f"evidence[{i}]", None)
                    if ctx.policy.now is not None
                    else None
                )
                if future is not None:
                    ctx.add(future)
    stamped = max((s for s, c, _ in timed if c.kind != COSIGNATURE), default=0)
    for i, size, check in failed:
        _failed_evidence(ctx, i, size, check, stamped, witnessed)
    _check_dates(ctx, timed)
    for key in ctx.policy.witness_keys:
        if key.short() not in witnessed:
            ctx.problem(
                None,
                "witness-missing",
                f"the bundle carries no valid cosignature by witness {key.short()}",
            )
        else:
            _check_witnessed(ctx, key.short(), witnessed[key.short()])


def _failed_evidence(
    ctx: BundleContext,
    i: int,
    size: int,
    check: Any,
    stamped: int,
    witnessed: dict[str, int],
) -> None:
    """A carried token or cosignature that does not verify: an error, unless a
    verified one of the same kind (a cosignature: by the same witness; one no
    witness can be told of: by every required witness) is about a checkpoint of
    the same or a larger size (:func:`~mltrail.core.evidence.failed_evidence`)."""
    if check.kind != COSIGNATURE:
        anchored = stamped
    elif check.issuer != "?":
        anchored = witnessed.get(check.issuer, 0)
    else:
        keys = [key.short() for key in ctx.policy.witness_keys]
        anchored = min((witnessed.get(key, 0) for key in keys), default=0)
    where = f"evidence[{i}]"
    ctx.add(
        failed_evidence(
            check, code=check.kind, seq=None, where=where, size=size, anchored=anchored
        )
    )


def check_future(ctx: BundleContext) -> None:
    """The latest-dated carried record, when dated more than the tolerance after
    the verifying machine's clock (``policy.now``): the warning ``future``, as
    ``mltrail verify`` gives it (a writer's clock ran ahead, the entry was dated
    forward, or this clock is behind)."""
    if ctx.policy.now is None:
        return
    dated = LatestDated()
    for seq in sorted(ctx.records):
        entry = ctx.records[seq].record.entry
        dated.see(seq, entry.kind, entry.time)
    found = dated.after(ctx.policy.now)
    if found is not None:
        ctx.add(found)


def _covers(check: Any, size: int) -> str:
    """An anchor's description: which records it covers, and by whom."""
    when = check.time.strftime("%Y-%m-%dT%H:%M:%SZ") if check.time else "?"
    if check.kind == COSIGNATURE:
        return (
            f"witness {check.issuer} cosigned the checkpoint of size {size} at "
            f"{when}: records 0 to {size - 1} are as that witness saw them"
        )
    return (
        f"records 0 to {size - 1} existed before {when}: the checkpoint of size "
        f"{size} is stamped by {check.issuer} (RFC 3161)"
    )


def _add_anchor(ctx: BundleContext, anchor: Anchor) -> None:
    if anchor not in ctx.report.anchors:  # the same evidence carried twice
        ctx.report.anchors.append(anchor)


def _check_witnessed(ctx: BundleContext, witness: str, size: int) -> None:
    """A warning naming the carried records newer than the newest checkpoint
    ``witness`` cosigned (``unwitnessed``, as ``mltrail verify`` says it): the
    witness never saw them, so they are the ledger key's word alone."""
    newer = sorted(seq for seq in ctx.records if seq >= size)
    if not newer:
        return
    listed = ", ".join(map(str, newer[:10])) + (", ..." if len(newer) > 10 else "")
    ctx.warn(
        newer[0],
        "unwitnessed",
        f"{len(newer)} carried record(s) ({listed}) are newer than the newest "
        f"checkpoint witness {witness} cosigned (size {size}): the witness never "
        "saw them, nor that the ledger only grew up to them",
    )


def _check_dates(ctx: BundleContext, timed: list[tuple[int, Any, str]]) -> None:
    """A carried record below ``size`` dated after the time a verified anchor
    ``(size, check, what)`` of the checkpoint of ``size`` attests, as ``mltrail
    verify`` reports it (``dated-after-anchor``, :mod:`mltrail.core.anchored_time`):
    an error for an RFC 3161 token, a warning for a cosignature (a witness's
    clock is not audited), or when a carried later ``clock.reset`` records a
    clock ahead. Once per record, however many anchors show it: the error when
    one of them is a token, whatever the order the bundle lists them in. One
    walk over the records marks every anchored size (a walk per anchor made a
    bundle repeating one token take records x tokens)."""
    timed = [t for t in timed if t[1].time is not None]
    if not timed:
        return
    dated, sizes = LatestDated(), sorted({size for size, _, _ in timed}, reverse=True)
    for seq in sorted(ctx.records):  # resets after an anchor are seen too
        while sizes and seq >= sizes[-1]:
            dated.mark(sizes.pop())
        entry = ctx.records[seq].record.entry
        dated.see(seq, entry.kind, entry.time)
    for size in sizes:
        dated.mark(size)
    worst: dict[int | None, Problem] = {}
    for size, check, what in timed:
        when = f"{what}, {check.time.strftime('%Y-%m-%dT%H:%M:%SZ')}"
        severity = Severity.WARNING if check.kind == COSIGNATURE else Severity.ERROR
        found = dated.problem(size, check.time, when, severity=severity)
        if found is None:
            continue
        # an error (a token) outranks a warning (a cosignature) about the same
        # record, whichever the bundle lists first
        kept = worst.get(found.seq)
        if kept is None or (
            found.severity is Severity.ERROR and kept.severity is not Severity.ERROR
        ):
            worst[found.seq] = found
    for found in worst.values():
        ctx.add(found)
        if found.severity is Severity.ERROR and found.seq is not None:
            ctx.bad_seqs.add(found.seq)


def _evidence_checkpoint(
    ctx: BundleContext, i: int, group: Any
) -> tuple[str, int] | None:
    if not isinstance(group, dict) or set(group) != {
        "checkpoint",
        "consistency",
        "items",
    }:
        ctx.problem(
            None, "evidence", f"evidence[{i}] is not {{checkpoint, consistency, items}}"
        )
        return None
    text, proof = group["checkpoint"], _hashes(group["consistency"])
    checkpoint = None
    try:
        if not isinstance(text, str):
            raise MltrailError("its checkpoint is malformed")
        checkpoint = parse_checkpoint_body(parse_note(text).body)
        if checkpoint.origin != ctx.report.origin:
            raise MltrailError(f"its checkpoint is of the ledger {checkpoint.origin!r}")
        if proof is None:
            raise MltrailError("its consistency proof is malformed")
        root, size = ctx.report.root or b"", ctx.report.size
        verify_consistency(checkpoint.size, size, checkpoint.root, root, proof)
    except MltrailError as e:
        if checkpoint is not None and checkpoint.origin == ctx.report.origin:
            ctx.unproven.add(checkpoint.size)
        ctx.problem(None, "evidence", f"evidence[{i}]: {e}")
        return None
    if not isinstance(group["items"], list):
        ctx.problem(None, "evidence", f"evidence[{i}]: its items are not a list")
        return None
    if not _check_note_signed(
        ctx, text, checkpoint.size, f"the checkpoint of evidence[{i}]"
    ):
        return None
    ctx.extends.setdefault(checkpoint.size, set()).add(checkpoint.root)
    return text, checkpoint.size


# -- checkpoints the verifier kept ----------------------------------------------


_EXPORT_FLAG = "mltrail export ... --consistent-with FILE"


def check_trusted_checkpoints(ctx: BundleContext) -> None:
    """Each checkpoint the verifier kept (``policy.trusted_checkpoints``) is one
    the bundle's checkpoint extends. Runs after :func:`check_records` (the key
    history) and :func:`check_evidence` (the proven consistency proofs).

    A kept checkpoint must be of the bundle's ledger, signed by a log key the
    bundle shows valid at its size (with ``--trust-key``, by a trusted one); at
    the bundle's size its root must be the bundle's; below it the bundle must
    carry a verified RFC 9162 consistency proof from that size and root (an
    evidence group, which ``export --consistent-with`` adds). Each that holds is
    an anchor outside the bundle; a root that differs at one size is a fork.
    """
    for where, text in ctx.policy.trusted_checkpoints:
        _check_trusted(ctx, where, text)


def _check_trusted(ctx: BundleContext, where: str, text: str) -> None:
    label = f"the trusted checkpoint ({where})"
    try:
        checkpoint = parse_checkpoint_body(parse_note(text).body)
    except MltrailError as e:
        ctx.problem(None, "trusted-checkpoint", f"{label} is unreadable: {e}")
        return
    size, root, old = ctx.report.size, ctx.report.root, checkpoint.size
    if checkpoint.origin != ctx.report.origin:
        ctx.problem(
            None,
            "trusted-checkpoint",
            f"{label} is of the ledger {checkpoint.origin!r}, but the bundle is of "
            f"{ctx.report.origin!r}: it says nothing about this bundle",
        )
        return
    if old > size:
        ctx.problem(
            None,
            "checkpoint-newer",
            f"the bundle (checkpoint of size {size}) is older than {label} (size "
            f"{old}): it cannot show that the ledger still extends that checkpoint; "
            f"ask for a bundle exported now, with `{_EXPORT_FLAG}`",
        )
        return
    if old == 0:
        ctx.problem(None, "trusted-checkpoint", f"{label} is of the empty tree")
        return
    pinned = _trusted_keys(ctx) if ctx.policy.trusted_keys else None
    if not _check_note_signed(ctx, text, old, label, trusted=pinned):
        return
    proven = ctx.extends.get(old, set()) | ({root} if old == size and root else set())
    if checkpoint.root in proven:
        _add_anchor(
            ctx,
            Anchor(
                "checkpoint",
                f"{label}, size {old}: the bundle's checkpoint (size {size}) extends "
                f"it, so records 0 to {old - 1} are as that checkpoint saw them",
                True,
            ),
        )
        return
    if proven:
        ctx.problem(
            None,
            "inconsistent",
            f"{label} has root {checkpoint.root.hex()[:16]}... at size {old}, but the "
            f"bundle's ledger signed root {sorted(proven)[0].hex()[:16]}... at that "
            "size: the ledger was forked or rewritten after that checkpoint was kept",
        )
    elif old in ctx.unproven:
        ctx.problem(
            None,
            "inconsistent",
            f"the bundle's consistency proof from size {old} does not verify (see the "
            f"evidence problem): nothing shows the bundle extends {label}; the "
            "bundle or its proof was altered, or the ledger rewritten",
        )
    else:
        ctx.problem(
            None,
            "consistency-missing",
            f"the bundle carries no consistency proof from {label} (size {old}) to "
            f"its own checkpoint (size {size}); ask for a bundle exported with "
            f"`{_EXPORT_FLAG}` giving that checkpoint",
        )


def _checks(ctx: BundleContext, i: int, text: str, items: list[Any]) -> list[Any]:
    try:
        evidence = [Evidence.from_dict(_mapping(item), text) for item in items]
        if not ctx.policy.witness_keys and any(e.kind == COSIGNATURE for e in evidence):
            ctx.warn(
                None,
                "cosignature-unchecked",
                f"evidence[{i}] holds cosignatures; --witness-key names the "
                "witnesses whose cosignatures count",
            )
        return verify_evidence(
            text,
            evidence,
            tsa_roots=ctx.policy.tsa_roots,
            witness_keys=ctx.policy.witness_keys,
        )
    except ConfigError as e:
        ctx.warn(None, "timestamp-unchecked", f"evidence[{i}] was not checked: {e}")
    except (MltrailError, ValueError) as e:
        ctx.problem(None, "evidence", f"evidence[{i}] is malformed: {e}")
    return []


def _mapping(item: Any) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise MltrailError("an evidence item is not an object")
    return item
