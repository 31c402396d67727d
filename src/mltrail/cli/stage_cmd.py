"""``mltrail model promote|demote|history``: which model held which stage, when."""

from __future__ import annotations

import os
from pathlib import Path

import click

from mltrail.cli.output import console, emit_json, json_option, open_from, open_index
from mltrail.cli.reads import model_history, with_governance
from mltrail.cli.typed_text import typed
from mltrail.record.stages import demote as record_demote
from mltrail.record.stages import lock_model
from mltrail.record.stages import promote as record_promote

__all__ = ["demote", "history", "lock", "promote"]

_stage_option = click.option(
    "--stage", required=True, help="The stage: production, staging, shadow, ..."
)
_note_option = click.option("--note", help="Why (recorded in the entry).")


@click.command()
@click.argument("model", metavar="MODEL")
@_stage_option
@_note_option
@click.option(
    "--override",
    metavar="REASON",
    help="Promote despite an open flag, uncommitted or unrecorded code, or no "
    "--note; the reason and what it lifted are recorded. Does not lift an "
    "approval gate or a rejection.",
)
@json_option
@click.pass_context
def promote(
    ctx: click.Context,
    model: str,
    stage: str,
    note: str | None,
    override: str | None,
    as_json: bool,
) -> None:
    """Record that MODEL now holds a stage (replacing the model that held it).

    MODEL is a model file or folder, its id (or 4+ hex digits), an output's
    name, or a run that wrote exactly one output. Who and when come from the
    signed entry; no model registry is written to.

    Refused (exit 2, naming the fix) without --note, for a model with an open
    flag (`mltrail flags`), and for a model whose run used uncommitted code, no
    git, or was not recorded, unless --override REASON. A stage gated with
    `mltrail model gate STAGE --require-approval N` also needs N approvals by
    people other than whoever trained the model (so a recorded run must have
    made it), and no standing rejection, of it or of the same weights by another
    name (its folder, its weights file).

    \b
    Examples:
      mltrail model promote out/model.safetensors --stage production \\
          --note "validation VR-31 passed, ticket RISK-142"
      mltrail model promote out/model.safetensors --stage staging \\
          --note "smoke test" --override "notebook experiment, no git yet"
      mltrail model history --stage production
    """
    home = open_from(ctx, writable=True)
    try:
        body = record_promote(
            home,
            open_index(home),
            model,
            stage=stage,
            note=typed(home, note),
            override=typed(home, override),
            cwd=Path.cwd(),
        )
    finally:
        home.close()
    if as_json:
        emit_json(body)
        return
    replaced = f" (replacing {body['replaces']})" if body.get("replaces") else ""
    console.print(f"{body['model_type']}:{body['model']} now holds {stage}{replaced}")
    if body.get("override", {}).get("refused"):
        lifted = "; ".join(body["override"]["refused"])
        from rich.text import Text

        console.print(Text.assemble(("overridden:", "yellow"), f" {lifted}"))


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
            home,
            open_index(home),
            model,
            stage=stage,
            note=typed(home, note),
            cwd=Path.cwd(),
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
    Each gated promotion's gate, judged from the records before it (NOT MET for
    one `promote` would have refused: appended by hand, or racing a rejection;
    a gate lowered just before it is named, and a gate set after the time of
    a promotion pushed later from an offline ledger), and each model's card (`mltrail
    model describe`), open flags and approvals follow the table (in --json:
    `gate`, `card`, `open_flags` and `approvals` of each event).

    \b
    Examples:
      mltrail model history
      mltrail model history --stage production --at 2026-03-14T09:30Z
      mltrail model history --at 2026-03-14 --json
    """
    events, found = model_history(lambda: open_from(ctx), stage, at)
    if as_json:
        emit_json([with_governance(e.to_dict(), found) for e in events])
        return
    from mltrail.cli.read_text import print_history

    print_history(events, found, at)


@click.command()
@click.argument("model", metavar="MODEL")
@click.option("--reason", help="Why the audit is final (recorded in the entry).")
@json_option
@click.pass_context
def lock(ctx: click.Context, model: str, reason: str | None, as_json: bool) -> None:
    """Finalise MODEL's audit: a signed model.sealed entry, then a seal.

    After it the ledger refuses entries that would amend the runs that made
    MODEL (their run id), except notes. When a seal target is configured
    (`mltrail seal configure`), the ledger is sealed right away.

    \b
    Examples:
      mltrail model lock out/model.safetensors --reason "released as v2.1"
      mltrail model lock 5e88a1f0 --json
    """
    from mltrail.evidence.seals import configured_target, seal_ledger

    home = open_from(ctx, writable=True)
    try:
        reason = typed(home, reason)
        body = lock_model(home, open_index(home), model, reason=reason, cwd=Path.cwd())
        sealed = None
        if home.settings.seal_target or os.environ.get("MLTRAIL_SEAL_TARGET"):
            home.checkpoint()
            worm, retention = configured_target(home, None, None)
            sealed = seal_ledger(home, worm, retention).to_dict()
    finally:
        home.close()
    if as_json:
        emit_json({**body, "seal": sealed})
        return
    runs = ", ".join(body["runs"]) or "none recorded"
    console.print(f"{body['model_type']}:{body['model']} locked (runs: {runs})")
    if sealed is not None:
        console.print(
            f"sealed to {sealed['url']}: records 0 to {sealed['sealed_size'] - 1}",
            markup=False,
        )
