"""``HttpStore``: the Store read contract over an mltrail server's API (v1).

A URL names one ledger of a server: ``http://127.0.0.1:8080/ledgers/team-a`` or
``https://host/prefix/ledgers/team-a`` (the API lives under ``/api/v1`` of the
part before ``/ledgers/``). The token (``MLTRAIL_TOKEN``) is sent as a bearer
token and never appears in a message, a log line or a stored setting.

A remote store is sequenced by the server: :meth:`HttpStore.append` is refused;
:meth:`HttpStore.append_entries` posts entries the author signed, under one
``Idempotency-Key`` for the logical append, reused when a connection error or a
5xx answer makes it retry (bounded backoff), so a retry never appends twice.
What the answer says (seq, prev, the new checkpoint) is checked by the ledger,
not here: stores hold no hashing or signing logic. A row's hash is the one the
opener derives from the bytes the server sent (``row_hash``, the ledger layer's
record hash: the client does not take the server's word for it), else the hash
column the server sends with each record.

A snapshot (``Store.snapshot``, what a verification reads in) cannot hold a
transaction open on the server: it pins the size of one head read instead,
and every read inside answers as of that size (:class:`_Pin`): records stop
at it, Merkle nodes are those of subtrees within it, and checkpoints,
evidence and purges the server lists are read once, those of a size beyond
it left out when a head read after the list explains them (the ledger grew
meanwhile). A blob that a purge beyond the pinned size erased cannot be
read as of it: ``StaleSnapshotError``, and the reads begin again in a new
snapshot. Pinning only narrows what is read; whoever reads checks it all.
ADR 0004, amendment of 2026-12-08.

HTTP answers map onto the error tree: 401/403 -> ``AuthError`` (exit 5), any
other 4xx -> ``InputError`` (exit 2), 5xx and unreachable servers ->
``StoreError`` (exit 4). ``httpx2`` (extra ``mltrail[client]``) is imported
when the first store is opened, so an embedded home never loads it.
"""

from __future__ import annotations

import base64
import logging
import math
import time
import uuid
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from mltrail.errors import AuthError, ConfigError, InputError, StoreError
from mltrail.storage.base import (
    EMPTY_STORE_HEAD,
    CheckpointRow,
    StaleSnapshotError,
    Store,
    StoredEvidence,
    StoredPurge,
    StoredRow,
    StoreHead,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
    from contextlib import AbstractContextManager

    from mltrail.storage.base import NewBatch, Prepare, RunHold

__all__ = ["HttpStore", "ServerLocation", "parse_server_url"]

PAGE = 1000
"""Records asked for per request (the server allows up to 5000)."""
NODE_SPAN = 100_000
"""Merkle nodes asked for per request (the server's limit)."""
TOKEN_ENV = "MLTRAIL_TOKEN"  # noqa: S105 - the name of a variable
_RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
MAX_RETRY_AFTER = 30.0
"""Seconds a retry waits at most, whatever the server's ``Retry-After`` asks."""
_log = logging.getLogger("mltrail")


class ServerLocation:
    """Where a ledger lives on a server: the API base and the ledger's name."""

    def __init__(self, api: str, ledger: str, url: str) -> None:
        self.api = api
        self.ledger = ledger
        self.url = url

    @property
    def ledger_api(self) -> str:
        """The API path of the ledger (``.../api/v1/ledgers/<name>``)."""
        return f"{self.api}/ledgers/{self.ledger}"


def parse_server_url(url: str) -> ServerLocation:
    """Split ``http(s)://host[:port][/prefix]/ledgers/<name>`` into API base and name.

    Raises:
        InputError: not such a URL (no ledger named, credentials in it, a query).
    """
    parts = urlsplit(url)
    hint = "e.g. MLTRAIL_URL=https://mltrail.example.org/ledgers/team-a"
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"{url!r} is not an http(s) URL of a ledger", hint=hint)
    if parts.username or parts.password:
        raise InputError(
            "the server URL must not carry credentials",
            hint="put the token in MLTRAIL_TOKEN",
        )
    path = parts.path.rstrip("/")
    prefix, sep, name = path.rpartition("/ledgers/")
    if not sep or not name or "/" in name:
        raise InputError(f"{url!r} names no ledger of the server", hint=hint)
    prefix = prefix.removesuffix("/api/v1")
    base = urlunsplit((parts.scheme, parts.netloc, prefix + "/api/v1", "", ""))
    shown = urlunsplit((parts.scheme, parts.netloc, f"{prefix}/ledgers/{name}", "", ""))
    return ServerLocation(base, name, shown)


