"""Model ids by what ``stat`` says of the weight files: an unchanged model is not read.

Resolving a path that holds links or a shard index fingerprints its weights again
(ADR 0009, amendment "links and shard indexes are checked before they name a
model"): the whole model, each time. :func:`model_fields` answers the same as
:func:`~mltrail.capture.model.fingerprint.capture_model_fields` but keeps the
model id in the home's hash cache, beside the folders' results
(:mod:`mltrail.capture.data.treefiles`, ``cache/hashes.trees/``), under a digest of
what identifies the bytes it was computed from without reading them:

- every tensor as the headers (read each time: a few KB) place it: name, dtype,
  shape, the resolved file, offset and length;
- every weight file, links resolved: its path and
  ``(st_dev, st_ino, st_size, st_mtime_ns, st_ctime_ns)``.

A stored id is used only when that digest is the same now, so a file replaced
behind a link (another inode), rewritten in place, or put back with its old size
and mtime (ctime moves to the present on any write) is read again. As for the
per-file hashes (ADR 0035), an id is stored only when every file's mtime and
ctime were :data:`RACY_WINDOW_S` older than the moment reading began and its
stat key did not change while it was read. Checkpoints that are pickles (no
byte spans) are read every time, as before.
"""

from __future__ import annotations

import os
import re
import time
from typing import TYPE_CHECKING

try:  # what hashlib.blake2b is, without loading OpenSSL
    from _blake2 import blake2b
except ImportError:  # pragma: no cover - another Python implementation
    from hashlib import blake2b

from mltrail.capture.data.hashcache import StoredTree, stat_key
from mltrail.capture.model.fingerprint import capture_fingerprint
from mltrail.capture.model.model_files import is_model_path, locate_model
from mltrail.errors import InputError

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from mltrail.capture.data.hashcache import HashCache, StatKey
    from mltrail.capture.model.model_files import ModelSource

__all__ = ["RACY_WINDOW_S", "model_fields"]

RACY_WINDOW_S = 2.0
"""How much older than the start of reading a file's mtime and ctime must be for
the id read from it to be stored (the hash cache's default, ADR 0035)."""
_PERSON = b"mltrail-modelid"
_VIEW_KEY = b"mltrail-model-id/1"
_ROOT = b"\0model\0"  # no folder's resolved path starts with a NUL
_MODEL_ID = re.compile(r"[0-9a-f]{64}")


def model_fields(path: Path, cache: HashCache | None) -> dict[str, Any]:
    """``model`` and ``model_format`` of the checkpoint ``path`` (else
    ``model_error``, or nothing when it is not one), as
    :func:`~mltrail.capture.model.fingerprint.capture_model_fields` gives them;
    taken from ``cache`` when no weight file changed since it was stored there,
    and stored there after reading."""
    if not is_model_path(path):
        return {}
    try:
        source = locate_model(path)
        found = _files(source)
        if found is None or cache is None or not cache.enabled:
            return _fields(capture_fingerprint(source).model_id, source)
        root = _ROOT + os.fsencode(os.path.realpath(path))
        digest = _digest(source, found)
        stored = cache.load_tree(root, digest, manifest=False, view_key=_VIEW_KEY)
        if stored is not None and _MODEL_ID.fullmatch(stored.dataset_id):
            return _fields(stored.dataset_id, source)
        started = time.time_ns()
        model_id = capture_fingerprint(source).model_id
        if _trusted(found, started, cache.racy_window_ns):
            size = sum(key[2] for key in found.values())
            tree = StoredTree(
                digest, len(found), size, model_id, b"", _VIEW_KEY, b"model"
            )
            cache.save_tree(root, tree)
    except InputError as e:
        return {"model_error": str(e)}
    return _fields(model_id, source)


def _fields(model_id: str, source: ModelSource) -> dict[str, Any]:
    return {"model": model_id, "model_format": source.format}


def _files(source: ModelSource) -> dict[str, StatKey] | None:
    """The stat key of every file the tensors are read from, by resolved path;
    None for a pickle (no byte spans) or a file gone."""
    files: dict[str, StatKey] = {}
    for ref in source.tensors:
        if ref.span is None:
            return None
        name = os.path.realpath(ref.span.file)
        if name not in files:
            try:
                files[name] = stat_key(os.stat(name))
            except OSError:
                return None
    return files


def _digest(source: ModelSource, files: dict[str, StatKey]) -> bytes:
    """What the model id is computed from, as far as it can be told unread."""
    digest = blake2b(digest_size=32, person=_PERSON)
    for ref in source.tensors:
        span = ref.span
        assert span is not None  # _files gave None otherwise
        place = (ref.name, ref.dtype, ref.shape, os.path.realpath(span.file))
        digest.update(repr((*place, span.offset, span.size)).encode() + b"\0")
    for name in sorted(files):
        digest.update(repr((name, files[name])).encode() + b"\0")
    return digest.digest()


def _trusted(files: dict[str, StatKey], started: int, window: int) -> bool:
    """Whether the files were old enough when reading began, and unchanged by its
    end (a write within the timestamp granularity could go unseen)."""
    for name, key in files.items():
        if started - max(key[3], key[4]) < window:
            return False
        try:
            if stat_key(os.stat(name)) != key:
                return False
        except OSError:
            return False
    return True
