"""terminal_text: recorded text shown on a terminal as printable characters."""

from __future__ import annotations

import sys
import unicodedata

from mltrail.shown import UNSAFE, UNSAFE_MULTILINE, terminal_text


def test_escape_sequences_and_overwrites_are_shown_not_acted_on():
    assert terminal_text("a\x1b[2K\rb") == "a\\x1b[2K\\x0db"
    assert terminal_text("t\x1b]0;title\x07") == "t\\x1b]0;title\\x07"
    assert terminal_text("x\x08\x08ok\x7f\x9b") == "x\\x08\\x08ok\\x7f\\x9b"
    assert terminal_text("one\ntwo\tthree") == "one\\x0atwo\\x09three"
    assert terminal_text("plain [bold]text[/], café") == "plain [bold]text[/], café"
    assert terminal_text(42) == "42"


def test_bidi_zero_width_and_tags_are_shown():
    assert terminal_text("good\u200b") == "good\\u200b"
    assert terminal_text("abc\u202edef\u2066\u2069") == "abc\\u202edef\\u2066\\u2069"
    assert terminal_text("a\U000e0041b") == "a\\U000e0041b"  # invisible tag "A"
    assert terminal_text("\ufeffx\u3164") == "\\ufeffx\\u3164"


def test_multiline_keeps_newlines_tabs_and_crlf_only():
    text = "line 1\r\nline\t2\nfake\rover\x1b[1A"
    assert (
        terminal_text(text, multiline=True)
        == "line 1\r\nline\t2\nfake\\x0dover\\x1b[1A"
    )


def test_ranges_cover_every_control_format_and_separator_character():
    """The hand-kept ranges hold every Cc, Cf, Zl and Zp character this Python's
    Unicode database knows (newer format characters would show up here)."""
    missing = [
        f"U+{code:04X}"
        for code in range(sys.maxunicode + 1)
        if unicodedata.category(chr(code)) in ("Cc", "Cf", "Zl", "Zp")
        and UNSAFE.fullmatch(chr(code)) is None
    ]
    assert missing == []
    assert UNSAFE_MULTILINE.search("a\nb\tc\r\n") is None


def test_backslashes_are_doubled_only_where_they_could_be_misread():
    assert terminal_text("C:\\Users\\me") == "C:\\Users\\me"
    assert terminal_text("lit\\x1b[31m") == "lit\\\\x1b[31m"
    assert terminal_text("esc\x1b[31m") == "esc\\x1b[31m"
    assert terminal_text("both\\d\x1b") == "both\\\\d\\x1b"
    # mltrail's own messages quote values with repr: left as they are
    assert terminal_text("no run 'a\\x1b'", backslashes=False) == "no run 'a\\x1b'"
    assert terminal_text("a\\d\x1b", backslashes=False) == "a\\d\\x1b"
