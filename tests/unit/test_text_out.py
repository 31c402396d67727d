"""The plain printer of the read commands' text (``mltrail.cli.text_out``, ADR 0041)
lays out what rich lays out off a terminal, without rich."""

from __future__ import annotations

import io
import os

import pytest

from mltrail.cli import printing, text_out
from mltrail.cli.text_out import PlainOut, RichOut, TableColumn, cell_width


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


PAIRS = (TableColumn(style="dim", no_wrap=True), TableColumn(overflow="fold"))


@pytest.mark.parametrize(
    ("columns", "rows", "header"),
    [
        (PAIRS, [("status", "succeeded (exit 0)"), ("took", "0.03s")], False),
        (
            [TableColumn("run", no_wrap=True, min_width=36), TableColumn("name"),
             TableColumn("status", no_wrap=True)],
            [("0193a0c4", "train-1", ("succeeded", "green")), ("x", "", "failed")],
            True,
        ),
        ([TableColumn("key"), TableColumn("value", overflow="fold")], [], True),
        # wide characters take two columns, combining marks none
        ([TableColumn("name"), TableColumn("by")], [("模型-训练", "alice"), ("café", "bob")], True),
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
        [TableColumn("run", no_wrap=True), TableColumn("note", overflow="fold")],
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
    ("environ", "tty", "chosen"),
    [
        ({}, False, (160, None, False)),
        ({"FORCE_COLOR": ""}, False, (160, None, False)),
        ({"TTY_COMPATIBLE": "0", "FORCE_COLOR": "1"}, False, (160, None, False)),
        # rich would style it: styles as rich writes them, rich for what overflows
        ({}, True, (132, "colour", True)),
        ({"COLUMNS": "100"}, True, (100, "colour", True)),
        ({"NO_COLOR": "1"}, True, (132, "mono", True)),  # bold and dim only
        ({"TERM": "dumb"}, True, (80, None, True)),
        ({"TTY_COMPATIBLE": "0"}, True, (132, None, True)),  # no styles, its width
        ({"FORCE_COLOR": "1"}, False, (160, "colour", True)),
        ({"TTY_COMPATIBLE": "1"}, False, (160, "colour", True)),
    ],
)
def test_the_printer_writes_what_rich_would_write_there(
    monkeypatch, environ, tty, chosen
):
    for name in ("FORCE_COLOR", "TTY_COMPATIBLE", "NO_COLOR", "COLUMNS", "TERM"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)

    class Stream(io.StringIO):
        def isatty(self) -> bool:
            return tty

    monkeypatch.setattr("sys.stdout", Stream())
    monkeypatch.setattr("os.get_terminal_size", lambda fd: os.terminal_size((132, 40)))
    monkeypatch.setattr(text_out, "_chosen", [])
    printer = text_out.text_out()
    assert isinstance(printer, PlainOut)
    assert (printer.width, printer.styles, printer.fallback) == chosen
    assert text_out.plain() is (chosen == (160, None, False))


def _styled(text: str) -> list[tuple[str, str]]:
    """Each visible character with the SGR parameters in force where it is
    written (how rich spells its escape codes around spaces aside)."""
    out, state, i = [], "", 0
    while i < len(text):
        if text.startswith("\x1b[", i):
            end = text.index("m", i)
            codes = text[i + 2 : end]
            state = "" if codes == "0" else codes
            i = end + 1
            continue
        if text[i] not in " \n":
            out.append((text[i], state))
        i += 1
    return out


@pytest.fixture
def rich_terminal(monkeypatch):
    """The CLI's rich console as on a terminal 100 columns wide, in colour."""
    buffer = io.StringIO()
    made = printing._safe_console(
        file=buffer, width=100, highlight=False, soft_wrap=True, markup=False,
        emoji=False, force_terminal=True, color_system="standard",
    )  # fmt: skip
    monkeypatch.setattr(printing, "console", made)
    return buffer


def _draw_all(out):
    out.rule(("run 0193a0c4", "bold"), "  train-7")
    out.table(PAIRS, [("status", "succeeded"), ("cwd", "/src")], header=False)
    out.line("\nparams", style="bold")
    out.table(
        [TableColumn("run", no_wrap=True, min_width=36), TableColumn("status")],
        [("0193a0c4", ("succeeded", "green")), ("0193a0c5", ("failed", "red"))],
    )
    out.line(("note:", "bold yellow"), " added by bob")
    out.line("\n", ("model m", "bold"))
    out.line("  ", ("OPEN FLAG", "yellow"), " since ...")
    out.line("records 1..5", style="dim")


def test_on_a_terminal_styles_are_rich_s(capsys, rich_terminal):
    _draw_all(PlainOut(width=100, styles="colour", fallback=True))
    plain = capsys.readouterr().out
    _draw_all(RichOut())
    shown = rich_terminal.getvalue()
    assert _styled(plain) == _styled(shown)
    assert [line.rstrip(" ") for line in _unstyled(plain).split("\n")] == [
        line.rstrip(" ") for line in _unstyled(shown).split("\n")
    ]


def test_no_color_keeps_bold_and_dim_only(capsys):
    _draw_all(PlainOut(width=100, styles="mono"))
    states = {state for _, state in _styled(capsys.readouterr().out)}
    assert states == {"", "1", "2"}


def _unstyled(text: str) -> str:
    import re

    return re.sub("\x1b\\[[0-9;]*m", "", text)


def test_on_a_terminal_what_does_not_fit_is_left_to_rich(capsys, rich_terminal):
    """A table wider than the terminal, a rule title too long for it: rich's own
    narrowing and cutting, as before."""

    def draw(out):
        out.table(PAIRS, [("command", "python train.py " + "--flag value " * 20)],
                  header=False)  # fmt: skip
        out.rule("run x  " + "n" * 200)

    draw(PlainOut(width=100, styles="colour", fallback=True))
    assert capsys.readouterr().out == ""
    from_plain = rich_terminal.getvalue()
    rich_terminal.seek(0)
    rich_terminal.truncate()
    draw(RichOut())
    assert from_plain == rich_terminal.getvalue()


def test_names_in_model_history_show_lookalike_letters_as_escapes(capsys):
    """ADR 0040, look-alike letters: a model, stage or user name spelled with a
    Cyrillic letter is not shown as the Latin one; a note (free text) is."""
    from mltrail.cli.read_text import print_history
    from mltrail.record.stages import Promotion

    a = "\u0430"
    event = Promotion(
        3, f"sha256:{a}b", "r1", f"prod{a}", "promoted", "2026-12-07T10:00:00Z",
        f"{a}lice", f"{a} note",
    )  # fmt: skip
    found = {
        f"m{a}": {
            "card": {"owner": {"value": "x", "user": f"b{a}b", "time": "2026-12-07"}},
            "open_flags": [],
            "approvals": [
                {
                    "decision": "approved",
                    "stage": "prod",
                    "user": f"c{a}rol",
                    "counts": True,
                    "self": False,
                    "time": "2026-12-07",
                    "note": "ok",
                }
            ],
        }
    }
    monkeypatched = text_out._chosen[:]
    text_out._chosen[:] = [PlainOut()]
    try:
        print_history([event], found, None)
    finally:
        text_out._chosen[:] = monkeypatched
    text = capsys.readouterr().out
    for shown in ("sha256:\\u0430b", "prod\\u0430", "\\u0430lice", "m\\u0430",
                  "b\\u0430b", "c\\u0430rol"):  # fmt: skip
        assert shown in text
    assert f"{a} note" in text
    assert text.count(a) == 1
