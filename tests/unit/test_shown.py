"""terminal_text: recorded text shown on a terminal as printable characters."""

from __future__ import annotations

import sys
import unicodedata

import pytest

from mltrail.shown import UNSAFE, UNSAFE_MULTILINE, lookalikes, terminal_text


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


# Look-alike letters (ADR 0040, amendment on look-alike letters).
CYRILLIC_A = "\u0430"


@pytest.mark.parametrize(
    ("text", "escaped"),
    [
        (f"tr{CYRILLIC_A}in-7", {CYRILLIC_A}),  # Latin word, one Cyrillic letter
        (
            "\u0440\u0430\u0443\u0440\u0430l",
            set("\u0440\u0430\u0443l"),
        ),  # paypal, all Cyrillic but l
        ("\u0434\u0430\u0442\u0430l", {"l"}),  # Cyrillic word, Latin l
        ("x\u13aa\u13aa", {"x", "\u13aa"}),  # mostly Cherokee
        ("paypa\u0406", {"\u0406"}),  # Cyrillic capital I
        ("m\u03bfdel", {"\u03bf"}),  # Greek omicron
        ("g\u0585\u0585gle", {"\u0585"}),  # Armenian oh
        ("x_\u043e", {"\u043e"}),  # a word of its own, all look-alike
        (
            "\u0440\u0430\u0443\u0440\u0430",
            set("\u0440\u0430\u0443"),
        ),  # paypa in Cyrillic
        ("\u039f\u039a", {"\u039f", "\u039a"}),  # Greek capitals OK
        ("\u13da\u13a2", {"\u13da", "\u13a2"}),  # Cherokee
        ("\uff54\uff52ain", {"\uff54", "\uff52"}),  # full-width t, r
        ("\U0001d42dest", {"\U0001d42d"}),  # mathematical bold t
        ("\ufb01le", {"\ufb01"}),  # the fi ligature
        ("\u212a-means", {"\u212a"}),  # the Kelvin sign
        ("run\u00a07", {"\u00a0"}),  # a no-break space
        ("caf\u00e9 \u0391\u0392", {"\u0391", "\u0392"}),
    ],
)
def test_lookalike_letters_are_found(text: str, escaped: set[str]) -> None:
    assert lookalikes(text) == escaped


@pytest.mark.parametrize(
    "text",
    [
        "train-7",
        "\u043c\u043e\u0434\u0435\u043b\u044c",  # модель: Russian
        "\u041f\u0440\u0438\u0432\u0435\u0442, \u043c\u0438\u0440!",
        "\u03bb\u03cc\u03b3\u03bf\u03c2",  # λόγος: Greek
        "\u03b1",  # alpha as a parameter name
        "\u6a21\u578b v2",  # 模型: Chinese beside Latin
        "caf\u00e9",
        "na\u00efve",
        "stra\u00dfe",
        "\u00c5ngstr\u00f6m",
        "lr_\u03b1",  # words of different scripts side by side
        "adam_\u03b21",
        "train \u043c\u043e\u0434\u0435\u043b\u044c",
        "/home/\u0438\u0432\u0430\u043d/data.csv",
        "0.1, -2e-5 [x] (y) #3",
        "\u65e5\u672c\u8a9e\u30c6\u30ad\u30b9\u30c8",  # Japanese
        "e\u0301t\u00e9",  # a combining accent
    ],
)
def test_text_in_one_script_has_no_lookalikes(text: str) -> None:
    assert lookalikes(text) == frozenset()
    assert terminal_text(text, names=True) == text


def test_a_name_shows_its_lookalikes_as_escapes_and_free_text_does_not() -> None:
    name = f"tr{CYRILLIC_A}in-7"
    assert terminal_text(name, names=True) == "tr\\u0430in-7"
    assert terminal_text(name) == name  # free text (a note) stays as written
    assert terminal_text(name, multiline=True) == name
    assert terminal_text("\uff54\uff52ain", names=True) == "\\uff54\\uff52ain"
    # escaped in full, as for any escape: backslashes doubled, controls escaped
    assert terminal_text(f"C:\\{CYRILLIC_A}\x1b", names=True) == "C:\\\\\\u0430\\x1b"
    assert terminal_text(f"{CYRILLIC_A}b\n", names=True, multiline=True) == (
        "\\u0430b\n"
    )


def test_the_lookalike_table_holds_letters_of_its_scripts_only() -> None:
    from mltrail import shown

    for char in shown._LIKE_LATIN:
        script = unicodedata.name(char).split(" ", 1)[0]
        assert script in ("CYRILLIC", "GREEK", "ARMENIAN"), hex(ord(char))
        assert char.isalpha()
