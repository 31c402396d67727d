"""Recorded text made safe to show on a terminal.

Every string a ledger holds was written by whoever recorded it: a run name, a
parameter, a command line, a note, a file name, a branch name, a user name. A
terminal acts on some characters instead of showing them: ESC starts control
sequences that move the cursor, erase lines, set the window title, write the
clipboard (OSC 52) or make links (OSC 8); a carriage return or a backspace
overwrites what was printed; bidirectional overrides and isolates reorder what
follows; zero-width and other invisible characters make two different names look
the same. A writer could use any of them to make a reader see what the ledger
does not say ("verified: intact", another run's name).

:func:`terminal_text` replaces each such character by a visible Python-style
escape (``\\x1b``, ``\\u202e``, ``\\U000e0041``), so what is shown is what is
recorded, in printable characters. In a string it escapes, and in one that holds
text that reads like such an escape, a backslash is shown as ``\\\\``: two
different strings never look the same (a literal ``\\x1b`` and an ESC), while
ordinary text with backslashes (``C:\\Users\\me``) is shown as it is. JSON output
is not passed through it: it keeps values as recorded (JSON escapes control
characters; ADR 0040).

A name (``names=True``: a run, user, model, dataset, parameter or branch name,
anything a reader tells apart from another by its look) also has its
look-alike letters shown as escapes (:func:`lookalikes`, ADR 0040's amendment
on look-alike letters): ``tr\\u0430in-7`` for a ``train-7`` spelled with a
Cyrillic ``a`` (U+0430).

Apply it once: its output is not meant to be escaped again (a second pass would
double the backslashes of the first one's escapes).

No import beyond :mod:`re` for ASCII text: read commands use it on their plain
path (ADR 0021); :mod:`unicodedata` is imported for a name that is not ASCII.
"""

from __future__ import annotations

import re

__all__ = [
    "UNSAFE",
    "UNSAFE_MULTILINE",
    "json_visible",
    "lookalikes",
    "terminal_text",
]

# Cc (C0, DEL, C1), Cf (format: soft hyphen, bidi marks, embeddings, overrides and
# isolates, zero-width space/joiners, word joiner, invisible operators, BOM,
# interlinear annotations, tags, ...), Zl and Zp (line and paragraph separators),
# and the Hangul fillers, letters that draw nothing. Kept as ranges (Unicode 15)
# so that nothing is computed at import; a unit test checks them against
# unicodedata.
_RANGES = (
    "\x00-\x1f\x7f-\x9f\u00ad\u0600-\u0605\u061c\u06dd\u070f\u0890-\u0891\u08e2"
    "\u115f\u1160\u180e\u200b-\u200f\u2028-\u202e\u2060-\u2064\u2066-\u206f"
    "\u3164\ufeff\uffa0\ufff9-\ufffb"
    "\U000110bd\U000110cd\U00013430-\U0001343f\U0001bca0-\U0001bca3"
    "\U0001d173-\U0001d17a\U000e0001\U000e0020-\U000e007f"
)
UNSAFE = re.compile(f"[{_RANGES}]")
"""Any character :func:`terminal_text` replaces (with newlines and tabs)."""

UNSAFE_MULTILINE = re.compile(
    "\r(?!\n)|[" + _RANGES.replace("\x00-\x1f", "\x00-\x08\x0b\x0c\x0e-\x1f") + "]"
)
"""The same but newline, tab and the carriage return of CRLF: what multi-line text
(a note, captured output) keeps."""


# What an escape of terminal_text looks like (either case: a reader takes \\x1B for
# one too). Text holding one is escaped in full, its backslashes doubled.
_LOOKS_ESCAPED = re.compile(r"\\(?:x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8})")
_ESCAPED = re.compile(r"\\|" + UNSAFE.pattern)
_ESCAPED_MULTILINE = re.compile(r"\\|" + UNSAFE_MULTILINE.pattern)


def _escape(match: re.Match[str]) -> str:
    if match.group() == "\\":
        return "\\\\"
    code = ord(match.group())
    if code <= 0xFF:
        return f"\\x{code:02x}"
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    return f"\\U{code:08x}"


# Scripts with letters that look like Latin ones (or like each other's): letters of
# two of them in one word mix scripts the way a spoofed name does (Unicode TR39's
# mixed-script detection, simplified). A letter's script is the first word of
# its Unicode name.
_LOOKALIKE_SCRIPTS = frozenset(
    ("LATIN", "CYRILLIC", "GREEK", "ARMENIAN", "CHEROKEE", "COPTIC", "LISU")
)
# Letters drawn like a Latin letter in common fonts: a word made only of them
# (``paypa`` spelled in Cyrillic) passes for a Latin word (TR39's whole-script
# confusables). Greek small letters used as symbols (alpha, beta, lambda, rho)
# are not here: they are drawn unlike any Latin letter.
_LIKE_LATIN = frozenset(
    # Cyrillic a c e h i j o p s d q w x y l, then A B E S I J K M H O P C T X Y Y W Q
    "\u0430\u0441\u0435\u04bb\u0456\u0458\u043e\u0440\u0455\u0501\u051b\u051d"
    "\u0445\u0443\u04cf"
    "\u0410\u0412\u0415\u0405\u0406\u0408\u041a\u041c\u041d\u041e\u0420\u0421"
    "\u0422\u0425\u0423\u04ae\u051c\u051a"
    # Greek o i v, then A B E Z H I K M N O P T Y X
    "\u03bf\u03b9\u03bd"
    "\u0391\u0392\u0395\u0396\u0397\u0399\u039a\u039c\u039d\u039f\u03a1\u03a4"
    "\u03a5\u03a7"
    # Armenian o u h n g
    "\u0585\u057d\u0570\u0578\u0581"
)
# Scripts rarely written in names whose letters mostly look like Latin capitals:
# a word in one of them is a look-alike whatever its letters.
_RARE_SCRIPTS = frozenset(("CHEROKEE", "LISU"))


