"""What a reader needs to know about runs, without the recorder's capture code.

``mltrail runs`` lists runs from the index and asks whether an open run's
recorder still lives (its lock file); importing :mod:`mltrail.record.recorder` for that
would load every collector (environment, git, secret detection) and cost a
reading command tens of milliseconds. The recorder re-exports these names.
"""

from __future__ import annotations

import fcntl
import os
import stat
from typing import TYPE_CHECKING, Any

from mltrail.core.limits import run_id_problem
from mltrail.errors import InputError
from mltrail.values import Value

if TYPE_CHECKING:
    from pathlib import Path

    from mltrail.storage.base import Store

__all__ = [
    "OPEN_RUNS",
    "RunSummary",
    "check_run_id",
    "open_run_file",
    "run_liveness",
]

OPEN_RUNS = "runs/open"


def check_run_id(run_id: str, *, source: str = "run id") -> str:
    """``run_id`` itself when it follows the run id grammar (``core.limits``).

    Raises:
        InputError: it does not; the message names ``source`` (e.g. ``MLTRAIL_RUN_ID``).
    """
    problem = run_id_problem(run_id)
    if problem is not None:
        raise InputError(
            f"{source}: {problem}",
            hint="use letters, digits and . _ : - only, e.g. a UUID",
        )
    return run_id


def open_run_file(home: Path, run_id: str) -> Path:
    """``<home>/runs/open/<run id>.json``, never anywhere else.

    Raises:
        InputError: ``run_id`` is not a valid run id.
    """
    folder = home / OPEN_RUNS
    path = folder / f"{check_run_id(run_id)}.json"
    if path.parent != folder:  # the grammar already excludes this
        raise InputError(f"run id {run_id!r} cannot name a file")
    return path


class RunSummary(Value):
    """One run as ``mltrail runs`` lists it."""

    __match_args__ = (
        "id", "name", "status", "started", "ended", "duration_s", "exit_code", "user",
        "host", "command", "seq", "claimed_user", "pushed", "ended_by",
    )  # fmt: skip
    id: str
    name: str | None
    status: str
    started: str
    ended: str | None
    duration_s: float | None
    exit_code: int | None
    user: str | None
    host: str | None
    command: list[str]
    seq: int
    claimed_user: str | None
    """The user name ``$LOGNAME``/``$USER`` claimed, when not ``user`` (the account)."""
    pushed: dict[str, Any] | None
    """When the run's records were pushed from another ledger (ADR 0031): the
    ``ledger.pushed`` header's ``seq``, ``time`` and ``origin``. Its times are
    that ledger's claims; this one learnt of the run at the header's time."""
    ended_by: str | None
    """Who signed the end ``status`` comes from, when another user than the
    starter (``user``) did and the starter recorded none (ADR 0010)."""

    def __init__(
        self,
        id: str,
        name: str | None,
        status: str,
        started: str,
        ended: str | None,
        duration_s: float | None,
        exit_code: int | None,
        user: str | None,
        host: str | None,
        command: list[str],
        seq: int,
        claimed_user: str | None = None,
        pushed: dict[str, Any] | None = None,
        ended_by: str | None = None,
    ) -> None:
        self.id = id
        self.name = name
        self.status = status
        self.started = started
        self.ended = ended
        self.duration_s = duration_s
        self.exit_code = exit_code
        self.user = user
        self.host = host
        self.command = command
        self.seq = seq
        self.claimed_user = claimed_user
        self.pushed = pushed
        self.ended_by = ended_by

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return dict(self.__dict__)

    def who(self) -> str:
        """``user@host``, with the claimed name shown: ``root (claims alice)@gpu1``."""
        from mltrail.capture.machine.identity import describe_user

        return f"{describe_user(self.user, self.claimed_user)}@{self.host or '?'}"


def run_liveness(home: Path, run_id: str, store: Store | None = None) -> str:
    """``running`` while a recorder holds the run's lock, else ``stale``.

    The lock is the run's file in this home or, in a store several hosts share
    (PostgreSQL), the hold its recorder keeps there (``Store.hold_run``).
    """
    if run_id_problem(run_id) is not None:  # written by an older version
        return "stale"
    if _probe(open_run_file(home, run_id)):
        return "running"
    live = store.live_runs([run_id]) if store is not None else None
    return "running" if live else "stale"


def _probe(path: Path) -> bool:
    """Whether some process holds the lock of ``path``.

    Only a regular file is a lock: opened without blocking, so that a named
    pipe put in its place (by whoever can write the home) hangs no reader.
    """
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):  # runs/open may be a file
        return False
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return False
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False
