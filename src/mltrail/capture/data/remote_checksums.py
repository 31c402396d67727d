"""Full-object SHA-256 checksums that stores keep of their own (so no bytes are read).

Trusted: S3 ``ChecksumSHA256`` of single-part objects (HeadObject with
``ChecksumMode=ENABLED``), the Hugging Face Hub's ``lfs.sha256``, and an HTTP
``Digest``/``Repr-Digest: sha-256=...`` header on an uncompressed response. A
multipart S3 checksum is a checksum of checksums, not the file's: refused.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Any

__all__ = ["store_sha256"]

_HTTP = frozenset({"http", "https"})
_S3 = frozenset({"s3", "s3a"})
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MULTIPART_ETAG = re.compile(r'-\d+"?$')
_DIGEST_SHA256 = re.compile(r"sha-256=:?([A-Za-z0-9+/=]+):?", re.IGNORECASE)


def store_sha256(
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
