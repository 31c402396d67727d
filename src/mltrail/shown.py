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

Apply it once: its output is not meant to be escaped again (a second pass would
double the backslashes of the first one's escapes).

No import beyond :mod:`re`: read commands use it on their plain path (ADR 0021).
"""

from __future__ import annotations

import re

__all__ = ["UNSAFE", "UNSAFE_MULTILINE", "json_visible", "terminal_text"]

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


def terminal_text(
    value: object, *, multiline: bool = False, backslashes: bool = True
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
    """
    text = value if isinstance(value, str) else str(value)
    pattern = UNSAFE_MULTILINE if multiline else UNSAFE
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
