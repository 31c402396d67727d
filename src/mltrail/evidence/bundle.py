"""Export a proof bundle: a run or a model, its lineage, and the proofs of it all.

    >>> export_bundle(ledger, index, "model:9f3c...")  # doctest: +SKIP

What belongs to the subject is found through the index (see :mod:`mltrail.audit.trace`):
the runs of its upstream lineage (data steps, the runs that made its base
models), with every record of each run; then the records about the models,
files and datasets of that lineage (promotions, approvals, descriptions,
flags, seals, holds), the sources it was read from, the notes about any record
already chosen, the gates (``stage.gated``) of the stages its promotions name,
the blob.purged records of blobs they reference, and every key record. The
bundle format and its checks live in :mod:`mltrail.core.bundle`.
"""

from __future__ import annotations

from functools import cache
from typing import TYPE_CHECKING, Any

from mltrail.audit.trace import build_lineage, run_outputs
from mltrail.core.bundle import compose_bundle
from mltrail.core.chain import KEY_KINDS
from mltrail.core.checkpoint import (
    check_note_signatures,
    parse_checkpoint_body,
    parse_note,
    parse_signed_checkpoint,
)
from mltrail.core.codec import decode_record, find_blob_refs
from mltrail.core.erasure import PURGE_KIND
from mltrail.core.evidence import COSIGNATURE, RFC3161
from mltrail.core.merkle import consistency_proof, inclusion_proof, range_root
from mltrail.errors import InputError, IntegrityError, MltrailError
from mltrail.evidence.policy import evidence_for

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from mltrail.core.codec import DecodedRecord
    from mltrail.index import Index
    from mltrail.ledger.ledger import Ledger

__all__ = ["ABOUT_KINDS", "export_bundle", "select_records"]

ABOUT_KINDS = (
    "model.promoted",
    "model.approved",
    "model.described",
    "model.flagged",
    "model.sealed",
    "hold.added",
    "hold.released",
    "source.registered",
    "source.checked",
    "note",
)
"""Kinds of records about a model, dataset, source or record, not always of a run."""

GATE_KIND = "stage.gated"
"""The approvals a stage requires: carried for every stage a carried promotion
enters or leaves, so a promotion is read with the gate it passed."""


def export_bundle(
    ledger: Ledger,
    index: Index,
    node: str,
    *,
    blobs: bool = True,
    consistent_with: Sequence[tuple[str, str]] = (),
) -> dict[str, Any]:
    """The bundle (JSON form) of the lineage node ``node`` (``run:...``, ``model:...``).

    Every proof leads to the newest checkpoint, which is checked first as an
    append would check it. Call it, and derive ``index``, inside one
    ``ledger.store.snapshot()`` (``read_in_snapshot``, as `mltrail export`
    does): read apart, another client's append between two reads makes the
    newest checkpoint read not the head's (an InputError on a busy server).
    ``consistent_with`` holds ``(where from, text)`` of
    signed checkpoints of this ledger someone kept (an auditor's): each becomes
    an evidence group with no items, its text and the RFC 9162 consistency
    proof from its size to the bundle's checkpoint (see
    :func:`consistency_group`).

    Raises:
        InputError: the ledger has no checkpoint; a ``consistent_with``
            checkpoint is unreadable, of another ledger, or not signed by a log
            key of this ledger valid at its size.
        IntegrityError: the newest checkpoint does not hold (see
            ``Ledger.checkpoint``); a ``consistent_with`` checkpoint's root is
            not this ledger's at its size, or its size is beyond the ledger's
            (the ledger was forked, rewritten or cut).
    """
    signed = ledger.checkpoint()
    size = signed.checkpoint.size
    latest = ledger.latest_checkpoint()
    if latest is None or latest[0] != size:
        raise InputError("the ledger's newest checkpoint does not cover every record")
    text = latest[1]
    store = ledger.store
    nodes = cache(store.node)  # proofs of neighbours share most of their nodes
    kept = [
        consistency_group(ledger, where, old, size, nodes)
        for where, old in consistent_with
    ]
    chosen = select_records(ledger, index, node)
    records = [
        (seq, decoded.record_bytes, inclusion_proof(seq, size, nodes))
        for seq, decoded in sorted(chosen.items())
    ]
    return compose_bundle(
        origin=ledger.origin,
        subject={"node": node},
        checkpoint=text,
        records=records,
        blobs=list(_blobs(ledger, chosen.values(), carry=blobs)),
        evidence=[*_evidence(ledger, size), *_unique(kept)],
    )


