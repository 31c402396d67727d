"""``mltrail push``: upload an embedded ledger's entries to a team server (ADR 0031)."""

from __future__ import annotations

import os
from contextlib import contextmanager
from typing import TYPE_CHECKING

import click
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

from mltrail.cli.output import console, emit_json, err_console, json_option, open_from
from mltrail.errors import InputError, IntegrityError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from mltrail.ledger.home import Home
    from mltrail.ledger.push import PushResult

__all__ = ["push"]

PUSH_URL_ENV = "MLTRAIL_PUSH_URL"


@contextmanager
def _bar(enabled: bool, what: str) -> Iterator[Callable[[int, int], None] | None]:
    if not enabled:
        yield None
        return
    columns = (
        TextColumn(what),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("records"),
    )
    with Progress(*columns, console=err_console.get(), transient=True) as bar:
        task = bar.add_task(what, total=None)

        def update(done: int, total: int) -> None:
            bar.update(task, completed=done, total=total)

        yield update


@click.command()
@click.option("--to", "url", metavar="URL",
              help=f"The server ledger to push to (default: ${PUSH_URL_ENV}), e.g. "
              "https://mltrail.example.org/ledgers/team-a.")  # fmt: skip
@click.option("--dry-run", is_flag=True,
              help="Say what would be pushed; send nothing.")  # fmt: skip
@click.option("--batch-size", type=click.IntRange(1, 999), default=500,
              show_default=True, help="Entries per append.")  # fmt: skip
@json_option
@click.pass_context
def push(
    ctx: click.Context, url: str | None, dry_run: bool, batch_size: int, as_json: bool
) -> None:
    """Upload this home's ledger to a team server: for machines that were offline.

    \b
    Run it in the EMBEDDED home the runs were recorded in (MLTRAIL_HOME), with
    the server's ledger URL (--to or MLTRAIL_PUSH_URL) and a writer token
    (MLTRAIL_TOKEN) whose name is the account that recorded the runs (their
    actor.user, e.g. the CI runner's user). The local ledger is verified first.
    Entries go up unchanged, with their signatures and original times, in
    batches each announced by a ledger.pushed record; blobs they reference are
    uploaded first. The home's key is registered on the server for the token's
    name if it is not. Pushing again adds nothing; an interrupted push resumes.
    The server's answers are checked like client mode's (pinned log key,
    consistency with the newest checkpoint seen, kept in this home).

    \b
    Examples:
      MLTRAIL_TOKEN=mlt_... mltrail push --to https://mltrail.example.org/ledgers/team-a
      mltrail push --dry-run --json
    """
    from mltrail.ledger.client_mode import open_remote_ledger
    from mltrail.ledger.push import push_ledger

    target = url or os.environ.get(PUSH_URL_ENV)
    if not target:
        raise InputError(
            "no server to push to",
            hint=f"give --to URL or set {PUSH_URL_ENV} (https://HOST/ledgers/NAME)",
        )
    home = open_from(ctx, writable=True, local_only="push")
    _verify(home, show=not as_json)
    remote = open_remote_ledger(home.path, target, os.environ, home.ledger.signer)
    try:
        with _bar(not as_json and not dry_run, "pushing") as progress:
            result = push_ledger(
                home, remote, batch_size=batch_size, dry_run=dry_run, progress=progress
            )
    finally:
        remote.ledger.close()
    if as_json:
        emit_json(result.to_json())
        return
    _print(result)


def _verify(home: Home, *, show: bool) -> None:
    """Refuse to push a ledger that fails verification."""
    with _bar(show, "verifying") as progress:
        report = home.verify(progress=progress)
    if not report.ok:
        first = report.errors[0] if report.errors else "it holds no records"
        raise IntegrityError(
            f"refusing to push: the local ledger fails verification ({first})",
            hint="run `mltrail verify` to see every problem",
        )


def _print(result: PushResult) -> None:
    verb = "would push" if result.dry_run else "pushed"
    if not result.pushed and not result.batches:
        console.print(
            f"nothing to push: records up to seq {result.local_size - 1} of "
            f"{result.origin} are on the server ({result.server_size} records)",
            markup=False,
        )
        return
    console.print(
        f"{verb} {result.pushed} entries of {result.origin} (local seq "
        f"{result.start} to {result.local_size - 1}) in {result.batches} "
        f"batch(es); {result.skipped} key/clock/purge record(s) stay here",
        markup=False,
    )
    if not result.dry_run:
        if result.key_registered:
            console.print("registered this home's key on the server", markup=False)
        console.print(
            f"uploaded {result.blobs} blob(s); the server's ledger holds "
            f"{result.server_size} records",
            markup=False,
        )
