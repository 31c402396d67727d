"""Model stages: who moved which model into or out of production, and when.

A stage (``production``, ``staging``, any name) holds one model at a time.
``promote`` records ``model.promoted`` with ``action: enter`` (replacing the
model that held the stage), ``demote`` records ``action: leave``. The ledger is
the history, so "which model was deciding on 14 March?" is a lookup.

``promote`` refuses a flagged model, a model from uncommitted or unrecorded code
and a promotion without a note, unless ``override`` gives a reason (recorded in
the entry with what it overrode); and it refuses, whatever the override, a model
that lacks the approvals the stage's gate requires (see :mod:`mltrail.audit.governance`):

    >>> promote(home, index, "model.safetensors", stage="production")  # doctest: +SKIP
    >>> stage_history(index, at=parse_when("2026-03-14"))              # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mltrail.audit.governance import (
    check_stage,
    checked_approval_status,
    promotion_refusals,
    resolve_model,
)
from mltrail.audit.trace import latest_writer
from mltrail.errors import InputError
from mltrail.values import Frozen

if TYPE_CHECKING:
    from pathlib import Path

    from mltrail.index import Index
    from mltrail.ledger.home import Home

__all__ = ["Promotion", "demote", "promote", "stage_history", "stage_holders"]


class Promotion(Frozen):
    """One ``model.promoted`` record as the index holds it."""

    __match_args__ = ("seq", "model", "run", "stage", "action", "time", "user", "note")
    seq: int
    model: str
    run: str | None
    stage: str
    action: str
    time: str
    user: str | None
    note: str | None

    def __init__(
        self,
        seq: int,
        model: str,
        run: str | None,
        stage: str,
        action: str,
        time: str,
        user: str | None,
        note: str | None,
    ) -> None:
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "run", run)
        object.__setattr__(self, "stage", stage)
        object.__setattr__(self, "action", action)
        object.__setattr__(self, "time", time)
        object.__setattr__(self, "user", user)
        object.__setattr__(self, "note", note)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return dict(self.__dict__)


def stage_holders(index: Index, *, at: float | None = None) -> dict[str, Promotion]:
    """The model holding each stage now (or at epoch second ``at``): the last
    ``enter`` by entry time (then seq) not followed by its ``leave``.

    Entry times, not seqs, order the events, so that a promotion appended late
    but dated earlier (a writer's clock a few minutes behind, or an entry
    pushed from an offline ledger) holds the stage from its time until the next
    event, and "now" is the same answer as any moment after the last event.

    The rows that decide it are checked against their records first: each
    holder's, every later one up to ``at`` and the first after it (one of them
    moved to another stage, another time or another model would change the
    answer). On a difference the index is rebuilt and the answer found again.
    """
    from mltrail.index.check import repaired, seqs_differ

    holders = _holders(index, at)
    seqs = {p.seq for p in holders.values()}
    if seqs:
        marks = ", ".join("?" * len(seqs))
        sql = (
            "SELECT seq FROM promotions WHERE ts >= "  # noqa: S608 (marks only)
            f"(SELECT min(ts) FROM promotions WHERE seq IN ({marks}))"
        )
        args: list[Any] = sorted(seqs)
        if at is not None:
            sql += " AND ts <= ?"
            args.append(at)
        seqs.update(s for (s,) in index.query(sql, tuple(args)))
    if at is not None:
        after = index.query(
            "SELECT seq FROM promotions WHERE ts > ? ORDER BY ts, seq LIMIT 1", (at,)
        )
        seqs.update(s for (s,) in after)
    if repaired(index, seqs_differ(index, seqs, ("promotions",))):
        holders = _holders(index, at)
    return holders


def _holders(index: Index, at: float | None) -> dict[str, Promotion]:
    sql = "SELECT seq, model, run, stage, action, time, user, note FROM promotions"
    args: tuple[Any, ...] = ()
    if at is not None:
        sql += " WHERE ts <= ?"
        args = (at,)
    holders: dict[str, Promotion] = {}
    for row in index.query(sql + " ORDER BY ts, seq", args):
        event = Promotion(*row)
        if event.action == "enter":
            holders[event.stage] = event
        elif event.stage in holders and holders[event.stage].model == event.model:
            del holders[event.stage]
    return holders


def stage_history(
    index: Index, *, stage: str | None = None, since: float | None = None
) -> list[Promotion]:
    """Every promotion and demotion, oldest first (each row checked against its
    record first; on a difference the index is rebuilt and read again)."""
    from mltrail.index.check import repaired, seqs_differ

    found = _history(index, stage, since)
    if repaired(index, seqs_differ(index, [p.seq for p in found], ("promotions",))):
        found = _history(index, stage, since)
    return found


def _history(index: Index, stage: str | None, since: float | None) -> list[Promotion]:
    sql = "SELECT seq, model, run, stage, action, time, user, note FROM promotions WHERE 1"
    args: list[Any] = []
    if stage is not None:
        sql += " AND stage = ?"
        args.append(stage)
    if since is not None:
        sql += " AND ts >= ?"
        args.append(since)
    return [Promotion(*row) for row in index.query(sql + " ORDER BY seq", args)]


def _model_and_holder(
    index: Index, ref: str, stage: str, cwd: Path | None
) -> tuple[str, Promotion | None]:
    """The model node ``ref`` names and what holds ``stage`` now.

    Raises:
        InputError: ``stage`` is not a name, or ``ref`` names no model.
    """
    check_stage(stage)
    return resolve_model(index, ref, cwd), stage_holders(index).get(stage)


def promote(
    home: Home,
    index: Index,
    ref: str,
    *,
    stage: str,
    note: str | None = None,
    override: str | None = None,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Record that the model ``ref`` names now holds ``stage``; return the body.

    Raises:
        InputError: a bad stage or model, the model already holds the stage, a
            refusal ``override`` does not lift (each named with its fix), or the
            stage's approval gate is not met.
    """
    node, current = _model_and_holder(index, ref, stage, cwd)
    if current is not None and current.model == node:
        raise InputError(f"{node} already holds {stage} (since {current.time})")
    if override is not None and not override.strip():
        raise InputError(
            "--override needs a reason", hint='e.g. --override "hotfix INC-7"'
        )
    refused = promotion_refusals(home, index, node, note)
    if refused and override is None:
        reasons = "; ".join(reason for reason, _ in refused)
        fixes = "; ".join(fix for _, fix in refused)
        raise InputError(
            f"promotion refused: {reasons}",
            hint=f"{fixes}; or pass --override REASON (recorded in the entry)",
        )
    # decided from rows checked against their records (every gate and decision
    # of the stage, so a deleted rejection is found): the entry is signed
    gate = checked_approval_status(index, node, stage, complete=True)
    _require_gate(node, stage, gate)
    _require_later(home, index, stage)
    body = _body(index, node, ref, stage, "enter", note)
    body["replaces"] = current.model if current else None
    if override is not None:
        body["override"] = {"reason": override, "refused": [r for r, _ in refused]}
    if gate["required"] or gate["approvers"]:
        body["approvals"] = {
            "required": gate["required"],
            "approvers": gate["approvers"],
            "trainers": gate["trainers"],
        }
    home.ledger.append("model.promoted", body)
    return body


