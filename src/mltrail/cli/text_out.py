"""Text output of the read commands: rich on a terminal, a small printer elsewhere.

``show``, ``runs``, ``trace`` and ``model history`` print lines, a rule and
tables without borders. On a terminal (or where rich is told to act as one:
``FORCE_COLOR``, ``TTY_COMPATIBLE=1``) they go through the CLI's rich console
as before: colour, the terminal's width. Anywhere else rich prints no style at
all and tables at most 160 columns wide; :class:`PlainOut` prints the same
text without importing rich, whose console and table cost more start-up than
the command's own work (ADR 0041). Both show recorded text through
:func:`mltrail.shown.terminal_text` (ADR 0040): control, format and invisible
characters as escapes, nothing read as markup.

The plain layout is rich's where it matters to a reader: columns two spaces
apart, each as wide as its widest cell; a table wider than 160 columns wraps
its wrapping columns' cells at spaces (a longer word is cut) instead of
running on; a rule is a line of ``─`` (``-`` for an encoding that is not
UTF) around its title. It leaves out what only fills: the spaces after the
last cell of a line, the rule's end past a title too long for it.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from mltrail.shown import terminal_text

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "Column",
    "PlainOut",
    "RichOut",
    "TextOut",
    "cell_width",
    "plain",
    "rich_prints",
    "text_out",
]

WIDTH = 160
"""The width rich is given off a terminal (:mod:`mltrail.cli.printing`)."""


class Column:
    """A table column: its header and rich's options for it."""

    __slots__ = ("header", "min_width", "no_wrap", "overflow", "style")

    def __init__(
        self,
        header: str = "",
        *,
        no_wrap: bool = False,
        min_width: int | None = None,
        overflow: str = "ellipsis",
        style: str = "",
    ) -> None:
        self.header, self.no_wrap, self.min_width = header, no_wrap, min_width
        self.overflow, self.style = overflow, style


class TextOut:
    """Lines, rules and tables on stdout (the interface of both printers)."""

    def line(self, *parts: Any, style: str | None = None) -> None:
        """One line (or several, for text with newlines) of ``parts``: strings,
        or ``(text, style)`` pairs."""
        raise NotImplementedError

    def rule(self, *parts: Any) -> None:
        """A horizontal rule across the width with ``parts`` as its title."""
        raise NotImplementedError

    def table(
        self,
        columns: Sequence[Column],
        rows: Iterable[Sequence[Any]],
        *,
        header: bool = True,
    ) -> None:
        """A table without borders; a cell is a string or ``(text, style)``."""
        raise NotImplementedError


def rich_prints() -> bool:
    """Whether rich would treat stdout as a terminal (colour, its own width):
    rich's own test, in its order (``TTY_COMPATIBLE``, ``FORCE_COLOR``, isatty)."""
    environ = os.environ
    compatible = environ.get("TTY_COMPATIBLE", "")
    if compatible in ("0", "1"):
        return compatible == "1"
    force = environ.get("FORCE_COLOR")
    if force is not None:
        return force != ""
    return sys.stdout.isatty()


def plain() -> bool:
    """Whether text goes to :class:`PlainOut`: rich would print it unstyled at
    160 columns (stdout is no terminal, and rich is not told it is one)."""
    try:
        return not (rich_prints() or sys.stdout.isatty())
    except (AttributeError, ValueError):  # no stdout, or a closed one
        return True


_chosen: list[TextOut] = []


def text_out() -> TextOut:
    """The printer for this process's stdout: :class:`RichOut` where rich would
    style and size the output for a terminal, else :class:`PlainOut`."""
    if not _chosen:
        _chosen.append(PlainOut() if plain() else RichOut())
    return _chosen[0]


# --- plain -----------------------------------------------------------------------------


def cell_width(text: str) -> int:
    """Columns ``text`` takes on a terminal: East Asian wide and full-width
    characters 2, combining marks 0, others 1 (what rich counts)."""
    if text.isascii():
        return len(text)
    import unicodedata

    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return width


def _cut(text: str, width: int) -> tuple[str, str]:
    """``text`` split after at most ``width`` columns (at least one character)."""
    if text.isascii():
        return text[: max(width, 1)], text[max(width, 1) :]
    used = 0
    for i, char in enumerate(text):
        used += cell_width(char)
        if used > width and i > 0:
            return text[:i], text[i:]
    return text, ""


def _wrap(text: str, width: int) -> list[str]:
    """``text`` in lines of at most ``width`` columns, broken at spaces; a word
    longer than a line is cut."""
    lines: list[str] = []
    for paragraph in text.split("\n"):
        current = ""
        for word in paragraph.split(" "):
            joined = f"{current} {word}" if current else word
            if cell_width(joined) <= width:
                current = joined
                continue
            if current:
                lines.append(current)
            current = word
            while cell_width(current) > width:
                head, current = _cut(current, width)
                lines.append(head)
        lines.append(current)
    return lines


