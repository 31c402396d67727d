"""Each carried promotion judged against its stage's gate, from the bundle alone.

``verify-bundle`` warns (``gate-not-met``, ``gate-lowered``; ``gate-unjudged``
when only a folder manifest carried by hash only could name a trainer) about a
``model.promoted`` that did not meet the gate of its stage as the bundle's own
records before it (by seq) stand: the rule of
:func:`mltrail.audit.governance.approval_status` (ADR 0018) applied to the
carried records instead of the index. The gate is the newest carried
``stage.gated`` of the stage before the promotion; each approver's standing
decision is their newest carried ``model.approved`` of the model for the stage
before it; the trainers are the starters of the carried runs that wrote the
model before it and the signers of those output records (a weights file of a
written folder is the folder's, through the folder's carried manifest). A
standing rejection of the same weights under another id counts when the bundle
carries it. Warnings, not errors: a bundle is not proven complete (ADR 0016),
so a decision or a run it does not carry is not judged; a manifest carried by
hash only (``--no-blobs``) hides which files a folder holds: a promotion whose
only fault is no recorded trainer is then ``gate-unjudged``. Pure: plain
values in, warnings out.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mltrail.core.manifest import first_file_sha256, listed_sha256s

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = ["Carried", "gate_warnings"]

_COLUMN = {"model": "model", "file": "sha256", "data": "dataset"}


@dataclass(frozen=True)
class Carried:
    """One carried record as the rule reads it."""

    seq: int
    kind: str
    run: str | None
    user: Any
    body: Mapping[str, Any]


def _text(value: Any) -> str | None:
    """A value as the index stores it in a text column."""
    if value is None or isinstance(value, str):
        return value
    return json.dumps(value, sort_keys=True)


def _node(body: Mapping[str, Any]) -> str:
    return f"{body.get('model_type', 'model')}:{body.get('model')}"


@dataclass
class _Facts:
    """The rows the index would hold for the carried records."""

    starters: dict[str, Any] = field(default_factory=dict)
    data: list[dict[str, Any]] = field(default_factory=list)
    models: list[tuple[int, str | None, str | None, str]] = field(default_factory=list)
    files: dict[str | None, set[str]] = field(default_factory=dict)
    unread: set[str | None] = field(default_factory=set)
    """Folders whose manifest the bundle does not carry: their files are unknown."""
    gates: list[tuple[int, str, int, Any, Any]] = field(default_factory=list)
    decisions: list[dict[str, Any]] = field(default_factory=list)


def _collect(records: Mapping[int, Carried], blobs: Mapping[str, bytes]) -> _Facts:
    facts = _Facts()
    for seq in sorted(records):
        r = records[seq]
        body = r.body
        if r.kind == "run.started" and isinstance(r.run, str):
            facts.starters.setdefault(r.run, _text(r.user))
        elif r.kind == "run.data":
            _data(facts, blobs, r, "in", body)
        elif r.kind == "run.artifact" and body.get("exists") is not False:
            _data(facts, blobs, r, "out", body)
            if body.get("model"):
                facts.models.append((seq, r.run, _text(body["model"]), "output"))
        elif r.kind == "run.step":
            _step(facts, blobs, r)
        elif r.kind == "run.finetune":
            for role, name in (("model", "output"), ("adapter", "adapter")):
                part = body.get(role)
                if isinstance(part, dict) and part.get("model"):
                    facts.models.append((seq, r.run, _text(part["model"]), name))
        elif r.kind == "stage.gated":
            required = body.get("require_approval")
            if isinstance(required, int) and isinstance(body.get("stage"), str):
                note = _text(body.get("note"))
                facts.gates.append(
                    (seq, body["stage"], int(required), _text(r.user), note)
                )
        elif r.kind == "model.approved":
            facts.decisions.append({
                "seq": seq, "node": _node(body), "stage": _text(body.get("stage")),
                "decision": _text(body.get("decision")), "user": _text(r.user),
            })  # fmt: skip
    return facts


def _step(facts: _Facts, blobs: Mapping[str, bytes], r: Carried) -> None:
    body = r.body
    dvc = isinstance(body.get("dvc"), dict)
    for direction, key in (("in", "inputs"), ("out", "outputs")):
        for link in body.get(key) or []:
            if not isinstance(link, dict):
                continue
            if dvc:
                if link.get("sha256") or link.get("dataset"):
                    _data(facts, blobs, r, direction, link)
            elif not any(
                d["run"] == r.run
                and d["direction"] == direction
                and (
                    (
                        d["dataset"] is not None
                        and d["dataset"] == _text(link.get("dataset"))
                    )
                    or (
                        d["sha256"] is not None
                        and d["sha256"] == _text(link.get("sha256"))
                    )
                )
                for d in facts.data
            ):
                _data(facts, blobs, r, direction, link)


def _data(
    facts: _Facts,
    blobs: Mapping[str, bytes],
    r: Carried,
    direction: str,
    body: Mapping[str, Any],
) -> None:
    ref = body.get("manifest")
    manifest = (
        str(ref["blob"])
        if isinstance(ref, dict) and isinstance(ref.get("blob"), str)
        else None
    )
    sha = body.get("sha256")
    if sha is None and manifest and body.get("files") == 1:
        sha = first_file_sha256(blobs.get(manifest))
    dataset = _text(body.get("dataset"))
    facts.data.append({
        "seq": r.seq, "run": r.run, "direction": direction, "dataset": dataset,
        "sha256": _text(sha), "model": _text(body.get("model")), "user": _text(r.user),
    })  # fmt: skip
    if direction == "out" and manifest and dataset and dataset not in facts.files:
        data = blobs.get(manifest)
        if data is None:
            facts.unread.add(dataset)
        facts.files[dataset] = listed_sha256s(data)


def _holding(facts: _Facts, sha: str) -> set[str]:
    return {d for d, shas in facts.files.items() if sha in shas}


def _trainers(facts: _Facts, node: str, before: int) -> set[str]:
    """As :func:`mltrail.audit.governance.trainers` with ``before``."""
    kind, _, ident = node.partition(":")
    column = _COLUMN.get(kind)
    if column is None:
        return set()
    inner = _holding(facts, ident) if kind == "file" else set()
    outs = [
        d
        for d in facts.data
        if d["direction"] == "out"
        and d["seq"] < before
        and (d[column] == ident or d["dataset"] in inner)
    ]
    runs = {d["run"] for d in outs} | {
        run
        for seq, run, model, role in facts.models
        if kind == "model" and model == ident and seq < before
        if role in ("output", "adapter")
    }
    users = {facts.starters.get(run) for run in runs if run in facts.starters}
    users |= {d["user"] for d in outs}
    return {str(u) for u in users if u is not None}


def _same_weights(facts: _Facts, node: str) -> set[str]:
    """The other node ids of ``node``'s weights, as the index's ``_SAME_WEIGHTS``."""
    kind, _, ident = node.partition(":")
    rows = facts.data
    if kind == "file":
        folders = _holding(facts, ident)
        names = {f"data:{d}" for d in folders}
        names |= {f"model:{d['model']}" for d in rows if d["model"] is not None
                  and d["dataset"] in folders}  # fmt: skip
    elif kind == "data":
        names = {f"file:{s}" for s in facts.files.get(ident, set())}
        prints = {d["model"] for d in rows
                  if d["dataset"] == ident and d["model"] is not None}  # fmt: skip
        names |= {f"model:{m}" for m in prints}
        names |= {f"data:{d['dataset']}" for d in rows if d["dataset"] is not None
                  and d["model"] in prints}  # fmt: skip
    elif kind == "model":
        folders = {d["dataset"] for d in rows
                   if d["model"] == ident and d["dataset"] is not None}  # fmt: skip
        names = {f"data:{d}" for d in folders}
        names |= {f"file:{s}" for d in folders for s in facts.files.get(d, set())}
    else:
        return set()
    return names - {node}


def _unread(facts: _Facts, node: str) -> set[str]:
    """Folders whose files the bundle cannot list that bear on ``node``'s rule."""
    kind, _, ident = node.partition(":")
    if kind == "file":
        return set(facts.unread)
    if kind == "data" and ident in facts.unread:
        return {ident}
    return set()


