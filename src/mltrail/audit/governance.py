"""Model governance: model cards, approvals, stage gates and promotion checks.

SR 11-7's "effective challenge" and the four-eyes rule, as signed entries:

- ``model.described`` records model card fields (purpose, owner, risk tier,
  limitations); the newest value of each field wins.
- ``model.approved`` records one person's decision (approve or reject) on a model
  for a stage. The person is the entry's actor: the OS account of the process
  (never ``$USER``, which is kept apart as ``claimed_user`` and never counted).
- ``stage.gated`` records how many approvals a stage requires from then on.

A promotion needs that many distinct approvers other than whoever trained the
model (the users who started the runs that wrote it); any standing rejection
blocks it. Neither can be overridden: only more approvals, the rejecter's own
approval, or a new, signed ``stage.gated`` entry change the outcome.

The report reads the same facts::

    >>> model_card(home, "file:5727bc...")   # doctest: +SKIP
    {'model': 'file:5727bc...', 'purpose': {'value': 'credit scoring', 'user': 'ana', ...}, ...}
    >>> approvals(home, "file:5727bc...")    # doctest: +SKIP
    [{'stage': 'production', 'decision': 'approve', 'user': 'bob', 'counts': True, ...}]
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

from mltrail.audit.refs import resolve_node
from mltrail.audit.trace import (
    CONTENT_COLUMN,
    MAX_CLAIMANTS_SHOWN,
    latest_writer,
    run_outputs,
    writer_runs,
)
from mltrail.errors import InputError
from mltrail.index.tables import DESCRIBED_FIELDS

if TYPE_CHECKING:
    from collections.abc import Iterable
    from pathlib import Path

    from mltrail.index import Index
    from mltrail.ledger.home import Home

__all__ = [
    "DESCRIBED_FIELDS",
    "approval_status",
    "approvals",
    "approve_model",
    "check_stage",
    "checked_approval_status",
    "describe_model",
    "gate_at_promotion",
    "gate_rows_differ",
    "gate_text",
    "governance_of",
    "model_card",
    "promotion_refusals",
    "required_approvals",
    "resolve_model",
    "set_gate",
    "stage_gates",
    "trainers",
]

_STAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_NODE = re.compile(r"(model|file|data):[0-9a-f]{64}")
_MAX_APPROVALS = 100


def check_stage(stage: str) -> str:
    """``stage`` when it is a stage name.

    Raises:
        InputError: it is not (letters, digits, . _ -; at most 100).
    """
    if not _STAGE.fullmatch(stage):
        raise InputError(
            f"stage {stage!r} is not a name (letters, digits, . _ -)",
            hint="e.g. production, staging, shadow",
        )
    return stage


def resolve_model(index: Index, ref: str, cwd: Path | None = None) -> str:
    """The model node ``ref`` names; a run with exactly one output names that output.

    Raises:
        InputError: ``ref`` names nothing, a source, or a run with several outputs.
    """
    if _NODE.fullmatch(ref):
        return ref
    # a signed decision: weights behind links are read, never taken from the
    # home's hash cache (ADR 0009 amendment of 2026-12-08)
    node = resolve_node(index, ref, cwd=cwd, trust_cache=False)
    kind, _, ident = node.partition(":")
    if kind in ("model", "file", "data"):
        return node
    if kind == "run":
        outputs = run_outputs(index, ident)
        if len(outputs) == 1:
            return outputs.pop()
        raise InputError(
            f"run {ident} wrote {len(outputs)} outputs; name the model itself",
            hint="give the model file, its id, or its output name",
        )
    raise InputError(f"{ref!r} names a {kind}, not a model")


def _identity(index: Index, ref: str, cwd: Path | None) -> tuple[str, str, str]:
    node = resolve_model(index, ref, cwd)
    kind, _, ident = node.partition(":")
    return node, kind, ident


# -- model cards -------------------------------------------------------------------


def describe_model(
    home: Home,
    index: Index,
    ref: str,
    fields: dict[str, str | None],
    *,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Record ``model.described`` with the given card fields; return the body.

    Raises:
        InputError: no field given, an unknown field, or ``ref`` names no model.
    """
    given = {k: v for k, v in fields.items() if v is not None}
    unknown = set(given) - set(DESCRIBED_FIELDS)
    if unknown:
        raise InputError(f"unknown model card field(s): {', '.join(sorted(unknown))}")
    if not given or not any(str(v).strip() for v in given.values()):
        raise InputError(
            "say what to record: --purpose, --owner, --risk-tier or --limitations",
            hint='e.g. mltrail model describe MODEL --purpose "retail credit scoring"',
        )
    _, kind, ident = _identity(index, ref, cwd)
    body: dict[str, Any] = {"model": ident, "model_type": kind, **given}
    home.ledger.append("model.described", body)
    return body


