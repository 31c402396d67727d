"""Entry times against the times anchors attest.

An RFC 3161 token or a witness cosignature on the checkpoint of size ``S``
proves that records 0 to ``S - 1`` existed at the time it states. A record among
them dated later than that (beyond ``TIME_TOLERANCE``, the two clocks' leeway)
claims to have been written after it provably existed: its writer's clock ran
ahead, or the entry was dated forward on purpose (a run made to look as if it
ran after an approval, or in a later week). Appends cannot see this (the
anchor comes later), so verification reports it, as ``dated-after-anchor``:
an error, or a warning when a later ``clock.reset`` already records that a
clock ran ahead. A record dated after the verifying machine's own clock is
the warning ``future`` (whose clock is wrong cannot be told).

    >>> dates = LatestDated()                                     # doctest: +SKIP
    >>> dates.see(seq, kind, time); dates.mark(size)              # during the walk
    >>> dates.problem(size, token_time, "timestamp #3")           # after it
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mltrail.core.chain import describe_gap, is_later
from mltrail.core.codec import format_time, parse_time
from mltrail.core.head import CLOCK_RESET_KIND, TIME_TOLERANCE
from mltrail.core.report import Problem, Severity

if TYPE_CHECKING:
    from collections.abc import Sequence
    from datetime import datetime, timedelta

__all__ = ["LatestDated"]


class LatestDated:
    """The latest-dated record among the first ``size`` records, at each size
    marked during the walk, and the seqs of clock resets."""

    def __init__(self) -> None:
        self._latest: tuple[str, int] | None = None
        self._at: dict[int, tuple[str, int]] = {}
        self._resets: list[int] = []

    def see(self, seq: int, kind: str, time: str) -> None:
        """Take the next readable record (in seq order)."""
        if kind == CLOCK_RESET_KIND:
            self._resets.append(seq)
        if self._latest is None or is_later(time, self._latest[0]):
            self._latest = (time, seq)

    def see_sorted(self, first_seq: int, times: Sequence[str]) -> None:
        """``see`` each of records ``first_seq`` on, none a clock reset, dated
        ``times`` in order, each not before the one ahead of it (``is_later``)."""
        if not times:
            return
        last = times[-1]
        if self._latest is not None and not is_later(last, self._latest[0]):
            return  # none is later than the latest: see changes nothing
        # see keeps the first of the latest-dated: the first dated like the last
        i = len(times) - 1
        while i > 0 and not is_later(last, times[i - 1]):
            i -= 1
        self._latest = (times[i], first_seq + i)

    def mark(self, size: int) -> None:
        """Remember the latest-dated record so far as the one of ``size``."""
        if self._latest is not None:
            self._at[size] = self._latest

    def after(
        self, now: datetime, tolerance: timedelta = TIME_TOLERANCE
    ) -> Problem | None:
        """A warning naming the latest-dated record when it is dated more than
        ``tolerance`` after ``now`` (the verifying machine's clock): a writer's
        clock ran ahead, the entry was dated forward, or this clock is behind."""
        if self._latest is None:
            return None
        time, seq = self._latest
        gap = parse_time(time) - now
        if gap <= tolerance:
            return None
        return Problem(
            seq,
            "future",
            f"dated {time}, {describe_gap(gap)} after this machine's clock "
            f"({format_time(now)}): a writer's clock ran ahead, the entry was dated "
            "forward, or this clock is behind",
            Severity.WARNING,
        )

    def problem(
        self,
        size: int,
        when: datetime,
        what: str,
        tolerance: timedelta = TIME_TOLERANCE,
        *,
        severity: Severity = Severity.ERROR,
    ) -> Problem | None:
        """The problem when a record below ``size`` is dated after ``when``
        (an anchor ``what`` attests records 0 to ``size - 1`` existed then)
        by more than ``tolerance``; None otherwise, or when ``size`` was not
        marked. ``severity`` is the problem's when no later clock reset explains
        it (a witness's clock is not audited as a TSA's is: a warning)."""
        found = self._at.get(size)
        if found is None:
            return None
        time, seq = found
        gap = parse_time(time) - when
        if gap <= tolerance:
            return None
        reset = next((r for r in self._resets if r > seq), None)
        message = (
            f"dated {time}, {describe_gap(gap)} after {what} shows records 0 to "
            f"{size - 1} existed: the entry was dated by a clock running ahead, "
            "or dated forward"
        )
        if reset is None:
            return Problem(seq, "dated-after-anchor", message, severity)
        return Problem(
            seq,
            "dated-after-anchor",
            f"{message} (the clock reset at seq {reset} records a clock ahead)",
            Severity.WARNING,
        )
