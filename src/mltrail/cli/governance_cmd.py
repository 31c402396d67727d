"""``mltrail model approve|describe|gate``: four eyes and model cards, as signed entries."""

from __future__ import annotations

from pathlib import Path

import click

from mltrail.audit.governance import (
    approve_model,
    checked_approval_status,
    describe_model,
    resolve_model,
    set_gate,
    stage_gates,
)
from mltrail.cli.output import console, emit_json, json_option, open_from, open_index
from mltrail.cli.typed_text import typed

__all__ = ["approve", "describe", "gate"]


@click.command()
@click.argument("model", metavar="MODEL")
@click.option("--stage", required=True, help="The stage it is approved for.")
@click.option("--note", required=True, help="What was checked (recorded).")
@click.option("--reject", is_flag=True, help="Record a rejection: it blocks promotion.")
@json_option
@click.pass_context
def approve(
    ctx: click.Context, model: str, stage: str, note: str, reject: bool, as_json: bool
) -> None:
    """Record your approval (or --reject) of MODEL for a stage (model.approved).

    You are the OS account running this command ($USER is not trusted). An
    approval by whoever trained the model is recorded but never counts toward a
    gate; several approvals by one person count once. Your newest decision for
    a model and stage stands: a rejection blocks promotion until you approve.

    \b
    Examples:
      mltrail model approve out/model.safetensors --stage production \\
          --note "validation report VR-31 reviewed, AUC 0.81 on holdout"
      mltrail model approve 5727bc68 --stage production --reject \\
          --note "bias test missing for age band 18-25"
    """
    home = open_from(ctx, writable=True)
    try:
        index = open_index(home)
        body = approve_model(
            home,
            index,
            model,
            stage=stage,
            note=typed(home, note) or note,
            reject=reject,
            cwd=Path.cwd(),
        )
        node = f"{body['model_type']}:{body['model']}"
        status = checked_approval_status(open_index(home), node, stage)
        user = home.ledger.actor.get("user")
    finally:
        home.close()
    if as_json:
        emit_json(body | {"user": user, "gate": status})
        return
    verb = "rejected" if reject else "approved"
    console.print(f"{user} {verb} {node} for {stage}", markup=False)
    if user in status["trainers"] and not reject:
        console.print(
            "you trained this model: your approval does not count toward a gate",
            style="yellow",
        )
    console.print(
        f"{stage}: {len(status['approvers'])} of {status['required']} approval(s) "
        "required"
        + (
            f"; rejected by {', '.join(status['rejected_by'])}"
            if status["rejected_by"]
            else ""
        ),
        markup=False,
    )


@click.command()
@click.argument("model", metavar="MODEL")
@click.option("--purpose", help="What it is for, and what it must not be used for.")
@click.option("--owner", help="Who answers for it (a person or team).")
@click.option(
    "--risk-tier", help="Its risk tier (e.g. high, tier-1, EU AI Act high-risk)."
)
@click.option(
    "--limitations", help="Known limitations, populations it was not tested on."
)
@json_option
@click.pass_context
def describe(
    ctx: click.Context,
    model: str,
    purpose: str | None,
    owner: str | None,
    risk_tier: str | None,
    limitations: str | None,
    as_json: bool,
) -> None:
    """Record model card fields of MODEL (model.described); the newest value wins.

    Shown by `mltrail trace`, `mltrail show` and `mltrail model history`, and
    used by the report.

    \b
    Examples:
      mltrail model describe out/model.safetensors --purpose "retail credit scoring" \\
          --owner "credit-risk team" --risk-tier high \\
          --limitations "not validated for applicants under 21"
      mltrail model describe 5727bc68 --owner "model risk office"
    """
    fields = {"purpose": purpose, "owner": owner, "risk_tier": risk_tier,
              "limitations": limitations}  # fmt: skip
    home = open_from(ctx, writable=True)
    try:
        fields = {k: typed(home, v) for k, v in fields.items()}
        body = describe_model(home, open_index(home), model, fields, cwd=Path.cwd())
    finally:
        home.close()
    if as_json:
        emit_json(body)
        return
    given = ", ".join(k.replace("_", " ") for k in fields if k in body)
    console.print(
        f"{body['model_type']}:{body['model']}: recorded {given}", markup=False
    )


@click.command()
@click.argument("stage", required=False)
@click.option(
    "--require-approval",
    type=int,
    metavar="N",
    help="Approvals a promotion into STAGE needs (0 removes the gate).",
)
@click.option("--note", help="Why (required to lower a gate).")
@click.option(
    "--model", "model", metavar="MODEL", help="Show MODEL's approvals for STAGE."
)
@json_option
@click.pass_context
def gate(
    ctx: click.Context,
    stage: str | None,
    require_approval: int | None,
    note: str | None,
    model: str | None,
    as_json: bool,
) -> None:
    """Set or show the approval gate of a stage (stage.gated, a signed entry).

    A gate is kept in the ledger, not in a local file: changing it is a signed,
    dated entry with its author, and lowering it needs --note. Without
    --require-approval, shows the gates (every change with --json).

    \b
    Examples:
      mltrail model gate production --require-approval 2 --note "SR 11-7 four eyes"
      mltrail model gate                      # every stage's gate
      mltrail model gate production --model out/model.safetensors
    """
    if require_approval is not None and stage is None:
        raise click.UsageError("name the STAGE to gate")
    home = open_from(ctx, writable=require_approval is not None)
    try:
        index = open_index(home)
        if require_approval is not None:
            assert stage is not None
            body = set_gate(home, index, stage, require_approval=require_approval,
                            note=typed(home, note))  # fmt: skip
            _print_set(body, as_json)
            return
        if model is not None:
            if stage is None:
                raise click.UsageError("--model needs the STAGE")
            status = checked_approval_status(
                index, resolve_model(index, model, Path.cwd()), stage, complete=True
            )
            emit_json(status) if as_json else _print_status(status)
            return
        gates = stage_gates(index, history=as_json)
    finally:
        home.close()
    gates = [g for g in gates if stage in (None, g["stage"])]
    if as_json:
        emit_json(gates)
        return
    _print_gates(gates)


def _print_set(body: dict, as_json: bool) -> None:
    if as_json:
        emit_json(body)
        return
    console.print(
        f"{body['stage']} now requires {body['require_approval']} approval(s) "
        f"(was {body['previous']})",
        markup=False,
    )


def _print_status(status: dict) -> None:
    console.print(
        f"{status['stage']}: {len(status['approvers'])} of {status['required']} "
        f"approval(s) ({', '.join(status['approvers']) or 'none'}); trained by "
        f"{', '.join(status['trainers']) or 'unknown'}"
        + (
            f"; rejected by {', '.join(status['rejected_by'])}"
            if status["rejected_by"]
            else ""
        )
        + ("; promotion allowed" if status["ok"] else "; promotion blocked"),
        markup=False,
    )


def _print_gates(gates: list[dict]) -> None:
    if not gates:
        console.print(
            "no stage is gated: `mltrail model gate STAGE --require-approval N`"
        )
        return
    from rich.table import Table

    table = Table(box=None, pad_edge=False)
    for column in ("stage", "approvals", "since (UTC)", "by", "note"):
        table.add_column(column, overflow="fold")
    for g in gates:
        table.add_row(g["stage"], str(g["require_approval"]),
                      g["time"][:19].replace("T", " "), g["user"] or "",
                      g["note"] or "")  # fmt: skip
    console.print(table)
