"""The text forms of ``runs``, ``trace`` and ``model history``, without click.

The click commands and the plain path (:func:`mltrail.cli.reads.run_plain`)
both print through these functions, so both print the same text; the printer
is :func:`mltrail.cli.text_out.text_out` (rich on a terminal, ADR 0041).
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from mltrail.cli.governance_view import print_governance
from mltrail.cli.text_out import TableColumn, one_line, text_out

if TYPE_CHECKING:
    from mltrail.audit.query import RunFilter
    from mltrail.core.lineage import LineageGraph
    from mltrail.record.run_status import RunSummary
    from mltrail.record.stages import Promotion

__all__ = ["print_history", "print_runs", "print_trace"]

_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "interrupted": "yellow",
    "aborted": "red",
    "running": "cyan",
    "stale": "magenta",
}


def print_runs(
    spec: RunFilter, shown: list[RunSummary], more: bool, limit: int
) -> None:
    """``mltrail runs``: a table of runs (or why there is none), newest last."""
    out = text_out()
    if not shown:
        out.line(
            "no runs match"
            if _filtered(spec)
            else "no runs yet: record one with `mltrail run -- <command>`"
        )
        return
    columns = [TableColumn("run", no_wrap=True, min_width=36)] + [
        TableColumn(name, no_wrap=name != "name")
        for name in ("name", "status", "started (UTC)", "took", "exit", "by")
    ]
    out.table(
        columns,
        [
            (
                s.id,
                one_line(s.name or ""),  # a name cannot add a row
                (_status(s), _STYLE.get(s.status, "")),
                _started(s),
                _duration(s),
                "" if s.exit_code is None else str(s.exit_code),
                one_line(s.who()),
            )
            for s in shown
        ],
    )
    if more:
        out.line(f"(older runs not shown; -n 0 for all, -n {2 * limit} for more)")


def _status(summary: RunSummary) -> str:
    """The status, and who recorded it when not the run's starter."""
    if summary.ended_by is None:
        return summary.status
    return f"{summary.status} (by {one_line(summary.ended_by) or '(no user)'})"


def _started(summary: RunSummary) -> str:
    """The start, and when a run pushed from another ledger reached this one."""
    started = summary.started[:16].replace("T", " ")
    if summary.pushed is None:
        return started
    return f"{started} (pushed {summary.pushed['time'][:16].replace('T', ' ')})"


def _duration(summary: RunSummary) -> str:
    if summary.duration_s is None:
        return ""
    seconds = float(summary.duration_s)
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _filtered(spec: RunFilter) -> bool:
    return any(
        (spec.window.start, spec.window.end, spec.user, spec.status, spec.params,
         spec.dataset, spec.name)
    )  # fmt: skip


def print_trace(answer: dict[str, Any], graph: LineageGraph) -> None:
    """``mltrail trace``: what made the model, its lineage, its governance."""
    from mltrail.core.lineage import to_tree
    from mltrail.core.run_owner import describe_others
    from mltrail.ledger.purged import describe_purged

    out = text_out()
    node = answer["node"]
    out.line(f"{node['type']} ", one_line(node["label"]), style="bold")
    if not answer["made_by"]:
        out.line("no recorded run wrote this (an input from outside the ledger)")
    for made in answer["made_by"]:
        run = made["run"]
        out.line(
            "\n",
            (f"made by run {run['id']}", "bold"),
            " (",
            one_line(run["name"] or "unnamed"),
            f"), {run['status']}, started {run['started']} by ",
            one_line(_who(run)),
        )
        others = made.get("added_by_others")
        for line in describe_others(others) if others else ():
            out.line(f"  note: {line}")
        for item in made.get("purged") or ():
            out.line("  erased: ", one_line(describe_purged(item)))
        out.line(f"  command: {' '.join(run['command'])}")
        code = made["code"] or {}
        out.line(
            f"  code: {code.get('commit') or 'no git'}"
            + (" (dirty)" if code.get("dirty") else "")
        )
        env = made["environment"] or {}
        out.line(
            f"  environment: python {env.get('python')}, {env.get('packages')} packages"
        )
        for key, value in made["params"].items():
            out.line("  param ", one_line(key), f" = {json.dumps(value)}")
        for data in made["data"]:
            out.line(
                f"  data {data['role']}: {data['dataset']} ({data['files']} files, "
                f"{data['bytes']} bytes) {data['path']}"
            )
        for tune in made["finetune"]:
            base = (tune.get("base") or {}).get("model")
            adapter = tune.get("adapter") or {}
            out.line(
                f"  fine-tune: base {base}, {adapter.get('method', '')} "
                f"r={adapter.get('r')} alpha={adapter.get('lora_alpha')}"
            )
    out.line("\n", ("lineage", "bold"), " (newest first, back to the raw sources)")
    for line in to_tree(graph, upstream=True):
        out.line(line)
    print_governance(answer["governance"])


def _who(run: dict[str, Any]) -> str:
    from mltrail.capture.machine.identity import describe_user

    user = describe_user(run.get("user"), run.get("claimed_user"))
    return f"{user}@{run.get('host') or '?'}"


def _print_gates(events: list[Promotion], found: dict[str, Any]) -> None:
    """Each gated promotion's gate as the records before it stood, one line each:
    a promotion ``promote`` did not record (by hand, racing a rejection) is NOT MET."""
    from mltrail.audit.governance import gate_text

    out = text_out()
    for e in events:
        gate = found.get(f"gate:{e.seq}")
        text = gate_text(gate)
        if not text or text == "not gated":
            continue
        shown = one_line(text)
        out.line(
            f"seq {e.seq}: ",
            one_line(e.stage),
            " gate ",
            (shown, "yellow") if gate and not gate["met"] else shown,
        )


def print_history(
    events: list[Promotion], found: dict[str, Any], at: str | None
) -> None:
    """``mltrail model history``: the stage events (or holders at ``at``) and their
    models' governance."""
    out = text_out()
    if not events:
        out.line("no stage held then" if at else "no promotions recorded yet")
        return
    headers = ("time (UTC)", "stage", "action", "model", "run", "by", "note")
    out.table(
        [TableColumn(h, overflow="fold") for h in headers],
        [
            (
                e.time[:19].replace("T", " "), one_line(e.stage), e.action,
                one_line(e.model), (e.run or "")[:13], one_line(e.user or ""),
                e.note or "",
            )
            for e in events
        ],
    )  # fmt: skip
    _print_gates(events, found)
    print_governance({k: v for k, v in found.items() if not k.startswith("gate:")})
    if at is not None:
        out.line("`mltrail trace MODEL` shows what made each of them", style="dim")
