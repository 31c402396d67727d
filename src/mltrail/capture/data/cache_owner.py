"""Whether another account could have written what the hash cache answers.

A capture records the hashes the cache gives for unchanged files as the content
of the data, so a cache another user can write lets that user choose what this
user's runs record (ADR 0035, amendment "verdicts read every file"). The cache
(``cache/``, ``cache/hashes.db``, ``cache/hashes.trees/`` and each tree file) is
used only when it belongs to this user (or root, who can write anything anyway)
and neither its group nor others can write it; a group is no one else when it is
this user's primary group and has no other member (``umask 002`` with a group
per user). Unlike a key file's folder (ADR 0003), a sticky world-writable folder
is no exception: its other users may still make names not yet there (a tree
file, the database). A symbolic link is judged by who made it and where it
leads.

Written with :mod:`os` alone: a warm ``mltrail data hash`` asks it (ADR 0035).
"""

from __future__ import annotations

import os

__all__ = ["foreign_file", "foreign_writer"]

_OTHERS_WRITE = 0o022


def foreign_writer(path: str) -> str | None:
    """Why others than this user (and root) could write ``path``, or None.

    A path that does not exist is None (nothing in it yet); a symbolic link is
    judged both as the link (who made it) and as what it leads to.
    """
    if os.name != "posix":  # modes do not say who may write there
        return None
    try:
        link = os.lstat(path)
        st = os.stat(path) if link.st_mode & 0o170000 == 0o120000 else link
    except FileNotFoundError:
        return None
    except OSError as e:
        return f"{path} cannot be examined: {e.strerror or e}"
    me = os.geteuid()
    if link is not st and link.st_uid not in (me, 0):
        return (
            f"{path} is a symbolic link made by uid {link.st_uid}, not by you "
            "(remove it)"
        )
    return foreign_file(path, st, me)


def foreign_file(path: str, st: os.stat_result, me: int | None = None) -> str | None:
    """:func:`foreign_writer` of ``path`` from its ``stat`` result (links followed)."""
    if os.name != "posix":
        return None
    me = os.geteuid() if me is None else me
    if st.st_uid not in (me, 0):
        return (
            f"{path} belongs to uid {st.st_uid}, not to you (uid {me}; remove it, "
            "it is only a cache)"
        )
    if st.st_mode & _OTHERS_WRITE and not _private_group(st):
        mode = st.st_mode & 0o7777
        return (
            f"{path} can be written by its group or others (mode {mode:04o}; "
            f"chmod go-w {path})"
        )
    return None


def _private_group(st: os.stat_result) -> bool:
    """Whether only its group, and that group is this user's own: the primary
    group and no other member (``umask 002`` with a group per user, as Debian
    and Fedora make them)."""
    if st.st_mode & 0o002 or st.st_gid != os.getegid():
        return False
    import grp  # not at import: only for a folder its group can write
    import pwd

    try:
        members = set(grp.getgrgid(st.st_gid).gr_mem)
        me = pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:  # a group or user the system does not name
        return False
    return members <= {me}
