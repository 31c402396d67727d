"""Secrets a joined process learns reach the wrapper that stores the logs.

Under ``mltrail run -- python train.py``, the wrapper captures and stores the
command's output, while ``train.py`` (a joined process) finds secrets of its own
in the bodies it records (``run.log_params(db_password=…)``). Those values must
be masked in the stored output too, but they exist only in the child: the spool
holds their commitments, never the values. So the wrapper opens a pipe whose
write end its command inherits (``MLTRAIL_MASK_FD``: the descriptor, and the
pipe's device and inode, so a process that inherited the variable without the
descriptor never writes to whatever else has that number), and each value a
joined process's guard learns is written to it as one JSON line. The wrapper
reads them in memory only and masks them in the output it keeps when the
command has ended (:meth:`MaskChannel.masks`).
"""

from __future__ import annotations

import json
import os
import stat
import threading
from typing import TYPE_CHECKING

from mltrail.capture.run.mask import MaskSet

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping

    from mltrail.capture.run.allowlist import AllowList

__all__ = ["MASK_FD_ENV", "MaskChannel", "channel_reporter"]

MASK_FD_ENV = "MLTRAIL_MASK_FD"
_MAX_BYTES = 4 << 20
"""Most bytes of values a wrapper takes (a bound on its memory)."""


class MaskChannel:
    """The wrapper's end of the pipe: values read as they come, in memory."""

    wait_s = 0.5

    def __init__(self) -> None:
        self._read_fd, self._write_fd = os.pipe()
        info = os.fstat(self._write_fd)
        self.env_value = f"{self._write_fd}:{info.st_dev}:{info.st_ino}"
        self._lock = threading.Lock()
        self._pending = b""
        self._values: list[str] = []
        self._taken = 0
        self._done = False
        self._thread = threading.Thread(target=self._pump, daemon=True)
        self._thread.start()

    @property
    def fd(self) -> int:
        """The write end, for the command to inherit."""
        return self._write_fd

    def started(self) -> None:
        """The command has been started (or failed to): close the wrapper's copy
        of the write end, so the pipe ends when the command's copies do."""
        if self._write_fd >= 0:
            os.close(self._write_fd)
            self._write_fd = -1

    def masks(self, allow: AllowList | None = None) -> MaskSet:
        """The values received, as a mask set. The command has ended: its values
        are in the pipe, read to its end (or for at most ``wait_s`` while a
        process it left behind keeps the pipe open)."""
        self.started()
        self._thread.join(timeout=self.wait_s)
        with self._lock:
            values = list(self._values)
        return MaskSet.build([("secret", v) for v in values], allow)

    def close(self) -> None:
        """Close both ends (the reading thread then stops)."""
        self.started()
        with self._lock:
            if not self._done:
                self._done = True
                os.close(self._read_fd)

    def _pump(self) -> None:
        while True:
            try:
                chunk = os.read(self._read_fd, 65536)
            except OSError:  # closed
                return
            if not chunk:
                return
            self._take(chunk)

    def _take(self, chunk: bytes) -> None:
        with self._lock:
            data = self._pending + chunk
            lines = data.split(b"\n")
            self._pending = lines.pop()
            for line in lines:
                if self._taken + len(line) > _MAX_BYTES:
                    return
                try:
                    value = json.loads(line)
                except ValueError:
                    continue
                if isinstance(value, str) and value:
                    self._taken += len(line)
                    self._values.append(value)


def channel_reporter(env: Mapping[str, str]) -> Callable[[Iterable[str]], None] | None:
    """A function sending values to the wrapper whose command this process
    belongs to, or None when there is none (or the descriptor named in
    ``MLTRAIL_MASK_FD`` is not that pipe)."""
    raw = env.get(MASK_FD_ENV, "")
    try:
        fd, dev, ino = (int(part) for part in raw.split(":"))
        info = os.fstat(fd)
    except (ValueError, OSError):
        return None
    if not stat.S_ISFIFO(info.st_mode) or (info.st_dev, info.st_ino) != (dev, ino):
        return None

    def send(values: Iterable[str]) -> None:
        data = b"".join(json.dumps(v).encode() + b"\n" for v in values if v)
        try:
            while data:
                data = data[os.write(fd, data) :]
        except OSError:
            pass  # the wrapper is gone: nothing left to mask

    return send
