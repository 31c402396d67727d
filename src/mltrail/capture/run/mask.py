"""Masking, as CI systems do it: every known secret value replaced wherever it appears.

A :class:`MaskSet` holds the values recognised as secrets for one run (from its
environment, arguments, config files, URLs; see ``mltrail.capture.run.mask_sources``),
each with a name. :meth:`MaskSet.mask` replaces every occurrence of any of them
in some bytes by ``[MASKED:<name>]``; :class:`StreamMasker` does the same over a
stream, chunk by chunk, in memory bounded by the longest value (a value split
across two chunks is still masked)::

    >>> masks = MaskSet.build([("HF_TOKEN", "hf_abcdef123456")])
    >>> masks.mask(b"token=hf_abcdef123456 ok")
    (b'token=[MASKED:HF_TOKEN] ok', 1)
    >>> s = masks.stream()
    >>> s.feed(b"token=hf_abc") + s.feed(b"def123456 ok") + s.finish()
    b'token=[MASKED:HF_TOKEN] ok'

Each value is matched as UTF-8 and in the encodings it is likely to be printed in:
percent-encoded (inside a URL, ``+`` for a space or not) and JSON-escaped. Values
shorter than :data:`MIN_MASK_LENGTH` (6) characters are not masked in text: a
3-character password would turn every ``abc`` of a log into a marker, and its
length says little about it anyway. Such values are still committed wherever they
stand as values (env, args, config keys). Masking never writes the value or a hash
of it, only the name.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING
from urllib.parse import quote, quote_plus

if TYPE_CHECKING:
    from collections.abc import Iterable

    from mltrail.capture.run.allowlist import AllowList

__all__ = [
    "MASKED_PATTERN",
    "MIN_MASK_LENGTH",
    "MaskSet",
    "StreamMasker",
    "mask_window",
    "masked_marker",
]

MIN_MASK_LENGTH = 6
_NAME = re.compile(r"[^A-Za-z0-9_.:+-]")


MASKED_PATTERN = re.compile(rb"\[MASKED:[A-Za-z0-9_.:+-]{1,64}\]")
"""What :func:`masked_marker` writes, to find the masked places in stored bytes."""


def masked_marker(name: str) -> bytes:
    """``[MASKED:<name>]``, the name cut to 64 safe characters."""
    safe = _NAME.sub("_", name)[:64] or "secret"
    return b"[MASKED:" + safe.encode("ascii") + b"]"


def _forms(value: str) -> set[bytes]:
    raw = value.encode("utf-8", "surrogateescape")
    forms = {raw}
    try:
        forms.add(quote(raw, safe="").encode("ascii"))
        forms.add(quote_plus(raw, safe="").encode("ascii"))
        forms.add(json.dumps(value)[1:-1].encode("ascii"))
    except (UnicodeEncodeError, ValueError):
        pass
    return forms


@dataclass(frozen=True)
class MaskSet:
    """Secret values to mask, each under a name; immutable, combine with ``|``."""

    entries: tuple[tuple[bytes, bytes], ...] = ()
    """(form, marker) pairs, longest form first."""

    @classmethod
    def build(
        cls, named: Iterable[tuple[str, str]], allow: AllowList | None = None
    ) -> MaskSet:
        """A mask set from ``(name, value)`` pairs.

        Values shorter than :data:`MIN_MASK_LENGTH`, and values on the allow-list,
        are left out. When two names share a value the first is kept.
        """
        markers: dict[bytes, bytes] = {}
        for name, value in named:
            if len(value) < MIN_MASK_LENGTH or (allow and allow.allows(value)):
                continue
            for form in _forms(value):
                markers.setdefault(form, masked_marker(name))
        return cls(_ordered(markers))

    def __or__(self, other: MaskSet) -> MaskSet:
        markers = dict(self.entries)
        for form, marker in other.entries:
            markers.setdefault(form, marker)
        return MaskSet(_ordered(markers))

    def __bool__(self) -> bool:
        return bool(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def longest(self) -> int:
        """Bytes of the longest form (0 when empty)."""
        return len(self.entries[0][0]) if self.entries else 0

    def mask(self, data: bytes) -> tuple[bytes, int]:
        """``data`` with every form replaced by its marker, and how many were."""
        if not self.entries or not self._present(data):
            return data, 0
        return _Matcher.of(self).sub(data)

    def mask_text(self, text: str) -> tuple[str, int]:
        """:meth:`mask` for a string (lone surrogates kept as the bytes they escape)."""
        data = text.encode("utf-8", "surrogateescape")
        masked, count = self.mask(data)
        if not count:
            return text, 0
        return masked.decode("utf-8", "surrogateescape"), count

    def stream(self) -> StreamMasker:
        """A masker for one stream."""
        return StreamMasker(self)

    def _present(self, data: bytes) -> bool:
        # One C-speed substring search per form beats a regex alternation about
        # threefold while nothing matches, which is almost always.
        return any(form in data for form, _ in self.entries)


def _ordered(markers: dict[bytes, bytes]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple(sorted(markers.items(), key=lambda item: (-len(item[0]), item[0])))


class _Matcher:
    """The compiled alternation of a mask set's forms (cached per mask set)."""

    _cache: dict[int, tuple[MaskSet, _Matcher]] = {}  # noqa: RUF012 - a private cache

    def __init__(self, masks: MaskSet) -> None:
        self.markers = dict(masks.entries)
        self.pattern = re.compile(b"|".join(re.escape(f) for f, _ in masks.entries))

    @classmethod
    def of(cls, masks: MaskSet) -> _Matcher:
        hit = cls._cache.get(id(masks))
        if hit is not None and hit[0] is masks:
            return hit[1]
        matcher = cls(masks)
        if len(cls._cache) > 64:
            cls._cache.clear()
        cls._cache[id(masks)] = (masks, matcher)
        return matcher

    def sub(self, data: bytes, end: int | None = None) -> tuple[bytes, int]:
        """Replace every match starting before ``end`` (default: anywhere)."""
        out, pos, count = [], 0, 0
        for m in self.pattern.finditer(data):
            if end is not None and m.start() >= end:
                break
            out += [data[pos : m.start()], self.markers[m[0]]]
            pos = m.end()
            count += 1
        if not count:
            return data, 0
        out.append(data[pos:])
        return b"".join(out), count


