"""``mltrail sources`` (register, check upstream data) and ``mltrail flags``."""

from __future__ import annotations

import sys
from pathlib import Path

import click
from rich.table import Table
from rich.text import Text

from mltrail.audit.flags import Flag, clear_flag, list_flags
from mltrail.cli.output import (
    console,
    emit_json,
    err_console,
    json_option,
    open_from,
    open_index,
)
from mltrail.cli.printing import one_line
from mltrail.cli.typed_text import typed
from mltrail.record.sources import (
    MASKED_HINT,
    WITHHELD_HINT,
    check_sources,
    list_sources,
    masked_location,
    readable_location,
    register_source,
)

__all__ = ["flags", "sources"]


@click.group()
def sources() -> None:
    """Watch upstream data: which models are affected when a source changes?

    \b
    Examples:
      mltrail sources add applications data/raw/applications.csv
      mltrail sources add bureau s3://bank-data/bureau/
      mltrail sources add crm postgresql://auditor@db/crm \\
          --query 'SELECT * FROM customers ORDER BY id'
      mltrail sources check            # exit 1 when a source changed
      mltrail flags                    # models awaiting re-audit
    """


@sources.command("add")
@click.argument("name")
@click.argument("location", metavar="PATH|URL")
@click.option("--query", help="For a database URL: the SQL whose result is the source.")
@click.option("--note", help="Why it is watched, who owns it.")
@json_option
@click.pass_context
def add(
    ctx: click.Context,
    name: str,
    location: str,
    query: str | None,
    note: str | None,
    as_json: bool,
) -> None:
    """Register a source under NAME and record its fingerprint.

    PATH|URL is a file or folder, an fsspec URL (s3://, gs://, hf://, https://)
    or a database URL (sqlite:///file.db, postgresql://user@host/db) with
    --query. Passwords in database URLs are not stored: give them the usual
    way (PGPASSWORD, ~/.pgpass). Other credentials in a URL (a password, a
    signed query such as X-Amz-Signature or sig) are stored as commitments,
    and `sources check` reads the URL without them. A credential in a URL's
    path cannot be kept apart from it: it is stored masked, and such a source
    cannot be checked (said when it is added).
    """
    home = open_from(ctx, writable=True)
    try:
        body = register_source(
            home,
            open_index(home),
            name,
            location,
            query=query,
            note=typed(home, note),
            cwd=Path.cwd(),
        )
    finally:
        home.close()
    if as_json:
        emit_json({k: v for k, v in body.items() if k != "manifest"})
        return
    if masked_location(body["location"]):
        err_console.print(
            f"warning: source {name}: {MASKED_HINT}", style="yellow", markup=False
        )
    elif (read := readable_location(body["location"])) != body["location"]:
        err_console.print(
            f"note: source {name}: `sources check` reads {read}; {WITHHELD_HINT}",
            markup=False,
        )
    size = f"{body['rows']} rows" if "rows" in body else f"{body.get('files')} files"
    console.print(
        f"source {name}: {body['location']} ({size}), fingerprint {body['fingerprint']}"
    )


@sources.command("list")
@json_option
@click.pass_context
def list_cmd(ctx: click.Context, as_json: bool) -> None:
    """List registered sources with the fingerprint of their last check that read
    them, and since when their checks fail (if they do)."""
    home = open_from(ctx)
    try:
        found = list_sources(open_index(home))
    finally:
        home.close()
    if as_json:
        emit_json(found)
        return
    if not found:
        console.print("no sources yet: `mltrail sources add NAME PATH|URL`")
        return
    table = Table(box=None, pad_edge=False)
    columns = ("name", "type", "location", "fingerprint", "checked (UTC)", "state")
    for column in columns:
        table.add_column(column, overflow="fold")
    for s in found:
        table.add_row(
            s["name"],
            s["type"],
            s["location"],
            (s["fingerprint"] or "")[:16],
            (s["checked"] or "")[:19],
            Text(_failing(s), style="red") if s["failing_since"] else "ok",
        )
    console.print(table)
    for s in found:
        if s["failing_since"]:
            # the error is recorded text: on one line, escaped (ADR 0040)
            console.print(
                Text.assemble(f"{s['name']}: last check failed: ", one_line(s["error"]))
            )


def _failing(source: dict) -> str:
    """``failing since <time>`` of a source whose checks fail."""
    return f"failing since {source['failing_since'][:19]}"  # as `checked`