def _require_gate(node: str, stage: str, gate: dict[str, Any]) -> None:
    """Raise unless nobody rejects ``node`` for ``stage`` and enough approve."""
    if gate["rejected_by"]:
        [first, *_] = gate["rejections"]
        raise InputError(
            f"{', '.join(gate['rejected_by'])} rejected {node} for {stage} "
            f"(seq {first['seq']}: {first['note']})",
            hint="a rejection stands until the same person records an approval "
            "(`mltrail model approve MODEL --stage STAGE --note ...`); "
            "--override does not lift it",
        )
    if len(gate["approvers"]) < gate["required"]:
        made_by = ", ".join(gate["trainers"]) or "unknown"
        have = ", ".join(gate["approvers"]) or "none"
        raise InputError(
            f"{stage} requires {gate['required']} approval(s) of {node} by people other "
            f"than who trained it ({made_by}); it has {len(gate['approvers'])} ({have})",
            hint="another account runs `mltrail model approve MODEL --stage "
            f"{stage} --note ...`; --override does not lift a gate",
        )
    if gate["required"] and not gate["trainers"]:
        raise InputError(
            f"{stage} requires {gate['required']} approval(s) of {node} by people other "
            "than who trained it, and no recorded run made it: its approvers "
            f"({', '.join(gate['approvers'])}) cannot be shown to be someone else",
            hint="record the run that made or brought in the model (`mltrail run "
            "--output ...`): whoever started it is its trainer; --override does not "
            "lift a gate",
        )


