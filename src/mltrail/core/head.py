"""The head of a ledger: what an append builds on and what a reader asks first.

Split from :mod:`mltrail.core.chain` (which re-exports all of it) so that a
store can build a head, and a reading command open a ledger, without importing
the sealing and checking code.
"""

from __future__ import annotations

from datetime import timedelta

from mltrail.core.canonical import ZERO_HASH
from mltrail.core.merkle import CompactRange, frontier_root
from mltrail.values import Frozen

__all__ = ["CLOCK_RESET_KIND", "EMPTY_HEAD", "KEY_KINDS", "TIME_TOLERANCE", "ChainHead"]

KEY_KINDS = ("key.added", "key.revoked")
CLOCK_RESET_KIND = "clock.reset"

_set = object.__setattr__  # how a frozen value sets its fields in __init__
TIME_TOLERANCE = timedelta(minutes=5)
"""How far an entry's time may lie before the ledger's newest time, or after the
appending machine's clock. Part of the format: verification applies it too."""


class ChainHead(Frozen):
    """The state an append needs: size, last record hash and time, Merkle frontier.

    ``key_epoch`` is the seq of the newest key record plus one (0 if none), so an
    appender can tell whether the key ring changed under it. ``floor_time`` is the
    newest entry time since the last ``clock.reset`` (no entry may be dated more
    than ``TIME_TOLERANCE`` before it). ``checkpoint`` is the text of the newest
    stored checkpoint, which must cover the head before anything is appended.
    """

    __slots__ = __match_args__ = (
        "size", "last_hash", "last_time", "frontier", "key_epoch", "floor_time",
        "checkpoint",
    )  # fmt: skip
    _compared = __match_args__[:5]  # not floor_time, checkpoint
    size: int
    last_hash: bytes
    last_time: str | None
    frontier: tuple[bytes, ...]
    key_epoch: int
    floor_time: str | None
    checkpoint: str | None

    def __init__(
        self,
        size: int,
        last_hash: bytes,
        last_time: str | None,
        frontier: tuple[bytes, ...],
        key_epoch: int = 0,
        floor_time: str | None = None,
        checkpoint: str | None = None,
    ) -> None:
        _set(self, "size", size)
        _set(self, "last_hash", last_hash)
        _set(self, "last_time", last_time)
        _set(self, "frontier", frontier)
        _set(self, "key_epoch", key_epoch)
        _set(self, "floor_time", floor_time)
        _set(self, "checkpoint", checkpoint)

    @property
    def prev(self) -> str:
        """The ``prev`` the next record must carry."""
        return self.last_hash.hex() if self.size else ZERO_HASH

    def compact_range(self) -> CompactRange:
        """The Merkle frontier as a mutable compact range."""
        return CompactRange(self.size, self.frontier)

    def root(self) -> bytes:
        """Merkle root of the ledger at this head."""
        return frontier_root(self.frontier)


EMPTY_HEAD = ChainHead(size=0, last_hash=bytes(32), last_time=None, frontier=())
