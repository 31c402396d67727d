"""Listing the folders of a tree: regular files with their stat keys, links, folders.

Part of :func:`mltrail.capture.data.hashing.hash_tree`: the walk runs in the calling
thread (listing in other threads made the warm path slower: they fought for the
GIL). A folder's regular files come back as names and their :data:`StatKey`
packed with :data:`KEYS` (bytes are cheaper to make than tuples, and a whole
folder's keys can be digested at once), to be looked up in the hash cache a batch
at a time; links and empty folders come back
as entries; a folder reached again through a link is a loop and refused.
"""

from __future__ import annotations

import os
import stat
import struct
import sys

from mltrail.capture.data.hashcache import FolderKey, stat_key
from mltrail.errors import CaptureError
from mltrail.tuples import NamedTuple

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from mltrail.core.manifest import FileEntry

__all__ = [
    "KEYS",
    "NOTHING_RECORDED",
    "Folder",
    "Listing",
    "Walker",
    "entry_name",
    "not_regular",
    "show",
    "unreadable",
]

NOTHING_RECORDED = "; nothing was recorded"
KEYS = struct.Struct("=QQQqq")
"""A :data:`StatKey` packed in the machine's byte order (``memoryview.cast`` reads
it back: mtime and ctime are items 3 and 4 of every 5 of ``cast("q")``)."""


class Folder(NamedTuple):
    """A folder to list: its path, its path in the manifest, the folders above it."""

    full: bytes
    rel: bytes  # b"" for the root, else b"a/b/"
    ancestors: tuple[tuple[FolderKey, bytes], ...]  # (dev, ino) and rel, itself last

    @property
    def ident(self) -> FolderKey:
        return self.ancestors[-1][0]


class Listing(NamedTuple):
    """What one folder holds: regular files (names and stat keys), folders, others."""

    folder: Folder
    names: list[bytes]
    keys: list[bytes]  # each a StatKey packed with KEYS
    dirs: list[Folder]
    entries: list[FileEntry]  # links, and the folder itself when empty


def show(path: bytes) -> str:
    return path.decode("utf-8", "backslashreplace")


def entry_name(rel: bytes) -> tuple[str, bytes | None]:
    """The manifest path of ``rel``, and its raw bytes when they are not UTF-8."""
    try:
        return rel.decode(), None
    except UnicodeDecodeError:
        return show(rel), rel


def unreadable(path: bytes, error: OSError) -> CaptureError:
    return CaptureError(
        f"cannot read {show(path)}: {error.strerror or error}",
        hint="check its permissions" + NOTHING_RECORDED,
    )


def not_regular(path: bytes, mode: int) -> CaptureError:
    kinds = {stat.S_IFIFO: "a FIFO", stat.S_IFSOCK: "a socket"}
    kind = kinds.get(stat.S_IFMT(mode), "a device or other special file")
    return CaptureError(
        f"{show(path)} is {kind}, not a regular file",
        hint="move it out of the folder being captured" + NOTHING_RECORDED,
    )


_OPEN_DIR = os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | getattr(os, "O_CLOEXEC", 0)
_BY_FD = os.scandir in os.supports_fd and hasattr(os, "O_DIRECTORY")
_ENCODING, _ERRORS = sys.getfilesystemencoding(), sys.getfilesystemencodeerrors()


def _encode_names(names: list[str]) -> list[bytes]:
    """``os.fsencode`` of each name, in one call (names hold no NUL)."""
    if not names:
        return []
    return "\0".join(names).encode(_ENCODING, _ERRORS).split(b"\0")