def consistency_group(
    ledger: Ledger, where: str, text: str, size: int, nodes: Any
) -> tuple[str, list[bytes], list[dict[str, Any]]]:
    """``(text, consistency proof to size, [])``: the evidence group that shows
    the bundle's checkpoint of ``size`` extends the kept checkpoint ``text``.

    The kept checkpoint must be this ledger's (origin), signed by a log key of
    it valid at its size, with no line of such a key failing; then its root
    must be the ledger's root at its size. A signed root that differs is two
    signed histories of one ledger: a fork or a rewrite (``IntegrityError``).

    Raises:
        InputError: unreadable, of another ledger, or not signed by this ledger.
        IntegrityError: its root is not the ledger's at its size, or the ledger
            holds fewer records than it covers.
    """
    label = f"--consistent-with {where}"
    try:
        note = parse_note(text)
        checkpoint = parse_checkpoint_body(note.body)
    except MltrailError as e:
        raise InputError(f"{label} is not a signed checkpoint: {e}") from e
    if checkpoint.origin != ledger.origin:
        raise InputError(
            f"{label} is a checkpoint of the ledger {checkpoint.origin!r}, "
            f"not of this one ({ledger.origin!r})"
        )
    old = checkpoint.size
    if old == 0:
        raise InputError(
            f"{label} is a checkpoint of the empty tree: it proves nothing"
        )
    valid = ledger.keys().valid_keys(min(old, size))
    good, bad = check_note_signatures(
        note, name=ledger.origin, public_keys=list(valid.values())
    )
    if bad or not good:
        why = (
            "a signature line of a key of this ledger does not verify"
            if bad
            else (f"no log key of this ledger valid at size {old} signed it")
        )
        raise InputError(
            f"{label} is not signed by this ledger: {why}",
            hint="give a checkpoint this ledger signed (`mltrail checkpoint` prints one)",
        )
    if old > size:
        raise IntegrityError(
            f"{label} covers {old} records but this ledger holds only {size}: it "
            "signed more records than it now has, so records were cut from the end "
            "or the ledger was rolled back or forked (a consistency proof cannot exist)"
        )
    root = range_root(0, old, nodes)
    if root != checkpoint.root:
        raise IntegrityError(
            f"{label} has root {checkpoint.root.hex()[:16]}... at size {old}, but "
            f"this ledger's records 0 to {old - 1} hash to {root.hex()[:16]}...: "
            "this ledger's key signed another history, so the ledger was forked or "
            "those records rewritten since that checkpoint (no consistency proof "
            "can exist)"
        )
    proof = consistency_proof(old, size, nodes) if old < size else []
    return text, proof, []


def _unique(
    groups: list[tuple[str, list[bytes], list[dict[str, Any]]]],
) -> Iterator[tuple[str, list[bytes], list[dict[str, Any]]]]:
    seen: set[str] = set()
    for group in groups:
        if group[0] not in seen:
            seen.add(group[0])
            yield group


