"""Dataset manifests: every file's path, size and SHA-256, and the dataset id over them.

A manifest is one line per entry, sorted by path (the order of the paths' bytes:
code-point order for UTF-8 names), each line the RFC 8785 canonical JSON object
``{"path": "train/a.csv", "sha256": "<hex>", "size": 1234}`` followed by ``\\n``
(a symbolic link is ``{"link": "<target>", "path": ...}``, an empty folder
``{"dir": true, "path": ...}``; a name that is not UTF-8 adds ``path_b64``, a link
target that is not UTF-8 ``link_b64``).
The dataset id is the RFC 9162 Merkle root over those lines (leaf i hashes line i
without its newline), so two copies of the same files get the same id wherever they
live, and one file's inclusion in a dataset can be proved with a short proof::

    >>> entries = [FileEntry("b.csv", 3, "ab" * 32), FileEntry("a.csv", 0, "cd" * 32)]
    >>> manifest = compute_manifest(entries)
    >>> manifest.entries[0].path, manifest.file_count, manifest.total_bytes
    ('a.csv', 2, 3)
    >>> parse_manifest(manifest.data) == manifest
    True
"""

from __future__ import annotations

import hashlib
import re
from itertools import pairwise
from operator import itemgetter

from mltrail.core.canonical import canonical_bytes
from mltrail.core.merkle import EMPTY_ROOT
from mltrail.errors import SchemaError
from mltrail.values import Frozen

TYPE_CHECKING = False  # not typing's: a cold `data hash` imports no typing
if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "MANIFEST_MEDIA_TYPE",
    "DatasetManifest",
    "FileEntry",
    "compute_manifest",
    "first_file_sha256",
    "listed_sha256s",
    "parse_manifest",
]

MANIFEST_MEDIA_TYPE = "application/x-mltrail-manifest+jsonl"
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_SIZE = 2**53 - 1
# a string RFC 8785 writes as it is, between quotes: no quote, backslash, control
# character or lone surrogate (those are escaped)
_VERBATIM = re.compile(r'[^"\\\x00-\x1f\ud800-\udfff]*').fullmatch


class FileEntry(Frozen):
    """One entry of a dataset, at a path relative to its root (``/``-separated).

    A regular file has ``size`` and ``sha256``. A symbolic link is recorded as a
    link (``link``: its target as ``readlink`` gives it), not followed. An empty
    folder is recorded with ``is_dir`` so that it is not silently lost. A name that
    is not valid UTF-8 keeps its raw bytes in ``raw_path`` (``path`` then shows it
    with ``\\xNN`` escapes); so does a link target in ``raw_link`` (and ``link``).
    """

    __slots__ = __match_args__ = (
        "path", "size", "sha256", "link", "is_dir", "raw_path", "raw_link",
    )  # fmt: skip
    path: str
    size: int
    sha256: str | None
    link: str | None
    is_dir: bool
    raw_path: bytes | None
    raw_link: bytes | None

    def __init__(
        self,
        path: str,
        size: int = 0,
        sha256: str | None = None,
        link: str | None = None,
        is_dir: bool = False,
        raw_path: bytes | None = None,
        raw_link: bytes | None = None,
    ) -> None:
        _set_path(self, path)
        _set_size(self, size)
        _set_sha256(self, sha256)
        _set_link(self, link)
        _set_is_dir(self, is_dir)
        _set_raw_path(self, raw_path)
        _set_raw_link(self, raw_link)
        _check_path(path)
        if sum((sha256 is not None, link is not None, is_dir)) != 1:
            raise SchemaError(f"{path!r}: an entry is one of file, link or folder")
        _check_raw(path, raw_path, "path")
        if raw_link is not None:
            _check_raw(link, raw_link, f"link {path!r}")
        if not 0 <= size <= _MAX_SIZE or isinstance(size, bool):
            raise SchemaError(f"bad size for {path!r}: {size!r}")
        if sha256 is not None and not _HEX64.fullmatch(sha256):
            raise SchemaError(f"bad sha256 for {path!r}: {sha256!r}")
        if sha256 is None and size:
            raise SchemaError(f"{path!r}: only files have a size")

    @classmethod
    def known_file(
        cls, path: str, size: int, sha256: str, raw_path: bytes | None = None
    ) -> FileEntry:
        """A regular file's entry, built without the checks of the constructor.

        Only for values that are right by construction: a relative path made of
        names a folder listing gave, a size from ``stat``, a SHA-256 hex digest
        from ``hashlib`` or from a hash cache that checked it. It is several times
        cheaper, which matters when a million unchanged files are listed.
        """
        entry = _new_entry(cls)
        _set_path(entry, path)
        _set_size(entry, size)
        _set_sha256(entry, sha256)
        _set_link(entry, None)
        _set_is_dir(entry, False)
        _set_raw_path(entry, raw_path)
        _set_raw_link(entry, None)
        return entry

    @property
    def is_file(self) -> bool:
        """Whether this is a regular file (not a link or a folder)."""
        return self.sha256 is not None

    @property
    def sort_key(self) -> bytes:
        """The raw path bytes entries are sorted by."""
        return self.raw_path if self.raw_path is not None else self.path.encode()

    def to_dict(self) -> dict[str, object]:
        """The JSON object of this entry's manifest line."""
        line: dict[str, object] = {"path": self.path}
        if self.sha256 is not None:
            line.update(sha256=self.sha256, size=self.size)
        elif self.link is not None:
            line["link"] = self.link
        else:
            line["dir"] = True
        if self.raw_path is not None or self.raw_link is not None:
            import base64  # names that are not UTF-8 only

            if self.raw_path is not None:
                line["path_b64"] = base64.b64encode(self.raw_path).decode()
            if self.raw_link is not None:
                line["link_b64"] = base64.b64encode(self.raw_link).decode()
        return line

    def to_line(self) -> bytes:
        """The canonical JSON line (without newline) hashed as this entry's leaf."""
        path = self.path
        if self.sha256 is not None and self.raw_path is None and _VERBATIM(path):
            # what canonical_bytes gives, written directly (ten times faster)
            sha, size = self.sha256, self.size
            return f'{{"path":"{path}","sha256":"{sha}","size":{size}}}'.encode()
        return canonical_bytes(self.to_dict())