def lookalikes(text: str) -> frozenset[str]:
    """The characters of ``text`` that let it pass for another name: shown as
    escapes in a name (``terminal_text(..., names=True)``); none for ASCII text.

    - A compatibility form of ASCII: a character that Unicode's NFKC
      normalisation turns into printable ASCII: full-width letters and digits
      (U+FF21...), mathematical ones (U+1D400...), ligatures (U+FB01 for
      ``fi``), the Kelvin sign, superscripts, no-break and other spaces.
    - In a word (a run of letters and marks) with letters of more than one of
      Latin, Cyrillic, Greek, Armenian, Cherokee, Coptic and Lisu, the letters
      not in its main script (the one with most letters in the word; Latin on a
      tie): the Cyrillic ``a`` (U+0430) of a ``train`` spelled with it.
    - A word whose main script is one of those but Latin, and whose letters in
      it all look like Latin ones (``paypa`` or ``O`` in Cyrillic or Greek),
      or is Cherokee or Lisu: those letters too.

    Text in one script (``café``, ``straße``, a Russian or Greek word, Chinese)
    and words of different scripts side by side (``train`` and a Russian word,
    ``lr_`` and a Greek alpha) have none: only a word that mixes look-alike
    scripts or passes for Latin does.
    """
    if text.isascii():
        return frozenset()
    import unicodedata

    found: set[str] = set()
    word: list[tuple[str, str]] = []  # (letter, script) of the current word
    for char in text + " ":
        if char.isascii():
            if char.isalpha():
                word.append((char, "LATIN"))
                continue
        elif char.isalpha() or unicodedata.category(char)[0] == "M":
            folded = unicodedata.normalize("NFKC", char)
            if folded.isascii() and folded.isprintable():
                found.add(char)
            elif char.isalpha():
                script = unicodedata.name(char, "").split(" ", 1)[0]
                word.append((char, script))
            continue
        else:
            folded = unicodedata.normalize("NFKC", char)
            if folded != char and folded.isascii() and folded.isprintable():
                found.add(char)
        if word:
            found.update(_word_lookalikes(word))
            word = []
    return frozenset(found)


def _word_lookalikes(word: list[tuple[str, str]]) -> set[str]:
    counts: dict[str, int] = {}
    for _, script in word:
        if script in _LOOKALIKE_SCRIPTS:
            counts[script] = counts.get(script, 0) + 1
    if not counts:
        return set()
    main = max(counts, key=lambda s: (counts[s], s == "LATIN", s))
    found = {c for c, s in word if s in counts and s != main}
    if main != "LATIN":
        letters = {c for c, s in word if s == main}
        if main in _RARE_SCRIPTS or letters <= _LIKE_LATIN:
            found |= letters
    return found


def terminal_text(
    value: object,
    *,
    multiline: bool = False,
    backslashes: bool = True,
    names: bool = False,
) -> str:
    """``str(value)`` with every control, format and invisible character shown as
    an escape.

    Single-line values (names, parameters, paths) escape newlines and tabs too,
    so that a value cannot start a line of its own; ``multiline`` keeps ``\\n``,
    ``\\t`` and the ``\\r`` of ``\\r\\n``.

    A string with something to escape, or with text that reads like an escape
    (``\\x1b``, ``\\u202e``, ``\\U000e0041`` written out), has every backslash
    shown as ``\\\\`` too; any other string is returned as it is. So two
    different strings are never shown alike: an escaped string always holds an
    escape or a ``\\\\`` before one, which a string returned as it is cannot.

    ``backslashes=False`` leaves backslashes alone: for mltrail's own error and
    hint lines, which quote values with ``repr`` (already unambiguous: a second
    escaping would make ``'\\x1b'`` read as a literal backslash).

    ``names=True`` (a name, not free text) escapes its :func:`lookalikes` too,
    as any other escaped character (backslashes doubled), so that ``train-7``
    and ``tr\\u0430in-7`` never look the same.
    """
    text = value if isinstance(value, str) else str(value)
    pattern = UNSAFE_MULTILINE if multiline else UNSAFE
    if names and not text.isascii():
        found = lookalikes(text)
        if found:
            pattern = re.compile(
                pattern.pattern + "|[" + "".join(map(re.escape, sorted(found))) + "]"
            )
            if not backslashes:
                return pattern.sub(_escape, text)
            return re.compile(r"\\|" + pattern.pattern).sub(_escape, text)
    if pattern.search(text) is None and (
        not backslashes or "\\" not in text or _LOOKS_ESCAPED.search(text) is None
    ):
        return text
    if not backslashes:
        return pattern.sub(_escape, text)
    return (_ESCAPED_MULTILINE if multiline else _ESCAPED).sub(_escape, text)


# Outside C0 (which JSON escapes itself), what can only stand inside a string.
_JSON_UNSAFE = re.compile("[" + _RANGES.replace("\x00-\x1f", "") + "]")


def _json_escape(match: re.Match[str]) -> str:
    code = ord(match.group())
    if code <= 0xFFFF:
        return f"\\u{code:04x}"
    code -= 0x10000
    return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"


def json_visible(text: str) -> str:
    """JSON text (``ensure_ascii=False``) with the characters :data:`UNSAFE`
    holds beyond C0 written as ``\\uXXXX`` escapes: the same values once
    parsed, but nothing a terminal acts on or hides when the JSON is read there."""
    if _JSON_UNSAFE.search(text) is None:
        return text
    return _JSON_UNSAFE.sub(_json_escape, text)
