"""``mltrail logs RUN``: the stdout and stderr a wrapped run printed, as stored.

``mltrail run`` keeps each stream's SHA-256 and size in ``run.ended`` and, unless
logs are kept out (``--log-limit 0``, ``store_logs: false``), the masked bytes as a
blob (head and tail when the stream was longer than the limit). This prints those
bytes: secrets stay masked as they were stored; a purged blob, a stream that was
not kept and a run that has not ended are each named on stderr.

The bytes are the run's: a progress bar's carriage returns, colours, but also any
escape sequence the script chose to print (erase a line, move the cursor, set the
title, write the clipboard). On a terminal they are shown, not acted on: control
and invisible characters print as escapes (``\x1b[2K``, ``\x0d``), bytes that
are not UTF-8 as ``\xff``. Piped or redirected output, and ``--raw``, gets the
bytes as stored (ADR 0040).
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import click

from mltrail.cli.output import emit_json, json_option, open_from, open_index
from mltrail.errors import InputError, IntegrityError, MltrailError

if TYPE_CHECKING:
    from mltrail.ledger.home import Home

__all__ = ["StoredStream", "logs", "read_stream"]

STREAMS = ("stdout", "stderr")


@dataclass(frozen=True, slots=True)
class StoredStream:
    """One stream of a run: what ``run.ended`` says of it and the bytes held.

    ``data`` is None when no byte is at hand; ``missing`` then says why.
    """

    name: str
    facts: dict[str, Any]
    data: bytes | None
    missing: str | None

    def to_dict(self) -> dict[str, Any]:
        """JSON form: the recorded facts, and the text (or why there is none)."""
        out = {k: v for k, v in self.facts.items() if k != "stored"}
        out["stored"] = self.facts.get("stored")
        if self.data is not None:
            out["text"] = self.data.decode("utf-8", "replace")
        else:
            out["missing"] = self.missing
        return out


def read_stream(home: Home, name: str, facts: dict[str, Any]) -> StoredStream:
    """The stored bytes of one stream, or why there are none."""
    from mltrail.ledger.ledger import BlobPurgedError
    from mltrail.ledger.purged import purge_note

    ref = facts.get("stored")
    if not isinstance(ref, dict) or not isinstance(ref.get("blob"), str):
        why = (
            f"{name} was not stored (logs were kept out of the ledger); only its "
            f"SHA-256 {facts.get('sha256', '?')} and size ({facts.get('size', '?')} "
            "bytes) were recorded"
        )
        return StoredStream(name, facts, None, why)
    try:
        return StoredStream(name, facts, home.ledger.get_blob(ref["blob"]), None)
    except BlobPurgedError as e:
        note = purge_note(home.ledger, ref["blob"])
        why = f" ({note.describe()})" if note is not None else ""
        return StoredStream(
            name,
            facts,
            None,
            f"{name} was purged by policy at seq {e.seq}{why}: its bytes were "
            f"erased; its SHA-256 {facts.get('sha256', '?')} is kept",
        )
    except IntegrityError:
        raise  # tampering: exit 3, not a stream "missing"
    except MltrailError as e:
        return StoredStream(name, facts, None, f"{name} cannot be read: {e}")


def _ended(home: Home, ref: str) -> tuple[str, dict[str, Any]]:
    from mltrail.audit.query import load_run, resolve_run

    index = open_index(home)
    view = load_run(home, index, resolve_run(index, ref))
    ended = view.body("run.ended")
    if ended is None:
        raise InputError(
            f"run {view.id} has not ended: its output is stored when it ends",
            hint="wait for it, or `mltrail runs close RUN` if its recorder died",
        )
    return view.id, ended


@click.command()
@click.argument("run", metavar="RUN")
@click.option("--stdout", "only", flag_value="stdout", help="Only stdout.")
@click.option("--stderr", "only", flag_value="stderr", help="Only stderr.")
@click.option(
    "--raw",
    is_flag=True,
    help="Write the bytes as stored to a terminal too (escape sequences act).",
)
@json_option
@click.pass_context
def logs(
    ctx: click.Context, run: str, only: str | None, raw: bool, as_json: bool
) -> None:
    """Print the stdout and stderr that RUN printed, as the ledger stores them.

    RUN is a run id, a prefix of 4+ characters, or a run name (its latest run).
    Secrets were masked before storing ([MASKED:NAME]) and stay masked. With
    both streams each gets a heading; --stdout or --stderr prints one stream's
    bytes alone (for pipes). A stream longer than the log limit was stored as its
    head and tail; a purged or unstored stream is named on stderr (exit 2 when
    the one stream asked for has no bytes).

    On a terminal, control characters and escape sequences the run printed are
    shown as escapes (\\x1b[2K), not acted on; piped output and --raw get the
    bytes as stored.

    \b
    Examples:
      mltrail logs baseline
      mltrail logs baseline --stderr | tail -20
      mltrail logs 0193a0c4 --json | jq -r .streams.stdout.text
    """
    home = open_from(ctx)
    try:
        run_id, ended = _ended(home, run)
        names = [only] if only else list(STREAMS)
        streams = [read_stream(home, n, dict(ended.get(n) or {})) for n in names]
    finally:
        home.close()
    if as_json:
        emit_json({"run": run_id, "streams": {s.name: s.to_dict() for s in streams}})
        return
    shown = raw or not _stdout_is_terminal()
    if only:
        _print_alone(streams[0], shown)
    else:
        for stream in streams:
            _print_headed(stream, shown)


def _stdout_is_terminal() -> bool:
    try:
        return sys.stdout.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False


def _for_output(data: bytes, raw: bool) -> bytes:
    """The bytes to write: as stored, or with what a terminal would act on
    escaped (invalid UTF-8 as ``\\xNN``)."""
    if raw:
        return data
    from mltrail.shown import terminal_text

    text = data.decode("utf-8", "backslashreplace")
    return terminal_text(text, multiline=True).encode("utf-8")


def _print_alone(stream: StoredStream, raw: bool) -> None:
    if stream.data is None:
        raise InputError(str(stream.missing))
    sys.stdout.buffer.write(_for_output(stream.data, raw))
    sys.stdout.flush()
    _note_cut(stream)


def _print_headed(stream: StoredStream, raw: bool) -> None:
    size = stream.facts.get("size", 0)
    click.echo(f"== {stream.name} ({size:,} bytes) ==")
    if stream.data is None:
        click.echo(f"<{stream.missing}>")
        return
    sys.stdout.flush()
    sys.stdout.buffer.write(_for_output(stream.data, raw))
    if stream.data and not stream.data.endswith(b"\n"):
        sys.stdout.buffer.write(b"\n")
    sys.stdout.flush()
    _note_cut(stream)


def _note_cut(stream: StoredStream) -> None:
    if stream.facts.get("truncated"):
        omitted = stream.facts.get("omitted", 0)
        click.echo(
            f"note: {stream.name} was longer than the log limit: its head and tail "
            f"were stored, {omitted:,} bytes in between were not",
            err=True,
        )
