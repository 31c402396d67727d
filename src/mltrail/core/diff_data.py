"""Differences between datasets and package lists (pure; used by :mod:`mltrail.core.diff`).

Two manifests are compared line by line: a manifest line is the canonical JSON of one
entry, so an unchanged file has the same line in both and only the few lines that
differ are parsed. Two 100,000-file manifests differing in a handful of files are
compared in tens of milliseconds::

    >>> from mltrail.core.manifest import FileEntry, compute_manifest
    >>> old = compute_manifest([FileEntry("a.jsonl", 3, "aa" * 32)]).data
    >>> new = compute_manifest([FileEntry("a.jsonl", 4, "bb" * 32)]).data
    >>> [(c.path, c.kind) for c in diff_manifests(old, new).changes]
    [('a.jsonl', 'changed')]
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from mltrail.core.codec import parse_json
from mltrail.errors import SchemaError

__all__ = [
    "FileChange",
    "FilesDiff",
    "compare_versions",
    "diff_manifests",
    "parse_packages",
]

# the line compute_manifest writes for a regular file with a plain name
_FILE_LINE = re.compile(
    rb'\{"path":"([^"\\]*)","sha256":"([0-9a-f]{64})","size":(\d+)\}'
)


@dataclass(frozen=True, slots=True)
class FileChange:
    """One file of a dataset added, removed or changed (content, size or kind).

    ``old`` and ``new`` are the file's manifest facts: ``{"sha256", "size"}`` for a
    file, ``{"link"}`` for a symbolic link, ``{"dir": True}`` for an empty folder;
    None where the file is absent.
    """

    path: str
    old: dict[str, Any] | None
    new: dict[str, Any] | None

    @property
    def kind(self) -> str:
        """``added``, ``removed`` or ``changed``."""
        if self.old is None:
            return "added"
        return "removed" if self.new is None else "changed"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        out: dict[str, Any] = {"path": self.path, "change": self.kind}
        if self.old is not None:
            out["old"] = self.old
        if self.new is not None:
            out["new"] = self.new
        return out


@dataclass(frozen=True, slots=True)
class FilesDiff:
    """The files that differ between two manifests (sorted by path) and how many match."""

    changes: tuple[FileChange, ...]
    unchanged: int

    def count(self, kind: str) -> int:
        """How many files were ``added``, ``removed`` or ``changed``."""
        return sum(c.kind == kind for c in self.changes)

    def to_dict(self) -> dict[str, Any]:
        """Counts by kind, and every differing file."""
        return {
            "added": self.count("added"),
            "removed": self.count("removed"),
            "changed": self.count("changed"),
            "unchanged": self.unchanged,
            "files": [c.to_dict() for c in self.changes],
        }


def diff_manifests(old: bytes, new: bytes) -> FilesDiff:
    """The files that differ between two manifests' bytes.

    Raises:
        SchemaError: a differing line is not a manifest entry.
    """
    old_lines = set(old.split(b"\n"))
    new_lines = set(new.split(b"\n"))
    old_lines.discard(b"")
    new_lines.discard(b"")
    gone = _by_path(old_lines - new_lines)
    came = _by_path(new_lines - old_lines)
    changes = [
        FileChange(path, gone.get(path), came.get(path))
        for path in sorted(gone.keys() | came.keys(), key=_path_order)
    ]
    return FilesDiff(tuple(changes), len(old_lines) - len(gone))


def _path_order(path: str) -> bytes:
    return path.encode("utf-8", "surrogateescape")


def _by_path(lines: set[bytes]) -> dict[str, dict[str, Any]]:
    found: dict[str, dict[str, Any]] = {}
    for line in lines:
        path, facts = _parse_line(line)
        if path in found:
            raise SchemaError(f"manifest lists {path!r} twice")
        found[path] = facts
    return found


def _parse_line(line: bytes) -> tuple[str, dict[str, Any]]:
    """A manifest line's path and facts (a plain file line parsed without JSON)."""
    if m := _FILE_LINE.fullmatch(line):
        return m[1].decode(), {"sha256": m[2].decode(), "size": int(m[3])}
    value = parse_json(line, what="manifest line")
    if not isinstance(value, dict) or not isinstance(value.get("path"), str):
        raise SchemaError(f"not a manifest line: {line[:200]!r}")
    path = value.pop("path")
    value.pop("path_b64", None)
    value.pop("link_b64", None)
    return path, value


# -- packages ----------------------------------------------------------------


def parse_packages(text: bytes) -> dict[str, tuple[str, str]]:
    """``name==version`` lines as ``{normalized name: (name, version)}``.

    Lines without ``==`` keep the whole line as the name and an empty version.
    """
    found: dict[str, tuple[str, str]] = {}
    for raw in text.decode("utf-8", "replace").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, version = line.partition("==")
        found[_normalize(name)] = (name.strip(), version.strip())
    return found


def _normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name.strip()).lower()


_PRE = {
    "dev": -4,
    "a": -3,
    "alpha": -3,
    "b": -2,
    "beta": -2,
    "c": -1,
    "rc": -1,
    "pre": -1,
}
_POST = {"post": 1, "rev": 1, "r": 1}


def compare_versions(old: str, new: str) -> int:
    """-1, 0 or 1 as ``old`` is older than, as new as, or newer than ``new``.

    An approximation of PEP 440 that needs no third-party package: release numbers
    compare numerically, ``dev`` < ``a`` < ``b`` < ``rc`` < the release < ``post``;
    a local label (``+cu121``) breaks ties only.

        >>> compare_versions("2.1.0", "2.10.0"), compare_versions("1.0rc1", "1.0")
        (-1, -1)
    """
    a, b = _version_key(old), _version_key(new)
    return (a > b) - (a < b)


def _version_key(
    version: str,
) -> tuple[tuple[int, ...], tuple[tuple[int, int, str], ...], str]:
    public, _, local = version.lower().strip().lstrip("v").partition("+")
    m = re.match(r"\d+(?:\.\d+)*", public)
    release = [int(p) for p in m[0].split(".")] if m else []
    while release and release[-1] == 0:
        release.pop()  # 1.0 == 1.0.0
    suffix: list[tuple[int, int, str]] = []
    for token in re.findall(r"\d+|[a-z]+", public[m.end() :] if m else public):
        if token.isdigit():
            suffix.append((0, int(token), ""))
        elif token in _PRE:
            suffix.append((-1, _PRE[token], ""))
        else:
            suffix.append((1, _POST.get(token, 0), token))
    return tuple(release), tuple(suffix or [(0, 0, "")]), local
