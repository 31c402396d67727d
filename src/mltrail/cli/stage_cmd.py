"""``mltrail model promote|demote|history``: which model held which stage, when."""

from __future__ import annotations

from pathlib import Path

import click

from mltrail.cli.output import console, emit_json, json_option, open_from, open_index
from mltrail.query import parse_when
from mltrail.stages import demote as record_demote
from mltrail.stages import promote as record_promote
from mltrail.stages import stage_history, stage_holders

__all__ = ["demote", "history", "promote"]

_stage_option = click.option(
    "--stage", required=True, help="The stage: production, staging, shadow, ..."
)
_note_option = click.option("--note", help="Why (recorded in the entry).")


@click.command()
@click.argument("model", metavar="MODEL")
@_stage_option
@_note_option
@json_option
@click.pass_context
def promote(
    ctx: click.Context, model: str, stage: str, note: str | None, as_json: bool
) -> None:
    """Record that MODEL now holds a stage (replacing the model that held it).

    MODEL is a model file or folder, its id (or 4+ hex digits), an output's
    name, or a run that wrote exactly one output. Who and when come from the
    signed entry; no model registry is written to.

    \b
    Examples:
      mltrail model promote out/model.safetensors --stage production \\
          --note "approved by risk committee, ticket RISK-142"
      mltrail model history --stage production
    """
    home = open_from(ctx, writable=True)
    try:
        body = record_promote(
            home, open_index(home), model, stage=stage, note=note, cwd=Path.cwd()
        )
    finally:
        home.close()
    if as_json:
        emit_json(body)
        return
    replaced = f" (replacing {body['replaces']})" if body.get("replaces") else ""
    console.print(f"{body['model_type']}:{body['model']} now holds {stage}{replaced}")


@click.command()
@click.argument("model", metavar="MODEL")
@_stage_option
@_note_option
@json_option
@click.pass_context
def demote(
    ctx: click.Context, model: str, stage: str, note: str | None, as_json: bool
) -> None:
    """Record that MODEL left a stage (the stage is then empty).

    \b
    Example:
      mltrail model demote out/model.safetensors --stage production --note "rolled back"
    """
    home = open_from(ctx, writable=True)
    try:
        body = record_demote(
            home, open_index(home), model, stage=stage, note=note, cwd=Path.cwd()
        )
    finally:
        home.close()
    if as_json:
        emit_json(body)
        return
    console.print(f"{body['model_type']}:{body['model']} left {stage}")


@click.command()
@click.option("--stage", help="Only this stage.")
@click.option("--at", "at", metavar="WHEN", help="Which model held each stage then.")
@json_option
@click.pass_context
def history(
    ctx: click.Context, stage: str | None, at: str | None, as_json: bool
) -> None:
    """Show promotions, or with --at which model held each stage at that moment.

    This is the loan-inquiry question: the audit starts from a decision's date.
    From the model it names, `mltrail trace` tells what data and settings made it.

    \b
    Examples:
      mltrail model history
      mltrail model history --stage production --at 2026-03-14T09:30Z
      mltrail model history --at 2026-03-14 --json
    """
    home = open_from(ctx)
    try:
        index = open_index(home)
        if at is not None:
            holders = stage_holders(index, at=parse_when(at, end=len(at) == 10))
            events = [p for s, p in sorted(holders.items()) if stage in (None, s)]
        else:
            events = stage_history(index, stage=stage)
    finally:
        home.close()
    if as_json:
        emit_json([e.to_dict() for e in events])
        return
    if not events:
        console.print("no stage held then" if at else "no promotions recorded yet")
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("time (UTC)", "stage", "action", "model", "run", "by", "note"):
        table.add_column(column, overflow="fold")
    for e in events:
        table.add_row(
            e.time[:19].replace("T", " "), e.stage, e.action, e.model,
            (e.run or "")[:13], e.user or "", e.note or "",
        )  # fmt: skip
    console.print(table)
    if at is not None:
        console.print("[dim]`mltrail trace MODEL` shows what made each of them[/dim]")
