"""Write-once storage for sealed segments: S3 Object Lock, or read-only local files.

A :class:`WormStore` keeps objects by key (``segments/<name>/<file>``) and never
replaces one: putting a key that exists with the same bytes does nothing (so a
rerun is harmless), with other bytes it is refused. What the bytes mean (the
segment format, hashes, signatures) is :mod:`mltrail.core.seal`'s business.

- ``s3://bucket/prefix``: objects are put with Object Lock in COMPLIANCE mode
  until the retain-until date given, so nobody, the bucket's owner included,
  can delete them or shorten their retention before then; legal holds map to
  S3 legal holds. The bucket must have Object Lock enabled. Object Lock locks
  *versions*, not keys: anyone allowed to put objects can still put a newer
  version over a sealed key, or a delete marker, and a plain GET then returns
  that. So a key is read as its *first* version (the one sealed and locked),
  found through the version listing, and :meth:`WormStore.read` says what else
  the key holds and how the sealed version is locked. boto3 (``pip
  install 'mltrail[seal]'``) reads credentials, region and endpoint the usual
  way (``AWS_ACCESS_KEY_ID``, ``AWS_ENDPOINT_URL_S3``, profiles...).
- a folder (``/mnt/worm/ledger`` or ``file:///...``): files are written under a
  temporary name, fsynced, made read-only (0444) and linked into place (a link
  never replaces an existing file); a finished segment's folder is made
  read-only too. Point it at WORM-capable storage (a NetApp SnapLock or
  immutable-snapshot volume): plain file modes stop mistakes, not root.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
import tempfile
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.errors import (
    ConfigError,
    InputError,
    MltrailError,
    SideStoreError,
)

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime

__all__ = ["LocalWorm", "S3Worm", "SealedObject", "WormStore", "open_worm"]


@contextlib.contextmanager
def _as_store_error(action: str, where: str) -> Iterator[None]:
    try:
        yield
    except MltrailError:
        raise
    except Exception as e:
        raise SideStoreError(f"seal storage {where} failed to {action}: {e}") from e


@dataclass(frozen=True, slots=True)
class SealedObject:
    """A sealed object's bytes and what the storage says about its key."""

    data: bytes
    """The bytes of the sealed (first) version."""
    locks: bool = False
    """Whether the storage reports object locks (S3): the fields below mean
    something only then."""
    lock_mode: str | None = None
    """The sealed version's Object Lock mode (``COMPLIANCE``, ``GOVERNANCE``),
    None when it has none."""
    retain_until: datetime | None = None
    """The sealed version's retain-until date, None when it has none."""
    later_versions: int = 0
    """Versions put over the sealed one since (what a plain GET returns)."""
    delete_markers: int = 0
    """Delete markers put on the key (a plain GET then finds nothing)."""
    written: datetime | None = None
    """When the sealed version was written, as the storage says."""


