"""What is kept of a wrapped command's output: masked, hashed, head and tail.

A :class:`LogCapture` sees one stream (stdout or stderr) chunk by chunk, in the
pump thread, in bounded memory:

1. every value of the run's mask set is masked as the bytes go by
   (``capture.mask.StreamMasker``: a value split across chunks is still caught);
2. the masked stream is hashed and sized, and its first and last
   ``log_limit // 2`` bytes are kept (with 4 KiB of context on the inner side
   of each, never stored);
3. at the end, credential-shaped strings (``capture.detect``) are looked for in
   what is kept, and masked too; a token cut by the head's end or the tail's
   start is masked from the context.

The hash and size describe the masked stream, never the bytes as produced: the
hash of a short log holding a password would let anyone test guesses against it.
A stream that is kept whole (at most ``log_limit`` bytes) is hashed after both
kinds of masking: ``sha256`` is then exactly the hash of the stored bytes. A
longer stream is hashed after masking the mask set only (the detector runs only
on what is kept); its length makes it no target for guessing. A stream of at most
64 KiB is held in memory whatever ``log_limit`` is (even 0, which stores nothing),
so that its hash is always taken after both maskings.
"""

from __future__ import annotations

import hashlib
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mltrail.capture.run import detect
from mltrail.capture.run.mask import MaskSet, mask_window

if TYPE_CHECKING:
    from collections.abc import Callable

    from mltrail.capture.run.allowlist import AllowList

__all__ = ["LogCapture", "LogMasking", "StreamCapture"]

_CONTEXT = 4096
_SHORT = 64 * 1024


@dataclass(frozen=True)
class LogMasking:
    """How a run's output is masked: its mask set, the allow-list, the detector."""

    masks: MaskSet = field(default_factory=MaskSet)
    allow: AllowList | None = None
    detect: bool = True
    late: Callable[[], MaskSet] | None = None
    """Values learned while the command ran (by the processes that joined its
    run, ``capture.run.mask_channel``): masked in what is kept, at the end."""


@dataclass(frozen=True, slots=True)
class StreamCapture:
    """What one output stream carried: hash and size of all of it (masked), head
    and tail kept.

    ``head`` is the first ``log_limit // 2`` bytes and ``tail`` the last
    ``log_limit // 2`` bytes after the head (they never overlap); ``omitted``
    bytes in between were hashed and passed through but not kept. ``masked``
    counts the secrets masked (by the mask set and by the detector).
    """

    sha256: str
    size: int
    head: bytes
    tail: bytes
    omitted: int
    masked: int = 0

    @property
    def stored(self) -> bytes:
        """The bytes kept: the whole stream unless ``truncated``."""
        return self.head + self.tail

    @property
    def truncated(self) -> bool:
        """Whether bytes were left out between head and tail."""
        return self.omitted > 0


class LogCapture:
    """Masks, hashes and keeps head and tail of one stream, in bounded memory."""

    def __init__(self, limit: int, masking: LogMasking | None = None) -> None:
        self._masking = masking or LogMasking()
        self._masker = self._masking.masks.stream()
        self._hash = hashlib.sha256()
        self._size = 0
        self._head = bytearray()
        self._head_cap = limit // 2
        self._after = bytearray()
        self._tail: deque[bytes] = deque()
        self._tail_len = 0
        self._tail_cap = limit // 2
        self._short: bytearray | None = bytearray()
        self._prefetched = False

    def update(self, data: bytes) -> None:
        """Take the next bytes of the stream."""
        if not self._prefetched and data and self._masking.detect:
            self._prefetched = True
            detect.prefetch()
        self._add(self._masker.feed(data))

    def _add(self, data: bytes) -> None:
        if not data:
            return
        self._hash.update(data)
        self._size += len(data)
        if self._short is not None:
            if self._size <= _SHORT:
                self._short += data
            else:
                self._short = None
        room = self._head_cap - len(self._head)
        if room > 0:
            self._head += data[:room]
            data = data[room:]
        if data and len(self._after) < _CONTEXT:
            self._after += data[: _CONTEXT - len(self._after)]
        if data:
            self._tail.append(data)
            self._tail_len += len(data)
            cap = self._tail_cap + _CONTEXT
            while self._tail_len - len(self._tail[0]) >= cap:
                self._tail_len -= len(self._tail.popleft())

    def result(self) -> StreamCapture:
        """The capture, once the stream has ended."""
        self._add(self._masker.finish())
        found = self._masker.count
        tail_all = b"".join(self._tail)
        tail = tail_all[len(tail_all) - self._tail_cap :] if self._tail_cap else b""
        head = bytes(self._head)
        if self._size == len(head) + len(tail):
            return self._whole(head + tail, found)
        if self._short is not None:
            return self._whole(bytes(self._short), found)
        omitted = self._size - len(head) - len(tail)
        before = tail_all[: len(tail_all) - len(tail)][-_CONTEXT:]
        after = bytes(self._after)
        detected = self._detected(head + after, before + tail)
        head, in_head = mask_window(detected, b"", head, after)
        tail, in_tail = mask_window(detected, before, tail, b"")
        digest = self._hash.hexdigest()
        masked = found + in_head + in_tail
        return StreamCapture(digest, self._size, head, tail, omitted, masked)

    def _whole(self, data: bytes, found: int) -> StreamCapture:
        """The capture of a stream held whole: masked again, hashed as kept."""
        detected = self._detected(data)
        data, count = detected.mask(data)
        head = data[: self._head_cap]
        rest = data[len(head) :]
        tail = rest[len(rest) - self._tail_cap :] if self._tail_cap else b""
        omitted = len(data) - len(head) - len(tail)
        digest = hashlib.sha256(data).hexdigest()
        return StreamCapture(digest, len(data), head, tail, omitted, found + count)

    def _detected(self, *texts: bytes) -> MaskSet:
        late = self._masking.late
        masks = late() if late is not None else MaskSet()
        if not self._masking.detect:
            return masks
        allow = self._masking.allow
        for text in texts:
            if text:
                masks |= detect.detected_masks(text, allow=allow)
        return masks