@sources.command("check")
@click.argument("names", nargs=-1, metavar="[NAME]...")
@click.option(
    "--trust-cache",
    is_flag=True,
    help="Take unchanged files' hashes from the home's hash cache instead of "
    "reading every file (faster; whoever can write the home can forge them).",
)
@json_option
@click.pass_context
def check(
    ctx: click.Context, names: tuple[str, ...], trust_cache: bool, as_json: bool
) -> None:
    """Re-fingerprint sources; flag every model downstream of one that changed.

    Writes source.checked for each source and model.flagged for each affected
    model. Exits 1 when any source changed (or could not be read), so it can
    gate a CI job or a cron. A source that could not be read is recorded as a
    failed check, not as a change: the next check compares with the last one
    that read it (`sources list` and `flags` say since when it fails). Every
    file of a local source is read: the home's hash cache is not trusted for
    this verdict unless --trust-cache (each source.checked records which:
    hashed content or cache).

    Credentials of a source's URL were not stored: the check reads the URL
    without them, and the store must find them itself (PGPASSWORD or
    ~/.pgpass for a database, AWS variables for s3://, ~/.netrc for
    http(s)://, fsspec's configuration); the error says so when it does not.
    """
    home = open_from(ctx, writable=True)
    try:
        results = check_sources(
            home, open_index(home), list(names) or None, trust_cache=trust_cache
        )
    finally:
        home.close()
    if as_json:
        emit_json([r.to_dict() for r in results])
    else:
        for r in results:
            _print_check(r.name, r.changed, r.error, r.flagged, r.changes)
            if r.hashed is not None and not r.error:
                console.print(f"  ({HASHED[r.hashed]})", markup=False)
    if any(r.changed or r.error for r in results):
        sys.exit(1)


HASHED = {
    "content": "every file read",
    "cache": "unchanged files' hashes taken from the hash cache (--trust-cache)",
}


def _print_check(
    name: str, changed: bool, error: str | None, flagged: list[str], changes: dict
) -> None:
    if error:
        console.print(f"{name}: could not be checked: {error}", style="red")
        return
    if not changed:
        console.print(f"{name}: unchanged")
        return
    summary = ", ".join(
        f"{changes[k]} {k}" for k in ("added", "removed", "changed") if k in changes
    )
    console.print(
        Text.assemble(
            (f"{name}: CHANGED", "yellow"), f" ({summary})" if summary else ""
        )
    )
    for line in changes.get("sample", []):
        console.print(f"  {line}", markup=False)
    for node in flagged:
        console.print(f"  flagged for re-audit: {node}", markup=False)
    if not flagged:
        console.print("  no recorded model depends on it")


@click.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Include cleared flags.")
@json_option
@click.pass_context
def flags(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """List models awaiting re-audit because an upstream source changed.

    \b
    Examples:
      mltrail flags
      mltrail flags clear out/model.safetensors --note "re-validated, AUC unchanged"
    """
    if ctx.invoked_subcommand is not None:
        return
    home = open_from(ctx)
    try:
        index = open_index(home)
        found = list_flags(index, include_cleared=show_all)
        failing = [s for s in list_sources(index) if s["failing_since"]]
    finally:
        home.close()
    if as_json:
        emit_json([f.to_dict() for f in found])
        return
    if not found:
        console.print("no models awaiting re-audit")
    else:
        _print_flags(found)
    for s in failing:  # not a change: no flag, but its models are not re-checked
        console.print(
            Text.assemble(
                f"source {s['name']}: could not be checked since "
                f"{s['failing_since'][:19].replace('T', ' ')} UTC (no flag raised; "
                f"last known fingerprint {(s['fingerprint'] or '')[:16]}): ",
                one_line(s["error"]),
                style="red",
            )
        )


def _print_flags(found: list[Flag]) -> None:
    table = Table(box=None, pad_edge=False)
    for column in ("flagged (UTC)", "model", "path", "source", "run", "state"):
        table.add_column(column, overflow="fold")
    for f in found:
        state = "open" if f.cleared_seq is None else f"cleared (seq {f.cleared_seq})"
        kind, _, ident = f.model.partition(":")
        run = (
            f"{f.run_name} ({(f.run or '')[:8]})" if f.run_name else (f.run or "")[:13]
        )
        table.add_row(
            f.time[:19].replace("T", " "), f"{f.name} ({kind}:{ident[:12]})",
            f.path or "", f.source or "", run, state,
        )  # fmt: skip
    console.print(table)


@flags.command("clear")
@click.argument("model", metavar="MODEL")
@click.option("--note", required=True, help="What the review found.")
@json_option
@click.pass_context
def clear(ctx: click.Context, model: str, note: str, as_json: bool) -> None:
    """Record that a flagged MODEL was reviewed (its flags are cleared)."""
    home = open_from(ctx, writable=True)
    try:
        note = typed(home, note) or note
        node = clear_flag(home, open_index(home), model, note=note, cwd=Path.cwd())
    finally:
        home.close()
    if as_json:
        emit_json({"model": node, "status": "cleared", "note": note})
        return
    console.print(f"{node}: flag cleared", markup=False)