class StreamMasker:
    """Masks one stream chunk by chunk, holding back fewer bytes than the longest
    value so that a value split across chunks is masked whole.

    ``feed`` returns the bytes that are final; ``finish`` the rest. ``count`` is the
    number of values masked so far.
    """

    def __init__(self, masks: MaskSet) -> None:
        self._masks = masks
        self._keep = max(masks.longest - 1, 0)
        self._carry = b""
        self.count = 0

    def feed(self, data: bytes) -> bytes:
        """Mask ``data`` following what came before; return what is final."""
        if not self._keep and not self._masks:
            return data
        buf = self._carry + data if self._carry else data
        safe = len(buf) - self._keep
        if safe <= 0:
            self._carry = buf
            return b""
        if not self._masks._present(buf):
            self._carry = buf[safe:]
            return buf[:safe]
        return self._masked(buf, safe)

    def _masked(self, buf: bytes, safe: int) -> bytes:
        matcher = _Matcher.of(self._masks)
        out, pos = [], 0
        for m in matcher.pattern.finditer(buf):
            if m.start() >= safe:  # may still grow with the next bytes
                break
            out += [buf[pos : m.start()], matcher.markers[m[0]]]
            pos = m.end()
            self.count += 1
        end = max(pos, safe)
        out.append(buf[pos:end])
        self._carry = buf[end:]
        return b"".join(out)

    def finish(self) -> bytes:
        """The bytes held back, masked; the stream is over."""
        data, self._carry = self._carry, b""
        masked, count = self._masks.mask(data)
        self.count += count
        return masked


def mask_window(
    masks: MaskSet, before: bytes, data: bytes, after: bytes
) -> tuple[bytes, int]:
    """``data`` masked as it stands in a stream between ``before`` and ``after``.

    A value that crosses an edge of ``data`` is masked too: the part inside
    becomes the marker (a head cut in the middle of a token keeps no piece of it).
    """
    if not masks:
        return data, 0
    buf = before + data + after
    if not masks._present(buf):
        return data, 0
    matcher = _Matcher.of(masks)
    start, stop = len(before), len(before) + len(data)
    out, pos, count = [], start, 0
    for m in matcher.pattern.finditer(buf):
        if m.end() <= start:
            continue
        if m.start() >= stop:
            break
        out += [buf[pos : max(m.start(), pos)], matcher.markers[m[0]]]
        pos = min(m.end(), stop)
        count += 1
    out.append(buf[pos:stop])
    return b"".join(out), count