_set = object.__setattr__  # how a frozen value sets its fields in __init__
_new_entry = object.__new__
_set_path = FileEntry.path.__set__  # type: ignore[attr-defined]
_set_size = FileEntry.size.__set__  # type: ignore[attr-defined]
_set_sha256 = FileEntry.sha256.__set__  # type: ignore[attr-defined]
_set_link = FileEntry.link.__set__  # type: ignore[attr-defined]
_set_is_dir = FileEntry.is_dir.__set__  # type: ignore[attr-defined]
_set_raw_path = FileEntry.raw_path.__set__  # type: ignore[attr-defined]
_set_raw_link = FileEntry.raw_link.__set__  # type: ignore[attr-defined]


def _check_raw(shown: str | None, raw: bytes | None, what: str) -> None:
    """``raw`` bytes are kept only when not UTF-8, and ``shown`` must escape them."""
    if raw is None:
        return
    if not isinstance(raw, bytes):
        raise SchemaError(f"raw {what} must be bytes: {raw!r}")
    try:
        raw.decode()
    except UnicodeDecodeError:
        if shown == raw.decode("utf-8", "backslashreplace"):
            return
        raise SchemaError(f"{what} {shown!r} does not show its raw bytes") from None
    raise SchemaError(f"raw {what} is UTF-8: give it as text only")


def _check_path(path: str) -> None:
    if not path or path.startswith("/"):
        raise SchemaError(f"manifest path must be relative: {path!r}")
    parts = path.split("/")
    if ".." in parts or "" in parts or "." in parts:
        raise SchemaError(f"manifest path is not normalised: {path!r}")


class DatasetManifest(Frozen):
    """A sorted manifest, its bytes (stored as a blob) and its id (the Merkle root)."""

    __slots__ = __match_args__ = ("entries", "data", "dataset_id")
    entries: tuple[FileEntry, ...]
    data: bytes
    dataset_id: str

    def __init__(
        self, entries: tuple[FileEntry, ...], data: bytes, dataset_id: str
    ) -> None:
        _set(self, "entries", entries)
        _set(self, "data", data)
        _set(self, "dataset_id", dataset_id)

    @property
    def file_count(self) -> int:
        """How many regular files the dataset holds (links and folders not counted)."""
        return sum(e.is_file for e in self.entries)

    @property
    def total_bytes(self) -> int:
        """The sum of the files' sizes."""
        return sum(e.size for e in self.entries)


