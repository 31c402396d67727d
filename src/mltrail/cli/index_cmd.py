"""``mltrail reindex``: rebuild the derived index from the ledger."""

from __future__ import annotations

import time

import click

from mltrail.cli.output import console, emit_json, err_console, json_option, open_from
from mltrail.errors import StoreError
from mltrail.index import Index
from mltrail.storage.readonly import can_write

__all__ = ["reindex"]


@click.command()
@json_option
@click.pass_context
def reindex(ctx: click.Context, as_json: bool) -> None:
    """Rebuild the query index from the ledger's records.

    The index (index.db beside the ledger) only speeds up questions: runs,
    show, trace, lineage, diff. It catches up by itself after every append and
    rebuilds itself when the ledger does not extend what it saw, so this is
    only needed after an upgrade that changes what is indexed, or to be sure.
    Deleting index.db is always safe. A read-only home (an auditor's copy) is
    refused: its commands build the index in memory each time instead.

    \b
    Example:
      mltrail reindex
    """
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

    home = open_from(ctx)
    started = time.perf_counter()
    try:
        path = home.path / home.index_file
        if home.ledger.store.read_only or not can_write(path):
            # as open_index decides: root passes permission checks, and would
            # otherwise write index.db into a `chmod -R a-w` copy (ADR 0012)
            raise StoreError(
                f"the ledger home is read-only: {home.path}",
                hint="reindex writes index.db; reading commands build the index "
                "in memory there and need no reindex",
            )
        index = Index(path, home.ledger)
        total = home.ledger.head().size
        show_bar = not as_json and err_console.is_terminal and total > 50_000
        with Progress(
            "indexing",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=err_console.get(),
            transient=True,
            disable=not show_bar,
        ) as bar:
            task = bar.add_task("records", total=total)
            count = index.rebuild(lambda done, _: bar.update(task, completed=done))
        runs = index.query("SELECT count(*) FROM runs")[0][0]
        index.close()
    finally:
        home.close()
    took = time.perf_counter() - started
    if as_json:
        emit_json({"records": count, "runs": runs, "seconds": round(took, 3)})
        return
    console.print(f"indexed {count} records ({runs} runs) in {took:.2f}s")
