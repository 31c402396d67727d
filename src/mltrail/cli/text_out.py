"""Text output of the read commands in rich's layout, without rich where it can.

``show``, ``runs``, ``trace`` and ``model history`` print lines, a rule and
tables without borders. Rich's console and table cost more start-up than the
commands' own work (ADR 0041), so :class:`PlainOut` prints them as rich
would: off a terminal, without styles at 160 columns (rich's width there,
:mod:`mltrail.cli.printing`); on a terminal (or where rich is told to act as
one: ``FORCE_COLOR``, ``TTY_COMPATIBLE=1``), at the terminal's width, with
rich's escape codes for the few styles used (bold, dim, colours; only bold
and dim under ``NO_COLOR``; none on a dumb terminal). What rich would narrow
or cut on a terminal (a table wider than it, a rule's title too long for it)
is printed by rich itself (:class:`RichOut`). All of it shows recorded text
through :func:`mltrail.shown.terminal_text` (ADR 0040): control, format and
invisible characters as escapes, nothing read as markup.

The layout: columns two spaces apart, each as wide as its widest cell; off a
terminal, a table wider than 160 columns wraps its wrapping columns' cells at
spaces (a longer word is cut, none is left out); a rule is a line of ``─``
(``-`` for an encoding that is not UTF) around its title. It leaves out the
spaces rich pads the last cell of a line with.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

from mltrail.shown import terminal_text

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

__all__ = [
    "PlainOut",
    "RichOut",
    "Shown",
    "TableColumn",
    "TextOut",
    "cell_width",
    "one_line",
    "plain",
    "rich_prints",
    "text_out",
]

WIDTH = 160
"""The width rich is given off a terminal (:mod:`mltrail.cli.printing`)."""


class Shown(str):
    """Text already shown through :func:`~mltrail.shown.terminal_text`: printed as
    it is. ``terminal_text`` must run once (ADR 0040: a second pass would show its
    escapes with doubled backslashes), so every other string is escaped here."""

    __slots__ = ()


def one_line(value: object) -> Shown:
    """A recorded value on one line: newlines and tabs escaped too (a run's name
    cannot add a line to a table), and look-alike letters (ADR 0040: a name
    spelled with a Cyrillic ``a``, U+0430, does not pass for the Latin one)."""
    return Shown(terminal_text(value, names=True))


class TableColumn:
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
        columns: Sequence[TableColumn],
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
    """Whether rich would print text unstyled at 160 columns here (stdout is no
    terminal, and rich is not told it is one)."""
    try:
        return not (rich_prints() or sys.stdout.isatty())
    except (AttributeError, ValueError):  # no stdout, or a closed one
        return True


_chosen: list[TextOut] = []


def text_out() -> TextOut:
    """The printer for this process's stdout: :class:`PlainOut` with what rich
    would use here (width, styles); :class:`RichOut` on Windows."""
    if not _chosen:
        _chosen.append(_choose())
    return _chosen[0]


def _choose() -> TextOut:
    if plain():
        return PlainOut()
    if sys.platform == "win32":  # rich's legacy console handling: rich
        return RichOut()
    environ = os.environ
    terminal = rich_prints()
    dumb = terminal and environ.get("TERM", "").lower() in ("dumb", "unknown")
    width = _terminal_width(dumb) if sys.stdout.isatty() else WIDTH
    if not terminal or dumb:
        styles = None  # rich's colour system: none
    elif environ.get("NO_COLOR", ""):
        styles = "mono"
    else:
        styles = "colour"
    return PlainOut(width, styles, fallback=True)


def _terminal_width(dumb: bool) -> int:
    """The width rich gives a terminal: 80 for a dumb one, else ``COLUMNS``,
    else the first of stdin, stdout, stderr that has a size, else 80."""
    if dumb:
        return 80
    width = 0
    for descriptor in (0, 1, 2):
        try:
            width = os.get_terminal_size(descriptor).columns
        except (AttributeError, ValueError, OSError):
            continue
        break
    columns = os.environ.get("COLUMNS")
    if columns is not None and columns.isdigit():
        width = int(columns)
    return width or 80


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


# What rich writes for the styles the read commands use (SGR parameters).
_SGR = {"bold": "1", "dim": "2", "red": "31", "green": "32", "yellow": "33",
        "magenta": "35", "cyan": "36", "bright_green": "92"}  # fmt: skip
_RULE_STYLE = "bright_green"  # rich's "rule.line"


class PlainOut(TextOut):
    """Text in rich's layout without rich: ``width`` columns (:data:`WIDTH` off a
    terminal); ``styles`` None (none), ``"mono"`` (bold and dim: ``NO_COLOR``)
    or ``"colour"``, written as rich writes them. With ``fallback``, a table
    wider than ``width`` or a rule title too long for it is left to rich (a
    terminal: rich's narrowing and cutting are what a reader of a terminal
    gets); without, the table wraps and the title stays whole."""

    def __init__(
        self, width: int = WIDTH, styles: str | None = None, fallback: bool = False
    ) -> None:
        self.width, self.styles, self.fallback = width, styles, fallback

    def _write(self, text: str) -> None:
        sys.stdout.write(text)
        sys.stdout.flush()  # as rich does: a closed pipe fails in the command

    def _paint(self, text: str, style: str | None) -> str:
        """``text`` in ``style`` (each line on its own, as rich writes it)."""
        if not self.styles or not style or not text:
            return text
        words = style.split()
        if self.styles != "colour":
            words = [w for w in words if w in ("bold", "dim")]
        codes = ";".join(_SGR[w] for w in words if w in _SGR)
        if not codes:
            return text
        return "\n".join(
            f"\x1b[{codes}m{line}\x1b[0m" if line else line for line in text.split("\n")
        )

    def _parts(self, parts: Sequence[Any], style: str | None = None) -> str:
        out = []
        for part in parts:
            text, own = (part, None) if isinstance(part, str) else part
            joined = " ".join(filter(None, (style, own)))
            out.append(self._paint(_shown((text,)), joined))
        return "".join(out)

    def line(self, *parts: Any, style: str | None = None) -> None:
        self._write(self._parts(parts, style) + "\n")

    def rule(self, *parts: Any) -> None:
        encoding = (getattr(sys.stdout, "encoding", None) or "utf-8").lower()
        char = "─" if encoding.startswith("utf") else "-"
        parts = tuple(
            _flat(p) if isinstance(p, str) else (_flat(p[0]), p[1]) for p in parts
        )
        size = cell_width(_shown(parts))
        if size + 4 > self.width:  # rich would cut the title
            if self.fallback:
                RichOut().rule(*parts)
                return
            self._write(f"{self._paint(char * 2, _RULE_STYLE)} {self._parts(parts)}\n")
            return
        side = (self.width - size) // 2
        left = self._paint(char * (side - 1), _RULE_STYLE)
        right = self._paint(char * (self.width - side - size - 1), _RULE_STYLE)
        self._write(f"{left} {self._parts(parts)} {right}\n")

    def table(
        self,
        columns: Sequence[TableColumn],
        rows: Iterable[Sequence[Any]],
        *,
        header: bool = True,
    ) -> None:
        rows = [list(row) for row in rows]
        cells = [[_shown((_text(cell),)) for cell in row] for row in rows]
        styles = [
            [
                " ".join(filter(None, (c.style, _style(cell))))
                for c, cell in zip(columns, row, strict=False)
            ]
            for row in rows
        ]
        if header:
            cells.insert(0, [_shown((c.header,)) for c in columns])
            styles.insert(0, ["bold"] * len(columns))  # rich's "table.header"
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
            if self.fallback:
                RichOut().table(columns, rows, header=header)
                return
            wrapping = [i for i, c in enumerate(columns) if not c.no_wrap]
            floors = [c.min_width or 1 for c in columns]
            _fit(widths, wrapping, floors, excess)
        out = []
        for row, row_styles in zip(cells, styles, strict=True):
            parts = [_wrap(text, widths[i]) for i, text in enumerate(row)]
            for n in range(max(map(len, parts))):
                texts = [p[n] if n < len(p) else "" for p in parts]
                padded = [
                    self._paint(t, row_styles[i]) + " " * (widths[i] - cell_width(t))
                    for i, t in enumerate(texts)
                ]
                out.append("  ".join(padded).rstrip(" ") + "\n")
        self._write("".join(out))


def _shown(parts: Sequence[Any]) -> str:
    """The parts' text as a terminal may show it (ADR 0040), tabs expanded; a
    :class:`Shown` part is as it is."""
    text = "".join(_escaped(p if isinstance(p, str) else p[0]) for p in parts)
    return text.expandtabs(8)  # a Shown text has its tabs escaped


def _escaped(text: str) -> str:
    if isinstance(text, Shown):
        return str(text)
    return terminal_text(text, multiline=True)


def _flat(text: str) -> str:
    """A rule's title on one line (a :class:`Shown` text has no newline)."""
    return text if isinstance(text, Shown) else text.replace("\n", " ")


def _rich_text(part: Any) -> Any:
    """A part or cell as rich ``Text``, escaped here exactly once (the console
    leaves ``Text`` as it is)."""
    from rich.text import Text

    text, style = (part, "") if isinstance(part, str) else part
    return Text(_escaped(text), style=style)


def _text(cell: Any) -> str:
    return cell if isinstance(cell, str) else cell[0]


def _style(cell: Any) -> str:
    return "" if isinstance(cell, str) else cell[1]


# --- rich --------------------------------------------------------------------------------


class RichOut(TextOut):
    """Through the CLI's rich console (:data:`mltrail.cli.printing.console`)."""

    def line(self, *parts: Any, style: str | None = None) -> None:
        from rich.text import Text

        from mltrail.cli.printing import console

        console.print(Text.assemble(*map(_rich_text, parts)), style=style)

    def rule(self, *parts: Any) -> None:
        from rich.text import Text

        from mltrail.cli.printing import console

        console.rule(Text.assemble(*map(_rich_text, parts)))

    def table(
        self,
        columns: Sequence[TableColumn],
        rows: Iterable[Sequence[Any]],
        *,
        header: bool = True,
    ) -> None:
        from rich.table import Table

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
            table.add_row(*map(_rich_text, row))
        console.print(table)
