"""Fair shares of a server process's costly resources, and a quiet error log.

Run holds (a database connection each), verifications (a full ledger read,
CPU-bound) and large request bodies (buffered in memory) are bounded per user
(a ledger's token name, whatever token it uses), per ledger and per process
(:class:`ServerLimits`, ``mltrail server --limit NAME=N``), so one user, or one
ledger's users, cannot take every slot and deny the others. A request over its
own user's share is answered 429; one over its ledger's or the process's share
503; both with ``Retry-After``. Nothing is queued: a refused request costs no
thread and no memory. ADR 0027, amendment of 2026-12-07.

:class:`ThrottledErrors` keeps a flood of refusals or failures from filling the
server's log: at most ``error_lines`` lines of each kind (an HTTP status, or
a share's refusal) per ``error_interval`` seconds, then one line per interval
saying how many were left out.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import threading
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Callable, Hashable, Mapping

__all__ = [
    "LIMITS_ENV",
    "LargeBody",
    "ServerLimits",
    "Slots",
    "ThrottledErrors",
    "parse_limits",
]

LIMITS_ENV = "MLTRAIL_SERVER_LIMITS"
"""``name=value,name=value``: what ``mltrail server --limit`` passes its workers."""


@dataclass(frozen=True)
class ServerLimits:
    """The bounds of one server process (each a positive, finite number)."""

    holds: int = 64
    """Live-run holds (each a database connection) in the process."""
    holds_per_ledger: int = 32
    """Holds of one ledger's users together."""
    holds_per_user: int = 16
    """Holds of one user (a ledger's token name, over all its tokens)."""
    verifies: int = 2
    """Full verifications (``POST /verify``) running at once in the process."""
    verifies_per_ledger: int = 1
    """Verifications of one ledger at once."""
    verifies_per_user: int = 1
    """Verifications one user runs at once."""
    verify_pause: float = 1.0
    """After a verification it started ends, while others were refused for want
    of its slot, a user waits this many times its duration (at least their
    ``Retry-After``) before starting another of the same ledger (429 until
    then): one user starting one as soon as the last ends cannot keep the
    slot from the others."""
    large_bodies: int = 16
    """Large request bodies (appends, blobs) being read or handled at once."""
    large_bodies_per_user: int = 2
    """Large bodies of one user at once."""
    large_body_bytes: int = 2**20
    """A body is large from this many bytes (declared or read); smaller ones
    are never refused for want of a slot."""
    error_lines: int = 10
    """Log lines of one kind (an HTTP status of a failure, or one bound's
    503 refusals) logged per interval; the rest counted in one line."""
    error_interval: float = 60.0
    """Seconds of that interval."""

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(value, bool) or not 0 < value < math.inf:
                raise ValueError(
                    f"limit {field.name} must be positive and finite, not {value!r}"
                )


def parse_limits(text: str) -> ServerLimits:
    """Limits from ``name=value`` pairs separated by commas (the rest default).

    Raises:
        ValueError: an unknown name, a value that is not a positive number.
    """
    fields = {f.name: f.type for f in dataclasses.fields(ServerLimits)}
    values: dict[str, int | float] = {}
    for pair in filter(None, (p.strip() for p in text.split(","))):
        name, sep, value = pair.partition("=")
        name = name.strip().replace("-", "_")
        if not sep or name not in fields:
            known = ", ".join(fields)
            raise ValueError(f"unknown limit {pair!r}: name=value with names {known}")
        try:
            values[name] = (
                float(value) if fields[name] in (float, "float") else int(value)
            )
        except ValueError as e:
            raise ValueError(f"limit {name} is a number, not {value!r}") from e
    return ServerLimits(**values)  # type: ignore[arg-type]


