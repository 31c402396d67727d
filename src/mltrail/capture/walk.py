"""Listing the folders of a tree: regular files with their stat keys, links, folders.

Part of :func:`mltrail.capture.hashing.hash_tree`: the walk runs in the calling
thread (listing in other threads made the warm path slower: they fought for the
GIL). A folder's regular files come back as names and :data:`StatKey` tuples, to
be looked up in the hash cache a batch at a time; links and empty folders come back
as entries; a folder reached again through a link is a loop and refused.
"""

from __future__ import annotations

import os
import stat
from typing import NamedTuple

from mltrail.capture.hashcache import FolderKey, StatKey, stat_key
from mltrail.core.manifest import FileEntry
from mltrail.errors import CaptureError

__all__ = [
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
    keys: list[StatKey]
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


class Walker:
    """Lists one folder: files with their stat keys, links, subfolders to walk."""

    def __init__(self, follow_links: bool) -> None:
        self.follow_links = follow_links

    def list_dir(self, folder: Folder) -> Listing:
        listing = Listing(folder, [], [], [], [])
        names, keys = listing.names, listing.keys
        try:
            with os.scandir(folder.full) as it:
                for entry in it:
                    if entry.is_file(follow_symlinks=False):  # the common case, inline
                        names.append(entry.name)
                        st = entry.stat(follow_symlinks=False)  # as stat_key(st)
                        keys.append(
                            (
                                st.st_dev,
                                st.st_ino,
                                st.st_size,
                                st.st_mtime_ns,
                                st.st_ctime_ns,
                            )
                        )
                    else:
                        self._add_other(listing, entry)
        except OSError as e:  # the folder, or an entry that vanished or cannot be read
            name = e.filename if isinstance(e.filename, bytes) else folder.full
            raise unreadable(name, e) from e
        if not (names or listing.dirs or listing.entries) and folder.rel:
            path, raw = entry_name(folder.rel[:-1])
            listing.entries.append(FileEntry(path, is_dir=True, raw_path=raw))
        return listing

    def _add_other(self, listing: Listing, entry: os.DirEntry[bytes]) -> None:
        if entry.is_dir(follow_symlinks=False):
            self._add_dir(listing, entry, entry.stat(follow_symlinks=False))
        elif not entry.is_symlink():
            raise not_regular(entry.path, entry.stat(follow_symlinks=False).st_mode)
        elif self.follow_links:
            self._follow(listing, entry)
        else:
            path, raw = entry_name(listing.folder.rel + entry.name)
            link, raw_link = entry_name(os.readlink(entry.path))
            listing.entries.append(
                FileEntry(path, link=link, raw_path=raw, raw_link=raw_link)
            )

    def _add_dir(
        self, listing: Listing, entry: os.DirEntry[bytes], st: os.stat_result
    ) -> None:
        folder = listing.folder
        rel = folder.rel + entry.name
        ident = (st.st_dev, st.st_ino)
        for seen, seen_rel in folder.ancestors:
            if seen == ident:
                via = (
                    "symbolic link" if entry.is_symlink() else "folder (a bind mount?)"
                )
                raise CaptureError(
                    f"{via} loop: {show(rel)} leads back to {show(seen_rel) or '.'}",
                    hint="capture without following links, or remove the loop"
                    + NOTHING_RECORDED,
                )
        listing.dirs.append(
            Folder(entry.path, rel + b"/", (*folder.ancestors, (ident, rel)))
        )

    def _follow(self, listing: Listing, entry: os.DirEntry[bytes]) -> None:
        try:
            st = os.stat(entry.path)
        except OSError as e:
            raise CaptureError(
                f"cannot follow the symbolic link {show(entry.path)}: {e.strerror or e}",
                hint="fix or remove the link, or capture without following links"
                + NOTHING_RECORDED,
            ) from e
        if stat.S_ISDIR(st.st_mode):
            self._add_dir(listing, entry, st)
        elif stat.S_ISREG(st.st_mode):
            listing.names.append(entry.name)
            listing.keys.append(stat_key(st))
        else:
            raise not_regular(entry.path, st.st_mode)