class Walker:
    """Lists one folder: files with their stat keys, links, subfolders to walk.

    A folder is listed through a file descriptor of it where the platform allows
    (``fstatat`` of a name is faster than ``lstat`` of a full path, which the kernel
    looks up a component at a time); its names then come as text and are encoded
    back to the bytes the folder holds.
    """

    def __init__(self, follow_links: bool) -> None:
        self.follow_links = follow_links

    def list_dir(self, folder: Folder) -> Listing:
        listing = Listing(folder, [], [], [], [])
        keys, pack = listing.keys, KEYS.pack
        names: list[Any] = listing.names
        try:
            fd = os.open(folder.full, _OPEN_DIR) if _BY_FD else None
            try:
                with os.scandir(folder.full if fd is None else fd) as it:
                    found = list(it)
                files = [e for e in found if e.is_file(follow_symlinks=False)]
                if len(files) != len(found):  # links, folders, others: rarer
                    for entry in found:
                        if not entry.is_file(follow_symlinks=False):
                            self._add_other(listing, entry)
                names += [e.name for e in files]
                # as stat_key(st), packed; the comprehensions keep the common case
                # (a folder of plain files) at a few hundred ns a file beside lstat
                stats = [e.stat(follow_symlinks=False) for e in files]
                keys += [
                    pack(s.st_dev, s.st_ino, s.st_size, s.st_mtime_ns, s.st_ctime_ns)
                    for s in stats
                ]
            finally:
                if fd is not None:
                    os.close(fd)
        except OSError as e:  # the folder, or an entry that vanished or cannot be read
            raise unreadable(_error_path(folder, e.filename), e) from e
        if fd is not None:
            names[:] = _encode_names(names)
        if not (names or listing.dirs or listing.entries) and folder.rel:
            path, raw = entry_name(folder.rel[:-1])
            listing.entries.append(
                _manifest().FileEntry(path, is_dir=True, raw_path=raw)
            )
        return listing

    def _add_other(self, listing: Listing, entry: os.DirEntry[Any]) -> None:
        folder = listing.folder
        name = os.fsencode(entry.name)
        full = folder.full + b"/" + name
        if entry.is_dir(follow_symlinks=False):
            self._add_dir(listing, name, full, entry.stat(follow_symlinks=False), False)
        elif not entry.is_symlink():
            raise not_regular(full, entry.stat(follow_symlinks=False).st_mode)
        elif self.follow_links:
            self._follow(listing, name, full)
        else:
            path, raw = entry_name(folder.rel + name)
            link, raw_link = entry_name(os.readlink(full))
            listing.entries.append(
                _manifest().FileEntry(path, link=link, raw_path=raw, raw_link=raw_link)
            )

    def _add_dir(
        self,
        listing: Listing,
        name: bytes,
        full: bytes,
        st: os.stat_result,
        via_link: bool,
    ) -> None:
        folder = listing.folder
        rel = folder.rel + name
        ident = (st.st_dev, st.st_ino)
        for seen, seen_rel in folder.ancestors:
            if seen == ident:
                via = "symbolic link" if via_link else "folder (a bind mount?)"
                raise CaptureError(
                    f"{via} loop: {show(rel)} leads back to {show(seen_rel) or '.'}",
                    hint="capture without following links, or remove the loop"
                    + NOTHING_RECORDED,
                )
        listing.dirs.append(Folder(full, rel + b"/", (*folder.ancestors, (ident, rel))))

    def _follow(self, listing: Listing, name: bytes, full: bytes) -> None:
        try:
            st = os.stat(full)
        except OSError as e:
            raise CaptureError(
                f"cannot follow the symbolic link {show(full)}: {e.strerror or e}",
                hint="fix or remove the link, or capture without following links"
                + NOTHING_RECORDED,
            ) from e
        if stat.S_ISDIR(st.st_mode):
            self._add_dir(listing, name, full, st, True)
        elif stat.S_ISREG(st.st_mode):
            listing.names.append(os.fsdecode(name) if _BY_FD else name)
            listing.keys.append(KEYS.pack(*stat_key(st)))
        else:
            raise not_regular(full, st.st_mode)


def _error_path(folder: Folder, filename: object) -> bytes:
    """The path an ``OSError`` of listing ``folder`` is about."""
    if isinstance(filename, bytes):
        return filename
    if isinstance(filename, str) and filename and "/" not in filename:
        return folder.full + b"/" + os.fsencode(filename)  # an entry, by name
    return folder.full


def _manifest() -> Any:
    """:mod:`mltrail.core.manifest`, loaded when first needed (not on the warm path
    of a folder of plain files, where start-up time counts)."""
    from mltrail.core import manifest

    return manifest
