"""Upstream sources: register them, re-fingerprint them, flag the models they feed.

A source is a local file or folder, an fsspec URL, or a SQL query's result over a
database URL (``sqlite:///path.db``, ``postgresql://user@host/db``). Its
fingerprint is a dataset id (the Merkle root of its manifest) or, for a query,
the SHA-256 of the result's canonical JSON lines. ``check_sources`` writes
``source.checked`` for each source and, for each one that changed,
``model.flagged`` for every model downstream of a run that read a file that
changed (see :mod:`mltrail.record.upstream`), all in one atomic append.

A check that cannot read its source (a credential missing, the store down, a
timeout) is recorded as a failure: ``source.checked`` with the ``error`` and no
fingerprint, as it always was. It is never a fingerprint to compare with: the
index keeps the last successful check's, and since when the checks fail (ADR
0010, amendment "a failed source check is a failure, never a fingerprint").

A check is a verdict (a CI gate): it reads every file of a local source and does
not take hashes from the home's hash cache, which whoever can write the home can
forge (ADR 0035, amendment "verdicts read every file"); ``trust_cache=True`` does,
and ``source.checked`` says which (``hashed``: ``content`` or ``cache``).
Registering a source is a capture and uses the cache as ``mltrail run`` does.

Database passwords are never stored: the URL is recorded without one, and the
driver finds it where it normally does (``PGPASSWORD``, ``~/.pgpass``). Any other
secret of a location (a URL's password, a token as its user name, a presigned
URL's ``X-Amz-Signature``, a SAS ``sig``) is recorded as a keyed commitment
(ADR 0013), and a check reads the location without it: the store finds its
credentials the usual way (AWS variables, ``~/.netrc``, fsspec's configuration).
"""

from __future__ import annotations

import hashlib
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from mltrail.audit.flags import Flag, clear_flag, list_flags
from mltrail.audit.trace import latest_writer
from mltrail.capture.data.hashcache import HashCache, default_cache_path
from mltrail.capture.data.remote import is_remote
from mltrail.capture.run.blob import Blob
from mltrail.capture.run.commitment import MARKER_PATTERN
from mltrail.capture.run.mask import MASKED_PATTERN
from mltrail.capture.run.redact import redact_tree
from mltrail.core.canonical import canonical_bytes
from mltrail.core.diff_data import diff_manifests
from mltrail.errors import CaptureError, InputError
from mltrail.ledger.ledger import Draft
from mltrail.record.datasets import dataset_body
from mltrail.record.upstream import downstream_model_outputs, runs_reading_changes

if TYPE_CHECKING:
    from mltrail.core.diff_data import FileChange
    from mltrail.index import Index
    from mltrail.ledger.home import Home

__all__ = [
    "MASKED_HINT",
    "WITHHELD_HINT",
    "CheckResult",
    "Flag",
    "check_sources",
    "clear_flag",
    "list_flags",
    "list_sources",
    "masked_location",
    "readable_location",
    "register_source",
]

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
_MARKER = re.compile(MARKER_PATTERN)
_SQL_SCHEMES = ("sqlite", "postgresql", "postgres")
_SAMPLE = 10


@dataclass
class CheckResult:
    """What one source check found."""

    name: str
    changed: bool
    fingerprint: str | None
    previous: str | None
    flagged: list[str] = field(default_factory=list)
    changes: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    hashed: str | None = None  # content, cache; None: not files (a query)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return dict(self.__dict__)


# -- fingerprints ----------------------------------------------------------------


def _kind(location: str, query: str | None) -> str:
    scheme = location.split("://", 1)[0].lower() if "://" in location else ""
    if scheme.split("+")[0] in _SQL_SCHEMES:
        if not query:
            raise InputError(
                f"{location} is a database: say which rows with --query",
                hint="e.g. --query 'SELECT * FROM applications ORDER BY id'",
            )
        return "sql"
    if query:
        raise InputError("--query applies to database URLs (sqlite://, postgresql://)")
    return "url" if is_remote(location) else "path"


