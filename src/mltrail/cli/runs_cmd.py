"""``mltrail runs``: list runs; ``mltrail runs close``: end runs whose recorder died."""

from __future__ import annotations

import click
from rich.table import Table

from mltrail.cli.output import console, emit_json, json_option, open_from
from mltrail.errors import InputError
from mltrail.recorder import RunSummary, close_run, close_stale_runs, list_runs

__all__ = ["runs"]

_STYLE = {
    "succeeded": "green",
    "failed": "red",
    "interrupted": "yellow",
    "aborted": "red",
    "running": "cyan",
    "stale": "magenta",
}


def _duration(summary: RunSummary) -> str:
    if summary.duration_s is None:
        return ""
    seconds = float(summary.duration_s)
    if seconds < 60:
        return f"{seconds:.1f}s"
    return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"


def _table(found: list[RunSummary]) -> Table:
    table = Table(box=None, pad_edge=False)
    table.add_column("run", no_wrap=True, min_width=36)
    for column in ("name", "status", "started (UTC)", "took", "exit", "by"):
        table.add_column(column, no_wrap=column != "name")
    for s in found:
        style = _STYLE.get(s.status, "")
        table.add_row(
            s.id,
            s.name or "",
            f"[{style}]{s.status}[/{style}]" if style else s.status,
            s.started[:16].replace("T", " "),
            _duration(s),
            "" if s.exit_code is None else str(s.exit_code),
            f"{s.user or '?'}@{s.host or '?'}",
        )
    return table


@click.group(invoke_without_command=True)
@click.option("--status", help="Only runs with this status (succeeded, failed, ...).")
@click.option(
    "-n",
    "--limit",
    default=20,
    show_default=True,
    help="Show the newest N runs (0: all).",
)
@json_option
@click.pass_context
def runs(ctx: click.Context, status: str | None, limit: int, as_json: bool) -> None:
    """List runs, newest last: status, start, duration, exit code, who and where.

    A run is `running` while its recorder lives; `stale` when the recorder died
    before recording the end (`mltrail runs close --stale` records those as
    aborted; the next `mltrail run` does it too).

    \b
    Examples:
      mltrail runs
      mltrail runs --status failed -n 0 --json
      mltrail runs close --stale
    """
    if ctx.invoked_subcommand is not None:
        return
    home = open_from(ctx)
    try:
        found = [s for s in list_runs(home) if status is None or s.status == status]
    finally:
        home.close()
    shown = found[-limit:] if limit > 0 else found
    if as_json:
        emit_json([s.to_dict() for s in shown])
        return
    if not shown:
        console.print("no runs yet: record one with `mltrail run -- <command>`")
        return
    console.print(_table(shown))
    if len(shown) < len(found):
        console.print(f"({len(found) - len(shown)} older runs not shown; -n 0 for all)")


@runs.command()
@click.argument("run_ids", nargs=-1, metavar="[RUN]...")
@click.option("--stale", is_flag=True, help="Close every run whose recorder died.")
@click.option(
    "--reason",
    default="closed by hand: the recorder stopped without recording the end",
    help="Why, recorded in the run.ended entry.",
)
@json_option
@click.pass_context
def close(
    ctx: click.Context,
    run_ids: tuple[str, ...],
    stale: bool,
    reason: str,
    as_json: bool,
) -> None:
    """Record runs whose recorder died (killed, crashed, machine lost) as aborted.

    \b
    Examples:
      mltrail runs close --stale
      mltrail runs close 0193a0c4-... --reason "node lost power"
    """
    if not run_ids and not stale:
        raise InputError("name runs to close, or pass --stale", hint="mltrail runs")
    home = open_from(ctx, writable=True)
    try:
        closed = close_stale_runs(home) if stale else []
        for run_id in run_ids:
            close_run(home, run_id, reason=reason)
            closed.append(run_id)
        if closed:
            home.checkpoint()
    finally:
        home.close()
    if as_json:
        emit_json({"closed": closed})
    elif closed:
        for run_id in closed:
            console.print(f"run {run_id} recorded as aborted")
    else:
        console.print("no stale runs")
