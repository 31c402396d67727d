"""Which locations are remote (fsspec URLs), and URLs without their credentials.

Kept apart from :mod:`mltrail.capture.data.remote` so that telling a path from a URL
loads nothing heavy: ``mltrail data hash`` of a local folder asks it first.
"""

from __future__ import annotations

import re
from urllib.parse import parse_qsl, urlsplit, urlunsplit

__all__ = ["is_remote", "public_url", "scheme_of", "scrub_urls"]

_SCHEME = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*)://")
_LOCAL_SCHEMES = frozenset({"file", "local"})
_SECRET_PARAM = re.compile(
    r"sig|token|secret|passw|pwd|credential|auth|key|policy|expires|^x-amz-|^x-goog-",
    re.IGNORECASE,
)
_USERINFO = re.compile(r"(?<=://)[^/\s@'\"]+@")
_QUERY = re.compile(r"(?<=://)([^\s'\"?]*)\?[^\s'\")]*")


def is_remote(location: str) -> bool:
    """Whether ``location`` is a URL fsspec can open (``file://`` counts as local).

    Without fsspec installed, any ``scheme://`` other than ``file://`` counts as
    remote, so that hashing it reports the missing extra.
    """
    scheme = scheme_of(location)
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


def scheme_of(location: str) -> str | None:
    """The scheme of ``location`` (``s3``, ``https``...), lower case, or None."""
    match = _SCHEME.match(location)
    return match.group(1).lower() if match else None


def scrub_urls(text: str, url: str, shown: str) -> str:
    """``text`` without the credentials or query strings of the URLs it mentions."""
    text = " ".join(text.replace(url, shown).split())
    return _QUERY.sub(r"\1", _USERINFO.sub("", text))