def demote(
    home: Home,
    index: Index,
    ref: str,
    *,
    stage: str,
    note: str | None = None,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Record that the model ``ref`` names left ``stage``; return the body."""
    node, current = _model_and_holder(index, ref, stage, cwd)
    if current is None or current.model != node:
        holder = "nothing" if current is None else current.model
        raise InputError(f"{node} does not hold {stage} ({holder} does)")
    _require_later(home, index, stage)
    body = _body(index, node, ref, stage, "leave", note)
    home.ledger.append("model.promoted", body)
    return body


def _require_later(home: Home, index: Index, stage: str) -> None:
    """Refuse an event that would be dated before the stage's last one: events
    are ordered by time, so it would not take effect as the promoter expects
    (this machine's clock is behind the one that dated the last event)."""
    from mltrail.core.chain import is_later
    from mltrail.core.codec import format_time

    last = index.query(
        "SELECT seq, time FROM promotions WHERE stage = ? ORDER BY ts DESC, seq DESC "
        "LIMIT 1",
        (stage,),
    )
    now = format_time(home.ledger.clock.now())
    if last and is_later(last[0][1], now):
        raise InputError(
            f"{stage}'s last event (seq {last[0][0]}) is dated {last[0][1]}, after "
            f"this machine's clock ({now}): an event dated before it would not be "
            f"the latest on {stage}",
            hint="check this machine's clock, or wait until it passes that time",
        )


def _body(
    index: Index, node: str, ref: str, stage: str, action: str, note: str | None
) -> dict[str, Any]:
    kind, _, ident = node.partition(":")
    run, path = latest_writer(index, node)
    body: dict[str, Any] = {
        "model": ident,
        "model_type": kind,
        "stage": stage,
        "action": action,
        "run": run,
        "path": path,
        "ref": ref,
    }
    if note:
        body["note"] = note
    return body


def model_writers(index: Index, node: str) -> list[str]:
    """Every run that wrote the model, file or dataset ``node``, oldest first."""
    kind, _, ident = node.partition(":")
    rows = []
    if kind == "model":
        rows = index.query(
            "SELECT run, min(seq) FROM models WHERE model = ? AND role IN "
            "('output', 'adapter') AND run IS NOT NULL GROUP BY run",
            (ident,),
        )
    column = {"model": "model", "file": "sha256", "data": "dataset"}.get(kind)
    if column is not None:
        rows += index.query(
            f"SELECT run, min(seq) FROM data WHERE {column} = ? AND direction = 'out' "  # noqa: S608
            "AND run IS NOT NULL GROUP BY run",
            (ident,),
        )
    first: dict[str, int] = {}
    for run, seq in rows:
        first[run] = min(seq, first.get(run, seq))
    return sorted(first, key=first.__getitem__)


def lock_model(
    home: Home,
    index: Index,
    ref: str,
    *,
    reason: str | None = None,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Finalise the audit of the model ``ref`` names: a signed ``model.sealed``
    entry naming the runs that made it, which then take no more entries but
    notes (see :mod:`mltrail.core.lock`). Returns the body.

    Raises:
        InputError: ``ref`` names no model, or it is locked already.
    """
    node = resolve_model(index, ref, cwd)
    kind, _, ident = node.partition(":")
    for record in home.ledger.records_of_kinds(("model.sealed",)):
        if record.entry.body.get("model") == ident:
            raise InputError(
                f"{node} is locked already (model.sealed at seq {record.seq})"
            )
    body: dict[str, Any] = {
        "model": ident,
        "model_type": kind,
        "runs": model_writers(index, node),
    }
    if reason:
        body["reason"] = reason
    home.ledger.append("model.sealed", body)
    return body
