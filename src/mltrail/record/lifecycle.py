"""One run lifecycle: how every recorder starts and ends a run.

The Python API (``mltrail.start_run``, and through it ``mltrail.autolog()``,
``python -m mltrail.auto`` and framework callbacks) and the wrapper (``mltrail
run``) differ only in what they capture. How a run starts, ends, and is left for
the cleanup when its end cannot be written is written here, once:

- ``LiveRun.open``: runs whose recorder died are recorded as aborted first (under
  the closing lock, ``open_runs.close_stale_runs``), then this run's open-run lock
  is taken, with a spool folder for the processes that join it when asked.
- ``LiveRun.start``: the start batch (``run.started`` and the captured context),
  appended atomically and retried (``persist.write_durably``). If it cannot be
  written, nothing of the run is recorded and its lock is given up.
- ``LiveRun.finish``: what joined processes spooled, the caller's end entries
  (metrics, outputs, fine-tune, step) and ``run.ended`` with the exit status and
  the warnings, as one batch; then a checkpoint, the lock released, the end
  timestamped. When the end cannot be written, the lock is abandoned with the
  outcome in it for ``close_stale_runs``, which records the run as aborted.
  ``finish`` never raises an ``Exception``: the caller says what was lost.
- ``ended_by``: the status, error and exit code a run ends with when its code
  returned or raised (``Run.__exit__``, autolog's exception hook, ``mltrail.auto``).
- ``rank_entries``: what a rank above 0 adds to a distributed run (its hardware).

Closing a run whose recorder is gone (by hand or by the cleanup) is done in
``open_runs`` under one closing lock (``runs/closing.lock``), so two closers of
one home never both write a ``run.ended``. A run closed by hand from another
host while its hold in a shared store was missing still gets its recorder's
own end too (ADR 0029, amendment of 2026-12-07).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mltrail.capture.machine.hardware import capture_hardware
from mltrail.errors import ConfigError, InputError, MltrailError
from mltrail.ledger.persist import write_durably
from mltrail.ledger.spool import create_spool
from mltrail.record.open_runs import OpenRun, close_stale_runs, ingest_spool
from mltrail.record.recorder import OPEN_RUNS, RunWriter, with_rank

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from pathlib import Path

    from mltrail.capture.run.guard import SecretGuard
    from mltrail.ledger.home import Home

__all__ = [
    "Ended",
    "Ending",
    "Entries",
    "LiveRun",
    "ended_by",
    "rank_entries",
    "reason_of",
    "timestamp_end",
]

Entries = list[tuple[str, dict[str, Any]]]

_OUTCOME_KEYS = ("status", "exit_code", "signal", "duration_s")


@dataclass
class Ending:
    """How the end went: records written, checkpoint, warnings, problems."""

    records: int = 0
    checkpoint_size: int | None = None
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """mltrail's own failures after the end was written (no checkpoint signed)."""
    error: Exception | None = None
    """Why the end could not be written (the run is left stale), else None."""


@dataclass(frozen=True)
class Ended:
    """How a run ends: its status, the error that ended it, its exit code."""

    status: str
    error: str | None = None
    exit_code: int | None = None


def ended_by(error: BaseException | None, *, whole_process: bool = False) -> Ended:
    """How a run ends when its code returned (``error`` None) or raised ``error``.

    ``SystemExit`` carries the exit code (0 succeeded, else failed);
    ``KeyboardInterrupt`` is interrupted; any other exception failed. With
    ``whole_process`` (the run is the process, ``python -m mltrail.auto``) the exit
    code is known otherwise too: 0, 130 after an interrupt, 1 after an exception.
    """
    if error is None:
        return Ended("succeeded", exit_code=0 if whole_process else None)
    if isinstance(error, SystemExit):
        code = _exit_code(error)
        return Ended("succeeded" if code == 0 else "failed", exit_code=code)
    if isinstance(error, KeyboardInterrupt):
        return Ended("interrupted", "KeyboardInterrupt", 130 if whole_process else None)
    text = f"{type(error).__name__}: {error}"
    return Ended("failed", text, 1 if whole_process else None)


def _exit_code(error: SystemExit) -> int:
    if error.code is None:
        return 0
    return error.code if isinstance(error.code, int) else 1


def rank_entries(env: Mapping[str, str], rank: Mapping[str, int] | None) -> Entries:
    """What a rank above 0 adds to a distributed run: its own hardware, with its
    rank; never the code or packages rank 0 recorded."""
    return [with_rank("run.hardware", capture_hardware(env), rank)]


def reason_of(error: BaseException) -> str:
    """``error`` in a few words: an OS error's own text, else the message."""
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)