def _status(facts: _Facts, node: str, stage: str, before: int) -> dict[str, Any]:
    """As :func:`mltrail.audit.governance.approval_status` with ``before``."""
    made_by = _trainers(facts, node, before)
    standing: dict[Any, dict[str, Any]] = {}
    for d in facts.decisions:
        if d["node"] == node and d["stage"] == stage and d["seq"] < before:
            standing[d["user"]] = d | {
                "counts": d["decision"] == "approve" and d["user"] not in made_by
            }
    others = _same_weights(facts, node)
    newest: dict[Any, dict[str, Any]] = {}
    for d in facts.decisions:
        if d["node"] in others and d["stage"] == stage and d["seq"] < before:
            newest[d["user"]] = d | {"counts": False}
    for user, d in newest.items():
        own = standing.get(user)
        if d["decision"] == "reject" and (own is None or own["seq"] < d["seq"]):
            standing[user] = d
    gates = [g for g in facts.gates if g[1] == stage and g[0] < before][-2:]
    required = gates[-1][2] if gates else 0
    approvers = sorted(str(u) for u, d in standing.items() if d["counts"])
    rejected = sorted(str(u) for u, d in standing.items() if d["decision"] == "reject")
    lowered = None
    if len(gates) == 2 and gates[1][2] < gates[0][2]:
        lowered = gates[1] + (gates[0][2],)
    return {
        "required": required,
        "approvers": approvers,
        "rejected_by": rejected,
        "trainers": sorted(made_by),
        "met": not rejected
        and len(approvers) >= required
        and (required == 0 or bool(made_by)),
        "lowered": lowered,
    }


