"""The plain printer of the read commands' text (``mltrail.cli.text_out``, ADR 0041)
lays out what rich lays out off a terminal, without rich."""

from __future__ import annotations

import io

import pytest

from mltrail.cli import printing, text_out
from mltrail.cli.text_out import Column, PlainOut, RichOut, cell_width


@pytest.fixture
def rich_console(monkeypatch):
    """The CLI's rich console as it is off a terminal (160 columns, no colour),
    writing into a buffer."""
    buffer = io.StringIO()
    made = printing._safe_console(
        file=buffer, width=160, highlight=False, soft_wrap=True, markup=False,
        emoji=False, color_system=None,
    )  # fmt: skip
    monkeypatch.setattr(printing, "console", made)
    return buffer


def _both(capsys, rich_console, draw):
    """What ``draw(printer)`` prints through :class:`PlainOut` and through rich
    (trailing spaces of each line dropped: rich pads the last column)."""
    draw(PlainOut())
    plain = capsys.readouterr().out
    draw(RichOut())
    shown = rich_console.getvalue()
    return plain, "\n".join(line.rstrip(" ") for line in shown.split("\n"))


PAIRS = (Column(style="dim", no_wrap=True), Column(overflow="fold"))


@pytest.mark.parametrize(
    ("columns", "rows", "header"),
    [
        (PAIRS, [("status", "succeeded (exit 0)"), ("took", "0.03s")], False),
        (
            [Column("run", no_wrap=True, min_width=36), Column("name"),
             Column("status", no_wrap=True)],
            [("0193a0c4", "train-1", ("succeeded", "green")), ("x", "", "failed")],
            True,
        ),
        ([Column("key"), Column("value", overflow="fold")], [], True),
        # wide characters take two columns, combining marks none
        ([Column("name"), Column("by")], [("模型-训练", "alice"), ("café", "bob")], True),
        # a note of several lines: the other cells stay on its first line
        (PAIRS, [("seq 4", "first line\nsecond, longer line"), ("seq 5", "x")], False),
        # a value wider than the table may be: cut at spaces, the rest folded
        (PAIRS, [("command", "python train.py " + "--flag value " * 20)], False),
        (PAIRS, [("command", "x" * 400)], False),
    ],
)  # fmt: skip
def test_tables_are_laid_out_as_rich_lays_them_out(
    capsys, rich_console, columns, rows, header
):
    plain, shown = _both(
        capsys, rich_console, lambda out: out.table(columns, rows, header=header)
    )
    assert plain == shown


@pytest.mark.parametrize(
    "parts",
    [
        (("run 0193a0c4-5b2e", "bold"), "  train-7"),
        ("short",),
        ("x" * 150,),
        ("模型" * 20,),
    ],
)
def test_rules_are_drawn_as_rich_draws_them(capsys, rich_console, parts):
    plain, shown = _both(capsys, rich_console, lambda out: out.rule(*parts))
    assert plain == shown


def test_lines_are_printed_as_rich_prints_them(capsys, rich_console):
    def draw(out):
        out.line("\ncode", style="bold")
        out.line(("note:", "bold yellow"), " added by bob")
        out.line("a\tb [bold red]kept[/] \x1b[2K\r\u202e")

    plain, shown = _both(capsys, rich_console, draw)
    assert plain == shown


def test_recorded_text_is_shown_not_acted_on(capsys):
    """ADR 0040: escapes for control, format and invisible characters; brackets
    are text, never markup."""
    out = PlainOut()
    out.table(PAIRS, [("name", "evil\x1b[2K\rgood\u202e[bold]x[/]")], header=False)
    out.rule(("run 1", "bold"), "  a\x1b]0;title\x07")
    out.line(("OPEN FLAG", "yellow"), " x\x08\u200b")
    text = capsys.readouterr().out
    assert "\x1b" not in text
    assert "\r" not in text
    assert "\x08" not in text
    assert "evil\\x1b[2K\\x0dgood\\u202e[bold]x[/]" in text
    assert "a\\x1b]0;title\\x07" in text
    assert "OPEN FLAG x\\x08\\u200b\n" in text


def test_a_wide_table_keeps_every_word_and_its_columns(capsys):
    words = [f"word{i}" for i in range(80)]
    PlainOut().table(
        [Column("run", no_wrap=True), Column("note", overflow="fold")],
        [("0193a0c4-5b2e-7cc0-9b4e-1f6d2a8e3b11", " ".join(words))],
    )
    lines = capsys.readouterr().out.splitlines()
    assert max(map(cell_width, lines)) <= 160
    assert lines[0].split() == ["run", "note"]
    assert lines[1].startswith("0193a0c4-5b2e-7cc0-9b4e-1f6d2a8e3b11  word0 ")
    notes = [line[38:] for line in lines[1:]]
    assert " ".join(notes).split() == words  # nothing cut off, nothing lost
    assert all(line[:38].strip() == "" for line in lines[2:])  # aligned


def test_a_rule_whose_title_is_too_long_keeps_the_title(capsys):
    PlainOut().rule("run x  " + "n" * 200)
    assert capsys.readouterr().out == "── run x  " + "n" * 200 + "\n"


def test_a_rule_is_ascii_where_the_output_is_not_utf(monkeypatch):
    stream = io.TextIOWrapper(io.BytesIO(), encoding="ascii")
    monkeypatch.setattr("sys.stdout", stream)
    PlainOut(width=20).rule("t")
    stream.seek(0)
    assert stream.read() == "-------- t ---------\n"


@pytest.mark.parametrize(
    ("environ", "tty", "plain"),
    [
        ({}, False, True),
        ({}, True, False),
        ({"FORCE_COLOR": "1"}, False, False),  # rich styles it: rich prints it
        ({"FORCE_COLOR": ""}, False, True),
        ({"TTY_COMPATIBLE": "1"}, False, False),
        ({"TTY_COMPATIBLE": "0", "FORCE_COLOR": "1"}, False, True),
        ({"TTY_COMPATIBLE": "0"}, True, False),  # a terminal's width: rich
        ({"NO_COLOR": "1"}, True, False),  # rich, without colour
    ],
)
def test_the_plain_printer_is_used_only_where_rich_would_print_plain_text(
    monkeypatch, environ, tty, plain
):
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    monkeypatch.setattr("sys.stdout", Stream())
    monkeypatch.setattr(text_out, "_chosen", [])
    assert text_out.plain() is plain
    assert isinstance(text_out.text_out(), PlainOut if plain else RichOut)