class Slots:
    """Counted slots with a cap per scope: a slot taken counts against each
    scope's key it names (e.g. the user, the ledger, the process)."""

    def __init__(self, caps: Mapping[str, int]) -> None:
        self.caps = dict(caps)
        self._held: dict[tuple[str, Hashable], int] = {}
        self._lock = threading.Lock()

    def take(self, keys: Mapping[str, Hashable]) -> Callable[[], None] | str:
        """A slot for ``keys`` (scope -> key), as the function that gives it
        back (idempotent), or the name of the first scope at its cap."""
        counted = [(scope, key) for scope, key in keys.items() if scope in self.caps]
        with self._lock:
            for scope, key in counted:
                if self._held.get((scope, key), 0) >= self.caps[scope]:
                    return scope
            for item in counted:
                self._held[item] = self._held.get(item, 0) + 1
        given = threading.Event()

        def give_back() -> None:
            with self._lock:
                if given.is_set():
                    return
                given.set()
                for item in counted:
                    left = self._held.get(item, 1) - 1
                    if left:
                        self._held[item] = left
                    else:
                        self._held.pop(item, None)

        return give_back

    def held(self, scope: str, key: Hashable) -> int:
        """How many slots ``key`` of ``scope`` holds now."""
        with self._lock:
            return self._held.get((scope, key), 0)


class LargeBody:
    """The large-body slot of one request, taken once its body is large
    (declared so, or read past ``threshold``), given back by ``release``."""

    def __init__(self, take: Callable[[], Callable[[], None]], threshold: int) -> None:
        self._take = take
        self.threshold = threshold
        self._release: Callable[[], None] | None = None

    def need(self) -> None:
        """Take the slot unless taken (raises the refusal of ``take``)."""
        if self._release is None:
            self._release = self._take()

    def release(self) -> None:
        """Give the slot back (when taken)."""
        if self._release is not None:
            self._release()
            self._release = None


class ThrottledErrors(logging.Filter):
    """A filter: at most ``lines`` records per key (a record's ``throttle``
    attribute) per ``interval`` seconds; the first record let through after
    some were dropped says how many, and :meth:`report` (each interval) says
    the count of any not said yet. Records without the attribute pass."""

    def __init__(self, lines: int, interval: float) -> None:
        super().__init__()
        self.lines, self.interval = lines, interval
        self._windows: dict[str, tuple[float, int, int, int]] = {}
        """key -> (window start, lines let through, lines dropped, their level)."""
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        key = getattr(record, "throttle", None)
        if key is None:
            return True
        now = time.monotonic()
        with self._lock:
            start, passed, dropped, level = self._windows.get(
                str(key), (now, 0, 0, record.levelno)
            )
            if now - start >= self.interval:
                start, passed = now, 0
            if passed >= self.lines:
                level = max(level, record.levelno) if dropped else record.levelno
                self._windows[str(key)] = (start, passed, dropped + 1, level)
                return False
            self._windows[str(key)] = (start, passed + 1, 0, record.levelno)
        if dropped:
            record.msg = f"[{dropped} more like this not logged] {record.msg}"
        return True

    def dropped(self) -> dict[str, int]:
        """Lines dropped per key since the last one let through or reported."""
        with self._lock:
            return {k: w[2] for k, w in self._windows.items() if w[2]}

    def report(self, logger: logging.Logger) -> None:
        """Log, in one line per key, how many lines were dropped and not yet
        said (at the level of the worst of them); the windows go on."""
        with self._lock:
            counts = {k: (w[2], w[3]) for k, w in self._windows.items() if w[2]}
            for key in counts:
                start, passed, _, level = self._windows[key]
                self._windows[key] = (start, passed, 0, level)
        for key, (count, level) in counts.items():
            logger.log(level, "%d more log lines (%s) were not logged", count, key)

    def flush(self, logger: logging.Logger) -> None:
        """:meth:`report`, then forget the windows (the server stops)."""
        self.report(logger)
        with self._lock:
            self._windows.clear()

    async def report_each_interval(self, logger: logging.Logger) -> None:
        """:meth:`report` at the end of each interval, until cancelled: a flood
        that stops is still counted in the log within an interval."""
        import asyncio

        while True:
            await asyncio.sleep(self.interval)
            self.report(logger)
