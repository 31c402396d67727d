"""Remote data through fsspec URLs: path, size and SHA-256 of every object.

``hash_remote("s3://bucket/train/")`` lists the objects under a URL and gives each
its SHA-256, taken from the store when the store keeps a full-object SHA-256 of its
own, and otherwise computed by streaming the bytes (in 1 MiB chunks, several objects
at a time on threads). Which of the two was used is recorded per path.

Store checksums trusted (anything else is streamed):

* S3 (``s3://``): ``ChecksumSHA256`` from HeadObject with ``ChecksumMode=ENABLED``,
  for objects uploaded with a SHA-256 checksum in one part. A multipart object's
  checksum is a checksum of the parts' checksums (``...-N``, or an ETag ending in
  ``-N``), not the file's SHA-256, so those are streamed.
* Hugging Face Hub (``hf://``): the ``lfs.sha256`` of files stored with Git LFS.
* HTTP(S): a ``Digest: sha-256=...`` header on an uncompressed response.
* GCS, Azure and the rest keep only md5 / crc32c: streamed.

A folder URL lists every object under it (paths relative to the URL); HTTP has no
folders, so an ``http(s)://`` URL ending in ``/`` is read as an index page whose
links are followed. The URL recorded has its credentials removed (no
``user:password@``, no signed query string). Requires the ``remote`` extra
(fsspec and its backends, imported only here).
"""

from __future__ import annotations

import hashlib
import posixpath
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import unquote, urlsplit

from mltrail.capture.data.remote_checksums import store_sha256
from mltrail.capture.data.remote_errors import translate_errors
from mltrail.capture.data.urls import is_remote, public_url, scheme_of, scrub_urls
from mltrail.core.manifest import FileEntry
from mltrail.errors import CaptureError, ConfigError, InputError, SchemaError

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping

__all__ = ["RemoteListing", "hash_remote", "is_remote", "public_url"]

_CHUNK = 1 << 20
_BLOCK = 8 << 20
_EXTRA_HINT = "pip install 'mltrail[remote]'"
# backends outside the remote extra (fsspec, aiohttp, s3fs): installed on their own
_OTHER_BACKENDS = {
    "gs": "gcsfs",
    "gcs": "gcsfs",
    "hf": "huggingface_hub",
    "az": "adlfs",
    "abfs": "adlfs",
    "abfss": "adlfs",
}
_HTTP = frozenset({"http", "https"})


@dataclass(frozen=True, slots=True)
class RemoteListing:
    """The objects at a remote URL, hashed.

    Attributes:
        entries: one file entry per object, sorted by path; paths are relative to
            the URL (a single object is listed under its base name).
        checksum_source: path -> ``"store"`` (the store's own SHA-256 was used) or
            ``"streamed"`` (the bytes were read and hashed).
        url: the URL without credentials.
        protocol: the URL's scheme, lower case (``s3``, ``https``, ``hf``...).
    """

    entries: list[FileEntry]
    checksum_source: dict[str, str]
    url: str
    protocol: str


class _Object(NamedTuple):
    rel: str  # path relative to the URL, as recorded
    path: str  # path as the filesystem knows it
    info: dict[str, Any]  # what the listing said about it


