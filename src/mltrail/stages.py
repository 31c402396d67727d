"""Model stages: who moved which model into or out of production, and when.

A stage (``production``, ``staging``, any name) holds one model at a time.
``promote`` records ``model.promoted`` with ``action: enter`` (replacing the
model that held the stage), ``demote`` records ``action: leave``. The ledger is
the history, so "which model was deciding on 14 March?" is a lookup:

    >>> promote(home, index, "model.safetensors", stage="production")  # doctest: +SKIP
    >>> stage_history(index, at=parse_when("2026-03-14"))              # doctest: +SKIP
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mltrail.errors import InputError
from mltrail.refs import resolve_node
from mltrail.trace import latest_writer, run_outputs

if TYPE_CHECKING:
    from pathlib import Path

    from mltrail.home import Home
    from mltrail.index import Index

__all__ = ["Promotion", "demote", "promote", "stage_history", "stage_holders"]

_STAGE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


@dataclass(frozen=True)
class Promotion:
    """One ``model.promoted`` record as the index holds it."""

    seq: int
    model: str
    run: str | None
    stage: str
    action: str
    time: str
    user: str | None
    note: str | None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return dict(self.__dict__)


def _model_node(index: Index, ref: str, cwd: Path | None) -> str:
    """The model node ``ref`` names; a run with exactly one output names that output."""
    node = resolve_node(index, ref, cwd=cwd)
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


def stage_holders(index: Index, *, at: float | None = None) -> dict[str, Promotion]:
    """The model holding each stage now (or at epoch second ``at``)."""
    sql = "SELECT seq, model, run, stage, action, time, user, note FROM promotions"
    args: tuple[Any, ...] = ()
    if at is not None:
        sql += " WHERE ts <= ?"
        args = (at,)
    holders: dict[str, Promotion] = {}
    for row in index.query(sql + " ORDER BY seq", args):
        event = Promotion(*row)
        if event.action == "enter":
            holders[event.stage] = event
        elif event.stage in holders and holders[event.stage].model == event.model:
            del holders[event.stage]
    return holders


def stage_history(
    index: Index, *, stage: str | None = None, since: float | None = None
) -> list[Promotion]:
    """Every promotion and demotion, oldest first."""
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
    if not _STAGE.fullmatch(stage):
        raise InputError(
            f"stage {stage!r} is not a name (letters, digits, . _ -)",
            hint="e.g. production, staging, shadow",
        )
    return _model_node(index, ref, cwd), stage_holders(index).get(stage)


def promote(
    home: Home,
    index: Index,
    ref: str,
    *,
    stage: str,
    note: str | None = None,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Record that the model ``ref`` names now holds ``stage``; return the body."""
    node, current = _model_and_holder(index, ref, stage, cwd)
    if current is not None and current.model == node:
        raise InputError(f"{node} already holds {stage} (since {current.time})")
    body = _body(index, node, ref, stage, "enter", note)
    body["replaces"] = current.model if current else None
    home.ledger.append("model.promoted", body)
    return body


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
    body = _body(index, node, ref, stage, "leave", note)
    home.ledger.append("model.promoted", body)
    return body


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
    node = _model_node(index, ref, cwd)
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