def _httpx() -> Any:
    try:
        import httpx2
    except ImportError as e:
        raise ConfigError(
            "talking to an mltrail server needs httpx2, which is not installed",
            hint="pip install 'mltrail[client]'",
        ) from e
    return httpx2


_Item = TypeVar("_Item")


class HttpStore(Store):
    """A ledger kept by an mltrail server, read (and appended to) over its API.

    Args:
        url: the ledger's URL (see :func:`parse_server_url`).
        token: the bearer token (``mlt_<id>_<secret>``); None sends none.
        timeout: seconds per request.
        retries: further tries after a connection error or a 5xx answer.
        backoff: seconds before the first retry (doubled each time).
        transport: an ``httpx2`` transport (tests: ``MockTransport``).
        row_hash: derives a record's hash from its bytes (the ledger layer's
            record hash); None: take the hash the server sends with it.
    """

    remote = True

    def __init__(
        self,
        url: str,
        token: str | None,
        *,
        timeout: float = 60.0,
        retries: int = 4,
        backoff: float = 0.25,
        transport: Any = None,
        row_hash: Callable[[bytes], bytes] | None = None,
    ) -> None:
        self.server = parse_server_url(url)
        self._row_hash = row_hash
        self.location = self.server.url
        self.retries = retries
        self.backoff = backoff
        httpx = _httpx()
        headers = {"User-Agent": "mltrail"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self._given_transport = transport
        self._headers = headers
        self._client = self._new_client(timeout)
        self._network_errors = (httpx.TransportError,)
        self._info: dict[str, Any] | None = None
        self._pin: _Pin | None = None

    def _new_client(self, timeout: Any) -> Any:
        httpx = _httpx()
        transport = self._given_transport
        if transport is None and self.server.api.startswith("http://"):
            transport = httpx.HTTPTransport(verify=False)  # no TLS: skip its context
        return httpx.Client(headers=self._headers, timeout=timeout, transport=transport)

    # -- run liveness (ADR 0029) ---------------------------------------------

    def _hold_run(self, run_id: str) -> RunHold | None:
        """Ask the server to hold the run live while a request stays open; an
        unheld run (an older server, no slot left, a network error) is still
        recorded, but a run another process holds is refused, as by every
        store that holds runs.

        Raises:
            InputError: the server holds the run for another process (409).
        """
        from mltrail.storage.http_hold import HttpRunHold

        httpx = _httpx()
        client = self._new_client(httpx.Timeout(10.0, read=None))
        url = f"{self.server.ledger_api}/runs/{run_id}/hold"
        hold = HttpRunHold.start(client, url)
        if not hold.held:
            hold.release()
            if hold.status in (429, 503):  # no hold slot left for this user
                _log.warning(
                    "mltrail: the server did not hold run %s live: %s; it is "
                    "recorded, but other hosts see it stale until it ends",
                    run_id,
                    hold.problem,
                )
            if hold.status == 409:
                raise InputError(
                    f"the mltrail server refused to hold run {run_id}: {hold.problem}",
                    hint="run ids are unique: start a new run instead of "
                    "reusing this id",
                )
            return None
        return hold

    def _live_runs(self, run_ids: Collection[str]) -> set[str] | None:
        if not run_ids:
            return set()
        response = self.request(
            "GET", "/runs/live", params={"runs": ",".join(run_ids)}, allow=(404,)
        )
        if response.status_code == 404:
            return None  # a server without holds
        return {str(run) for run in _json(response).get("live", [])}

    # -- the wire ------------------------------------------------------------

    def request(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        allow: tuple[int, ...] = (),
        retry: bool = True,
    ) -> Any:
        """Send a request to the ledger's API; retry what is safe to retry
        (``retry``: reads, blob uploads and keyed appends; not key registrations).
        A retry after a 429 or 503 waits what its ``Retry-After`` asks (at most
        ``MAX_RETRY_AFTER`` seconds), when longer than the backoff.

        Returns the response (its status is 2xx or one of ``allow``).

        Raises:
            AuthError: 401 or 403.
            InputError: another 4xx.
            StoreError: a 5xx or a 429 (this user's share of the server is in
                use) after the retries, or the server is unreachable.
        """
        url = self.server.ledger_api + path
        tries = self.retries + 1 if retry else 1
        for attempt in range(tries):
            last = attempt == tries - 1
            wait = self.backoff * 2**attempt
            try:
                response = self._client.request(
                    method,
                    url,
                    params=params,
                    json=json,
                    content=content,
                    headers=headers,
                )
            except self._network_errors as e:
                if last:
                    raise StoreError(
                        f"cannot reach the mltrail server at {self.location}: "
                        f"{type(e).__name__}: {e}",
                        hint="check MLTRAIL_URL and that the server is running",
                    ) from e
            else:
                if response.status_code not in _RETRY_STATUSES or last:
                    return _checked(response, self.location, allow)
                wait = max(wait, _retry_after(response) or 0.0)
            time.sleep(wait)
        raise AssertionError("unreachable")  # pragma: no cover

    def get_json(self, path: str, **params: Any) -> Any:
        """GET ``path`` of the ledger's API and parse its JSON answer."""
        return _json(self.request("GET", path, params=params or None))

    def info(self) -> dict[str, Any]:
        """``GET /ledgers/<name>``: name, origin, size, genesis key, log keys and
        (servers that say so) the caller's identity and role; cached."""
        if self._info is None:
            self._info = _json(self.request("GET", ""))
        return self._info

    # -- appending through the server ----------------------------------------

    def append_entries(
        self, entries: Sequence[Mapping[str, Any]], *, key: str | None = None
    ) -> dict[str, Any]:
        """Post signed entries (their JSON, ``sig`` included); the server appends
        them atomically and answers ``{"records": [{"seq","prev","hash"}],
        "size", "checkpoint"}``. One idempotency key (``key``, else a new uuid4)
        covers every retry, so the entries land once."""
        headers = {"Idempotency-Key": key or str(uuid.uuid4())}
        body = {"entries": list(entries)}
        response = self.request("POST", "/entries", json=body, headers=headers)
        return dict(_json(response))

    def register_key(
        self, public_key: bytes, identity: str, proof: bytes
    ) -> dict[str, Any]:
        """``POST /keys``: register an author key; returns ``{"seq", "key"}``."""
        body = {
            "public_key": base64.b64encode(public_key).decode(),
            "identity": identity,
            "proof": base64.b64encode(proof).decode(),
        }
        return dict(_json(self.request("POST", "/keys", json=body, retry=False)))

    def list_keys(self) -> list[dict[str, Any]]:
        """``GET /keys``: every key of the ledger with its identity and validity."""
        return list(self.get_json("/keys")["keys"])

    def consistency_hashes(self, old: int, new: int) -> list[bytes]:
        """The server's RFC 9162 consistency proof from ``old`` to ``new`` records."""
        found = self.get_json("/proofs/consistency", old=old, new=new)
        return [_hex(h) for h in found["hashes"]]

    def inclusion_hashes(self, seq: int, size: int) -> list[bytes]:
        """The server's RFC 9162 inclusion proof of ``seq`` in ``size`` records."""
        found = self.get_json("/proofs/inclusion", seq=seq, size=size)
        return [_hex(h) for h in found["hashes"]]

    def _append(self, prepare: Prepare) -> NewBatch:
        raise StoreError(
            f"{self.location} is a ledger kept by an mltrail server: the server "
            "assigns seq and prev, so entries are posted with append_entries"
        )

    # -- reading -------------------------------------------------------------

    def _snapshot(self) -> AbstractContextManager[object]:
        return self._pinned()

    @contextmanager
    def _pinned(self) -> Iterator[None]:
        """Pin the size of one head read for the reads inside (see the module)."""
        self._pin = _Pin(self._head_now())
        try:
            yield
        finally:
            self._pin = None

    def _head(self) -> StoreHead:
        return self._head_now() if self._pin is None else self._pin.head

    def _head_now(self) -> StoreHead:
        found = self.get_json("/head")
        if not found["size"]:
            return EMPTY_STORE_HEAD
        return StoreHead(
            int(found["size"]),
            _hex(found["last_hash"]),
            found.get("last_time"),
            tuple(_hex(h) for h in found.get("frontier") or ()),
            int(found.get("key_epoch") or 0),
            floor_time=found.get("floor_time"),
            checkpoint=found.get("checkpoint"),
        )

    def _grown_to(self) -> int:
        """The size a head read now gives (what a list read before it may show)."""
        return self._head_now().size

    def _rows(self, start: int, stop: int | None) -> Iterator[StoredRow]:
        yield from self._pages({"start": start, "stop": self._stop(stop)})

    def _rows_of_kinds(self, kinds: tuple[str, ...], start: int) -> Iterator[StoredRow]:
        if kinds:
            query = {"start": start, "stop": self._stop(None), "kinds": ",".join(kinds)}
            yield from self._pages(query)

    def _stop(self, stop: int | None) -> int | None:
        """``stop``, cut to the pinned size inside a snapshot."""
        if self._pin is None:
            return stop
        size = self._pin.head.size
        return size if stop is None else min(stop, size)

    def _pages(self, params: dict[str, Any]) -> Iterator[StoredRow]:
        start: int | None = params["start"]
        stop: int | None = params.get("stop")
        while start is not None and (stop is None or start < stop):
            query = {k: v for k, v in params.items() if v is not None and k != "start"}
            found = self.get_json("/records", start=start, limit=PAGE, **query)
            last: int | None = None
            for item in found["records"]:
                seq = int(item["seq"])
                if stop is not None and seq >= stop:  # beyond what was asked
                    return
                data = base64.b64decode(item["data"])
                yield StoredRow(seq, self._hash_of(item, data), data)
                last = seq if last is None else max(last, seq)
            start = _next_page(found.get("next"), start, last)

    def _hash_of(self, item: Mapping[str, Any], data: bytes) -> bytes:
        if self._row_hash is not None:
            return self._row_hash(data)
        if "hash" not in item:
            raise StoreError(
                f"the server of {self.location} sent a record without its hash",
                hint="open the store with a row_hash, or upgrade the server",
            )
        return _hex(item["hash"])

    def _node(self, level: int, index: int) -> bytes | None:
        if self._pin is not None and (index + 1) << level > self._pin.head.size:
            return None  # not a subtree of the pinned tree
        response = self.request("GET", f"/nodes/{level}/{index}", allow=(404,))
        return None if response.status_code == 404 else _hex(_json(response)["hash"])

    def _node_range(self, level: int, start: int, stop: int) -> dict[int, bytes]:
        if self._pin is not None:
            stop = min(stop, self._pin.head.size >> level)
        nodes: dict[int, bytes] = {}
        for begin in range(start, stop, NODE_SPAN):
            end = min(stop, begin + NODE_SPAN)
            found = self.get_json("/nodes", level=level, start=begin, stop=end)
            nodes.update(
                {
                    int(i): _hex(h)
                    for i, h in found["nodes"].items()
                    if start <= int(i) < stop
                }
            )
        return nodes

    def _time_floor(self) -> tuple[str, int] | None:
        # asked by appends only, which a snapshot never holds: read as it is now
        found = self.get_json("/time-floor")
        return None if found.get("time") is None else (found["time"], found["seq"])

    def _latest_checkpoint(self) -> CheckpointRow | None:
        if self._pin is not None:
            found = self._checkpoints()
            return found[-1] if found else None
        response = self.request("GET", "/checkpoints/latest", allow=(404,))
        if response.status_code == 404:
            return None
        return _checkpoint(_json(response))

    def _checkpoints(self) -> list[CheckpointRow]:
        if self._pin is None:
            return self._checkpoints_now()
        return self._pinned_list(
            "checkpoints", self._checkpoints_now, lambda c: (c.size, _note_size(c.text))
        )

    def _pinned_list(
        self,
        name: str,
        read: Callable[[], list[_Item]],
        sizes: Callable[[_Item], tuple[int, *tuple[int | None, ...]]],
    ) -> list[_Item]:
        """Inside a snapshot: the list ``read`` gives, read once, less the
        items the ledger grew into after the pin (``_Pin.grown_into`` of
        ``sizes(item)``: the size it is filed under, then the size its own
        text says, if it has one)."""
        pin = self._pin
        assert pin is not None
        kept = pin.lists.get(name)
        if kept is None:
            listed = read()
            grown = self._grown_to()
            kept = [x for x in listed if not pin.grown_into(grown, *sizes(x))]
            pin.lists[name] = kept
        return list(kept)

    def _checkpoints_now(self) -> list[CheckpointRow]:
        return [_checkpoint(c) for c in self.get_json("/checkpoints")["checkpoints"]]

    def _put_blob(self, digest: str, data: bytes) -> bool:
        headers = {"Content-Type": "application/octet-stream"}
        response = self.request(
            "PUT", f"/blobs/{digest}", content=data, headers=headers
        )
        return bool(_json(response).get("stored", True))

    def _get_blob(self, digest: str) -> bytes | None:
        response = self.request("GET", f"/blobs/{digest}", allow=(404, 410))
        if response.status_code not in (404, 410):
            return bytes(response.content)
        if self._pin is not None and response.status_code == 410:
            self._check_erased_later(digest, response)
        return None

    def _check_erased_later(self, digest: str, response: Any) -> None:
        """Inside a snapshot: a blob gone (410) because of a purge beyond the
        pinned size was there as of it, and that purge record is not among
        those read: the reads must begin again in a new snapshot, which reads
        it. A purge the server names beyond its head explains nothing (the
        reader finds the blob missing, as it would without a pin).

        Raises:
            StaleSnapshotError: the purge is at a seq the ledger now holds,
                beyond the pinned size.
        """
        pin = self._pin
        assert pin is not None
        seq = _purge_seq(response)
        if seq is None:  # an older server: the purges list says where
            found = [p for p in self._purges_now() if p.digest == digest]
            seq = found[0].seq if found else None
        if seq is None or seq < pin.head.size or seq >= self._grown_to():
            return
        raise StaleSnapshotError(
            f"blob {digest} was erased by a purge (seq {seq}) after the "
            f"{pin.head.size} records this read began with",
            hint="run it again: the ledger was purged while it was read",
        )

    def _find_blobs(self, prefix: str, limit: int) -> list[tuple[str, int]]:
        found = self.get_json("/blobs", prefix=prefix, limit=limit)
        return [(str(d), int(s)) for d, s in found["blobs"]]

    def _purges(self, digest: str | None) -> list[StoredPurge]:
        if self._pin is None:
            purges = self._purges_now()
        else:  # a purge record at seq S makes the ledger S + 1 records long
            purges = self._pinned_list(
                "purges", self._purges_now, lambda p: (p.seq + 1,)
            )
        return [p for p in purges if digest is None or p.digest == digest]

    def _purges_now(self) -> list[StoredPurge]:
        return [
            StoredPurge(
                str(p["digest"]),
                int(p["size"]),
                int(p["seq"]),
                bool(p.get("erased", True)),
            )
            for p in self.get_json("/purges")
        ]

    def _evidence(self) -> list[StoredEvidence]:
        if self._pin is None:
            return self._evidence_now()
        return self._pinned_list(
            "evidence", self._evidence_now, lambda e: (e.size, _note_size(e.checkpoint))
        )

    def _evidence_now(self) -> list[StoredEvidence]:
        return [
            StoredEvidence(
                int(e.get("id", n)),
                str(e["kind"]),
                int(e["size"]),
                str(e["checkpoint"]),
                base64.b64decode(e["data"]),
                str(e.get("added", "")),
            )
            for n, e in enumerate(self.get_json("/evidence"))
        ]

    def _meta(self) -> dict[str, str]:
        return {str(k): str(v) for k, v in self.get_json("/meta").items()}

    # -- what only the server does ---------------------------------------------

    def _refuse(self, what: str) -> StoreError:
        return StoreError(
            f"{what} on a ledger kept by an mltrail server is the server admin's "
            "work, not a client's",
            hint="ask the server's admin (mltrail server commands, --db URL)",
        )

    def _erase_blob(self, digest: str) -> bool:
        raise self._refuse("erasing a blob")

    def _add_checkpoint(self, size: int, text: str) -> None:
        raise self._refuse("storing a checkpoint")

    def _add_evidence(
        self, kind: str, size: int, checkpoint: str, data: bytes, added: str
    ) -> None:
        raise self._refuse("storing checkpoint evidence")

    def _init_meta(self, values: dict[str, str]) -> None:
        raise self._refuse("creating a ledger")

    def _close(self) -> None:
        self._client.close()


class _Pin:
    """What one snapshot of an :class:`HttpStore` answers as of: the head read
    when it began, and the lists read once inside it (None until asked)."""

    def __init__(self, head: StoreHead) -> None:
        self.head = head
        self.lists: dict[str, list[Any]] = {}
        """Checkpoints, evidence and purges, by name, once read inside it."""

    def grown_into(self, grown: int, size: int, *same: int | None) -> bool:
        """Whether an item the server listed, of ``size`` (filed under it,
        and ``same``: the size its signed text says), is left out: beyond the
        pinned size and within ``grown``, the size a head read after the list
        gave, so the ledger grew into it after the pin. Any other item stays,
        for the reader to check: at or below the pinned size, beyond what the
        ledger holds (records cut?), or filed under another size than its
        text says."""
        return self.head.size < size <= grown and all(s == size for s in same)


def _note_size(text: str) -> int | None:
    """The tree size a checkpoint note's text says (its second line), if any."""
    lines = text.split("\n", 2)
    if len(lines) < 3 or not lines[1].isascii() or not lines[1].isdigit():
        return None
    return int(lines[1])


def _next_page(following: Any, start: int, last: int | None) -> int | None:
    """Where the page of records after the one asked from ``start`` begins
    (None: none). A page that says there is more sent records (``last``, the
    highest seq), and the next begins after them and after ``start``: else
    the server would have the client ask again for ever, reading the same
    records or none.

    Raises:
        StoreError: ``next`` is not a seq after them, or the page was empty.
    """
    if following is None:
        return None
    if last is None or type(following) is not int or following <= max(start, last):
        sent = "no records" if last is None else f"records up to seq {last}"
        raise StoreError(
            f"the mltrail server answered the records from seq {start} with "
            f"{sent} and a next page at {following!r}, which is not after them: "
            "the client would ask again for ever",
            hint="report it to the server's admin: it does not page its "
            "records as an mltrail server does",
        )
    return following


def _purge_seq(response: Any) -> int | None:
    """The purge record's seq a 410 names (``error.seq``), if it says."""
    try:
        seq = response.json()["error"]["seq"]
    except (ValueError, KeyError, TypeError, AttributeError):
        return None
    return seq if type(seq) is int and seq >= 0 else None


def _checkpoint(found: Mapping[str, Any]) -> CheckpointRow:
    size = int(found["size"])
    return CheckpointRow(f"server checkpoint of {size}", size, str(found["text"]))


def _hex(value: Any) -> bytes:
    try:
        return bytes.fromhex(str(value))
    except ValueError as e:
        raise StoreError(f"the server sent a malformed hash: {value!r}") from e


def _json(response: Any) -> Any:
    try:
        return response.json()
    except ValueError as e:
        raise StoreError(
            f"the server answered {response.request.method} "
            f"{response.request.url.path} with something that is not JSON"
        ) from e


def _checked(response: Any, where: str, allow: tuple[int, ...]) -> Any:
    """The response when it is a success (or allowed), else the mapped error."""
    status = response.status_code
    if status < 300 or status in allow:
        return response
    message, hint = _server_error(response)
    what = f"the mltrail server refused {response.request.method} {_path(response)}"
    if status in (401, 403):
        raise AuthError(
            f"{what}: {message} (HTTP {status})",
            hint=hint
            or (
                "set MLTRAIL_TOKEN to a valid token of this ledger"
                if status == 401
                else "this token's role may not do that: ask the ledger's admin "
                "for a token with the right role (writer, approver, auditor, admin)"
            ),
        )
    if status == 429:  # the caller's share of a bounded resource is in use
        raise StoreError(
            f"the mltrail server at {where} is busy for this user: {message} "
            f"(HTTP 429)",
            hint=hint or "try again later",
        )
    if 400 <= status < 500:
        raise InputError(f"{what}: {message} (HTTP {status})", hint=hint)
    raise StoreError(
        f"the mltrail server at {where} failed: {message} (HTTP {status})",
        hint=hint or "try again later, or ask the server's admin",
    )


def _path(response: Any) -> str:
    path = str(response.request.url.path)
    return path.split("/api/v1", 1)[-1] or "/"


def _retry_after(response: Any) -> float | None:
    """The seconds of a refusal's ``Retry-After`` (at most ``MAX_RETRY_AFTER``),
    or None when it names none (or an HTTP date)."""
    value = response.headers.get("retry-after", "")
    try:
        seconds = float(value)
    except ValueError:
        return None
    if not math.isfinite(seconds):
        return None
    return min(max(seconds, 0.0), MAX_RETRY_AFTER)


def _server_error(response: Any) -> tuple[str, str | None]:
    """The ``{"error": {"message", "hint"}}`` of an answer (or its reason)."""
    try:
        error = response.json().get("error") or {}
        message = str(error.get("message") or response.reason_phrase)
        hint = error.get("hint")
    except (ValueError, AttributeError):
        return str(response.reason_phrase or "error"), None
    return message[:500], (str(hint)[:500] if hint else None)
