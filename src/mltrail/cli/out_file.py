"""Writing an output file (``-o FILE``) whole or not at all.

A report, a proof bundle, provenance or a manifest handed to someone else must
never be half of itself under its final name: a process killed while writing
(SIGKILL, a full disk, an OOM kill) would leave a truncated file that looks like
the real one, and a script that checks only that the file exists takes it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import stat
from pathlib import Path

__all__ = ["write_output_file"]

_TRIES = 10


def write_output_file(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically: a temporary file beside it, synced,
    then renamed over it, so a crash leaves the old file (or none) under its name.

    A path that exists and is not a regular file (``/dev/stdout``, a named pipe)
    is written directly. A symbolic link is followed: the file it points to is
    replaced and the link kept. A file replaced keeps its permission bits and,
    where this process may give it, its group (see ``_keep_access``); a new one
    gets the mode ``open`` gives (0666 less the umask).

    Raises:
        OSError: the folder does not exist or cannot be written, the disk is full.
    """
    target = Path(os.path.realpath(path))
    try:
        found: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        found = None
    if found is not None and not stat.S_ISREG(found.st_mode):
        path.write_bytes(data)
        return
    fd, tmp = _create_beside(target)
    try:
        with os.fdopen(fd, "wb") as f:
            if found is not None:  # before a byte is in it: never readable by more
                _keep_access(f.fileno(), found)
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    with contextlib.suppress(OSError):  # durability of the name: best effort
        folder = os.open(target.parent, os.O_RDONLY)
        try:
            os.fsync(folder)
        finally:
            os.close(folder)


def _keep_access(fd: int, found: os.stat_result) -> None:
    """Give the new file ``fd`` the replaced file's permission bits and group.

    The group is kept when this process may give it (its owner belongs to
    it, or root); else the file has the process's group, to which the old
    group bits never applied: those bits become the old file's bits for
    others, so no one reads or writes the new file who could not the old.
    Set-user-ID and set-group-ID bits are never carried over to written data.
    """
    mode = stat.S_IMODE(found.st_mode) & 0o777
    if os.fstat(fd).st_gid != found.st_gid:
        try:
            os.fchown(fd, -1, found.st_gid)
        except OSError:
            mode = (mode & ~0o070) | ((mode & 0o007) << 3)
    os.fchmod(fd, mode)


def _create_beside(target: Path) -> tuple[int, Path]:
    """A new hidden file in ``target``'s folder, open for writing (umask applies)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    tries = 0
    while True:
        # the name cut so that the hidden name fits where the target's does
        # (255 bytes a name on most file systems)
        stem = target.name.encode("utf-8", "surrogateescape")[:200].decode(
            "utf-8", "ignore"
        )
        tmp = target.with_name(f".{stem}.{secrets.token_hex(4)}.part")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            tries += 1
            if tries == _TRIES:
                raise
