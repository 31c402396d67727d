"""Live runs: the lock file a recorder holds, and closing runs whose recorder is gone.

``OpenRun`` is the file ``runs/open/<run id>.json`` in the ledger home that a live
recorder keeps locked (``flock``). A recorder that dies (``kill -9``, power loss)
leaves it unlocked; one that could not record the end (the store stayed locked,
the disk was full) unlocks it on purpose, after writing there what it saw of the
command's end. ``close_stale_runs`` (run by the next ``mltrail run`` and by
``mltrail runs close --stale``) then appends what the run's joined processes
left in its spool and records the run as aborted, keeping that outcome.
"""

from __future__ import annotations

import contextlib
import fcntl
import functools
import json
import os
import socket
import stat
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mltrail.core.limits import run_id_problem
from mltrail.errors import ConfigError, InputError
from mltrail.ledger.persist import write_durably
from mltrail.ledger.spool import read_batches, remove_spool
from mltrail.record.recorder import (
    OPEN_RUNS,
    RunWriter,
    list_runs,
    open_run_file,
    secret_guard,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping
    from pathlib import Path

    from mltrail.ledger.home import Home
    from mltrail.ledger.ledger import Ledger
    from mltrail.storage.base import RunHold

__all__ = ["OpenRun", "close_run", "close_stale_runs", "closing_lock", "ingest_spool"]


@dataclass
class OpenRun:
    """A live run's lock file in ``<home>/runs/open``; held while the run is live."""

    path: Path
    fd: int
    hold: RunHold | None = None
    """The run held live in a store other hosts share (``Store.hold_run``)."""

    @classmethod
    def create(
        cls,
        home: Path,
        run_id: str,
        *,
        seq: int,
        spool: str | None = None,
        hold: RunHold | None = None,
    ) -> OpenRun:
        """Create and lock the file of a new run starting at ledger size ``seq``.

        The file says which process holds it (pid, host), from which seq on its
        records are, so ``close_stale_runs`` looks no further back, and the name
        of the run's spool folder in ``runs/open``, if it has one.
        """
        info: dict[str, Any] = {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "seq": seq,
            "time": time.time(),
        }
        if spool:
            info["spool"] = spool
        path = open_run_file(home, run_id)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        os.write(fd, json.dumps(info).encode())
        os.fsync(fd)
        return cls(path, fd, hold)

    def release(self) -> None:
        """Remove the file, then drop the lock: the run is no longer open.

        Releasing or abandoning a second time does nothing.
        """
        if self.fd < 0:
            return
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
        self._close()

    def _close(self) -> None:
        fd, self.fd = self.fd, -1
        try:
            os.close(fd)
        finally:
            if self.hold is not None:
                self.hold.release()

    def abandon(
        self, outcome: Mapping[str, Any] | None = None, problem: str | None = None
    ) -> None:
        """Drop the lock but keep the file: the run is left for ``close_stale_runs``.

        ``outcome`` (status, exit code... of the command) and ``problem`` (why the
        end could not be recorded) are kept in the file for it, when given.
        """
        if self.fd < 0:
            return
        try:
            if outcome is not None:
                self._note({"outcome": dict(outcome), "problem": problem})
        finally:
            self._close()

    def _note(self, more: Mapping[str, Any]) -> None:
        with contextlib.suppress(OSError, ValueError):
            info = json.loads(os.pread(self.fd, 1 << 20, 0) or b"{}")
            data = json.dumps({**info, **more}).encode()
            os.ftruncate(self.fd, 0)
            os.pwrite(self.fd, data, 0)
            os.fsync(self.fd)

    @staticmethod
    def is_live(home: Path, run_id: str) -> bool:
        """Whether a recorder still holds run ``run_id`` open."""
        if run_id_problem(run_id) is not None:
            return False
        return open_run_file(home, run_id).exists()


def _claim(path: Path) -> tuple[int, dict[str, Any]] | None:
    """Lock a stale run file whose recorder is gone; None when it is live or gone."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CLOEXEC | os.O_NONBLOCK)
    except (FileNotFoundError, NotADirectoryError):
        return None
    if not stat.S_ISREG(os.fstat(fd).st_mode):  # a named pipe is no run's file
        os.close(fd)
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        return None
    if os.fstat(fd).st_nlink == 0:
        os.close(fd)
        return None
    return fd, _read_info(path)


def _read_info(path: Path) -> dict[str, Any]:
    """What a run's file says (nothing when it is no regular file: a named
    pipe in its place would block the read)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
    except OSError:
        return {}
    try:
        with os.fdopen(fd, "rb") as f:
            if not stat.S_ISREG(os.fstat(f.fileno()).st_mode):
                return {}
            info = json.loads(f.read() or b"{}")
    except (OSError, ValueError):
        info = {}
    return info if isinstance(info, dict) else {}


def _needs_end(ledger: Ledger, run_id: str, since: int) -> bool:
    """Whether run ``run_id`` started (at or after seq ``since``) and never ended."""
    kinds = {
        r.entry.kind for r in ledger.records(max(since, 0)) if r.entry.run == run_id
    }
    return "run.started" in kinds and "run.ended" not in kinds


