"""Property tests: two different recorded strings are never shown alike (ADR 0040).

``terminal_text`` shows a control character as an escape (``\\x1b``); a string
that literally holds those four characters must not be shown the same way, nor
may any other pair of distinct strings. The display can be read back: a shown
string that holds no escape is the recorded string itself; one that does is
decoded escape by escape, ``\\\\`` being a backslash.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from mltrail.shown import lookalikes, terminal_text

# What the escaping turns on, mixed with anything at all.
_PIECES = st.sampled_from(
    ["\\", "x", "u", "U", "1", "b", "e", "0", "2", "f", "A", "\x1b", "\n", "\r",
     "\t", "\r\n", "\u202e", "\u200b", "\U000e0041", "\x9b", "C:", "é",
     "a", "\u0430", "o", "\u03bf", "\u043e", "\uff41", "\U0001d41a", " ", "\u00a0",
     "\u13aa", "\u0561", "\u03b1", "\u6a21"]
)  # fmt: skip
TEXT = st.one_of(
    st.lists(_PIECES, max_size=24).map("".join),
    st.text(max_size=24),
    st.lists(st.one_of(_PIECES, st.text(max_size=3)), max_size=12).map("".join),
)
MULTILINE = pytest.mark.parametrize("multiline", [False, True])
NAMES = pytest.mark.parametrize("names", [False, True])

_ESCAPE = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})")
_TOKEN = re.compile(r"\\(\\|x[0-9a-f]{2}|u[0-9a-f]{4}|U[0-9a-f]{8})|(.)", re.DOTALL)


def read_back(shown: str) -> str:
    """The recorded string a display stands for (a reference decoder)."""
    if _ESCAPE.search(shown) is None:
        return shown
    out = []
    for match in _TOKEN.finditer(shown):
        escape, char = match.groups()
        if char is not None:
            assert char != "\\", f"a lone backslash in escaped text: {shown!r}"
            out.append(char)
        elif escape == "\\":
            out.append("\\")
        else:
            out.append(chr(int(escape[1:], 16)))
    return "".join(out)


@MULTILINE
@NAMES
@given(a=TEXT, b=TEXT)
@example(a="\x1b[31m", b="\\x1b[31m")
@example(a="\\x1b", b="\\\\x1b")
@example(a="\u202e", b="\\u202e")
@example(a="\U000e0041", b="\\U000e0041")
@example(a="\\\x1b", b="\\\\x1b")
@example(a="tr\u0430in", b="train")
@example(a="tr\u0430in", b="tr\\u0430in")
def test_distinct_strings_are_shown_distinctly(
    a: str, b: str, multiline: bool, names: bool
) -> None:
    if a != b:
        assert terminal_text(a, multiline=multiline, names=names) != terminal_text(
            b, multiline=multiline, names=names
        )


@MULTILINE
@given(text=TEXT)
def test_the_display_of_a_string_recorded_literally_is_shown_otherwise(
    text: str, multiline: bool
) -> None:
    """The attack: record, as text, what another string is shown as."""
    shown = terminal_text(text, multiline=multiline)
    if shown != text:
        assert terminal_text(shown, multiline=multiline) != shown


@MULTILINE
@NAMES
@given(text=TEXT)
@example(text="C:\\Users\\me\\data")
@example(text="a\x1bb\\c")
@example(text="C:\\tr\u0430in")
def test_what_is_shown_reads_back_as_what_was_recorded(
    text: str, multiline: bool, names: bool
) -> None:
    shown = terminal_text(text, multiline=multiline, names=names)
    assert read_back(shown) == text


@MULTILINE
@given(text=TEXT)
@example(text="tr\u0430in-7")
@example(text="\uff54rain")
def test_a_name_with_lookalikes_is_shown_with_an_escape_of_each(
    text: str, multiline: bool
) -> None:
    """A look-alike is never shown as itself in a name, and nothing in ASCII
    text is a look-alike."""
    found = lookalikes(text)
    shown = terminal_text(text, multiline=multiline, names=True)
    if text.isascii():
        assert found == frozenset()
        assert shown == terminal_text(text, multiline=multiline)
    rest = _ESCAPE.sub("", shown.replace("\\\\", ""))
    for char in found:
        assert char not in rest
        code = ord(char)
        escape = (
            f"\\x{code:02x}"
            if code <= 0xFF
            else (f"\\u{code:04x}" if code <= 0xFFFF else f"\\U{code:08x}")
        )
        assert escape in shown


@given(text=st.text(max_size=40))
def test_finding_lookalikes_never_fails(text: str) -> None:
    assert lookalikes(text) <= set(text)
    terminal_text(text, names=True)


def test_plain_backslashes_are_shown_as_they_are() -> None:
    for text in ("C:\\Users\\me\\data", "\\\\server\\share", "a\\nb", "\\d+\\.\\w"):
        assert terminal_text(text) == text
    assert terminal_text("C:\\Users\x1b") == "C:\\\\Users\\x1b"
    assert terminal_text("lit \\x1b[31m") == "lit \\\\x1b[31m"
