"""The end of a wrapped run: what the command left, recorded so the outcome is never lost.

Once the command has run, nothing here raises for mltrail's own problems: the
command's exit code must reach the caller whatever happens. Each problem becomes
a line in ``Ending.problems`` that says exactly what was and was not recorded.

- An output that cannot be hashed (unreadable, a FIFO or device) is recorded with
  its type or the error; a fine-tune or step that cannot be read is a warning.
- The end batch goes through ``write_durably`` (key rotated meanwhile, store
  locked or full). A body the ledger refuses is dropped so ``run.ended`` still
  lands. If the end still cannot be written, the run is left stale with its
  outcome in its lock file, for ``close_stale_runs`` to record as aborted.
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mltrail.capture.blob import Blob
from mltrail.datasets import artifact_body
from mltrail.errors import ConfigError, InputError, MltrailError
from mltrail.open_runs import ingest_spool
from mltrail.persist import write_durably

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from mltrail.capture.hashcache import HashCache
    from mltrail.capture.process import ProcessResult, StreamCapture
    from mltrail.capture.progress import ProgressFactory
    from mltrail.home import Home
    from mltrail.open_runs import OpenRun
    from mltrail.recorder import RunWriter

__all__ = [
    "Ending",
    "ended_body",
    "finish_run",
    "guarded",
    "outcome_of",
    "output_bodies",
    "run_status",
    "timestamp_end",
]

Entries = list[tuple[str, dict[str, Any]]]


@dataclass
class Ending:
    """How the end went: records written, checkpoint, warnings, problems."""

    records: int = 0
    checkpoint_size: int | None = None
    warnings: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """mltrail's own failures, one ``error:`` line each."""


def run_status(result: ProcessResult) -> str:
    """succeeded, failed or interrupted, as ``run.ended`` says it."""
    if result.signal is not None or result.signals_received:
        return "interrupted"
    return "succeeded" if result.returncode == 0 else "failed"


def outcome_of(result: ProcessResult) -> dict[str, Any]:
    """What the command did, in a few words (kept when the end cannot be written)."""
    return {
        "status": run_status(result),
        "exit_code": result.returncode if result.signal is None else None,
        "signal": result.signal,
        "duration_s": round(result.duration_s, 6),
    }


def _stream(capture: StreamCapture) -> dict[str, Any]:
    stored = capture.stored
    blob = Blob(stored, "application/octet-stream", text=True, scanned=True)
    body = {
        "sha256": capture.sha256,
        "size": capture.size,
        "stored": blob if stored else None,
        "truncated": capture.truncated,
        "omitted": capture.omitted,
    }
    if capture.masked:
        body["masked"] = capture.masked
    return body


def ended_body(result: ProcessResult) -> dict[str, Any]:
    """The ``run.ended`` body of a command that ran."""
    return {
        **outcome_of(result),
        "pid": result.pid,
        "stdout": _stream(result.stdout),
        "stderr": _stream(result.stderr),
        "signals_received": list(result.signals_received),
    }


def output_bodies(
    outputs: Sequence[Path],
    cache: HashCache,
    progress: ProgressFactory | None,
    warnings: list[str],
) -> Entries:
    """``run.artifact`` entries; an output that cannot be hashed keeps its error."""
    entries: Entries = []
    for path in outputs:
        try:
            body = artifact_body(path, cache=cache, progress=progress)
        except (MltrailError, OSError) as e:
            warnings.append(f"output {path} not hashed: {_reason(e)}")
            body = {"path": str(path), "exists": True, "error": _reason(e)}
        if not body["exists"]:
            warnings.append(f"output {path} was declared but never written")
        entries.append(("run.artifact", body))
    return entries


def guarded(what: str, make: Callable[[], Entries], warnings: list[str]) -> Entries:
    """``make()``, or no entries and a warning when it fails."""
    try:
        return make()
    except (MltrailError, OSError) as e:
        warnings.append(f"{what} not recorded: {_reason(e)}")
        return []


def _reason(error: BaseException) -> str:
    if isinstance(error, OSError):
        return error.strerror or str(error)
    return str(error)


@dataclass
class _Run:
    home: Home
    writer: RunWriter


def finish_run(
    home: Home,
    writer: RunWriter,
    lock: OpenRun,
    spool: Path,
    *,
    started: int,
    result: ProcessResult,
    entries: Callable[[list[str]], Entries],
    warnings: Sequence[str] = (),
) -> Ending:
    """Append the spooled entries, ``entries(warnings)`` and ``run.ended``; sign a
    checkpoint; release the lock. Never raises an ``Exception``.

    ``warnings`` (the wrapper's so far) and those found here are recorded in
    ``run.ended`` too, so the ledger says what the person was warned about.
    """
    run = _Run(home, writer)
    ending = Ending(records=started)
    try:
        spooled, warned = ingest_spool(home, writer, spool)
        ending.records += spooled
        ending.warnings += warned
        extra = entries(ending.warnings)
        body = ended_body(result)
        if said := [*warnings, *ending.warnings]:
            body["warnings"] = said
        end = [*extra, ("run.ended", body)]
        ending.records += _write_end(run, end, ending.warnings)
    except Exception as e:  # the outcome must survive mltrail's own failure
        ending.problems += _not_recorded(run, ending.records, result, e)
        lock.abandon(outcome_of(result), problem=_reason(e))
        return ending
    try:
        signed = write_durably(home, home.checkpoint)
        ending.checkpoint_size = signed.checkpoint.size
    except MltrailError as e:
        ending.problems.append(
            f"run {writer.run_id} was recorded in full, but no checkpoint was "
            f"signed: {e} (`mltrail checkpoint` signs one)"
        )
    lock.release()
    ending.warnings += timestamp_end(home, ending.checkpoint_size)
    return ending


def timestamp_end(home: Home, size: int | None) -> list[str]:
    """Stamp the run's end checkpoint when a TSA is set (``MLTRAIL_TSA_URL`` or
    ``tsa_url``); a warning when the TSA fails (the stamp is left pending)."""
    if not (home.settings.tsa_url or os.environ.get("MLTRAIL_TSA_URL")):
        return []
    from mltrail.timestamps import stamp_run_end

    warning = stamp_run_end(home, size)
    return [warning] if warning else []


def _write_end(run: _Run, end: Entries, warnings: list[str]) -> int:
    """Write the end batch; if the ledger refuses a body, write ``run.ended`` alone."""
    try:
        return len(write_durably(run.home, functools.partial(run.writer.write, end)))
    except ConfigError:
        raise
    except InputError as e:
        refused = str(e)
    warnings.append(f"outputs, fine-tune and step not recorded: {refused}")
    kind, body = end[-1]
    body = {**body, "error": f"the run's other end entries were refused: {refused}"}
    alone = functools.partial(run.writer.write, [(kind, body)])
    return len(write_durably(run.home, alone))


def _not_recorded(
    run: _Run, records: int, result: ProcessResult, error: Exception
) -> list[str]:
    if isinstance(error, MltrailError):
        cause = str(error)
    else:
        cause = f"internal error: {type(error).__name__}: {error}"
    outcome = outcome_of(result)
    how = (
        f"was killed by {outcome['signal']}"
        if outcome["signal"]
        else f"exited with {outcome['exit_code']}"
    )
    return [
        f"run {run.writer.run_id}: its start was recorded ({records} records in "
        f"all) but its end was not: {cause}",
        f"the command {how} ({outcome['status']}); the run is left stale with that "
        "outcome, and `mltrail runs close --stale` (or the next `mltrail run`) "
        "records it as aborted",
    ]