def select_records(ledger: Ledger, index: Index, node: str) -> dict[int, DecodedRecord]:
    """The records that belong to ``node``'s bundle, by seq."""
    graph = build_lineage(index, node, upstream=True)
    ids: dict[str, set[str]] = {}
    for node_id in graph.nodes:
        kind, _, ident = node_id.partition(":")
        ids.setdefault(kind, set()).add(ident)
    runs, sources = ids.get("run", set()), ids.get("source", set())
    things = ids.get("model", set()) | ids.get("file", set()) | ids.get("data", set())
    kind, _, ident = node.partition(":")
    if kind == "run":
        things |= {o.partition(":")[2] for o in run_outputs(index, ident)}
    seqs = _run_seqs(index, runs)
    chosen = dict(_decoded(ledger, seqs))
    for seq, decoded in _decoded_kinds(ledger, (*KEY_KINDS, *ABOUT_KINDS)):
        if seq not in chosen and _about(decoded, runs, things, sources, chosen):
            chosen[seq] = decoded
    stages = {
        d.record.entry.body.get("stage")
        for d in chosen.values()
        if d.record.entry.kind == "model.promoted"
    }
    for seq, decoded in _decoded_kinds(ledger, (GATE_KIND,)):
        if decoded.record.entry.body.get("stage") in stages:
            chosen[seq] = decoded  # the approvals the stage required, and when
    digests = {ref.digest for d in chosen.values() for ref in _refs(d)}
    for seq, decoded in _decoded_kinds(ledger, (PURGE_KIND,)):
        if decoded.record.entry.body.get("digest") in digests:
            chosen[seq] = decoded
    return chosen


def _about(
    decoded: DecodedRecord,
    runs: set[str],
    things: set[str],
    sources: set[str],
    chosen: dict[int, DecodedRecord],
) -> bool:
    entry = decoded.record.entry
    body = entry.body
    if entry.kind in KEY_KINDS:
        return True
    if entry.kind.startswith("source."):
        return body.get("name") in sources
    if entry.kind.startswith("hold."):
        return body.get("id") in (runs if body.get("target") == "run" else things)
    if entry.kind == "note":
        return body.get("refers_to") in chosen or entry.run in runs
    return body.get("model") in things


def _run_seqs(index: Index, runs: set[str]) -> list[int]:
    seqs: set[int] = set()
    for run in runs:
        seqs.update(
            r[0] for r in index.query("SELECT seq FROM records WHERE run = ?", (run,))
        )
    return sorted(seqs)


def _decoded(ledger: Ledger, seqs: list[int]) -> Iterator[tuple[int, DecodedRecord]]:
    wanted = set(seqs)
    for start, stop in _ranges(seqs):
        for row in ledger.store.rows(start, stop):
            if row.seq in wanted:
                yield row.seq, decode_record(row.data)


def _decoded_kinds(
    ledger: Ledger, kinds: tuple[str, ...]
) -> Iterator[tuple[int, DecodedRecord]]:
    """Records of ``kinds``; a note is read only when it refers to a record (notes
    of a run are found through the index), since most ledgers hold many."""
    for row in ledger.store.rows_of_kinds(kinds):
        if b'"kind":"note"' in row.data and b'"refers_to":' not in row.data:
            continue
        yield row.seq, decode_record(row.data)


def _ranges(seqs: list[int], gap: int = 64) -> Iterator[tuple[int, int]]:
    if not seqs:
        return
    start = prev = seqs[0]
    for seq in seqs[1:]:
        if seq - prev > gap:
            yield start, prev + 1
            start = seq
        prev = seq
    yield start, prev + 1


def _refs(decoded: DecodedRecord) -> Iterator[Any]:
    return find_blob_refs(decoded.record.entry.body)


def _blobs(
    ledger: Ledger, chosen: Any, *, carry: bool
) -> Iterator[tuple[str, int, bytes | None]]:
    sizes: dict[str, int] = {}
    for decoded in chosen:
        for ref in _refs(decoded):
            sizes.setdefault(ref.digest, ref.size)
    for digest, size in sorted(sizes.items()):
        yield digest, size, ledger.store.get_blob(digest) if carry else None


def _evidence(
    ledger: Ledger, size: int
) -> Iterator[tuple[str, list[bytes], list[dict[str, Any]]]]:
    texts: dict[str, int] = {}
    for row in ledger.store.evidence():
        if row.kind in (RFC3161, COSIGNATURE) and 0 < row.size <= size:
            texts.setdefault(row.checkpoint, row.size)
    for text, old in sorted(texts.items(), key=lambda t: (t[1], t[0])):
        if parse_signed_checkpoint(text).checkpoint.size != old:
            continue
        proof = consistency_proof(old, size, ledger.store.node) if old < size else []
        items = [e.to_dict() for e in evidence_for(ledger.store, text)]
        yield text, proof, items
