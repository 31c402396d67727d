"""``mltrail secrets check``: confirm that a value is behind commitments of the ledger."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mltrail.cli.output import emit_json, json_option, open_from
from mltrail.errors import InputError
from mltrail.shown import terminal_text

__all__ = ["secrets"]

_MAX_VALUE = 1 << 20


@click.group()
def secrets() -> None:
    """Secrets: check a value against the ledger's commitments."""


@secrets.command()
@click.option("--seq", type=click.IntRange(0), help="Only this record.")
@click.option("--run", "run_id", help="Only the records of this run (its full id).")
@click.option(
    "--file",
    "file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Check the bytes of this file (a config or script as it was before "
    "masking) instead of a value read from stdin.",
)
@json_option
@click.pass_context
def check(
    ctx: click.Context,
    seq: int | None,
    run_id: str | None,
    file: Path | None,
    as_json: bool,
) -> None:
    """Say which commitments of the ledger a value is behind.

    The value is read from stdin (one line, its newline dropped), never from
    the command line, where it would stay in the shell's history. Keyed
    commitments need the home's commitment key (keys/commitment.hmac-key):
    whoever lacks it can confirm nothing, which is the point. Commitments of
    older ledgers (salted SHA-256) are checked without it and reported as
    guessable. Exits 0 when some commitment matches, 1 when none does, 2 when
    none does but keyed commitments could not be checked (no commitment key).

    \b
    Examples:
      printf %s "$DB_PASSWORD" | mltrail secrets check --run RUN_ID
      mltrail secrets check --seq 12 --file conf.yaml
    """
    from mltrail.record.commitments import check_value

    value = _read_value(file)
    home = open_from(ctx)
    matches = check_value(home, value, seq=seq, run=run_id)
    rows = [m.__dict__ for m in matches.found]
    if as_json:
        emit_json(
            {
                "matches": rows,
                "checked": matches.checked,
                "keyed_unchecked": matches.keyed_unchecked,
            }
        )
    else:
        _print(matches)
    ctx.exit(0 if rows else (2 if matches.keyed_unchecked else 1))


def _read_value(file: Path | None) -> bytes:
    if file is not None:
        from mltrail.capture.run.userfiles import read_user_file

        return read_user_file(file, what="file", limit=64 * _MAX_VALUE)
    data = sys.stdin.buffer.read(_MAX_VALUE + 1)
    if len(data) > _MAX_VALUE:
        raise InputError("the value on stdin is over 1 MiB", hint="pass a file: --file")
    return data[:-1] if data.endswith(b"\n") else data


def _print(matches: object) -> None:
    from mltrail.record.commitments import Matches

    assert isinstance(matches, Matches)
    for m in matches.found:
        how = "guessable: an old salted SHA-256 commitment" if m.guessable else "keyed"
        click.echo(f"matches seq {m.seq} {terminal_text(m.path)} ({how})")
    if not matches.found:
        click.echo(f"no commitment matches ({matches.checked} checked)")
    if matches.keyed_unchecked:
        click.echo(
            f"{matches.keyed_unchecked} keyed commitments could not be checked: "
            "no commitment key in this home (keys/commitment.hmac-key)",
            err=True,
        )
