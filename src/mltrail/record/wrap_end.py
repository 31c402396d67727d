"""The end of a wrapped run: what the command left, recorded so the outcome is never lost.

Once the command has run, nothing here raises for mltrail's own problems: the
command's exit code must reach the caller whatever happens. Each problem becomes
a line in ``Ending.problems`` that says exactly what was and was not recorded.

- An output that cannot be hashed (unreadable, a FIFO or device) is recorded with
  its type or the error; a fine-tune or step that cannot be read is a warning.
- The end itself (spooled entries, these entries and ``run.ended``; the
  checkpoint; the lock) goes through the one run lifecycle, ``LiveRun.finish``
  in ``mltrail.record.lifecycle``: retried, a refused body dropped so ``run.ended``
  still lands, and if the end still cannot be written the run is left stale with
  its outcome in its lock file, for ``close_stale_runs`` to record as aborted.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.capture.data.files import hash_dataset
from mltrail.capture.run.blob import Blob
from mltrail.errors import MltrailError
from mltrail.record.datasets import artifact_body
from mltrail.record.lifecycle import Ending, Entries, reason_of, timestamp_end

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from mltrail.capture.data.hashcache import HashCache
    from mltrail.capture.data.progress import ProgressFactory
    from mltrail.capture.run.process import ProcessResult, StreamCapture
    from mltrail.record.lifecycle import LiveRun

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
            warnings.append(f"output {path} not hashed: {reason_of(e)}")
            body = {"path": str(path), "exists": True, "error": reason_of(e)}
        if not body["exists"]:
            warnings.append(f"output {path} was declared but never written")
        elif body.get("link"):
            warnings.append(
                f"output {path} is a symbolic link to {body['link']}: the bytes "
                "recorded are the target's, which lives outside the declared path"
            )
        entries.append(("run.artifact", body))
    return entries


def changed_inputs(start: Entries, cache: HashCache) -> list[str]:
    """A warning for each local input (``run.data`` of ``start``) whose files
    changed while the command ran: the record holds the manifest hashed before
    it started. Files unchanged since (same size, mtime and ctime) are taken from
    ``cache``, so this costs one walk of each input."""
    said = []
    for kind, body in start:
        if kind != "run.data" or body.get("url") or not body.get("dataset"):
            continue
        path = Path(str(body.get("path")))
        try:
            now = hash_dataset(path, cache=cache, need_manifest=False).dataset_id
        except (MltrailError, OSError) as e:
            now = f"unreadable: {reason_of(e)}"
        if now != body["dataset"]:
            said.append(
                f"input {body.get('role')} {path} changed while the command ran "
                f"(dataset {str(body['dataset'])[:12]} at the start, now {now[:24]}):"
                " the record holds its files as they were at the start; the "
                "command may have read the changed ones"
            )
    return said


def guarded(what: str, make: Callable[[], Entries], warnings: list[str]) -> Entries:
    """``make()``, or no entries and a warning when it fails."""
    try:
        return make()
    except (MltrailError, OSError) as e:
        warnings.append(f"{what} not recorded: {reason_of(e)}")
        return []


def finish_run(
    live: LiveRun,
    *,
    result: ProcessResult,
    entries: Callable[[list[str]], Entries],
    warnings: Sequence[str] = (),
) -> Ending:
    """End a wrapped run through the one lifecycle (``LiveRun.finish``): spooled
    entries, ``entries(warnings)`` and ``run.ended`` of ``result``; a checkpoint;
    the lock released. Never raises an ``Exception``.

    ``warnings`` (the wrapper's so far) and those found here are recorded in
    ``run.ended`` too, so the ledger says what the person was warned about.
    """
    ending = live.finish(ended_body(result), extra=entries, warnings=warnings)
    if ending.error is not None:
        ending.problems += _not_recorded(
            live.run_id, ending.records, result, ending.error
        )
    return ending


def _not_recorded(
    run_id: str, records: int, result: ProcessResult, error: Exception
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
        f"run {run_id}: its start was recorded ({records} records in "
        f"all) but its end was not: {cause}",
        f"the command {how} ({outcome['status']}); the run is left stale with that "
        "outcome, and `mltrail runs close --stale` (or the next `mltrail run`) "
        "records it as aborted",
    ]