_CAVEAT = (
    "judged from the records this bundle carries (a bundle is not proven "
    "complete: a decision it does not carry, such as one on the same weights "
    "under another id, is not counted)"
)


def gate_warnings(
    records: Mapping[int, Carried], blobs: Mapping[str, bytes]
) -> Iterator[tuple[int, str, str]]:
    """``(seq, code, message)`` for each carried ``enter`` promotion that did not
    meet its gate (``gate-not-met``) or came under a gate lowered by the newest
    change before it (``gate-lowered``), judged from ``records`` (the intact
    carried records) and ``blobs`` (carried blobs that match their digest)."""
    facts = _collect(records, blobs)
    for seq in sorted(records):
        r = records[seq]
        stage = r.body.get("stage")
        if r.kind != "model.promoted" or not isinstance(stage, str):
            continue
        if r.body.get("action", "enter") != "enter":
            continue
        node = _node(r.body)
        gate = _status(facts, node, stage, seq)
        what = f"the promotion of {node} to {stage}"
        if not gate["met"]:
            unread = _unread(facts, node)
            if gate["rejected_by"] or len(gate["approvers"]) < gate["required"]:
                yield seq, "gate-not-met", _not_met(what, gate, unread)
            elif unread:  # only the trainer is missing, maybe behind a manifest
                yield seq, "gate-unjudged", _unjudged(what, gate, unread)
            else:
                yield seq, "gate-not-met", _not_met(what, gate, unread)
        if gate["lowered"]:
            at, _, low, user, note, high = gate["lowered"]
            yield (
                seq,
                "gate-lowered",
                f"{what} came under a gate lowered from {high} to {low} at seq {at} "
                f"by {user or '?'}: {note or '(no note)'}",
            )


def _unjudged(what: str, gate: dict[str, Any], unread: set[str]) -> str:
    return (
        f"the gate of {what} cannot be judged from this bundle: it records no "
        f"trainer of the model, and {len(unread)} written folder(s) have "
        "manifests it carries by hash only (exported with --no-blobs), so "
        "whether they hold these weights (and who trained them) is unknown; "
        f"{len(gate['approvers'])} of {gate['required']} approval(s) counted "
        "otherwise; export the bundle with its blobs to judge it"
    )


def _not_met(what: str, gate: dict[str, Any], unread: set[str]) -> str:
    have = f"{len(gate['approvers'])} of {gate['required']} approval(s)"
    who = f" ({', '.join(gate['approvers'])})" if gate["approvers"] else ""
    why = [f"{have}{who}"]
    if gate["rejected_by"]:
        why.append(f"rejected by {', '.join(gate['rejected_by'])}")
    if gate["required"] and not gate["trainers"]:
        why.append("no recorded trainer, so no approver is shown to be someone else")
    hidden = ""
    if unread:
        hidden = (
            f"; {len(unread)} written folder(s) have manifests the bundle carries "
            "by hash only (--no-blobs): more names of these weights (and their "
            "decisions) may be behind them, which could only add to this"
        )
    return (
        f"{what} did NOT MEET its gate as the records before it stand: "
        f"{'; '.join(why)}; `mltrail model promote` refuses this, so it was "
        f"appended by hand, raced a decision, or was pushed past a gate change; "
        f"{_CAVEAT}{hidden}"
    )
