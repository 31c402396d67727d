"""DVC's own md5 of a file or folder, to check data against a DVC record.

What DVC hashes (checked against dvc-data 3.x, ``dvc_data/hashfile/hash.py`` and
``tree.py``, and against real ``dvc add`` / ``dvc repro`` output of DVC 3.67):

* DVC 3 outputs (``hash: md5`` in the record): the plain md5 of the file's bytes,
  text or binary; line endings are *not* normalised.
* DVC 2 outputs (no ``hash`` field; DVC 3 calls them ``md5-dos2unix``): the file is
  read in 1 MiB chunks, and a chunk whose first 512 bytes look like text (no NUL,
  at most 30 % non-text bytes) has ``\\r\\n`` replaced by ``\\n`` before hashing.
* A folder: the md5 of ``json.dumps(listing, sort_keys=True)`` where ``listing`` is
  ``[{"md5": ..., "relpath": ...}]`` sorted by ``relpath``, followed by ``.dir``.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from mltrail.errors import CaptureError

__all__ = ["dvc_md5"]

_CHUNK = 1 << 20  # dvc-data fobj_md5 chunk size
_TEXT_PROBE = 512  # dvc-data istextfile DEFAULT_CHUNK_SIZE
_TEXT_CHARS = bytes(range(32, 127)) + b"\n\r\t\f\b"
_SKIP_DIRS = frozenset({".git", ".hg", ".dvc"})


def dvc_md5(path: Path, *, legacy: bool = False) -> str:
    """DVC's md5 of a file (``<hex>``) or folder (``<hex>.dir``), to match a DVC record.

    Args:
        path: a local file or folder. Folders are walked like DVC does (symbolic
            links to files followed, ``.git``/``.hg``/``.dvc`` folders skipped, empty
            folders ignored) but ``.dvcignore`` patterns are not applied.
        legacy: hash like DVC 2 (``md5-dos2unix``: CRLF normalised in text chunks),
            for records without ``hash: md5``.

    Raises:
        CaptureError: ``path`` does not exist or cannot be read.
    """
    if path.is_dir():
        return _dir_md5(path, legacy=legacy)
    return _file_md5(path, legacy=legacy)


def _file_md5(path: Path, *, legacy: bool) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    try:
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                if legacy and _is_text(chunk[:_TEXT_PROBE]):
                    chunk = chunk.replace(b"\r\n", b"\n")
                digest.update(chunk)
    except OSError as e:
        raise CaptureError(
            f"cannot read {path}: {e.strerror or e}",
            hint="check the path and its permissions",
        ) from e
    return digest.hexdigest()


def _is_text(block: bytes) -> bool:
    if not block:
        return True
    if b"\x00" in block:
        return False
    return len(block.translate(None, _TEXT_CHARS)) / len(block) <= 0.30


def _dir_md5(folder: Path, *, legacy: bool) -> str:
    listing = [
        {"md5": _file_md5(file, legacy=legacy), "relpath": rel}
        for rel, file in _walk(folder)
    ]
    listing.sort(key=lambda item: item["relpath"])
    data = json.dumps(listing, sort_keys=True).encode("utf-8")
    return hashlib.md5(data, usedforsecurity=False).hexdigest() + ".dir"


def _walk(folder: Path) -> list[tuple[str, Path]]:
    def fail(error: OSError) -> None:
        raise CaptureError(f"cannot list {error.filename}: {error.strerror}")

    found = []
    for here, dirs, files in os.walk(folder, onerror=fail):
        dirs[:] = [d for d in dirs if d not in _SKIP_DIRS]
        for name in files:
            file = Path(here, name)
            if file.is_file():
                found.append((file.relative_to(folder).as_posix(), file))
    return found
