"""The progress bar shown on stderr while files are hashed (files, bytes, rate).

Shared by ``mltrail data hash``, ``mltrail run --data/--output`` and ``mltrail step
--in/--out``. Hashing reports only after a second of work, so quick hashing shows
nothing; the bar is transient, and is taken off the screen before the wrapped
command starts (inputs) or after it has ended (outputs), so it never mixes with
the command's own output. ``rich`` is imported only when a bar is actually drawn.
"""

from __future__ import annotations

import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mltrail.capture.data.progress import HashProgress, ProgressFactory

__all__ = ["HashBar", "hash_bar", "hash_bar_factory"]


class HashBar:
    """A progress callback drawing a bar on stderr from its first report on."""

    def __init__(self, label: str) -> None:
        self.label = label
        self.progress: Any = None
        self.task: Any = None

    def __call__(self, p: HashProgress) -> None:
        """Show ``p``: files done (of how many, once known), bytes, rate."""
        if self.progress is None:
            self._open()
        files = f"{p.files_done:,}" + (f"/{p.files_total:,}" if p.files_total else "")
        self.progress.update(
            self.task, completed=p.bytes_done, total=p.bytes_total, files=files
        )

    def _open(self) -> None:
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
            TransferSpeedColumn,
        )

        from mltrail.cli.output import err_console

        self.progress = Progress(
            TextColumn("{task.description}", markup=False),
            BarColumn(),
            TextColumn("{task.fields[files]} files"),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=err_console.get(),
            transient=True,
        )
        self.task = self.progress.add_task(self.label, total=None, files="0")
        self.progress.start()

    def close(self) -> None:
        """Take the bar off the screen (if it was shown)."""
        if self.progress is not None:
            self.progress.stop()
            self.progress = None

    def __enter__(self) -> HashBar:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def hash_bar(label: str) -> HashBar:
    """A :class:`HashBar` for one piece of hashing, as a context manager that
    closes it when it ends (a class rather than ``contextlib.contextmanager``:
    a warm ``mltrail data hash`` need not import contextlib, ADR 0035)."""
    return HashBar(label)


def hash_bar_factory(*, quiet: bool = False) -> ProgressFactory | None:
    """:func:`hash_bar`, or None when no bar may be shown: ``quiet`` (``-q``,
    ``--json``) or stderr is not a terminal (piped, redirected, captured)."""
    if quiet or not _stderr_is_terminal():
        return None
    return hash_bar


def _stderr_is_terminal() -> bool:
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced or closed
        return False