def compute_manifest(entries: Iterable[FileEntry]) -> DatasetManifest:
    """Sort ``entries`` by path and compute the manifest bytes and dataset id.

    Raises:
        SchemaError: two entries share a path.
    """
    entries = list(entries)
    if any(e.raw_path is not None for e in entries):
        keyed = [(e.sort_key, e) for e in entries]
    else:  # code-point order of str is the order of their UTF-8 bytes
        keyed = [(e.path, e) for e in entries]
    keyed.sort(key=itemgetter(0))
    for (key, entry), (after, _) in pairwise(keyed):
        if key == after:
            raise SchemaError(f"manifest lists {entry.path!r} twice")
    ordered = tuple(entry for _, entry in keyed)
    lines = [e.to_line() for e in ordered]
    lines.append(b"")  # the newline after the last line
    data = b"\n".join(lines)
    del lines[-1]
    return DatasetManifest(ordered, data, _merkle_root(lines).hex())


def _merkle_root(lines: list[bytes]) -> bytes:
    """The RFC 9162 root over ``lines`` as leaves: what
    ``compute_root([hash_leaf(line) for line in lines])`` gives, computed a level
    at a time (pairs hashed, an odd last node carried up unchanged), which makes
    the same left-balanced tree with half the Python calls per leaf."""
    sha256 = hashlib.sha256
    level = [sha256(b"\x00" + line).digest() for line in lines]
    if not level:
        return EMPTY_ROOT
    while len(level) > 1:
        carry = level[-1:] if len(level) % 2 else []
        pairs = zip(level[0::2], level[1::2], strict=False)  # the odd last one: carry
        level = [sha256(b"\x01" + left + right).digest() for left, right in pairs]
        level += carry
    return level[0]


def parse_manifest(data: bytes) -> DatasetManifest:
    """Parse manifest bytes strictly: canonical, sorted, unique lines.

    Raises:
        SchemaError: the bytes are not a manifest this function would have written.
    """
    if data and not data.endswith(b"\n"):
        raise SchemaError("manifest does not end with a newline")
    entries = [_parse_line(n, line) for n, line in enumerate(data.split(b"\n")[:-1])]
    manifest = compute_manifest(entries)
    if manifest.data != data:
        raise SchemaError("manifest is not sorted and canonical")
    return manifest


_LINE_SHAPES = (
    {"path", "sha256", "size"},
    {"path", "link"},
    {"path", "dir"},
)


def _parse_line(n: int, line: bytes) -> FileEntry:
    from mltrail.core.codec import parse_json  # not at import: it loads much

    value = parse_json(line)
    if not isinstance(value, dict):
        raise SchemaError(f"manifest line {n + 1}: not an object")
    raw = value.pop("path_b64", None)
    raw_link = value.pop("link_b64", None)
    shape = set(value)
    if shape not in _LINE_SHAPES or (raw_link is not None and "link" not in shape):
        raise SchemaError(f"manifest line {n + 1}: unexpected members {sorted(value)}")
    try:
        return FileEntry(
            value["path"],
            value.get("size", 0),
            value.get("sha256"),
            link=value.get("link"),
            is_dir=value.get("dir") is True,
            raw_path=_b64(raw),
            raw_link=_b64(raw_link),
        )
    except (TypeError, ValueError, AttributeError) as e:
        raise SchemaError(f"manifest line {n + 1}: {e}") from e


def _b64(value: object) -> bytes | None:
    """Strict base64 (canonical padding, no other characters), or None."""
    if value is None:
        return None
    if not isinstance(value, str):
        raise TypeError(f"base64 must be a string, not {value!r}")
    import base64  # names that are not UTF-8 only

    raw = base64.b64decode(value, validate=True)
    if base64.b64encode(raw).decode() != value:
        raise ValueError(f"not canonical base64: {value!r}")
    return raw


def first_file_sha256(data: bytes | None) -> str | None:
    """The ``sha256`` of a manifest's first line, read leniently (None when it
    is not a JSON object naming one): a one-file dataset's content, for lineage
    (the index, a bundle's gate check). Not a check of the manifest."""
    import json

    if not data:
        return None
    try:
        line = json.loads(data.split(b"\n", 1)[0])
    except ValueError:
        return None
    sha = line.get("sha256") if isinstance(line, dict) else None
    return sha if isinstance(sha, str) else None


def listed_sha256s(data: bytes | None, limit: int | None = None) -> set[str]:
    """The ``sha256`` of each manifest line (of the first ``limit`` lines)
    that names one, read leniently (lines that are not JSON objects skipped):
    the files a dataset holds, for lineage. Not a check of the manifest."""
    import json

    shas: set[str] = set()
    for line in (data or b"").splitlines()[:limit]:
        try:
            sha = json.loads(line).get("sha256")
        except (ValueError, AttributeError):
            continue
        if isinstance(sha, str):
            shas.add(sha)
    return shas
