"""``mltrail verify``: check the whole ledger and say whether it is intact."""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
)

from mltrail.cli.output import (
    WORKERS,
    console,
    emit_json,
    err_console,
    json_option,
    open_from,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["verify"]


@contextmanager
def _progress(enabled: bool) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("verifying"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("records"),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=err_console, transient=True) as bar:
        task = bar.add_task("verify", total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@click.command()
@click.option(
    "--workers",
    type=WORKERS,
    default=None,
    help="Processes for signature checks (default: all cores on large ledgers).",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the verdict.")
@json_option
@click.pass_context
def verify(ctx: click.Context, workers: int | None, quiet: bool, as_json: bool) -> None:
    """Check the whole ledger; exit 0 when intact, 3 when tampering is found.

    \b
    Checks, for every record: schema, seq continuity, the prev hash chain, the
    signature against the key valid at that point (key.added / key.revoked),
    every referenced blob; then the Merkle root against every checkpoint (and the
    witness checkpoint this machine saw last), and consistency proofs between
    successive checkpoints.

    \b
    Examples:
      mltrail verify
      mltrail verify --json | jq .problems
    """
    home = open_from(ctx)
    show_bar = not as_json and not quiet and sys.stderr.isatty()
    with _progress(show_bar) as progress:
        report = home.verify(progress=progress, workers=workers)
    if as_json:
        emit_json(report.to_dict())
    else:
        style = "green" if report.ok else "bold red"
        console.print(report.verdict(), style=style)
        if not quiet:
            for problem in report.problems:
                console.print(f"  {problem.severity}: {problem}", markup=False)
    ctx.exit(0 if report.ok else 3)