def _without_password(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host += f":{parts.port}"
    user = f"{parts.username}@" if parts.username else ""
    return urlunsplit(parts._replace(netloc=user + host))


def _recorded_location(home: Home, location: str) -> str:
    """``location`` as ``source.registered`` keeps it: its secrets (URL
    passwords, tokens as user names, secret query values) as commitment markers
    under the home's key, as in a run's bodies (ADR 0013). A location with none
    is kept as given, and the commitment key is not made for it."""
    if not redact_tree(location).secrets:
        return location
    from mltrail.record.recorder import secret_guard

    return secret_guard(home.path, os.environ).clean_text(location)


WITHHELD_HINT = (
    "the credentials of the URL it was registered with were not stored (ADR 0013):"
    " give them the way the store reads them (PGPASSWORD or ~/.pgpass for a"
    " database, AWS variables for s3://, ~/.netrc for http(s)://, fsspec's"
    " configuration); a signed URL's query (X-Amz-Signature, sig) cannot be"
    " given apart from it: register the store's own URL (s3://, az://) instead"
)
MASKED_HINT = (
    "its location held a credential that cannot be given apart from it (in its"
    " host or path): it was stored masked and the source cannot be read again; register it"
    " anew under a URL whose credential the store reads from the environment"
)


def masked_location(location: str) -> bool:
    """Whether a recorded ``location`` holds a masked credential
    (``[MASKED:secret]``, a token in its path): no check can read it."""
    return (
        MASKED_PATTERN.search(location.encode("utf-8", "surrogateescape")) is not None
    )


def readable_location(location: str) -> str:
    """The recorded ``location`` a check reads: a user name or password that is a
    commitment marker or a mask is left out, and so is a query parameter or a
    fragment holding one (the store takes its credentials from the environment,
    as for a database)."""
    if not _withheld(location):
        return location
    parts = urlsplit(location)
    userinfo, at, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    if at and _withheld(user):
        netloc = host
    elif at and _withheld(password) and parts.scheme.lower() not in ("http", "https"):
        netloc = f"{user}@{host}"  # the password alone is found elsewhere
    elif at and _withheld(password):  # an HTTP client sends a user alone as is
        netloc = host  # and ~/.netrc gives the user with the password
    else:
        netloc = parts.netloc
    query = "&".join(p for p in parts.query.split("&") if not _withheld(p))
    fragment = "" if _withheld(parts.fragment) else parts.fragment
    return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=fragment))


def _withheld(text: str) -> bool:
    """Whether ``text`` holds a secret's commitment marker or mask."""
    return _MARKER.search(text) is not None or masked_location(text)


def _fingerprint(
    home: Home, kind: str, location: str, query: str | None, *, read_cache: bool = True
) -> dict[str, Any]:
    """The fingerprint fields of a source's body (manifest as a stored blob).

    Unless ``read_cache``, every file is read (the cache is only written to).
    """
    if kind == "sql":
        return _query_fingerprint(location, query or "")
    cache = HashCache(default_cache_path(home.path), read=read_cache)
    try:
        body = dataset_body("source", location, cache=cache)
    finally:
        cache.close()
    manifest = body["manifest"]
    ref = manifest
    if isinstance(manifest, Blob):
        ref = {**home.ledger.put_blob(manifest.data), "media_type": manifest.media_type}
    return {
        "fingerprint": body["dataset"],
        "files": body.get("files"),
        "bytes": body.get("bytes"),
        "manifest": ref,
    }


def _query_fingerprint(location: str, query: str) -> dict[str, Any]:
    rows = _run_query(location, query)
    digest = hashlib.sha256()
    for row in rows:
        digest.update(canonical_bytes(row) + b"\n")
    return {"fingerprint": digest.hexdigest(), "rows": len(rows)}


def _run_query(location: str, query: str) -> list[list[Any]]:
    scheme = location.split("://", 1)[0].lower().split("+")[0]
    try:
        if scheme == "sqlite":
            return _sqlite_rows(location, query)
        return _postgres_rows(location, query)
    except InputError:
        raise
    except Exception as e:  # any driver error is the user's to fix
        raise InputError(
            f"the query on {location} failed: {type(e).__name__}: {e}",
            hint="check the URL, the query, and that the database is reachable",
        ) from e


def _sqlite_rows(location: str, query: str) -> list[list[Any]]:
    import sqlite3

    # SQLAlchemy's form: sqlite:///relative.db, sqlite:////absolute/path.db
    path = location.split("://", 1)[1].removeprefix("/")
    if not Path(path).exists():
        raise InputError(f"no SQLite database at {path}")
    _check_read_query(query)  # read-only still runs ATTACH and VACUUM INTO
    conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return [[_json_value(v) for v in row] for row in conn.execute(query)]
    finally:
        conn.close()