def hash_remote(
    url: str,
    *,
    storage_options: Mapping[str, Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = 8,
) -> RemoteListing:
    """List and hash the object or folder at ``url``.

    Args:
        url: an fsspec URL (``s3://bucket/prefix``, ``https://host/file.csv``,
            ``https://host/folder/``, ``hf://datasets/org/name``...).
        storage_options: passed to the fsspec filesystem (credentials, endpoint...).
        progress: called as ``progress(objects_done, objects_total)`` in the
            calling thread after each object is hashed.
        workers: how many objects are hashed at a time.

    Raises:
        ConfigError: fsspec or the backend for this scheme is not installed.
        InputError: not a remote URL, nothing there, or access refused.
        CaptureError: the store cannot be reached or an object cannot be read.
            Nothing partial is returned.
    """
    if workers < 1:
        raise InputError(f"workers must be at least 1, not {workers}")
    shown = public_url(url)
    scheme = scheme_of(url)
    if scheme is None or not is_remote(url):
        raise InputError(
            f"not a remote URL: {shown}", hint="local paths are hashed as files"
        )
    fs, root = _filesystem(url, shown, dict(storage_options or {}))
    with translate_errors(url, shown):
        objects = _list(fs, scheme, url, root)
    if not objects:
        raise InputError(f"no files found at {shown}", hint="check the URL")
    results = _hash_all(fs, scheme, objects, progress, workers)
    results.sort(key=lambda r: r[0].sort_key)
    return RemoteListing(
        entries=[entry for entry, _ in results],
        checksum_source={entry.path: source for entry, source in results},
        url=shown,
        protocol=scheme,
    )


# --- filesystem and listing ------------------------------------------------------------


def _filesystem(url: str, shown: str, options: dict[str, Any]) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError as e:
        raise ConfigError(
            f"reading {shown} needs the remote extra (fsspec)", hint=_EXTRA_HINT
        ) from e
    if scheme_of(url) in _HTTP and "client_kwargs" not in options:
        # the HTTP client reads ~/.netrc (and the proxy variables) only when told
        # to: a source's password is not stored, so a check finds it there
        options["client_kwargs"] = {"trust_env": True}
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except ImportError as e:
        package = _OTHER_BACKENDS.get(scheme_of(url) or "")
        raise ConfigError(
            f"reading {shown} needs a package that is not installed: {e}",
            hint=f"{_EXTRA_HINT} {package}" if package else _EXTRA_HINT,
        ) from e
    except (ValueError, TypeError) as e:
        raise InputError(
            f"cannot open {shown}: {scrub_urls(str(e), url, shown)}"
        ) from e
    fs.invalidate_cache()  # a listing cached by an earlier call may be stale
    return fs, root


def _list(fs: Any, scheme: str, url: str, root: str) -> list[_Object]:
    if scheme in _HTTP:
        return _list_http(fs, url, root)
    info = fs.info(root)
    if info.get("type") != "directory":
        return [_Object(posixpath.basename(root.rstrip("/")), root, info)]
    prefix = root.rstrip("/") + "/"
    objects = []
    for name, found in sorted(fs.find(root, detail=True).items()):
        if found.get("type") == "directory":
            continue
        if not name.startswith(prefix):
            raise CaptureError(f"listing {public_url(url)} returned {name!r}")
        objects.append(_Object(name[len(prefix) :], name, found))
    return objects


def _list_http(fs: Any, url: str, root: str) -> list[_Object]:
    info = fs.info(root)  # raises for 404 / 403 / unreachable before any listing
    path = urlsplit(url).path
    if path and not path.endswith("/"):
        return [_Object(unquote(posixpath.basename(path)), root, info)]
    prefix = root if root.endswith("/") else root + "/"
    objects = []
    for name, found in sorted(fs.find(root, detail=True, on_error="raise").items()):
        rel = _http_relative(name, prefix)
        if rel is not None and found.get("type") != "directory":
            objects.append(_Object(rel, name, found))
    return objects


def _http_relative(name: str, prefix: str) -> str | None:
    """The file name a link stands for, or None for navigation links (sorting, parent)."""
    if not name.startswith(prefix) or "?" in name or "#" in name:
        return None
    rel = unquote(name[len(prefix) :])
    parts = rel.split("/")
    if not rel or any(p in ("", ".", "..") for p in parts):
        return None
    return rel


# --- hashing -----------------------------------------------------------------------


def _hash_all(
    fs: Any,
    scheme: str,
    objects: list[_Object],
    progress: Callable[[int, int], None] | None,
    workers: int,
) -> list[tuple[FileEntry, str]]:
    results: list[tuple[FileEntry, str]] = []
    stop = threading.Event()  # set on failure: streams still running give up early
    pool = ThreadPoolExecutor(max_workers=min(workers, len(objects)))
    try:
        pending = {pool.submit(_hash_object, fs, scheme, o, stop) for o in objects}
        while pending:
            done, pending = wait(pending, return_when=FIRST_EXCEPTION)
            for future in done:
                results.append(future.result())  # the first failure raises here
                if progress is not None:
                    progress(len(results), len(objects))
    finally:
        stop.set()
        pool.shutdown(wait=True, cancel_futures=True)
    return results


def _hash_object(
    fs: Any, scheme: str, obj: _Object, stop: threading.Event
) -> tuple[FileEntry, str]:
    url = _object_url(scheme, obj.path)
    shown = public_url(url)
    with translate_errors(url, shown):
        info = obj.info
        if scheme in _HTTP and info.get("size") is None:
            info = {**info, **fs.info(obj.path)}  # HEAD: size and Digest
        stored = store_sha256(fs, scheme, obj.path, info)
        if stored is not None:
            return _entry(obj.rel, *stored, shown), "store"
        size, digest = _stream(fs, scheme, obj.path, stop)
    expected = info.get("size")
    if isinstance(expected, int) and expected != size:
        raise CaptureError(
            f"{shown} changed while it was read ({expected} bytes listed, {size} read)",
            hint="run again once the data has stopped changing",
        )
    return _entry(obj.rel, size, digest, shown), "streamed"


def _entry(rel: str, size: int, sha256: str, shown: str) -> FileEntry:
    try:
        return FileEntry(rel, size, sha256)
    except SchemaError as e:
        raise CaptureError(
            f"cannot record {shown}: {e}",
            hint="object names must be relative paths without '.', '..' or '//'",
        ) from e


def _stream(fs: Any, scheme: str, path: str, stop: threading.Event) -> tuple[int, str]:
    # HTTP: one streaming GET (block_size=0), which also works on servers that
    # ignore Range requests; elsewhere ranged reads of _BLOCK bytes.
    block_size = 0 if scheme in _HTTP else _BLOCK
    digest = hashlib.sha256()
    size = 0
    with fs.open(path, "rb", block_size=block_size) as f:
        while not stop.is_set() and (chunk := f.read(_CHUNK)):
            digest.update(chunk)
            size += len(chunk)
    return size, digest.hexdigest()


def _object_url(scheme: str, path: str) -> str:
    return path if scheme in _HTTP else f"{scheme}://{path.lstrip('/')}"
