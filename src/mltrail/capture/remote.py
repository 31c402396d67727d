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

import base64
import binascii
import contextlib
import hashlib
import posixpath
import re
import socket
import sys
import threading
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import parse_qsl, unquote, urlsplit, urlunsplit

from mltrail.core.manifest import FileEntry
from mltrail.errors import CaptureError, ConfigError, InputError, SchemaError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

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
_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_LOCAL_SCHEMES = frozenset({"file", "local"})
_HTTP = frozenset({"http", "https"})
_S3 = frozenset({"s3", "s3a"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MULTIPART_ETAG = re.compile(r'-\d+"?$')
_SECRET_PARAM = re.compile(
    r"sig|token|secret|passw|pwd|credential|auth|key|policy|expires|^x-amz-|^x-goog-",
    re.IGNORECASE,
)
_USERINFO = re.compile(r"(?<=://)[^/\s@'\"]+@")
_QUERY = re.compile(r"(?<=://)([^\s'\"?]*)\?[^\s'\")]*")
_DIGEST_SHA256 = re.compile(r"sha-256=:?([A-Za-z0-9+/=]+):?", re.IGNORECASE)


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


def is_remote(location: str) -> bool:
    """Whether ``location`` is a URL fsspec can open (``file://`` counts as local).

    Without fsspec installed, any ``scheme://`` other than ``file://`` counts as
    remote, so that hashing it reports the missing extra.
    """
    scheme = _scheme(location)
    if scheme is None or scheme in _LOCAL_SCHEMES:
        return False
    try:
        from fsspec.registry import known_implementations, registry
    except ImportError:
        return True
    return scheme in known_implementations or scheme in registry


def public_url(url: str) -> str:
    """``url`` without credentials: no ``user:password@``, no signed query, no fragment.

    A query is kept only when none of its parameters looks like a credential or a
    signature (``X-Amz-Signature``, ``sig``, ``token``, ``Expires``...).
    """
    parts = urlsplit(url)
    netloc = parts.netloc.rpartition("@")[2]
    names = [name for name, _ in parse_qsl(parts.query, keep_blank_values=True)]
    query = "" if any(_SECRET_PARAM.search(n) for n in names) else parts.query
    return urlunsplit((parts.scheme, netloc, parts.path, query, ""))


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
    scheme = _scheme(url)
    if scheme is None or not is_remote(url):
        raise InputError(
            f"not a remote URL: {shown}", hint="local paths are hashed as files"
        )
    fs, root = _filesystem(url, shown, dict(storage_options or {}))
    with _translate_errors(url, shown):
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


def _scheme(location: str) -> str | None:
    match = _SCHEME.match(location)
    return match.group(1).lower() if match else None


def _filesystem(url: str, shown: str, options: dict[str, Any]) -> tuple[Any, str]:
    try:
        import fsspec
    except ImportError as e:
        raise ConfigError(
            f"reading {shown} needs the remote extra (fsspec)", hint=_EXTRA_HINT
        ) from e
    try:
        fs, root = fsspec.core.url_to_fs(url, **options)
    except ImportError as e:
        package = _OTHER_BACKENDS.get(_scheme(url) or "")
        raise ConfigError(
            f"reading {shown} needs a package that is not installed: {e}",
            hint=f"{_EXTRA_HINT} {package}" if package else _EXTRA_HINT,
        ) from e
    except (ValueError, TypeError) as e:
        raise InputError(f"cannot open {shown}: {_scrub(str(e), url, shown)}") from e
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
    with _translate_errors(url, shown):
        info = obj.info
        if scheme in _HTTP and info.get("size") is None:
            info = {**info, **fs.info(obj.path)}  # HEAD: size and Digest
        stored = _store_sha256(fs, scheme, obj.path, info)
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


# --- store checksums -------------------------------------------------------------------


def _store_sha256(
    fs: Any, scheme: str, path: str, info: dict[str, Any]
) -> tuple[int, str] | None:
    """(size, SHA-256 hex) from the store, only when it is a full-object SHA-256."""
    if scheme in _S3:
        return _s3_sha256(fs, path, info)
    if scheme == "hf":
        return _hf_sha256(info)
    if scheme in _HTTP:
        return _http_sha256(info)
    return None


def _s3_sha256(fs: Any, path: str, info: dict[str, Any]) -> tuple[int, str] | None:
    algorithms = info.get("ChecksumAlgorithm")
    if algorithms is not None and "SHA256" not in algorithms:
        return None  # the listing already says there is no SHA-256
    if _MULTIPART_ETAG.search(str(info.get("ETag", ""))):
        return None
    bucket, key, version = fs.split_path(path)
    extra = {"VersionId": version} if version else {}
    head = fs.call_s3(
        "head_object", Bucket=bucket, Key=key, ChecksumMode="ENABLED", **extra
    )
    if _MULTIPART_ETAG.search(str(head.get("ETag", ""))) or head.get("PartsCount"):
        return None
    if head.get("ChecksumType", "FULL_OBJECT") != "FULL_OBJECT":
        return None
    digest = _b64_sha256(head.get("ChecksumSHA256"))
    size = head.get("ContentLength")
    return (size, digest) if digest and isinstance(size, int) else None


def _hf_sha256(info: dict[str, Any]) -> tuple[int, str] | None:
    lfs = info.get("lfs")
    if not isinstance(lfs, dict):
        return None  # a plain git file: only its git blob sha1 is known
    digest, size = lfs.get("sha256"), info.get("size")
    if not (isinstance(digest, str) and _HEX64.fullmatch(digest)):
        return None
    if not isinstance(size, int) or lfs.get("size", size) != size:
        return None
    return size, digest


def _http_sha256(info: dict[str, Any]) -> tuple[int, str] | None:
    # fsspec records size only for an identity-encoded response, so the digest
    # (of the representation) is the digest of the bytes a GET returns.
    size = info.get("size")
    header = info.get("Repr-Digest") or info.get("Digest")
    if not isinstance(size, int) or not isinstance(header, str):
        return None
    for item in header.split(","):
        match = _DIGEST_SHA256.fullmatch(item.strip())
        digest = _b64_sha256(match.group(1)) if match else None
        if digest:
            return size, digest
    return None


def _b64_sha256(value: Any) -> str | None:
    """Hex of a base64 SHA-256; None for anything else (a composite ``...-N`` too)."""
    if not isinstance(value, str) or "-" in value:
        return None
    try:
        raw = base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None
    return raw.hex() if len(raw) == 32 else None


# --- errors ------------------------------------------------------------------------


@contextlib.contextmanager
def _translate_errors(url: str, shown: str) -> Iterator[None]:
    """Turn the errors of fsspec and its backends into mltrail errors naming ``shown``."""
    try:
        yield
    except (OSError, *_backend_errors()) as e:
        raise _classify(e, url, shown) from e


def _backend_errors() -> tuple[type[BaseException], ...]:
    """Base errors of the backends already imported (one not loaded cannot raise)."""
    found: list[type[BaseException]] = []
    for module, name in (
        ("aiohttp", "ClientError"),
        ("botocore.exceptions", "BotoCoreError"),
        ("botocore.exceptions", "ClientError"),
        ("huggingface_hub.errors", "HfHubHTTPError"),
        ("requests", "RequestException"),
    ):
        error = getattr(sys.modules.get(module), name, None)
        if isinstance(error, type) and issubclass(error, BaseException):
            found.append(error)
    return tuple(found)


def _classify(error: BaseException, url: str, shown: str) -> Exception:
    cause = _root_cause(error)
    status = _status(cause)
    if isinstance(cause, PermissionError) or status in (401, 403):
        return InputError(
            f"access denied to {shown}",
            hint="check the credentials (storage_options or the environment)",
        )
    if isinstance(cause, FileNotFoundError) or status in (404, 410):
        return InputError(
            f"no such remote file or folder: {shown}", hint="check the URL"
        )
    reason = _scrub(f"{type(cause).__name__}: {cause}", url, shown)
    if "NoCredentials" in type(cause).__name__:  # botocore
        return ConfigError(
            f"no credentials to read {shown}",
            hint="set them in the environment or pass storage_options",
        )
    if status is not None:
        return CaptureError(f"cannot read {shown}: HTTP {status} ({reason})")
    if _is_connection_error(cause):
        return CaptureError(
            f"cannot reach {shown}: {reason}",
            hint="check the host, the network and the endpoint; nothing was recorded",
        )
    return CaptureError(f"cannot read {shown}: {reason}", hint="nothing was recorded")


def _is_connection_error(error: BaseException) -> bool:
    if isinstance(error, (ConnectionError, TimeoutError, socket.gaierror)):
        return True
    return "connect" in type(error).__name__.lower()  # aiohttp, botocore


def _root_cause(error: BaseException) -> BaseException:
    """The deepest error that has a meaning of its own (fsspec wraps many as 404s)."""
    seen = {id(error)}
    while error.__cause__ is not None and id(error.__cause__) not in seen:
        error = error.__cause__
        seen.add(id(error))
        if _status(error) is not None:
            break
    return error


def _status(error: BaseException) -> int | None:
    status = getattr(error, "status", None)
    if isinstance(status, int):
        return status
    response = getattr(error, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        code = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return code if isinstance(code, int) else None
    code = getattr(response, "status_code", None)  # requests / huggingface_hub
    return code if isinstance(code, int) else None


def _scrub(text: str, url: str, shown: str) -> str:
    """``text`` without the credentials or query strings of the URLs it mentions."""
    text = " ".join(text.replace(url, shown).split())
    return _QUERY.sub(r"\1", _USERINFO.sub("", text))