def _postgres_rows(location: str, query: str) -> list[list[Any]]:
    try:
        import psycopg
    except ImportError as e:
        raise InputError(
            "PostgreSQL sources need psycopg", hint="pip install 'mltrail[postgres]'"
        ) from e
    _check_read_query(query)
    url = location.replace("postgresql+psycopg://", "postgresql://", 1)
    conn = psycopg.connect(url, connect_timeout=10)
    try:
        conn.read_only = True  # BEGIN READ ONLY
        with conn.cursor() as cur:
            # prepared: the server refuses more than one statement ("...; COMMIT;
            # DELETE ..."), which the simple protocol would run one by one
            cur.execute(query, prepare=True)
            return [[_json_value(v) for v in row] for row in cur.fetchall()]
    finally:
        conn.rollback()  # nothing the query did is kept, whatever it was
        conn.close()


_READ_QUERY = re.compile(r"(?:\s|--[^\n]*\n|/\*.*?\*/|\()*(select|with|values|table)\b",
                         re.IGNORECASE | re.DOTALL)  # fmt: skip


def _check_read_query(query: str) -> None:
    """Refuse a source query that is not a query: the query is a writer's word, and
    ``sources check`` runs it with the checker's database credentials."""
    if not _READ_QUERY.match(query):
        raise InputError(
            "a source query must be one SELECT (or WITH, VALUES, TABLE) statement; "
            f"not running {query[:60]!r}",
            hint="the query was recorded by whoever registered the source",
        )


def _json_value(value: Any) -> Any:
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value).hex()
    return str(value)  # dates, decimals, uuids: their text form


# -- register, check --------------------------------------------------------------


def register_source(
    home: Home,
    index: Index,
    name: str,
    location: str,
    *,
    query: str | None = None,
    note: str | None = None,
    cwd: Path | None = None,
) -> dict[str, Any]:
    """Fingerprint a source and record ``source.registered``; return the body.

    Raises:
        InputError: a bad name, a name already taken, a missing path, a failing query.
    """
    if not _NAME.fullmatch(name):
        raise InputError(f"source name {name!r}: use letters, digits, . _ - (max 100)")
    if index.query("SELECT 1 FROM sources WHERE name = ?", (name,)):
        raise InputError(f"a source named {name!r} is already registered")
    kind = _kind(location, query)
    if kind == "path":
        path = Path(location) if cwd is None else cwd / location
        if not path.exists():
            raise InputError(f"source {location} does not exist")
        location = str(path.resolve())
    elif kind == "sql":
        location = _without_password(location)
    recorded = _recorded_location(home, location) if kind != "path" else location
    body: dict[str, Any] = {"name": name, "location": recorded, "type": kind}
    if query:
        body["query"] = query
    body.update(_fingerprint(home, kind, location, query))
    if note:
        body["note"] = note
    home.ledger.append("source.registered", body)
    return body


def list_sources(index: Index) -> list[dict[str, Any]]:
    """Every registered source with the fingerprint of its last check that read
    it (``checked``: when), and, while its checks fail, since when
    (``failing_since``, the first failed check after that one) and the latest
    ``error`` (the rows checked against their records first; on a difference the
    index is rebuilt)."""
    from mltrail.index.check import repaired, sources_differ

    repaired(index, sources_differ(index))
    rows = index.query(
        "SELECT name, location, kind, fingerprint, checked, failing, error "
        "FROM sources ORDER BY name"
    )
    keys = ("name", "location", "type", "fingerprint", "checked", "failing_since",
            "error")  # fmt: skip
    return [dict(zip(keys, row, strict=True)) for row in rows]


def check_sources(
    home: Home,
    index: Index,
    names: list[str] | None = None,
    *,
    trust_cache: bool = False,
) -> list[CheckResult]:
    """Re-fingerprint sources; record the checks and flag downstream models.

    Every file of a local source is read unless ``trust_cache`` (see the module
    docstring).

    Raises:
        InputError: a named source is not registered.
    """
    sources = {s["name"]: s for s in list_sources(index)}
    for name in names or []:
        if name not in sources:
            raise InputError(
                f"no source named {name!r}", hint="see `mltrail sources list`"
            )
    results, drafts = [], []
    for name in names or sorted(sources):
        result, entries = _check_one(home, index, sources[name], trust_cache)
        results.append(result)
        drafts.extend(entries)
    if drafts:
        home.ledger.append_many(drafts)
    return results


