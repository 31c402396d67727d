"""How far hashing has got, told to whoever shows it (a progress bar, a test).

Capture code never prints: it calls a ``progress`` callback with a
:class:`HashProgress` from the thread that asked for the work. Callers that show
progress for several datasets in turn pass a :data:`ProgressFactory` instead: one
context manager per dataset, whose callback is closed (its bar taken off the
screen) before anything else is printed.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from mltrail.tuples import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from contextlib import AbstractContextManager

__all__ = [
    "HashProgress",
    "ProgressCallback",
    "ProgressFactory",
    "Reporter",
    "count_progress",
]

PROGRESS_DELAY_S = 1.0
PROGRESS_EVERY_S = 0.1


class HashProgress(NamedTuple):
    """How far a :func:`~mltrail.capture.data.hashing.hash_tree` has got.

    ``files_total`` and ``bytes_total`` are None while the tree is still being walked
    (``files_found`` counts the files seen so far). ``files_done`` counts files whose
    hash is known (from the cache or hashed); ``bytes_total`` and ``bytes_done`` count
    only the bytes that must be read (files the cache did not know).

    A named tuple rather than a dataclass: ``dataclasses`` loads ``inspect``,
    ~8 ms of a warm ``mltrail data hash`` (ADR 0035).
    """

    files_done: int
    bytes_done: int
    files_total: int | None
    bytes_total: int | None
    files_found: int = 0
    elapsed_s: float = 0.0

    @property
    def rate(self) -> float:
        """Bytes hashed per second so far."""
        return self.bytes_done / self.elapsed_s if self.elapsed_s > 0 else 0.0


ProgressCallback = Callable[[HashProgress], None]
"""Called with a :class:`HashProgress`."""
ProgressFactory = Callable[[str], "AbstractContextManager[ProgressCallback]"]
"""Given a label (``hashing train data/train``), a context manager whose value is the
callback for that one piece of work; leaving it must remove what it showed."""


class Reporter:
    """Calls ``callback`` from the calling thread: after 1 s, then at most 10 times/s.

    A final report (:meth:`report` with ``final``) is made only when an earlier one
    was, so that work under a second shows nothing at all.
    """

    def __init__(self, callback: ProgressCallback | None) -> None:
        self.callback = callback
        self.start = time.monotonic()
        self.next_at = self.start + PROGRESS_DELAY_S
        self.shown = False

    def due(self) -> bool:
        """Whether a report is wanted now."""
        return self.callback is not None and time.monotonic() >= self.next_at

    def report(self, snapshot: HashProgress, *, final: bool = False) -> None:
        """Pass ``snapshot`` on (a final one only when something was shown)."""
        if self.callback is None or (final and not self.shown):
            return
        self.callback(snapshot)
        self.shown = True
        self.next_at = time.monotonic() + PROGRESS_EVERY_S


def count_progress(
    callback: ProgressCallback | None,
) -> Callable[[int, int], None] | None:
    """A ``progress(done, total)`` counting objects (remote hashing) that reports to
    ``callback`` as :class:`HashProgress` (no byte counts), with the same pacing."""
    if callback is None:
        return None
    reporter = Reporter(callback)

    def counted(done: int, total: int) -> None:
        final = done == total
        if reporter.due() or final:
            elapsed = time.monotonic() - reporter.start
            snapshot = HashProgress(done, 0, total, None, total, elapsed)
            reporter.report(snapshot, final=final)

    return counted
