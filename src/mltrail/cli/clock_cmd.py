"""``mltrail clock``: how the ledger's dates compare with this machine's clock."""

from __future__ import annotations

import click

from mltrail.cli.output import console, emit_json, json_option, open_from
from mltrail.cli.typed_text import typed
from mltrail.core.chain import describe_gap
from mltrail.core.codec import format_time, parse_time

__all__ = ["clock"]


@click.group()
def clock() -> None:
    """Entry times: the ledger's newest date against this machine's clock.

    Entry times never go back more than 5 minutes: an entry dated before the
    ledger's newest one by more is refused, and verification names any that
    got in. When a writer's clock ran ahead, every later append is refused
    until `mltrail clock reset` records the correction.
    """


@clock.command()
@json_option
@click.pass_context
def status(ctx: click.Context, as_json: bool) -> None:
    """Show the ledger's newest entry time and this machine's clock.

    Exit 0 when this machine can append, 1 when the ledger is dated ahead of
    its clock by more than the tolerance.
    """
    home = open_from(ctx)
    ledger = home.ledger
    # the floor and verdict the next append would use, not the store's columns
    floor = ledger.append_floor()
    now = ledger.clock.now()
    ahead = parse_time(floor[0]) - now if floor else None
    blocked = ahead is not None and ahead > ledger.tolerance
    if as_json:
        emit_json(
            {
                "newest_time": floor[0] if floor else None,
                "newest_seq": floor[1] if floor else None,
                "clock": format_time(now),
                "ahead_seconds": ahead.total_seconds() if ahead else None,
                "tolerance_seconds": ledger.tolerance.total_seconds(),
                "can_append": not blocked,
            }
        )
    else:
        newest = "none (empty ledger)"
        if floor:
            newest = floor[0] if floor[1] is None else f"{floor[0]} (seq {floor[1]})"
        console.print(f"newest entry time: {newest}")
        console.print(f"this machine:      {format_time(now)}")
        if blocked and ahead is not None:
            console.print(
                f"the ledger is dated {describe_gap(ahead)} ahead of this clock: "
                "appends are refused; if this clock is right, run "
                "`mltrail clock reset --reason TEXT`",
                style="yellow",
            )
        else:
            console.print("appends are dated consistently with this clock")
    ctx.exit(1 if blocked else 0)


@clock.command()
@click.option(
    "--reason",
    required=True,
    help="Why: which writer's clock was wrong, and how you know this one is right.",
)
@json_option
@click.pass_context
def reset(ctx: click.Context, reason: str, as_json: bool) -> None:
    """Record that the ledger's newest entries were dated ahead of this clock.

    Use it when a writer's clock ran ahead (say a year) and every append since
    is refused. It writes one signed `clock.reset` entry naming the newest date
    it overrides; later entries are checked against this clock. It is refused
    when the ledger is not dated ahead of this clock. Verification reports every
    reset, so check this machine's clock first (e.g. against NTP).

    \b
    Examples:
      mltrail clock status
      mltrail clock reset --reason "gpu-07's clock was a year ahead (fixed, NTP on)"
    """
    home = open_from(ctx, writable=True)
    record = home.ledger.reset_clock(typed(home, reason) or reason)
    body = record.entry.body
    if as_json:
        emit_json(record.to_dict())
    else:
        console.print(
            f"recorded clock reset at seq {record.seq}: entries up to "
            f"{body['newest_time']} (seq {body['newest_seq']}) were dated ahead of "
            "this clock"
        )
