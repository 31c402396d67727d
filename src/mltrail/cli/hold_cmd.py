"""``mltrail hold add|release|list``: legal holds, recorded and signed."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import click

from mltrail.cli.output import console, emit_json, err_console, json_option, open_from
from mltrail.cli.typed_text import typed
from mltrail.ledger.holds import add_hold, load_holds, parse_hold_target, release_hold

if TYPE_CHECKING:
    from mltrail.ledger.home import Home

__all__ = ["hold"]

_reason = click.option(
    "--reason", required=True, help="Why (kept in the signed entry)."
)


@click.group()
def hold() -> None:
    """Legal holds on a blob, a run, a model or a sealed segment.

    \b
    TARGET is blob:sha256:HEX, run:RUN_ID, model:MODEL_ID or segment:START-END
    (a name `mltrail seal status` lists). While a hold stands, the blobs it
    covers cannot be purged (a run's or a model's runs' blobs too), and the
    sealed objects concerned carry an S3 legal hold, set when the hold is
    added and on every later seal.

    \b
    Examples:
      mltrail hold add run:2f9c0a1e --reason "litigation L-2026-7"
      mltrail hold add model:5e88... --reason "regulator inquiry 44"
      mltrail hold release run:2f9c0a1e --reason "case closed"
      mltrail hold list
    """


@hold.command()
@click.argument("target")
@_reason
@json_option
@click.pass_context
def add(ctx: click.Context, target: str, reason: str, as_json: bool) -> None:
    """Place a legal hold on TARGET (a signed hold.added entry)."""
    kind, ident = parse_hold_target(target)
    home = open_from(ctx, writable=True, local_only="hold")
    record = add_hold(home.ledger, kind, ident, typed(home, reason.strip()) or "")
    _report(home, record.seq, f"hold placed on {kind} {ident}", as_json)


@hold.command()
@click.argument("target")
@_reason
@json_option
@click.pass_context
def release(ctx: click.Context, target: str, reason: str, as_json: bool) -> None:
    """Lift the legal hold on TARGET (a signed hold.released entry)."""
    kind, ident = parse_hold_target(target)
    home = open_from(ctx, writable=True, local_only="hold")
    record = release_hold(home.ledger, kind, ident, typed(home, reason.strip()) or "")
    _report(home, record.seq, f"hold on {kind} {ident} released", as_json)


@hold.command(name="list")
@json_option
@click.pass_context
def list_holds(ctx: click.Context, as_json: bool) -> None:
    """The legal holds that stand."""
    home = open_from(ctx, local_only="hold")
    holds = load_holds(home.ledger)
    if as_json:
        emit_json([h.to_dict() for h in holds.standing.values()])
        return
    if not holds.standing:
        console.print("no legal hold stands")
    for held in holds.standing.values():
        console.print(held.describe(), markup=False)


def _report(home: Home, seq: int, what: str, as_json: bool) -> None:
    changed = _sync_storage(home)
    if as_json:
        emit_json({"seq": seq, "storage": changed})
        return
    console.print(f"{what} (seq {seq})", markup=False)
    if changed is not None:
        for state in ("on", "off"):
            for name in changed[state]:
                console.print(f"  S3 legal hold {state.upper()} for segment {name}")


def _sync_storage(home: Home) -> dict[str, list[str]] | None:
    """Mirror the holds onto the configured seal storage, if any."""
    from mltrail.errors import MltrailError
    from mltrail.evidence.seals import apply_legal_holds, seal_store

    if not (os.environ.get("MLTRAIL_SEAL_TARGET") or home.settings.seal_target):
        return None
    worm = seal_store(home, None)
    try:
        return apply_legal_holds(home, worm)
    except MltrailError as e:
        err_console.print(
            f"warning: the hold is recorded, but the legal holds at {worm.url} "
            f"could not be set: {e}; `mltrail seal` sets them",
            style="yellow",
            markup=False,
        )
        return None
