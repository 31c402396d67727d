"""CLI output that needs no click: the lazy rich consoles, JSON on stdout, the
caught-up index and closing a home with a warning.

:mod:`mltrail.cli.output` re-exports all of it beside its click parts, and
:mod:`mltrail.cli.reads` (the JSON forms of the read commands, run without
click: ADR 0021) uses it directly.
"""

from __future__ import annotations

import json
import sys
from typing import TYPE_CHECKING, Any

from mltrail.errors import IntegrityError, MltrailError, SideStoreError
from mltrail.shown import json_visible

if TYPE_CHECKING:
    from collections.abc import Callable

    from rich.console import Console
    from rich.text import Text

    from mltrail.errors import StoreError
    from mltrail.index import Index
    from mltrail.ledger.home import Home

__all__ = [
    "LazyConsole",
    "close_home",
    "console",
    "derived_index",
    "emit_json",
    "err_console",
    "one_line",
    "open_index",
    "raise_if_tampered",
    "verdict_of_store_error",
]

# Piped or redirected output is read by tools or saved: do not cut tables to 80
# columns there. A terminal gets its own width.
_WIDTH = None if sys.stdout.isatty() else 160


class LazyConsole:
    """A ``rich`` console made on first use: rich costs tens of milliseconds to
    import, which a command printing JSON (or nothing) should not pay."""

    def __init__(self, **options: Any) -> None:
        self._options = options
        self._console: Console | None = None

    def get(self) -> Console:
        """The console itself (for rich objects that need a real one)."""
        if self._console is None:
            self._console = _safe_console(**self._options)
        return self._console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)


console = LazyConsole(
    highlight=False, soft_wrap=True, width=_WIDTH, markup=False, emoji=False
)
err_console = LazyConsole(
    stderr=True, highlight=False, soft_wrap=True, markup=False, emoji=False
)


def _safe_console(**options: Any) -> Console:
    """A rich console that shows recorded text as text (ADR 0040).

    Markup and emoji codes are off: a value like ``[bold red]TAMPERED`` or
    ``[link=...]`` prints as written; the CLI's own emphasis is ``style=`` or
    ``Text`` parts (only the demo's fixed lines still ask for markup). Every string it is given
    (``render_str``: printed strings, table cells, rule titles) has its control,
    format and invisible characters shown as escapes (:func:`terminal_text`)
    before it is measured; the segments it writes are checked again, so that a
    ``Text`` made elsewhere cannot carry an escape sequence through either.
    Rich's own control segments (a progress bar's cursor moves) are left alone.
    """
    from rich.console import Console
    from rich.segment import Segment

    from mltrail.shown import UNSAFE_MULTILINE, terminal_text

    class SafeConsole(Console):
        def render_str(self, text: str, **kwargs: Any) -> Any:
            return super().render_str(terminal_text(text, multiline=True), **kwargs)

        def render(self, renderable: Any, options: Any = None) -> Any:
            for segment in super().render(renderable, options):
                if segment.control is None and UNSAFE_MULTILINE.search(segment.text):
                    text = terminal_text(segment.text, multiline=True)
                    yield Segment(text, segment.style)
                else:
                    yield segment

    return SafeConsole(**options)


def one_line(value: object, style: str = "") -> Text:
    """A recorded value shown on one line (``terminal_text``: newlines and tabs
    escaped too, and look-alike letters, ADR 0040), as rich ``Text``, which the
    console prints as it is.

    A string given to the console is escaped by it (ADR 0040); the output of
    ``terminal_text`` must not be escaped a second time (its escapes would show
    with doubled backslashes), so a value escaped here travels as ``Text``
    (in a table cell, or joined with the CLI's own words by ``Text.assemble``).
    """
    from rich.text import Text

    from mltrail.shown import terminal_text

    return Text(terminal_text(value, names=True), style=style)


