"""What a model report says, gathered from the ledger as plain JSON values.

Sections follow the EU AI Act's Annex IV (technical documentation) and the
Federal Reserve's SR 11-7 (model risk management): description and intended
purpose, owner and risk tier, development process and code, data and data
governance, training choices, fine-tuning, validation, approvals, promotions,
open flags, and record-keeping (the verification verdict and its anchors).

Entries of kinds the index does not know (``model.described``,
``model.approved``, ``model.sealed``) are read from the ledger by kind, so the
report works whichever engineer's writer made them. Every value is the ledger's
and untrusted: the renderers escape it.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from mltrail.audit.query import load_run
from mltrail.audit.trace import (
    MAX_CLAIMANTS_SHOWN,
    build_lineage,
    latest_writer,
    writer_runs,
)
from mltrail.core.codec import parse_json
from mltrail.errors import IntegrityError, MltrailError
from mltrail.evidence.policy import list_timestamps

if TYPE_CHECKING:
    from pathlib import Path

    from mltrail.audit.query import RunView
    from mltrail.core.report import VerificationReport
    from mltrail.evidence.policy import EvidencePolicy
    from mltrail.index import Index
    from mltrail.ledger.home import Home

__all__ = ["MAX_FILES", "MODEL_KINDS", "bundle_facts", "gather_report"]

MAX_FILES = 200
"""Files listed per dataset (the manifest blob holds them all)."""

MODEL_KINDS = (
    "model.described",
    "model.approved",
    "model.promoted",
    "model.flagged",
    "model.sealed",
)
_DESCRIBED = ("purpose", "owner", "risk_tier", "limitations")


def gather_report(
    home: Home,
    index: Index,
    node: str,
    *,
    verification: VerificationReport | None,
    bundle: dict[str, Any] | None = None,
    evidence: EvidencePolicy | None = None,
) -> dict[str, Any]:
    """Every section of the report of the model (or file) ``node`` as JSON values.

    ``evidence`` (the policy ``verification`` was made with) says which TSA CAs
    the listed timestamp tokens are checked against.
    """
    kind, _, ident = node.partition(":")
    graph = build_lineage(index, node, upstream=True)
    run_id, path = latest_writer(index, node)
    view = load_run(home, index, run_id) if run_id else None
    entries = _model_entries(home, ident)
    open_flags, cleared_flags = _flags(entries["model.flagged"])
    report: dict[str, Any] = {
        "model": {
            "id": ident,
            "type": kind,
            "label": graph.nodes[node].label,
            "path": path,
            **_claimants(home, index, node),
        },
        "description": _description(entries["model.described"]),
        "development": _development(view),
        "data": _data(home, view, intact=verification is not None and verification.ok),
        "preprocessing": _preprocessing(home, index, graph, run_id),
        "training": _training(view),
        "finetune": _finetune(view),
        "validation": _validation(view),
        "approvals": _approvals(index, node, entries["model.approved"]),
        "promotions": [_promotion(index, r) for r in entries["model.promoted"]],
        "flags": open_flags,
        "cleared_flags": cleared_flags,
        "sealed": [_event(r, ("runs", "reason")) for r in entries["model.sealed"]],
        "lineage": graph.to_dict(),
        "record_keeping": _record_keeping(home, verification, bundle, evidence),
    }
    return report


def _claimants(home: Home, index: Index, node: str) -> dict[str, Any]:
    """``made_by``: the runs that say they wrote ``node``, oldest claim first,
    with who started each: any writer can record the same output bytes in a run
    of its own, so the sections that describe one run (the latest claim) must not
    hide the others. Of more than :data:`MAX_CLAIMANTS_SHOWN`, the oldest and the
    latest claims, half each; ``made_by_count`` counts them all."""
    runs = writer_runs(index, node)
    half = MAX_CLAIMANTS_SHOWN // 2
    shown = runs if len(runs) <= MAX_CLAIMANTS_SHOWN else runs[:half] + runs[-half:]
    found = []
    for run in shown:
        summary = load_run(home, index, run).summary.to_dict()
        found.append({
            k: summary.get(k)
            for k in ("id", "name", "user", "claimed_user", "host", "started", "status")
        })  # fmt: skip
    return {"made_by": found, "made_by_count": len(runs)}


def bundle_facts(path: Path, *, subject: str | None = None) -> dict[str, Any]:
    """The SHA-256 and size of a proof bundle file, and what checking it found.

    A report that quotes a bundle's digest reads as vouching for it, so the
    bundle is checked as ``mltrail verify-bundle`` does (keys from the bundle
    itself): ``ok``, ``verdict``, its ``subject``, and ``of_this_model``
    (whether that is ``subject``, the report's model).

    Raises:
        OSError: it cannot be read.
    """
    from mltrail.core.bundle import BundlePolicy, verify_bundle_bytes

    data = path.read_bytes()
    found = verify_bundle_bytes(data, BundlePolicy())
    return {
        "path": str(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "ok": found.ok,
        "verdict": found.verdict(),
        "subject": found.subject or None,
        "of_this_model": subject is not None and found.subject == subject,
    }


# -- entries about the model -------------------------------------------------------


def _model_entries(home: Home, ident: str) -> dict[str, list[Any]]:
    found: dict[str, list[Any]] = {k: [] for k in MODEL_KINDS}
    for record in home.ledger.records_of_kinds(MODEL_KINDS):
        if record.entry.body.get("model") == ident:
            found[record.entry.kind].append(record)
    return found


def _event(record: Any, keys: tuple[str, ...]) -> dict[str, Any]:
    entry = record.entry
    body = entry.body
    actor = entry.actor or {}
    out = {
        "seq": record.seq,
        "time": entry.time,
        "user": actor.get("user"),
        "key": entry.sig.key if entry.sig else None,
    }
    return out | {k: body.get(k) for k in keys if body.get(k) is not None}


def _approvals(index: Index, node: str, records: list[Any]) -> list[dict[str, Any]]:
    """Each decision, with ``trained_it`` when its approver is one of the model's
    trainers: such an approval never counts toward a gate, and the table must
    say so beside the name."""
    from mltrail.audit.governance import trainers

    made_by = set(trainers(index, node))
    found = []
    for record in records:
        event = _event(record, ("stage", "decision", "note", "run"))
        event["trained_it"] = event["user"] in made_by
        found.append(event)
    return found


def _promotion(index: Index, record: Any) -> dict[str, Any]:
    """A promotion, and for an ``enter`` whether it met its stage's gate as the
    records before it stood (``gate``): a ``model.promoted`` written by hand, or
    one racing a rejection, is not what ``promote`` would have recorded."""
    from mltrail.audit.governance import gate_at_promotion

    event = _event(record, ("stage", "action", "note", "run", "replaces"))
    body = record.entry.body
    stage = body.get("stage")
    if body.get("action", "enter") == "enter" and isinstance(stage, str):
        node = f"{body.get('model_type', 'model')}:{body.get('model')}"
        event["gate"] = gate_at_promotion(index, record.seq, node, stage)
    return event


def _description(records: list[Any]) -> dict[str, Any]:
    """The newest value of each field, with the record that set it (seq, time,
    and who: any writer can describe any model, so the value alone would not
    say whose statement it is)."""
    found: dict[str, Any] = {}
    for record in records:
        for name in _DESCRIBED:
            value = record.entry.body.get(name)
            if value is not None:
                found[name] = {
                    "value": value,
                    "seq": record.seq,
                    "time": record.entry.time,
                    "user": (record.entry.actor or {}).get("user"),
                    "key": record.entry.sig.key if record.entry.sig else None,
                }
    return found


def _flags(records: list[Any]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(flags raised and not cleared since, flags a later record cleared): a
    clear by anyone closes every open flag, so each cleared one is kept with
    that record (who cleared it, when, and the note), never let vanish."""
    cleared: list[dict[str, Any]] = []
    open_flags: list[dict[str, Any]] = []
    for record in records:
        if record.entry.body.get("status") == "cleared":
            clear = _event(record, ("note",))
            cleared += [flag | {"cleared": clear} for flag in open_flags]
            open_flags = []
        else:
            open_flags.append(_event(record, ("source", "reason", "run", "note")))
    return open_flags, cleared


# -- the run that made it -------------------------------------------------------------


def _development(view: RunView | None) -> dict[str, Any] | None:
    if view is None:
        return None
    started = view.body("run.started") or {}
    code = view.body("run.code") or {}
    environment = view.body("run.environment") or {}
    packages = environment.get("packages") or {}
    return {
        "run": view.summary.to_dict(),
        "added_by_others": view.added_by_others(),
        "command": started.get("command"),
        "program": started.get("program"),
        "cwd": started.get("cwd"),
        "code": {
            k: code.get(k)
            for k in (
                "vcs",
                "commit",
                "branch",
                "remote",
                "dirty",
                "diff_sha256",
                "reason",
                "warning",
            )
            if k in code
        },
        "scripts": [
            {"path": s.get("path"), "sha256": s.get("sha256"), "size": s.get("size")}
            for s in [
                *(f for f in code.get("files") or [] if isinstance(f, dict)),
                *(
                    s
                    for step in view.bodies("run.step")
                    for s in step.get("scripts") or []
                    if isinstance(s, dict)
                ),
            ]
        ],
        "environment": {
            "python": (environment.get("python") or {}).get("version"),
            "platform": (environment.get("platform") or {}).get("system")
            if isinstance(environment.get("platform"), dict)
            else environment.get("platform"),
            "packages": packages.get("count") if isinstance(packages, dict) else None,
            "packages_sha256": packages.get("sha256")
            if isinstance(packages, dict)
            else None,
        },
    }


def _data(home: Home, view: RunView | None, *, intact: bool) -> list[dict[str, Any]]:
    """Each dataset the run read, its first files (see :func:`_manifest`)."""
    if view is None:
        return []
    found = []
    for body in view.bodies("run.data"):
        item = {
            k: body.get(k)
            for k in (
                "role",
                "path",
                "url",
                "dataset",
                "files",
                "bytes",
                "table",
                "overlaps",
            )
            if body.get(k) is not None
        }
        item["file_hashes"], item["manifest"] = _manifest(
            home, body.get("manifest"), intact=intact
        )
        found.append(item)
    return found


def _manifest(
    home: Home, ref: Any, *, intact: bool
) -> tuple[list[dict[str, Any]], str]:
    """The first ``MAX_FILES`` files of a manifest, and what became of the rest.

    A manifest purged by a verified purge record is said to be. One that does
    not hash to its address, or is gone with no purge record, after a
    verification that found the ledger ``intact`` was changed since: no report
    is written over it (as ``export intoto``, ADR 0019 amendment of
    2026-12-08). In the report of a ledger that is not intact (headed so), the
    verification named it: it is a line of the report.

    Raises:
        IntegrityError: the ledger was verified intact, and the blob was
            changed since.
        PurgedSinceVerifiedError: purged after the verification: run it again.
    """
    if not isinstance(ref, dict) or not isinstance(ref.get("blob"), str):
        return [], "no manifest"
    from mltrail.ledger.purged import PurgedBlob, read_verified_blob

    try:
        data = read_verified_blob(home.ledger, ref["blob"], refusing="write the report")
    except IntegrityError as e:
        if intact:
            raise
        return [], str(e.__cause__ or e)
    if isinstance(data, PurgedBlob):
        return [], data.describe()
    files = []
    lines = data.split(b"\n")
    for line in lines[:MAX_FILES]:
        if not line:
            continue
        try:
            value = parse_json(line, what="manifest line")
        except MltrailError:
            continue
        if isinstance(value, dict):
            files.append({k: value.get(k) for k in ("path", "sha256", "size")})
    rest = len([line for line in lines if line]) - len(files)
    return files, f"{ref['blob']}" + (f" ({rest} more files)" if rest > 0 else "")


def _preprocessing(
    home: Home, index: Index, graph: Any, made_by: str | None
) -> list[dict[str, Any]]:
    """The steps upstream of the model (other runs in its lineage), oldest first."""
    steps = []
    for node in graph.nodes.values():
        if node.type != "run" or node.id == f"run:{made_by}":
            continue
        view = load_run(home, index, node.id.removeprefix("run:"))
        for body in view.bodies("run.step") or [{}]:
            steps.append(
                {
                    "run": view.id,
                    "name": body.get("name") or view.summary.name,
                    "started": view.summary.started,
                    "user": view.summary.user,
                    "command": body.get("command") or view.summary.command,
                    "scripts": [
                        {"path": s.get("path"), "sha256": s.get("sha256")}
                        for s in body.get("scripts") or []
                    ],
                    "inputs": [_link(i) for i in body.get("inputs") or []],
                    "outputs": [_link(o) for o in body.get("outputs") or []],
                }
            )
    return sorted(steps, key=lambda s: str(s["started"]))


def _link(body: dict[str, Any]) -> dict[str, Any]:
    return {
        "path": body.get("path"),
        "id": body.get("dataset") or body.get("sha256"),
    }


def _training(view: RunView | None) -> list[dict[str, Any]]:
    if view is None:
        return []
    return [
        {"name": k, "value": v, "source": source}
        for k, (v, source) in sorted(view.params().items())
    ]


def _finetune(view: RunView | None) -> dict[str, Any] | None:
    if view is None or not view.bodies("run.finetune"):
        return None
    merged: dict[str, Any] = {}
    for body in view.bodies("run.finetune"):
        merged.update(body)
    base, model = merged.get("base") or {}, merged.get("model") or {}
    return {
        "base": {
            k: base.get(k)
            for k in ("path", "model", "format", "parameters")
            if k in base
        },
        "model": {
            k: model.get(k)
            for k in ("path", "model", "format", "parameters")
            if k in model
        },
        "adapter": {
            k: (merged.get("adapter") or {}).get(k)
            for k in ("method", "r", "lora_alpha", "target_modules", "model")
            if k in (merged.get("adapter") or {})
        },
        "delta": merged.get("delta"),
    }


def _validation(view: RunView | None) -> list[dict[str, Any]]:
    if view is None:
        return []
    from mltrail.core.series import merge_series

    # a summary over every batch the run wrote, not the last one's alone (the
    # schema makes each series summary an object)
    series = merge_series(view.bodies("run.metrics"))
    return [{"name": k, **_summary(v)} for k, v in sorted(series.items())]


def _summary(value: Any) -> dict[str, Any]:
    if isinstance(value, dict):
        return {
            k: value.get(k)
            for k in ("last", "min", "max", "count", "step")
            if k in value
        }
    return {"last": value}


# -- record-keeping ---------------------------------------------------------------------


def _record_keeping(
    home: Home,
    verification: VerificationReport | None,
    bundle: dict[str, Any] | None,
    evidence: EvidencePolicy | None,
) -> dict[str, Any]:
    """The verdict, anchors and evidence; each timestamp's size is re-derived
    from its stamped checkpoint (``list_timestamps``), never the row's column."""
    store = home.ledger.store
    checkpoints = store.checkpoints()
    newest = checkpoints[-1] if checkpoints else None
    stamps = list_timestamps(store, evidence)
    out: dict[str, Any] = {
        "origin": home.ledger.origin,
        "records": home.ledger.head().size,
        "checkpoint": None
        if newest is None
        else {"size": newest.size, "text": newest.text},
        "timestamps": stamps,
        "bundle": bundle,
    }
    if verification is not None:
        out["verdict"] = verification.verdict()
        out["ok"] = verification.ok
        out["first_bad_seq"] = verification.first_bad_seq
        out["anchors"] = [a.to_dict() for a in verification.anchors]
        # errors mean the records were altered: never listed as mere warnings
        out["errors"] = [str(p) for p in verification.errors]
        out["warnings"] = [str(p) for p in verification.warnings]
    return out