@contextlib.contextmanager
def closing_lock(home: Path) -> Iterator[None]:
    """Held by whoever records the end of a run it did not record itself
    (``close_stale_runs``, ``close_run``): one closer at a time, so two of them
    never both find a run unended and write two ``run.ended``."""
    folder = (home / OPEN_RUNS).parent  # beside runs/open, never a run's file
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd = os.open(folder / "closing.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def close_stale_runs(home: Home) -> list[str]:
    """Record as aborted every run whose recorder died; return their ids."""
    folder = home.path / OPEN_RUNS
    if not folder.is_dir():
        return []
    with closing_lock(home.path):
        return _close_stale(home, folder)


def _close_stale(home: Home, folder: Path) -> list[str]:
    closed = []
    for path in sorted(folder.glob("*.json")):
        claimed = _claim(path)
        if claimed is None:
            continue
        fd, info = claimed
        run_id = path.stem
        try:
            if _needs_end(home.ledger, run_id, int(info.get("seq", 0))):
                _close(home, run_id, info)
                closed.append(run_id)
            else:
                _drop_spool(home, info)
        except BaseException:
            os.close(fd)  # keep the file: the run is still to be closed
            raise
        OpenRun(path, fd).release()
    return closed


def close_run(home: Home, run_id: str, *, reason: str) -> None:
    """Record a run whose recorder is gone as aborted, with ``reason``.

    Raises:
        InputError: no such run, it has ended, or its recorder is still alive.
    """
    with closing_lock(home.path):
        _close_one(home, run_id, reason)


def _close_one(home: Home, run_id: str, reason: str) -> None:
    found = {s.id: s for s in list_runs(home)}.get(run_id)
    if found is None:
        raise InputError(f"no run {run_id} in this ledger", hint="see `mltrail runs`")
    if found.status == "running":
        raise InputError(
            f"run {run_id} is still running",
            hint="stop its process first; mltrail records the end itself",
        )
    if found.status != "stale":
        raise InputError(f"run {run_id} has already ended ({found.status})")
    path = open_run_file(home.path, run_id)
    _close(home, run_id, _read_info(path), reason)
    with contextlib.suppress(FileNotFoundError):
        path.unlink()


def _close(
    home: Home, run_id: str, info: Mapping[str, Any], reason: str | None = None
) -> None:
    """Append the run's spooled entries, then its ``run.ended`` as aborted."""
    writer = RunWriter(home.ledger, run_id, secret_guard(home.path, os.environ))
    spool = _spool_path(home, info)
    if spool is not None:
        ingest_spool(home, writer, spool)
    body = _aborted(info, reason)
    write_durably(home, functools.partial(writer.write, [("run.ended", body)]))


def _spool_path(home: Home, info: Mapping[str, Any]) -> Path | None:
    name = info.get("spool")
    if not isinstance(name, str) or "/" in name or name.startswith("."):
        return None
    path = home.path / OPEN_RUNS / name
    return path if path.is_dir() else None


def _drop_spool(home: Home, info: Mapping[str, Any]) -> None:
    spool = _spool_path(home, info)
    if spool is not None:
        for path, _ in read_batches(spool):
            path.unlink(missing_ok=True)
        remove_spool(spool)


def _aborted(info: Mapping[str, Any], reason: str | None) -> dict[str, Any]:
    who = f"pid {info.get('pid', '?')} on {info.get('host', '?')}"
    body: dict[str, Any] = {"status": "aborted", "exit_code": None}
    outcome = info.get("outcome")
    if isinstance(outcome, dict):
        problem = info.get("problem") or "an error"
        body["reason"] = reason or (
            f"the recorder ({who}) saw the command end but could not record it "
            f"({problem}); what it saw is in outcome"
        )
        body["outcome"] = outcome
    else:
        body["reason"] = reason or (
            f"the recorder ({who}) stopped without recording the end"
        )
    return body


def ingest_spool(home: Home, writer: RunWriter, spool: Path) -> tuple[int, list[str]]:
    """Append the batches a joined process spooled, in order; remove the spool.

    A batch that cannot be used (unreadable, a kind a joined process may not add,
    a body off-schema) is dropped with a warning; the others are appended.

    Returns:
        The number of records appended, and the warnings, one line each.

    Raises:
        StoreError: the store failed even after retries (the batches not yet
            appended stay in the spool).
        ConfigError: no usable signing key.
    """
    warnings = []
    appended = 0
    for path, batch in read_batches(spool):
        if isinstance(batch, str):
            warnings.append(f"not recorded: {batch}")
        else:
            try:
                appended += len(
                    write_durably(home, functools.partial(writer.write, batch))
                )
            except ConfigError:
                raise
            except InputError as e:
                warnings.append(f"a joined process's entries were refused: {e}")
        path.unlink(missing_ok=True)
    remove_spool(spool)
    return appended, warnings