def emit_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout.

    Strings keep their values: a character a terminal would act on or not show
    (bidi overrides, zero-width characters, C1 controls, which JSON need not
    escape) is written as its JSON escape (``\\u202e``), as control characters
    always are (ADR 0040).

    The bytes are those of ``click.echo``: on a UTF-8 text stream (what Python
    opens stdout as) click writes the text and a newline as they are and
    flushes (its removal of ANSI codes finds none: JSON escapes control
    characters); any other stream goes through ``click.echo`` itself.
    """
    text = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    text = json_visible(text)
    out = sys.stdout
    if _is_utf8_text(out):
        out.write(text)
        out.flush()
        return
    import click

    click.echo(text, nl=False)


def _is_utf8_text(stream: Any) -> bool:
    import io

    return (
        type(stream) is io.TextIOWrapper
        and stream.errors is not None
        and stream.encoding.lower().replace("_", "-") in ("utf-8", "utf8")
    )


def close_home(home: Home) -> None:
    """Close the home; a witness that cannot be moved forward is a warning here.

    What the command wrote is in the ledger by then, so its outcome stands.
    """
    try:
        home.close()
    except MltrailError as e:
        err_console.print(f"warning: {e}", style="yellow", markup=False)
        if e.hint:
            err_console.print(f"hint: {e.hint}", markup=False)


def open_index(home: Home) -> Index:
    """The home's index, caught up; warns on stderr of records left out of it."""
    from mltrail.index import open_index as open_caught_up

    index = open_caught_up(home)
    if skipped := index.skipped:
        shown = ", ".join(map(str, skipped[:10])) + (
            ", ..." if len(skipped) > 10 else ""
        )
        err_console.print(
            f"warning: record(s) {shown} cannot be read and are left out of the "
            "answer; run `mltrail verify`",
            style="yellow",
            markup=False,
        )
    return index


def derived_index(home: Home) -> Index:
    """An index built in memory from the ledger's records, never ``index.db``.

    For what is handed to outsiders (reports, exports): a row edited, added or
    deleted in ``index.db`` (a run's claim on a model, a run left out of a
    listing) cannot reach them. Costs a full ingest, as the full verify those
    commands already pay (ADR 0024 amendment).
    """
    from mltrail.index import Index as IndexClass

    index = IndexClass(None, home.ledger)
    index.sync()
    return index


def raise_if_tampered(home: Home, error: StoreError, *, refusing: str) -> None:
    """The verification's verdict, when the store cannot be read because it was
    tampered with: a Merkle node of its frontier deleted (the store cannot build
    its head) is "the store is corrupt" to a read, TAMPERED to ``mltrail
    verify``, which walks the rows and reports the node; the command says what
    ``verify`` says (exit 3, ADR 0016 and ADR 0021 amendments of 2026-12-08).
    Returns when the verification passes or cannot run either: ``error``
    stands. Called once a store error was met only: the common path verifies
    nothing more.

    Raises:
        IntegrityError: the ledger fails verification; ``refusing`` (``"write
            the bundle"``) says what is then not done.
    """
    from mltrail.storage.base import StaleSnapshotError

    if isinstance(error, StaleSnapshotError):
        return  # the store kept changing: run it again
    if isinstance(error, SideStoreError):
        return  # the index or a seal target: nothing of the ledger to verify
    try:
        report = home.verify()
    except MltrailError:
        return
    if not report.ok:
        try:
            report.raise_for_failure(refusing=refusing)
        except IntegrityError as refused:
            raise refused from error


def verdict_of_store_error(
    opened: Home | None, reopen: Callable[[], Home], error: StoreError
) -> None:
    """:func:`raise_if_tampered` for a reading command (``show``, ``runs``,
    ``trace``, ...) that failed on ``error`` after it opened the home
    ``opened`` (closed by then, maybe): the home is opened again (``reopen``,
    read-only) and verified. A home whose ledger an mltrail server keeps
    (client mode) is left alone: its store errors are the server's or the
    network's, and asking an unreachable server again would only double the
    wait.

    Raises:
        IntegrityError: the ledger fails verification.
    """
    if opened is None or opened.trust is not None:
        return
    try:
        home = reopen()
    except MltrailError:
        return
    try:
        raise_if_tampered(home, error, refusing="answer")
    finally:
        close_home(home)
