"""``mltrail runs``: list runs; ``mltrail runs close``: end runs whose recorder died."""

from __future__ import annotations

import click

from mltrail.cli.output import (
    COUNT,
    console,
    emit_json,
    json_option,
    open_from,
)
from mltrail.cli.reads import find_runs
from mltrail.cli.typed_text import typed
from mltrail.errors import InputError

__all__ = ["runs"]


@click.group(invoke_without_command=True)
@click.option("--since", metavar="WHEN", help="Started at or after (date, time, 7d).")
@click.option("--until", metavar="WHEN", help="Started before the end of (date, time).")
@click.option("--week", metavar="YYYY-Www", help="Started in this ISO week (2026-W42).")
@click.option("--user", help="Started by this user.")
@click.option(
    "--status", help="succeeded, failed, interrupted, aborted, running, stale."
)
@click.option(
    "--param", "params", multiple=True, metavar="KEY=VALUE", help="With this parameter."
)
@click.option(
    "--dataset", metavar="ID", help="Read or wrote this dataset (id or prefix)."
)
@click.option("--name", metavar="GLOB", help="Run name matches this glob (train-*).")
@click.option(
    "-n",
    "--limit",
    type=COUNT,
    default=20,
    show_default=True,
    help="Show the newest N runs (0: all).",
)
@json_option
@click.pass_context
def runs(
    ctx: click.Context,
    since: str | None,
    until: str | None,
    week: str | None,
    user: str | None,
    status: str | None,
    params: tuple[str, ...],
    dataset: str | None,
    name: str | None,
    limit: int,
    as_json: bool,
) -> None:
    """List runs, newest last: status, start, duration, exit code, who and where.

    Filters combine (all must hold). Times are UTC: a date (2026-03-14), a time
    (2026-03-14T09:30Z), an ISO week (2026-W42) or an age (7d, 12h). --param
    matches values as typed: --param lr=0.5 finds 0.5 whether it came from the
    command line, a config file or the API. --param and --dataset match what
    the run's starter recorded: params or data another user added to the run
    do not make it match (`mltrail show RUN` names them).

    A run is `running` while its recorder lives; `stale` when the recorder died
    before recording the end (`mltrail runs close --stale` records those as
    aborted; the next `mltrail run` does it too).

    \b
    Examples:
      mltrail runs
      mltrail runs --week 2026-W42 --name 'loan-*'
      mltrail runs --since 2026-03-01 --until 2026-03-14 --user alice
      mltrail runs --param temperature=0.7 --dataset 3f2a9c
      mltrail runs --status failed -n 0 --json
      mltrail runs close --stale
    """
    if ctx.invoked_subcommand is not None:
        return
    filters = {"since": since, "until": until, "week": week, "user": user,
               "status": status, "params": params, "dataset": dataset, "name": name}  # fmt: skip
    spec, shown, more = find_runs(lambda: open_from(ctx), filters, limit)
    if as_json:
        emit_json([s.to_dict() for s in shown])
        return
    from mltrail.cli.read_text import print_runs

    print_runs(spec, shown, more, limit)


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
    from mltrail.record.open_runs import close_run, close_stale_runs

    home = open_from(ctx, writable=True)
    try:
        closed = close_stale_runs(home) if stale else []
        for run_id in run_ids:
            close_run(home, run_id, reason=typed(home, reason) or reason)
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