def model_card(
    home: Home, model_id: str, *, index: Index | None = None
) -> dict[str, Any]:
    """The newest value of each model card field, with who set it and when.

    ``model_id`` is a node id (``file:<sha>``), a model id or prefix, a path or
    an output name. Each field maps to ``{"value", "user", "time", "seq"}`` or None.
    """
    index = index or _open_index(home)
    node = resolve_model(index, model_id)
    card: dict[str, Any] = {"model": node}
    for field in DESCRIBED_FIELDS:
        rows = index.query(
            "SELECT value, user, time, seq FROM descriptions WHERE model = ? AND "
            "field = ? ORDER BY seq DESC LIMIT 1",
            (node, field),
        )
        card[field] = (
            dict(zip(("value", "user", "time", "seq"), rows[0], strict=True))
            if rows
            else None
        )
    return card


def _open_index(home: Home) -> Index:
    from mltrail.index import open_index

    return open_index(home)


# -- approvals ---------------------------------------------------------------------


def approve_model(
    home: Home,
    index: Index,
    ref: str,
    *,
    stage: str,
    note: str,
    reject: bool = False,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Record ``model.approved`` (decision approve, or reject); return the body.

    Raises:
        InputError: a bad stage, no note, or ``ref`` names no model.
    """
    check_stage(stage)
    if not note or not note.strip():
        raise InputError(
            "an approval needs --note saying what was checked",
            hint='e.g. --note "validation report VR-31 reviewed, AUC 0.81"',
        )
    node, kind, ident = _identity(index, ref, cwd)
    run, _ = latest_writer(index, node)
    body: dict[str, Any] = {
        "model": ident,
        "model_type": kind,
        "stage": stage,
        "decision": "reject" if reject else "approve",
        "note": note,
        "run": run,
    }
    home.ledger.append("model.approved", body)
    return body


def trainers(index: Index, node: str, *, before: int | None = None) -> list[str]:
    """The accounts that trained the model ``node`` (as recorded before seq
    ``before``, when given): who started a run that wrote it, or wrote a folder
    holding it (a weights file of a checkpoint folder is named by its path as a
    ``file:``, and its trainer is still the folder's), and who signed the record
    of such an output (a run with no recorded start still has its writer)."""
    kind, _, ident = node.partition(":")
    column = CONTENT_COLUMN[kind]
    upto = "" if before is None else " AND seq < ?"
    outs = (  # column is one of three names; upto is fixed text
        f"direction = 'out' AND ({column} = ? OR dataset IN "  # noqa: S608
        f"(SELECT dataset FROM output_files WHERE sha256 = ?)){upto}"
    )
    sql = (
        "SELECT r.user FROM runs r WHERE r.user IS NOT NULL AND r.id IN ("  # noqa: S608
        "SELECT run FROM models WHERE model = ? AND role IN ('output', 'adapter')"
        f"{upto} UNION SELECT run FROM data WHERE {outs}) "
        f"UNION SELECT user FROM data WHERE user IS NOT NULL AND {outs}"
    )
    first = ident if kind == "model" else ""
    inner = ident if kind == "file" else ""
    marks: tuple[Any, ...] = (
        (ident, inner) if before is None else (ident, inner, before)
    )
    args = (first, *(() if before is None else (before,)), *marks, *marks)
    return sorted({user for (user,) in index.query(sql, args)})


def approvals(
    home: Home, model_id: str, *, stage: str | None = None, index: Index | None = None
) -> list[dict[str, Any]]:
    """Every approval or rejection of a model, oldest first.

    Each is ``{"seq", "stage", "decision", "note", "user", "claimed_user",
    "time", "run", "key", "self", "counts"}``: ``self`` when the approver trained
    the model, ``counts`` when it is that person's standing approval and counts
    toward a gate (self-approvals never do).
    """
    index = index or _open_index(home)
    node = resolve_model(index, model_id)
    return _approvals(index, node, stage)


def _approvals(
    index: Index, node: str, stage: str | None, before: int | None = None
) -> list[dict[str, Any]]:
    sql = (
        "SELECT seq, stage, decision, note, user, claimed_user, time, run, key "
        "FROM approvals WHERE model = ?"
    )
    args: list[Any] = [node]
    if stage is not None:
        sql += " AND stage = ?"
        args.append(stage)
    if before is not None:
        sql += " AND seq < ?"
        args.append(before)
    keys = (
        "seq",
        "stage",
        "decision",
        "note",
        "user",
        "claimed_user",
        "time",
        "run",
        "key",
    )
    found = [
        dict(zip(keys, row, strict=True))
        for row in index.query(sql + " ORDER BY seq", args)
    ]
    made_by = set(trainers(index, node, before=before))
    latest = {(a["stage"], a["user"]): a["seq"] for a in found}
    for a in found:
        a["self"] = a["user"] in made_by
        standing = latest[(a["stage"], a["user"])] == a["seq"]
        a["counts"] = standing and a["decision"] == "approve" and not a["self"]
    return found


def approval_status(
    index: Index, node: str, stage: str, *, before: int | None = None
) -> dict[str, Any]:
    """What the gate of ``stage`` says about ``node``: required, counted, blocked.

    ``approvers`` are the distinct accounts whose standing decision is approve and
    who did not train the model; ``rejected_by`` the accounts whose standing
    decision is reject; ``ok`` when nobody rejects and enough approve, and, for a
    gated stage, someone is recorded as having trained it: with no recorded
    trainer nobody can be shown to be someone else. With ``before``, the same as
    the records before that seq said it (the gate a promotion at ``before`` met).
    """
    found = _approvals(index, node, stage, before)
    standing: dict[str, dict[str, Any]] = {}
    for a in found:
        standing[a["user"]] = a
    for a in _alias_decisions(index, node, stage, before):
        own = standing.get(a["user"])
        if own is None or own["seq"] < a["seq"]:
            standing[a["user"]] = a  # a rejection of the same weights by another name
    required = required_approvals(index, stage, before=before)
    approvers = sorted(u for u, a in standing.items() if a["counts"])
    rejected = sorted(u for u, a in standing.items() if a["decision"] == "reject")
    made_by = trainers(index, node, before=before)
    return {
        "stage": stage,
        "required": required,
        "approvers": approvers,
        "rejected_by": rejected,
        "self_approved": sorted(
            u for u, a in standing.items() if a["self"] and a["decision"] == "approve"
        ),
        "trainers": made_by,
        "rejections": [standing[u] for u in rejected],
        "ok": not rejected
        and len(approvers) >= required
        and (required == 0 or bool(made_by)),
    }


def checked_approval_status(
    index: Index, node: str, stage: str, *, complete: bool = False
) -> dict[str, Any]:
    """:func:`approval_status` now, from rows checked against their records.

    ``index.db`` is unsigned: an edited ``required``, decision or trainer row
    made a model that does not meet its gate read as allowed, and ``promote``
    signed its promotion. Checked first: the model's own decisions
    (``node_rows_differ``) and the rows its gate is judged from
    (:func:`gate_rows_differ`); with ``complete``, also every ``stage.gated``
    and ``model.approved`` record of ``stage`` against the index, so a row
    *deleted* from ``index.db`` (a gate, a rejection) is found too (reads every
    decision of the stage: what ``promote`` signs from). On a difference the
    index is rebuilt (with a warning on stderr) and the status read from it.
    With ``complete``, a record of those kinds whose kind column in the store
    was changed (so no read by kind lists it) is refused first.

    Raises:
        IntegrityError: with ``complete``, the store's kind column hides a
            gate or a decision (``refuse_hidden_kinds``).
    """
    from mltrail.index.check import kind_rows_differ, node_rows_differ, repaired

    if complete:  # a decision hidden by the store's kind column is not listed
        from mltrail.ledger.columns import refuse_hidden_kinds

        refuse_hidden_kinds(index.ledger.store, ("stage.gated", "model.approved"))
    problem = node_rows_differ(index, [node]) or gate_rows_differ(
        index, [(-1, node, stage)]
    )
    if problem is None and complete:
        problem = kind_rows_differ(
            index, "stage.gated", "gates", stage=stage
        ) or kind_rows_differ(index, "model.approved", "approvals", stage=stage)
    repaired(index, problem)
    return approval_status(index, node, stage)


_SAME_WEIGHTS = {
    # a file: the folders a run wrote that hold it, and their fingerprints
    "file": "SELECT 'data:' || dataset FROM output_files WHERE sha256 = :id UNION "
    "SELECT 'model:' || model FROM data WHERE model IS NOT NULL AND dataset IN "
    "(SELECT dataset FROM output_files WHERE sha256 = :id)",
    # a folder: its files, its fingerprint, and the other folders with it
    "data": "SELECT 'file:' || sha256 FROM output_files WHERE dataset = :id UNION "
    "SELECT 'model:' || model FROM data WHERE dataset = :id AND model IS NOT NULL "
    "UNION SELECT 'data:' || dataset FROM data WHERE dataset IS NOT NULL AND model "
    "IN (SELECT model FROM data WHERE dataset = :id AND model IS NOT NULL)",
    # a fingerprint: its folders and their files
    "model": "SELECT 'data:' || dataset FROM data WHERE model = :id AND dataset IS "
    "NOT NULL UNION SELECT 'file:' || sha256 FROM output_files WHERE dataset IN "
    "(SELECT dataset FROM data WHERE model = :id AND dataset IS NOT NULL)",
}
"""Queries of the other node ids of a node's weights, by its kind (``:id``: its
id). Every name, never the first few: a cap in the index's order let 500 decoy
folders holding a weights file hide the rejected folder beyond it."""


def _same_weights_sql(kind: str) -> str | None:
    """The query of the other names of a ``kind`` node's weights; None for none."""
    return _SAME_WEIGHTS.get(kind)


def same_weights(index: Index, node: str) -> list[str]:
    """The other node ids of ``node``'s weights (see :func:`_same_weights_sql`)."""
    kind, _, ident = node.partition(":")
    sql = _same_weights_sql(kind)
    if sql is None:
        return []
    rows = index.query(sql, {"id": ident})
    return sorted(other for (other,) in rows if other != node)


_DECISION = "seq, stage, decision, note, user, claimed_user, time, run, key"


def _alias_rows_sql(node: str, before: int | None) -> tuple[str, dict[str, Any]] | None:
    """The query of every decision for ``:stage`` on ``node``'s weights named
    otherwise (recorded before ``before``), oldest first; None for no other names."""
    kind, _, ident = node.partition(":")
    names = _same_weights_sql(kind)
    if names is None:
        return None
    sql = (  # fixed text: no value is formatted in
        f"SELECT {_DECISION} FROM approvals WHERE stage = :stage AND "  # noqa: S608
        f"model != :node AND model IN ({names})"
    )
    args: dict[str, Any] = {"id": ident, "node": node}
    if before is not None:
        sql += " AND seq < :before"
        args["before"] = before
    return sql + " ORDER BY seq", args


def _alias_decisions(
    index: Index, node: str, stage: str, before: int | None
) -> list[dict[str, Any]]:
    """Each person's newest decision on ``node``'s weights named otherwise, when
    it is a rejection: a rejection of a checkpoint folder blocks the weights
    file inside it named by its path (and so on), until that person approves.
    Approvals by another name never count (a folder is more than one file)."""
    found = _alias_rows_sql(node, before)
    if found is None:
        return []
    sql, args = found
    keys = tuple(_DECISION.split(", "))
    newest: dict[str, dict[str, Any]] = {}
    for row in index.query(sql, args | {"stage": stage}):
        a = dict(zip(keys, row, strict=True))
        newest[a["user"]] = a | {"self": False, "counts": False}
    return [a for a in newest.values() if a["decision"] == "reject"]


def gate_at_promotion(index: Index, seq: int, node: str, stage: str) -> dict[str, Any]:
    """Whether the promotion recorded at ``seq`` met its stage's gate as the
    records before it stood: the gate then, the approvers who counted, standing
    rejections, the trainers, ``met``, and ``lowered`` (the ``stage.gated`` in
    force, when it lowered the gate: seq, user, time, note, ``from``).

    Judged from the records, never from the promotion's own ``approvals``: a
    ``model.promoted`` appended by hand (the Python API, ``POST /entries``) or
    racing a rejection says what its writer liked.
    """
    status = approval_status(index, node, stage, before=seq)
    gate: dict[str, Any] = {
        k: status[k] for k in ("required", "approvers", "rejected_by", "trainers")
    }
    gate["met"] = status["ok"]
    rows = index.query(
        "SELECT seq, required, user, time, note FROM gates WHERE stage = ? AND seq < ? "
        "ORDER BY seq DESC LIMIT 2",
        (stage, seq),
    )
    gate["lowered"] = None
    keys = ("seq", "required", "user", "time", "note")
    if len(rows) == 2 and rows[0][1] < rows[1][1]:
        gate["lowered"] = dict(zip(keys, rows[0], strict=True)) | {"from": rows[1][1]}
    in_force = dict(zip(keys, rows[0], strict=True)) if rows else {}
    gate["set_after"] = _set_after(index, seq, in_force)
    return gate


def _set_after(
    index: Index, seq: int, in_force: dict[str, Any]
) -> dict[str, Any] | None:
    """The gate in force at the promotion ``seq`` when it is dated after the
    promotion (``pushed``: the seq of the ``ledger.pushed`` header whose window
    holds the promotion, else None), or None.

    Gates are judged by seq, the ledger's own order: a promotion recorded
    offline, where its ``promote`` checked the gate that ledger knew, and pushed
    after someone changed the gate here, is judged by the gate it reached. That
    stays the rule (entry times are what its writer's clock said); this says
    why such a promotion reads NOT MET although it came first in time."""
    from mltrail.core.chain import is_later

    if not in_force:
        return None
    mine = index.query("SELECT time FROM promotions WHERE seq = ?", (seq,))
    if not mine or not is_later(in_force["time"], mine[0][0]):
        return None
    header = index.query(  # the pushed table's key: no scan of the records
        "SELECT seq FROM pushed WHERE seq < ? ORDER BY seq DESC LIMIT 1", (seq,)
    )
    pushed = None
    if header:
        body = index.ledger.record(header[0][0]).entry.body
        count = body.get("count")
        if isinstance(count, int) and seq <= header[0][0] + count:
            pushed = header[0][0]
    return in_force | {"promoted": mine[0][0], "pushed": pushed}


def gate_rows_differ(
    index: Index, promotions: Iterable[tuple[int, str, str]]
) -> str | None:
    """Whether the index rows the gates of these promotions (``(seq, node,
    stage)``, in the order shown) are judged from agree with their records: every
    ``gates`` row of their stages (one moved past a promotion changes its gate),
    the decisions on each model's other names for its stage, and the rows of the
    runs that wrote it (their starters and signers are its trainers). A model's
    own decisions are checked by :func:`governance_of`. None when they agree.

    ``index.db`` is unsigned: an edited ``required``, starter or decision made a
    promotion that did not meet its gate read as met in ``model history``.
    """
    from mltrail.index.check import MAX_CHECKED_ROWS, runs_differ, seqs_differ

    wanted = list(dict.fromkeys(promotions))
    if not wanted or index.path is None:
        return None
    gate_seqs = [
        seq
        for stage in dict.fromkeys(stage for _, _, stage in wanted)
        for (seq,) in index.query(
            "SELECT seq FROM gates WHERE stage = ? ORDER BY seq", (stage,)
        )
    ]
    for i in range(0, len(gate_seqs), MAX_CHECKED_ROWS):  # few: every one
        problem = seqs_differ(index, gate_seqs[i : i + MAX_CHECKED_ROWS], ("gates",))
        if problem:
            return problem
    decisions: list[int] = []
    runs: list[str] = []
    for node, stage in dict.fromkeys((node, stage) for _, node, stage in wanted):
        found = _alias_rows_sql(node, None)
        if found is not None:
            sql, args = found
            decisions += [row[0] for row in index.query(sql, args | {"stage": stage})]
        runs += _writer_runs(index, node)
    return seqs_differ(index, decisions, ("approvals",)) or runs_differ(index, runs)


def _writer_runs(index: Index, node: str) -> list[str]:
    """The runs whose rows make someone a trainer of ``node`` (see :func:`trainers`)."""
    kind, _, ident = node.partition(":")
    column = CONTENT_COLUMN.get(kind)
    if column is None:
        return []
    sql = (  # column is one of three names
        "SELECT run FROM models WHERE model = ? AND role IN ('output', 'adapter') "  # noqa: S608
        f"UNION SELECT run FROM data WHERE direction = 'out' AND ({column} = ? OR "
        "dataset IN (SELECT dataset FROM output_files WHERE sha256 = ?))"
    )
    args = (ident if kind == "model" else "", ident, ident if kind == "file" else "")
    return [run for (run,) in index.query(sql, args) if run]


def gate_text(gate: dict[str, Any] | None) -> str:
    """A promotion's gate (``gate_at_promotion``) in words ("" for none: a demotion)."""
    if not gate:
        return ""
    have = f"{len(gate['approvers'])} of {gate['required']} approval(s)"
    who = f" ({', '.join(gate['approvers'])})" if gate["approvers"] else ""
    text = f"met: {have}{who}" if gate["met"] else f"NOT MET: {have}{who}"
    if gate["rejected_by"]:
        text += f"; rejected by {', '.join(gate['rejected_by'])}"
    if gate["required"] and not gate["trainers"]:
        text += "; no recorded trainer"
    if gate["lowered"]:
        low = gate["lowered"]
        text += (
            f"; gate lowered from {low['from']} to {low['required']} at seq {low['seq']} "
            f"by {low['user'] or '?'}: {low['note'] or '(no note)'}"
        )
    later = gate.get("set_after")
    if later and not gate["met"]:
        how = (
            f"pushed at seq {later['pushed']}"
            if later["pushed"] is not None
            else "recorded after it (a push, or a clock behind)"
        )
        text += (
            f"; the gate ({later['required']}) was set at seq {later['seq']} by "
            f"{later['user'] or '?'}, dated {later['time'][:19]}Z, after this "
            f"promotion's time ({later['promoted'][:19]}Z): the promotion was "
            f"{how} after the gate changed"
        )
    if gate["met"] and not gate["required"] and not gate["lowered"]:
        return "not gated"
    return text


# -- gates -------------------------------------------------------------------------


def set_gate(
    home: Home, index: Index, stage: str, *, require_approval: int, note: str | None
) -> dict[str, Any]:
    """Record ``stage.gated``: ``stage`` needs ``require_approval`` approvals from now.

    Raises:
        InputError: a bad stage or count, no change, or a lowered gate without a note.
    """
    check_stage(stage)
    if not 0 <= require_approval <= _MAX_APPROVALS:
        raise InputError(f"--require-approval must be 0 to {_MAX_APPROVALS}")
    from mltrail.index.check import kind_rows_differ, repaired

    # the signed body says what it changed, and lowering needs a note: both from
    # the stage's gates rows as its records give them, never an edited index.db
    repaired(index, kind_rows_differ(index, "stage.gated", "gates", stage=stage))
    previous = required_approvals(index, stage)
    if previous == require_approval:
        raise InputError(f"{stage} already requires {previous} approval(s)")
    if require_approval < previous and not (note and note.strip()):
        raise InputError(
            f"lowering the gate of {stage} ({previous} -> {require_approval}) needs "
            "--note saying why",
            hint="the change is a signed entry; the note is what an auditor reads",
        )
    body: dict[str, Any] = {
        "stage": stage,
        "require_approval": require_approval,
        "previous": previous,
    }
    if note:
        body["note"] = note
    home.ledger.append("stage.gated", body)
    return body


def required_approvals(index: Index, stage: str, *, before: int | None = None) -> int:
    """How many approvals ``stage`` requires now, or at seq ``before`` (0 when it
    was never gated)."""
    rows = index.query(
        "SELECT required FROM gates WHERE stage = ? AND seq < ? ORDER BY seq DESC "
        "LIMIT 1",
        (stage, before if before is not None else 2**62),
    )
    return int(rows[0][0]) if rows else 0


def stage_gates(index: Index, *, history: bool = False) -> list[dict[str, Any]]:
    """Each stage's gate now (or, with ``history``, every change), by stage.

    The ``gates`` rows are checked against every ``stage.gated`` record first
    (an edited, inserted or deleted row; few records); on a difference the
    index is rebuilt, with a warning on stderr, and read again."""
    from mltrail.index.check import kind_rows_differ, repaired

    repaired(index, kind_rows_differ(index, "stage.gated", "gates"))
    keys = ("seq", "stage", "require_approval", "note", "time", "user")
    rows = index.query(
        "SELECT seq, stage, required, note, time, user FROM gates ORDER BY stage, seq"
    )
    gates = [dict(zip(keys, row, strict=True)) for row in rows]
    if history:
        return gates
    return list({g["stage"]: g for g in gates}.values())


# -- what a promotion must satisfy -------------------------------------------------


def promotion_refusals(
    home: Home, index: Index, node: str, note: str | None
) -> list[tuple[str, str]]:
    """The (reason, fix) pairs that refuse promoting ``node``; ``--override`` lifts them.

    A model with an open flag, a model whose run's code is not a clean, recorded
    commit (or with no recorded run at all), and a promotion without a note.
    """
    from mltrail.audit.flags import open_flags_of

    found: list[tuple[str, str]] = []
    flags = open_flags_of(index, node)
    if flags:
        sources = ", ".join(sorted({f.source or "?" for f in flags}))
        found.append((
            f"{node} has {len(flags)} open flag(s): upstream source {sources} changed",
            "review it, then `mltrail flags clear MODEL --note ...`",
        ))  # fmt: skip
    found.extend(_code_refusals(home, index, node))
    if not note or not note.strip():
        found.append((
            "a promotion needs --note saying why",
            'add --note "validation VR-31 passed, ticket RISK-142"',
        ))  # fmt: skip
    return found


def _code_refusals(home: Home, index: Index, node: str) -> list[tuple[str, str]]:
    """A refusal for each run that says it wrote ``node`` and whose code is not a
    clean, recorded commit: another run claiming the same bytes from a clean
    commit does not make a model trained on uncommitted code look recorded."""
    runs = writer_runs(index, node)
    if not runs:
        return [(
            f"no recorded run made {node}: its code is unrecorded",
            "train it under `mltrail run` (or mltrail.start_run) from a git commit",
        )]  # fmt: skip
    found: list[tuple[str, str]] = []
    refused = 0
    for run in runs:  # every claimant is checked; the first few are named
        mine = _run_code_refusals(home, index, node, run)
        refused += bool(mine)
        if refused <= MAX_CLAIMANTS_SHOWN:
            found.extend(mine)
    if refused > MAX_CLAIMANTS_SHOWN:
        found.append((
            f"{refused - MAX_CLAIMANTS_SHOWN} more run(s) that say they made {node} "
            "are refused for their code too",
            f"`mltrail trace {node}` lists the runs that claim it",
        ))  # fmt: skip
    return found


def _run_code_refusals(
    home: Home, index: Index, node: str, run: str
) -> list[tuple[str, str]]:
    rows = index.query(
        "SELECT seq FROM records WHERE run = ? AND kind = 'run.code' ORDER BY seq LIMIT 1",
        (run,),
    )
    if not rows:
        return [(
            f"run {run} that made {node} has no code record",
            "retrain under `mltrail run` from a git commit",
        )]  # fmt: skip
    code = home.ledger.record(rows[0][0]).entry.body
    if code.get("vcs") != "git" or not code.get("commit"):
        why = code.get("reason") or "no git commit"
        return [(
            f"run {run} that made {node} did not run from a git commit ({why})",
            "commit the code to git and retrain",
        )]  # fmt: skip
    if code.get("dirty"):
        untracked = code.get("untracked_count") or 0
        extra = f", {untracked} untracked file(s)" if untracked else ""
        return [(
            f"run {run} that made {node} ran on uncommitted code "
            f"(commit {str(code['commit'])[:12]} with changes{extra})",
            "commit (or .gitignore) the changes and retrain",
        )]  # fmt: skip
    return []


def governance_of(home: Home, index: Index, nodes: list[str]) -> dict[str, Any]:
    """For each model node: its card fields set, its open flags, its approvals.

    What ``trace``, ``show`` and ``model history`` print beside a model; nodes
    with none of the three are left out. Their rows are checked against their
    records first (the index is rebuilt on a difference).
    """
    from mltrail.audit.flags import open_flags_of
    from mltrail.index.check import node_rows_differ, repaired

    repaired(index, node_rows_differ(index, nodes))

    found: dict[str, Any] = {}
    for node in dict.fromkeys(nodes):
        if node.partition(":")[0] not in ("model", "file", "data"):
            continue
        card = {k: v for k, v in model_card(home, node, index=index).items()
                if k != "model" and v is not None}  # fmt: skip
        flags = [f.to_dict() for f in open_flags_of(index, node)]
        decisions = _approvals(index, node, None)
        if card or flags or decisions:
            found[node] = {"card": card, "open_flags": flags, "approvals": decisions}
    return found
