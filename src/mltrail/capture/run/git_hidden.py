"""What ``git status`` and ``git diff`` do not show, read past git.

* **Hidden edits.** ``git update-index --assume-unchanged`` or ``--skip-worktree``
  tells git not to look at a tracked file: an edit to it is in no ``status`` and
  no ``diff``, so a run would be recorded as the clean commit while other code
  ran. An edit of the same size made within the second the index last recorded
  the file, with its mtime put back, is not seen either (git compares whole
  seconds of ctime unless built with ``USE_NSEC``): the files the command runs
  (``watch``) are therefore compared with the index by content (flag
  ``stat-unchanged``): one more read of each (``run.code files`` reads them
  again; they are the program and the files its command line names).
  ``hidden_changes`` lists every such file whose bytes on disk differ from the
  index (git's blob id computed here, no git filter run), with its SHA-256,
  size and content (a text blob, like a program file), or ``deleted``. A
  skip-worktree file absent from disk is a sparse checkout, not a change. Bytes
  that differ are asked of ``git hash-object`` once more: a file that git stores
  as the index's blob after its own conversions (``eol=crlf``, ``ident``) is no
  edit; the repository's filters stay neutralised there too.
* **Ignored source files.** A ``.gitignore``d (or ``info/exclude``d) ``helpers.py``
  is importable but in no commit and no untracked list. ``ignored_sources`` lists
  those that ``status --ignored=matching`` names one by one (a wholly ignored
  folder, a virtual environment say, is named as a folder and not looked into),
  by SHA-256, size and content.
* **Untracked source files.** ``status`` names untracked files, not their bytes:
  ``untracked_sources`` does the same for the untracked ones (a ``numpy.py`` next
  to the script shadows numpy), so what ran can be checked.

Contents are text blobs (up to 4 MiB each, at most 100 files per list), masked by
the recorder's guard like program files: ignored files often hold local
settings, and a bare SHA-256 of a file whose only unknown is a password would let
anyone test guesses, so a masked file's digest is that of the masked bytes, with a
keyed commitment of the original's beside it (``sha256_original``).
"""

from __future__ import annotations

import hashlib
import os
import stat
from typing import TYPE_CHECKING, Any

from mltrail.capture.run.blob import Blob
from mltrail.capture.run.gitcmd import GitError, decode

if TYPE_CHECKING:
    from collections.abc import Collection
    from pathlib import Path

    from mltrail.capture.run.gitcmd import Git

__all__ = ["SOURCE_SUFFIXES", "hidden_changes", "source_files", "warning"]

SOURCE_SUFFIXES = (".py", ".sh", ".bash", ".r", ".jl", ".sql", ".pl", ".rb", ".js")
_MAX_CONTENT = 4 * 2**20
_CHUNK = 1 << 20
_CAP = 100
_FLAGS = {b"S": "skip-worktree"}


def hidden_changes(
    git: Git, root: Path, watch: Collection[str] = ()
) -> list[dict[str, Any]]:
    """Tracked files flagged assume-unchanged or skip-worktree, and those of
    ``watch`` (paths under ``root`` that git's status did not call changed), that
    differ on disk from the index, sorted by path (at most ``_CAP``)."""
    raw = git.run("ls-files", "-z", "-v", "-s") or b""
    found = []
    converted: dict[str, str] = {}  # regular files whose bytes git may convert
    for item in raw.split(b"\0"):
        tag, _, rest = item.partition(b" ")
        meta, _, name = rest.partition(b"\t")
        flagged = tag.islower() or tag == b"S"
        if not (flagged or (watch and decode(name) in watch)):
            continue
        mode, oid = [*meta.split(b" "), b"", b""][:2]
        flag = _FLAGS.get(tag, "assume-unchanged") if flagged else "stat-unchanged"
        change = _change(root / os.fsdecode(name), mode, decode(oid), flag)
        if change is not None:
            found.append({"path": decode(name), "flag": flag, **change})
            if "sha256" in change and mode != b"120000":
                converted[os.fsdecode(name)] = decode(oid)
    if converted:  # only when bytes differ: nothing more in a clean tree
        same = _stored_as_index(git, converted)
        found = [c for c in found if c["path"] not in same]
    return sorted(found, key=lambda c: c["path"])[:_CAP]


def _stored_as_index(git: Git, oids: dict[str, str]) -> set[str]:
    """Those of ``oids`` (path -> index blob id) that git would store as that very
    blob: their bytes differ only by what git converts when it reads a file
    (line endings of ``eol``/``autocrlf``, ``ident``, ``working-tree-encoding``,
    git-lfs), not by an edit. Any other filter stays neutralised (``gitcmd``)."""
    names = sorted(oids)
    same = set()
    for at in range(0, len(names), 500):
        batch = names[at : at + 500]
        try:
            raw = git.hash_files(batch)
        except GitError:
            return same  # unanswered: the byte comparison stands
        ids = raw.decode("ascii", "replace").split()
        same |= {n for n, got in zip(batch, ids, strict=False) if got == oids[n]}
    return {decode(os.fsencode(n)) for n in same}