def _fit(
    widths: list[int], wrapping: list[int], floors: list[int], excess: int
) -> None:
    """Narrow the ``wrapping`` columns, widest first, by ``excess`` columns in all
    (no column below its floor), in place."""

    def cut_at(level: int) -> int:
        return sum(max(0, widths[i] - max(level, floors[i])) for i in wrapping)

    low, high = 0, max((widths[i] for i in wrapping), default=0)
    while low < high:  # the highest level that still cuts enough
        mid = (low + high + 1) // 2
        if cut_at(mid) >= excess:
            low = mid
        else:
            high = mid - 1
    for i in wrapping:
        widths[i] = min(widths[i], max(low, floors[i]))


class PlainOut(TextOut):
    """Text without styles, at most :data:`WIDTH` columns where it can wrap."""

    def __init__(self, width: int = WIDTH) -> None:
        self.width = width

    def _write(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()  # as rich does: a closed pipe fails in the command

    def line(self, *parts: Any, style: str | None = None) -> None:
        self._write(_shown(parts) + "\n")

    def rule(self, *parts: Any) -> None:
        encoding = (getattr(sys.stdout, "encoding", None) or "utf-8").lower()
        char = "─" if encoding.startswith("utf") else "-"
        title = _shown(parts).replace("\n", " ")
        size = cell_width(title)
        if size + 4 > self.width:  # rich would cut the title; keep all of it
            self._write(f"{char * 2} {title}\n")
            return
        side = (self.width - size) // 2
        right = self.width - side - size - 1
        self._write(f"{char * (side - 1)} {title} {char * right}\n")

    def table(
        self,
        columns: Sequence[Column],
        rows: Iterable[Sequence[Any]],
        *,
        header: bool = True,
    ) -> None:
        cells = [[_shown((cell,)) for cell in row] for row in rows]
        if header:
            cells.insert(0, [_shown((c.header,)) for c in columns])
        if not columns:
            return
        widths = [
            max(
                [c.min_width or 0]
                + [cell_width(line) for row in cells for line in row[i].split("\n")]
            )
            for i, c in enumerate(columns)
        ]
        excess = sum(widths) + 2 * (len(columns) - 1) - self.width
        if excess > 0:
            wrapping = [i for i, c in enumerate(columns) if not c.no_wrap]
            floors = [c.min_width or 1 for c in columns]
            _fit(widths, wrapping, floors, excess)
        out = []
        for row in cells:
            parts = [_wrap(text, widths[i]) for i, text in enumerate(row)]
            for n in range(max(map(len, parts))):
                texts = [p[n] if n < len(p) else "" for p in parts]
                padded = [
                    t + " " * (widths[i] - cell_width(t)) for i, t in enumerate(texts)
                ]
                out.append("  ".join(padded).rstrip(" ") + "\n")
        self._write("".join(out))


def _shown(parts: Sequence[Any]) -> str:
    """The parts' text as a terminal may show it (ADR 0040), tabs expanded."""
    text = "".join(p if isinstance(p, str) else p[0] for p in parts)
    return terminal_text(text, multiline=True).expandtabs(8)


# --- rich --------------------------------------------------------------------------------


class RichOut(TextOut):
    """Through the CLI's rich console (:data:`mltrail.cli.printing.console`)."""

    def line(self, *parts: Any, style: str | None = None) -> None:
        from mltrail.cli.printing import console

        if len(parts) == 1 and isinstance(parts[0], str):
            console.print(parts[0], style=style, markup=False)
            return
        from rich.text import Text

        console.print(Text.assemble(*parts), style=style)

    def rule(self, *parts: Any) -> None:
        from rich.text import Text

        from mltrail.cli.printing import console

        console.rule(Text.assemble(*parts))

    def table(
        self,
        columns: Sequence[Column],
        rows: Iterable[Sequence[Any]],
        *,
        header: bool = True,
    ) -> None:
        from rich.table import Table
        from rich.text import Text

        from mltrail.cli.printing import console

        table = Table(box=None, pad_edge=False, show_header=header)
        for c in columns:
            table.add_column(
                c.header,
                no_wrap=c.no_wrap,
                min_width=c.min_width,
                overflow=c.overflow,  # type: ignore[arg-type]
                style=c.style,
            )
        for row in rows:
            table.add_row(
                *(cell if isinstance(cell, str) else Text(*cell) for cell in row)
            )
        console.print(table)