def _check_one(
    home: Home, index: Index, source: dict[str, Any], trust_cache: bool
) -> tuple[CheckResult, list[Draft]]:
    name, previous = source["name"], source["fingerprint"]
    spec = _latest_body(home, index, name)
    location = readable_location(source["location"])
    try:
        if masked_location(location):
            raise InputError(MASKED_HINT)
        fields = _fingerprint(
            home, source["type"], location, spec.get("query"), read_cache=trust_cache
        )
    except (InputError, CaptureError) as e:  # CaptureError: down, 5xx, a timeout
        error = str(e)
        if location != source["location"] and not masked_location(location):
            error = f"{error}; {WITHHELD_HINT}"
        body = {"name": name, "fingerprint": None, "previous": previous,
                "changed": False, "error": error}  # fmt: skip
        return CheckResult(name, False, None, previous, error=error), [
            Draft("source.checked", body)
        ]
    if source["type"] == "path":  # a URL's store checksums are not the cache's
        fields["hashed"] = "cache" if trust_cache else "content"
    result = CheckResult(
        name,
        fields["fingerprint"] != previous,
        fields["fingerprint"],
        previous,
        hashed=fields.get("hashed"),
    )
    files: tuple[FileChange, ...] | None = None
    if result.changed:
        result.changes, files = _changes(
            home, spec.get("manifest"), fields.get("manifest")
        )
    drafts = _flags(home, index, source, result, files) if result.changed else []
    body = {"name": name, "previous": previous, "changed": result.changed, **fields}
    if result.changes:
        body["changes"] = result.changes
    body["flagged"] = result.flagged
    return result, [Draft("source.checked", body), *drafts]


def _latest_body(home: Home, index: Index, name: str) -> dict[str, Any]:
    """The body of the source's registration, with the manifest of its latest check."""
    rows = index.query("SELECT seq, checked_seq FROM sources WHERE name = ?", (name,))
    seq, checked = rows[0]
    body = dict(home.ledger.record(seq).entry.body)
    if checked is not None and checked != seq:
        latest = home.ledger.record(checked).entry.body
        if latest.get("manifest"):
            body["manifest"] = latest["manifest"]
    return body


def _manifest_bytes(home: Home, ref: dict[str, Any]) -> bytes | None:
    try:
        return home.ledger.get_blob(str(ref.get("blob")))
    except InputError:  # purged (or missing: verify names it)
        return None


def _changes(
    home: Home, old_ref: Any, new_ref: Any
) -> tuple[dict[str, Any], tuple[FileChange, ...] | None]:
    """A summary of the files that differ, and the differences (None: unknown)."""
    if not isinstance(old_ref, dict) or not isinstance(new_ref, dict):
        return {}, None
    old, new = _manifest_bytes(home, old_ref), _manifest_bytes(home, new_ref)
    if old is None or new is None:  # a manifest was purged: no file-level summary
        return {}, None
    files = diff_manifests(old, new)
    marks = {"added": "+", "removed": "-", "changed": "~"}
    sample = [f"{marks[kind]}{c.path}" for kind in marks for c in files.changes
              if c.kind == kind]  # fmt: skip
    summary = {kind: files.count(kind) for kind in marks} | {"sample": sample[:_SAMPLE]}
    return summary, files.changes


def _flags(
    home: Home,
    index: Index,
    source: dict[str, Any],
    result: CheckResult,
    files: tuple[FileChange, ...] | None,
) -> list[Draft]:
    """``model.flagged`` for each model made from a file of the source that changed."""
    from mltrail.index.check import repaired, seqs_differ

    name = source["name"]
    sql = "SELECT model, seq FROM flags WHERE source = ? AND cleared_seq IS NULL"
    rows = index.query(sql, (name,))
    if repaired(index, seqs_differ(index, [seq for _, seq in rows])):
        rows = index.query(sql, (name,))
    open_flags = {model for model, _ in rows}

    def get_blob(digest: str) -> bytes | None:
        return _manifest_bytes(home, {"blob": digest})

    location = readable_location(source["location"])
    runs = runs_reading_changes(index, get_blob, name, location, files)
    drafts = []
    for node in downstream_model_outputs(index, (f"run:{r}" for r in runs), get_blob):
        if node.id in open_flags:
            continue
        kind, _, ident = node.id.partition(":")
        run, path = latest_writer(index, node.id)
        body = {
            "model": ident,
            "model_type": kind,
            "status": "open",
            "source": name,
            "run": run,
            "path": dict(node.details).get("path") or path,
            "reason": f"source {name} changed: {result.previous} -> {result.fingerprint}",
        }
        drafts.append(Draft("model.flagged", body))
        result.flagged.append(node.id)
    return drafts