class WormStore(ABC):
    """Objects by key, written once. Public methods turn foreign errors into
    :class:`~mltrail.errors.StoreError`."""

    url: str = ""
    legal_holds: bool = False
    """Whether the storage itself enforces legal holds."""

    def check_ready(self) -> None:
        """Refuse storage that cannot keep objects write-once."""
        with _as_store_error("open", self.url):
            self._check_ready()

    def put(
        self,
        key: str,
        data: bytes,
        *,
        retain_until: datetime | None,
        legal_hold: bool = False,
    ) -> bool:
        """Write ``key`` once; True when written, False when it held these bytes.

        Raises:
            StoreError: it holds other bytes, or the storage failed.
        """
        with _as_store_error(f"write {key}", self.url):
            held = self._get(key)
            if held is not None:
                if held != data:
                    raise SideStoreError(
                        f"{self.url}: {key} already holds other bytes "
                        f"(sha256 {hashlib.sha256(held).hexdigest()[:16]}...); "
                        "a sealed object is never replaced",
                        hint="`mltrail verify --against-seals` says what differs",
                    )
                return False
            self._put(key, data, retain_until, legal_hold)
            return True

    def get(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is none."""
        with _as_store_error(f"read {key}", self.url):
            return self._get(key)

    def read(self, key: str) -> SealedObject | None:
        """The sealed object at ``key`` with its lock and later versions, or None."""
        with _as_store_error(f"read {key}", self.url):
            return self._read(key)

    def keys(self, prefix: str = "") -> list[str]:
        """Every key starting with ``prefix`` that holds a sealed object, sorted
        (one hidden by a delete marker included)."""
        with _as_store_error("list objects", self.url):
            return sorted(self._keys(prefix))

    def set_legal_hold(self, key: str, on: bool) -> None:
        """Place (``on``) or lift a legal hold on ``key`` (where supported)."""
        if self.legal_holds:
            with _as_store_error(f"set the legal hold of {key}", self.url):
                self._set_legal_hold(key, on)

    def legal_hold(self, key: str) -> bool | None:
        """Whether ``key`` is under a legal hold (None: not supported here)."""
        if not self.legal_holds:
            return None
        with _as_store_error(f"read the legal hold of {key}", self.url):
            return self._legal_hold(key)

    def finish(self, folder: str) -> None:  # noqa: B027 (optional hook)
        """Called once a segment's manifest is written."""

    @abstractmethod
    def _check_ready(self) -> None: ...

    @abstractmethod
    def _put(
        self, key: str, data: bytes, retain_until: datetime | None, legal_hold: bool
    ) -> None: ...

    @abstractmethod
    def _get(self, key: str) -> bytes | None: ...

    @abstractmethod
    def _keys(self, prefix: str) -> list[str]: ...

    def _read(self, key: str) -> SealedObject | None:
        data = self._get(key)
        return None if data is None else SealedObject(data)

    def _set_legal_hold(self, key: str, on: bool) -> None:
        raise NotImplementedError

    def _legal_hold(self, key: str) -> bool:
        raise NotImplementedError


class LocalWorm(WormStore):
    """Read-only files under a folder."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.url = str(root)

    def _check_ready(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)

    def _path(self, key: str) -> Path:
        parts = key.split("/")
        if any(p in ("", ".", "..") for p in parts):
            raise InputError(f"bad object key {key!r}")
        return self.root.joinpath(*parts)

    def _put(
        self, key: str, data: bytes, retain_until: datetime | None, legal_hold: bool
    ) -> None:
        path = self._path(key)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".part-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, 0o444)
            os.link(tmp, path)  # never replaces an existing file
        finally:
            Path(tmp).unlink(missing_ok=True)
        _fsync_dir(path.parent)

    def _get(self, key: str) -> bytes | None:
        try:
            return self._path(key).read_bytes()
        except FileNotFoundError:
            return None

    def _keys(self, prefix: str) -> list[str]:
        if not self.root.is_dir():
            return []
        found = []
        for dirpath, _, names in os.walk(self.root):
            for name in names:
                if name.startswith(".part-"):
                    continue
                key = (Path(dirpath) / name).relative_to(self.root).as_posix()
                if key.startswith(prefix):
                    found.append(key)
        return found

    def finish(self, folder: str) -> None:
        """Make a finished segment's folder read-only."""
        with _as_store_error(f"close {folder}", self.url):
            path = self._path(folder)
            mode = stat.S_IMODE(path.stat().st_mode)
            path.chmod(mode & ~0o222)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class S3Worm(WormStore):
    """Objects in an S3 bucket with Object Lock, put in COMPLIANCE mode."""

    legal_holds = True

    def __init__(self, bucket: str, prefix: str, client: Any = None) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/")
        self.url = f"s3://{bucket}/{self.prefix}" if self.prefix else f"s3://{bucket}"
        self._client = client
        # the versions :meth:`keys` listed last (full prefix, key -> versions):
        # :meth:`read` of a key under it uses them instead of listing that key again
        self._listed: tuple[str, dict[str, _Versions]] | None = None

    @property
    def client(self) -> Any:
        """The boto3 S3 client (made on first use)."""
        if self._client is None:
            self._client = _boto3_client()
        return self._client

    def _key(self, key: str) -> str:
        return f"{self.prefix}/{key}" if self.prefix else key

    def _check_ready(self) -> None:
        from botocore.exceptions import ClientError

        try:
            reply = self.client.get_object_lock_configuration(Bucket=self.bucket)
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code", "")
            if code == "NoSuchBucket":
                raise SideStoreError(
                    f"{self.url}: no bucket {self.bucket}",
                    hint="create it with Object Lock enabled "
                    "(aws s3api create-bucket --object-lock-enabled-for-bucket)",
                ) from e
            if code != "ObjectLockConfigurationNotFoundError":
                raise
            reply = {}
        enabled = reply.get("ObjectLockConfiguration", {}).get("ObjectLockEnabled")
        if enabled != "Enabled":
            raise SideStoreError(
                f"{self.url}: the bucket {self.bucket} does not have Object Lock "
                "enabled, so sealed objects could be deleted",
                hint="seal to a bucket created with Object Lock enabled",
            )

    def _put(
        self, key: str, data: bytes, retain_until: datetime | None, legal_hold: bool
    ) -> None:
        if retain_until is None:
            raise InputError("sealing to S3 needs a retention period (--retain)")
        self.client.put_object(
            Bucket=self.bucket,
            Key=self._key(key),
            Body=data,
            ObjectLockMode="COMPLIANCE",
            ObjectLockRetainUntilDate=retain_until,
            ObjectLockLegalHoldStatus="ON" if legal_hold else "OFF",
            ChecksumAlgorithm="SHA256",
        )

    def _list(self, full_prefix: str) -> dict[str, _Versions]:
        """Every key under ``full_prefix``: its version ids, newest first (the
        order S3 lists them in), and its delete markers."""
        found: dict[str, _Versions] = {}
        pages = self.client.get_paginator("list_object_versions").paginate(
            Bucket=self.bucket, Prefix=full_prefix
        )
        for page in pages:
            for v in page.get("Versions", []):
                found.setdefault(v["Key"], ([], 0))[0].append(v["VersionId"])
            for m in page.get("DeleteMarkers", []):
                versions, markers = found.get(m["Key"], ([], 0))
                found[m["Key"]] = (versions, markers + 1)
        return found

    def _versions(self, key: str, *, fresh: bool = True) -> _Versions:
        """The version ids of ``key``, newest first, and its delete markers; from
        the last :meth:`keys` listing when it covers ``key`` and not ``fresh``."""
        full = self._key(key)
        if not fresh and self._listed is not None and full.startswith(self._listed[0]):
            return self._listed[1].get(full, ([], 0))
        return self._list(full).get(full, ([], 0))

    def _sealed_version(self, key: str) -> str | None:
        """The first version put at ``key``: the one sealed (and locked)."""
        versions, _ = self._versions(key)
        return versions[-1] if versions else None

    def _read(self, key: str, *, fresh: bool = False) -> SealedObject | None:
        """The sealed version of ``key``. Unless ``fresh``, its versions may come
        from the last :meth:`keys` listing (a check reading every sealed key then
        makes one request per key, not two); a version put after that listing is
        seen by the next check. Writing always lists afresh (:meth:`_get`)."""
        from botocore.exceptions import ClientError

        versions, markers = self._versions(key, fresh=fresh)
        if not versions:
            return None
        try:
            reply = self.client.get_object(
                Bucket=self.bucket, Key=self._key(key), **_version(versions[-1])
            )
        except ClientError as e:
            code = e.response.get("Error", {}).get("Code")
            if code in ("NoSuchKey", "NoSuchVersion", "404"):
                return None
            raise
        return SealedObject(
            data=reply["Body"].read(),
            locks=True,
            lock_mode=reply.get("ObjectLockMode") or None,
            retain_until=reply.get("ObjectLockRetainUntilDate"),
            later_versions=len(versions) - 1,
            delete_markers=markers,
            written=reply.get("LastModified"),
        )

    def _get(self, key: str) -> bytes | None:
        self._listed = None  # about to write: what was listed may be stale
        found = self._read(key, fresh=True)
        return None if found is None else found.data

    def _keys(self, prefix: str) -> list[str]:
        full = self._key(prefix)
        listing = self._list(full)
        self._listed = (full, listing)
        cut = len(self.prefix) + 1 if self.prefix else 0
        return [key[cut:] for key, (versions, _) in listing.items() if versions]

    def _set_legal_hold(self, key: str, on: bool) -> None:
        self.client.put_object_legal_hold(
            Bucket=self.bucket,
            Key=self._key(key),
            **_version(self._sealed_version(key)),
            LegalHold={"Status": "ON" if on else "OFF"},
        )

    def _legal_hold(self, key: str) -> bool:
        reply = self.client.get_object_legal_hold(
            Bucket=self.bucket,
            Key=self._key(key),
            **_version(self._sealed_version(key)),
        )
        return bool(reply.get("LegalHold", {}).get("Status") == "ON")


_Versions = tuple[list[str], int]
"""A key's version ids, newest first, and how many delete markers it has."""


def _version(version_id: str | None) -> dict[str, str]:
    """The ``VersionId`` argument naming one version (none in an unversioned
    bucket, which lists its objects as version ``null``)."""
    if version_id is None or version_id == "null":
        return {}
    return {"VersionId": version_id}


def _boto3_client() -> Any:
    try:
        import boto3
    except ImportError as e:
        raise ConfigError(
            "sealing to S3 needs boto3",
            hint="pip install 'mltrail[seal]'",
        ) from e
    # A session of its own: boto3's default session caches the credentials it
    # resolved first, so a process that used S3 before (another bucket, other
    # keys) would sign with those instead of what the environment says now.
    return boto3.session.Session().client("s3")


def open_worm(url: str) -> WormStore:
    """The seal storage ``url`` names: ``s3://bucket[/prefix]``, ``file://PATH``
    or a folder path.

    Raises:
        InputError: an unsupported scheme or a malformed S3 URL.
    """
    if url.startswith("s3://"):
        bucket, _, prefix = url.removeprefix("s3://").partition("/")
        if not bucket:
            raise InputError(f"{url!r} names no bucket", hint="s3://BUCKET/PREFIX")
        return S3Worm(bucket, prefix)
    if url.startswith("file://"):
        return LocalWorm(Path(url.removeprefix("file://")))
    if "://" in url:
        raise InputError(
            f"cannot seal to {url!r}",
            hint="give s3://BUCKET/PREFIX or a folder path",
        )
    return LocalWorm(Path(url).expanduser().resolve())
