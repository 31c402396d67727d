"""Whether a private key file is safe to use: who can read it, and who can swap it.

As ssh does for private keys (ADR 0003, amendment "private key files"), a key
file is refused, on POSIX systems, when:

- group or others have any access to it (mode & 0o077): they may have read it;
- it belongs to another user than the one running mltrail (root excepted), or
  is a symbolic link made by one: that user can replace it;
- the folder holding it (or the link to it) is writable by others without the
  sticky bit, or belongs to another user (root excepted): they can put another
  file in its place. A folder only its group can write gets a warning on
  stderr instead (``umask 002`` makes such folders where every user has a
  group of their own).

``MLTRAIL_ALLOW_UNSAFE_KEY_FILE=1`` uses a refused file anyway, with a warning on
stderr. The checks are made on the file actually opened (``os.fstat`` of its
descriptor), so a file swapped between the check and the read is not missed.
On Windows, where modes do not describe who may read a file, nothing is checked.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING

from mltrail.errors import ConfigError

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["ALLOW_UNSAFE_ENV", "check_private_file"]

ALLOW_UNSAFE_ENV = "MLTRAIL_ALLOW_UNSAFE_KEY_FILE"
"""Set to ``1`` to use a private key file that fails the checks (with a warning)."""

_log = logging.getLogger("mltrail")


def check_private_file(
    path: Path, fd: int, *, what: str, env: Mapping[str, str] | None = None
) -> None:
    """Refuse the private key file ``path``, opened as ``fd``, if others may read or swap it.

    Args:
        path: the path as named (a symbolic link is followed, and checked).
        fd: the open descriptor of the file read.
        what: what it is, for messages (``signing key``).
        env: where ``MLTRAIL_ALLOW_UNSAFE_KEY_FILE`` is looked up (default: the
            process environment).

    Raises:
        ConfigError: the file fails a check and the escape hatch is not set.
    """
    if os.name != "posix":
        return
    problems = _problems(path, fd)
    for text, fix, refused in problems:
        if not refused:
            _log.warning("warning: %s %s %s (%s)", what, path, text, fix)
    refusals = [(text, fix) for text, fix, refused in problems if refused]
    if not refusals:
        return
    text, fix = refusals[0]
    env = os.environ if env is None else env
    if env.get(ALLOW_UNSAFE_ENV) == "1":
        _log.warning(
            "warning: %s %s %s; used anyway because %s=1",
            what,
            path,
            text,
            ALLOW_UNSAFE_ENV,
        )
        return
    raise ConfigError(
        f"{what} {path} {text}",
        hint=f"{fix} (or set {ALLOW_UNSAFE_ENV}=1 to use it anyway)",
    )


Problem = tuple[str, str, bool]
"""What is wrong, its fix, and whether the file is refused for it (else a warning)."""


def _problems(path: Path, fd: int) -> list[Problem]:
    me = os.geteuid()
    st = os.fstat(fd)
    mode = stat.S_IMODE(st.st_mode)
    found: list[Problem] = []
    if st.st_uid not in (me, 0):
        found.append(
            (
                f"belongs to uid {st.st_uid}, not to you (uid {me}): its owner can "
                "replace it",
                "use a key file of your own (a copy made with mode 0600)",
                True,
            )
        )
    if mode & 0o077:
        found.append(
            (
                f"has mode {mode:04o}: other users can access it (a private key "
                "must be readable by its owner only)",
                f"chmod 600 {path}",
                True,
            )
        )
    folders = [path.parent]
    link = os.lstat(path)
    if stat.S_ISLNK(link.st_mode):
        if link.st_uid not in (me, 0):
            found.append(
                (
                    f"is a symbolic link made by uid {link.st_uid}, not by you "
                    f"(uid {me}): its maker chooses which key is read",
                    f"remove the link and name the key file itself ({path.resolve()})",
                    True,
                )
            )
        target = Path(os.path.realpath(path)).parent
        if target != path.parent.resolve():
            folders.append(target)
    for folder in folders:
        found.extend(_folder_problems(folder, me))
    return found


def _folder_problems(folder: Path, me: int) -> list[Problem]:
    """A folder others can write lets them put another file in the key's place:
    refused when anyone can (unless sticky, as ``/tmp``) or when it is another
    user's; only a warning when its group can, as ``umask 002`` makes folders
    where each user has a group of their own."""
    st = os.stat(folder)
    mode = stat.S_IMODE(st.st_mode)
    if st.st_uid not in (me, 0):
        return [
            (
                f"lies in {folder}, which belongs to uid {st.st_uid}, not to you "
                f"(uid {me}): its owner can swap the key",
                "keep the key in a folder of your own",
                True,
            )
        ]
    if mode & stat.S_ISVTX or not mode & 0o022:
        return []
    if mode & 0o002:
        return [
            (
                f"lies in {folder}, which other users can write (mode {mode:04o}): "
                "they can swap the key",
                f"chmod o-w,g-w {folder}",
                True,
            )
        ]
    return [
        (
            f"lies in {folder}, which its group can write (mode {mode:04o}): "
            "the group's members can swap the key",
            f"chmod g-w {folder}",
            False,
        )
    ]