def source_files(root: Path, names: list[str]) -> list[dict[str, Any]]:
    """SHA-256, size and content of those ``names`` (paths under ``root`` from
    ``git status``: ignored or untracked files) that end like source code."""
    found = []
    for name in sorted(names):
        if name.endswith("/") or not name.lower().endswith(SOURCE_SUFFIXES):
            continue
        try:
            read = _Read.of_file(root / name, None)
        except OSError as e:
            found.append({"path": name, "error": e.strerror or str(e)})
            continue
        found.append({"path": name, **_content_of(read, root / name)})
        if len(found) >= _CAP:
            break
    return found


def warning(hidden: list[dict[str, Any]], ignored: list[dict[str, Any]]) -> str | None:
    """The run's warning about what git alone would not have shown, if any."""
    said = []
    if hidden:
        said.append(
            f"{_names(hidden)} differ from the commit but git does not see it (told "
            "not to look: assume-unchanged or skip-worktree; or its size and times "
            "match the index's); the diff leaves them out, their contents are "
            "recorded in run.code hidden"
        )
    if ignored:
        said.append(
            f"git ignores {_names(ignored)}, which the command may import or run; "
            "they are in no commit and recorded by content in run.code "
            "ignored_sources"
        )
    return "; ".join(said) or None


def _names(items: list[dict[str, Any]]) -> str:
    shown = ", ".join(str(i["path"]) for i in items[:5])
    return shown + (f" and {len(items) - 5} more" if len(items) > 5 else "")


def _change(path: Path, mode: bytes, oid: str, flag: str) -> dict[str, Any] | None:
    """How the file at ``path`` differs from index blob ``oid``, or None."""
    if mode == b"160000":
        return None  # a submodule: its own status says whether it changed
    try:
        found = _read_as(path, link=mode == b"120000", algorithm=_algorithm(oid))
    except FileNotFoundError:
        return None if flag == "skip-worktree" else {"deleted": True}
    except OSError as e:
        return {"error": e.strerror or str(e)}
    if found.blob_id == oid:
        return None
    return _content_of(found, path)


def _content_of(read: _Read, path: Path) -> dict[str, Any]:
    """SHA-256, size and content (a text blob, masked by the recorder's guard like
    a program file's, which then keeps a keyed commitment of the original's
    digest) of what was read at ``path``."""
    body: dict[str, Any] = {"sha256": read.sha256, "size": read.size}
    if read.content is not None:
        body["content"] = Blob(read.content, "text/plain", text=True, name=path.name)
    return body


def _algorithm(oid: str) -> str:
    return "sha1" if len(oid) == 40 else "sha256"


def _read_as(path: Path, *, link: bool, algorithm: str) -> _Read:
    """What is at ``path``, read as the index holds it (a link or a regular file).

    Raises:
        OSError: it cannot be read, or is not the kind of file the index holds.
    """
    is_link = stat.S_ISLNK(os.lstat(path).st_mode)
    if link != is_link:
        raise OSError(0, "not the kind of file the index holds")
    if link:
        return _Read.of_bytes(os.fsencode(os.readlink(path)), algorithm)
    return _Read.of_file(path, algorithm)


class _Read:
    """SHA-256, size, git blob id and (up to ``_MAX_CONTENT``) content of bytes."""

    def __init__(self, algorithm: str | None, size: int) -> None:
        self._sha256 = hashlib.sha256()
        self._git = hashlib.new(algorithm, b"blob %d\0" % size) if algorithm else None
        self._kept = bytearray()
        self.size = 0

    @classmethod
    def of_bytes(cls, data: bytes, algorithm: str | None) -> _Read:
        read = cls(algorithm, len(data))
        read.update(data)
        return read

    @classmethod
    def of_file(cls, path: Path, algorithm: str | None) -> _Read:
        """Stream the regular file at ``path`` (never a pipe or device, nor a link)."""
        flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOFOLLOW", 0)
        with os.fdopen(os.open(path, flags), "rb") as f:
            info = os.fstat(f.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise OSError(0, "not a regular file")
            read = cls(algorithm, info.st_size)
            while chunk := f.read(_CHUNK):
                read.update(chunk)
        return read

    def update(self, chunk: bytes) -> None:
        self._sha256.update(chunk)
        if self._git is not None:
            self._git.update(chunk)
        self.size += len(chunk)
        if len(self._kept) <= _MAX_CONTENT:
            self._kept += chunk[: _MAX_CONTENT + 1 - len(self._kept)]

    @property
    def sha256(self) -> str:
        return self._sha256.hexdigest()

    @property
    def blob_id(self) -> str | None:
        return None if self._git is None else self._git.hexdigest()

    @property
    def content(self) -> bytes | None:
        return bytes(self._kept) if self.size <= _MAX_CONTENT else None