@dataclass
class LiveRun:
    """A run this process started and must end: its writer, lock and spool."""

    home: Home
    writer: RunWriter
    lock: OpenRun
    spool: Path | None = None
    closed: list[str] = field(default_factory=list)
    """Runs whose recorder had died, recorded as aborted before this one opened."""
    started: int = 0
    """Records of the start batch."""

    @property
    def run_id(self) -> str:
        """The run's id."""
        return self.writer.run_id

    @classmethod
    def open(
        cls, home: Home, run_id: str, guard: SecretGuard, *, spool: bool = False
    ) -> LiveRun:
        """Close the stale runs, then take run ``run_id``'s open-run lock (and make
        its spool folder when ``spool``); nothing is appended yet.

        Raises:
            MltrailError: a stale run could not be closed (nothing of this run
                was recorded).
        """
        closed = close_stale_runs(home)
        name = f"{run_id}.{os.getpid()}.spool" if spool else None
        seq = home.ledger.head().size
        hold = home.ledger.store.hold_run(run_id)
        try:
            lock = OpenRun.create(home.path, run_id, seq=seq, spool=name, hold=hold)
        except BaseException:
            if hold is not None:
                hold.release()
            raise
        try:
            folder = create_spool(home.path / OPEN_RUNS / name) if name else None
        except BaseException:
            lock.abandon()
            raise
        return cls(home, RunWriter(home.ledger, run_id, guard), lock, folder, closed)

    def start(self, entries: Entries) -> int:
        """Append the start batch, all or nothing; return its number of records.

        Raises:
            MltrailError: it could not be written even after retries; the run is
                given up (``give_up``) and nothing of it was recorded.
        """
        attempt = functools.partial(self.writer.write, entries)
        try:
            self.started = len(write_durably(self.home, attempt))
        except BaseException:
            self.give_up()
            raise
        return self.started

    def give_up(self) -> None:
        """The run will not be recorded after all. Its lock file goes; one with a
        spool is left unlocked instead, so ``close_stale_runs`` removes both."""
        if self.spool is None:
            self.lock.release()
        else:
            self.lock.abandon()

    def finish(
        self,
        body: Mapping[str, Any],
        *,
        before: Entries = (),  # type: ignore[assignment]
        extra: Callable[[list[str]], Entries] | None = None,
        warnings: Sequence[str] = (),
    ) -> Ending:
        """Record the end: spooled entries, ``before`` (metrics), ``extra(warnings)``
        (outputs...), and ``run.ended`` with ``body`` and every warning; then sign
        a checkpoint, release the lock and timestamp the end (when a TSA is set).

        Never raises an ``Exception``: an end that cannot be written is in
        ``Ending.error`` and the run is left stale with its outcome in its lock
        file; a checkpoint that cannot be signed is in ``Ending.problems``.
        """
        ending = Ending(records=self.started)
        try:
            if self.spool is not None:
                spooled, warned = ingest_spool(self.home, self.writer, self.spool)
                ending.records += spooled
                ending.warnings += warned
            more = extra(ending.warnings) if extra is not None else []
            ended = dict(body)
            if said := [*warnings, *ending.warnings]:
                ended["warnings"] = said
            end = [*before, *more, ("run.ended", ended)]
            ending.records += self._write_end(end, ending.warnings)
        except Exception as e:  # the outcome must survive mltrail's own failure
            ending.error = e
            outcome = {k: body[k] for k in _OUTCOME_KEYS if k in body}
            self.lock.abandon(outcome, problem=reason_of(e))
            return ending
        ending.checkpoint_size = self._checkpoint(ending.problems)
        self.lock.release()
        ending.warnings += timestamp_end(self.home, ending.checkpoint_size)
        return ending

    def _write_end(self, end: Entries, warnings: list[str]) -> int:
        """Write the end batch; if the ledger refuses a body, ``run.ended`` alone."""
        try:
            attempt = functools.partial(self.writer.write, end)
            return len(write_durably(self.home, attempt))
        except ConfigError:
            raise
        except InputError as e:
            refused = str(e)
        kinds = sorted({kind for kind, _ in end[:-1]})
        warnings.append(f"{', '.join(kinds) or 'end entries'} not recorded: {refused}")
        kind, body = end[-1]
        body = {**body, "error": f"the run's other end entries were refused: {refused}"}
        alone = functools.partial(self.writer.write, [(kind, body)])
        return len(write_durably(self.home, alone))

    def _checkpoint(self, problems: list[str]) -> int | None:
        try:
            signed = write_durably(self.home, self.home.checkpoint)
        except MltrailError as e:
            problems.append(
                f"run {self.run_id} was recorded in full, but no checkpoint was "
                f"signed: {e} (`mltrail checkpoint` signs one)"
            )
            return None
        return signed.checkpoint.size


def timestamp_end(home: Home, size: int | None) -> list[str]:
    """Stamp the run's end checkpoint when a TSA is set (``MLTRAIL_TSA_URL`` or
    ``tsa_url``); a warning when the TSA fails (the stamp is left pending)."""
    if not (home.settings.tsa_url or os.environ.get("MLTRAIL_TSA_URL")):
        return []
    from mltrail.evidence.timestamps import stamp_run_end

    warning = stamp_run_end(home, size)
    return [warning] if warning else []
