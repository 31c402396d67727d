"""Runs as OpenLineage RunEvents (spec 2-0-2), written to a file or posted to a server.

    >>> events = compute_events(home, index, run_ids)              # doctest: +SKIP
    >>> post_events(events, "http://marquez:5000/api/v1/lineage")  # doctest: +SKIP

Each run gives a START event (at its start) and, once it ended, a COMPLETE
(succeeded), FAIL (failed) or ABORT (interrupted, aborted) event (at its end).
The job is the run's name in the ledger's namespace (``mltrail://<origin>``);
inputs are its ``run.data`` datasets, outputs its ``run.artifact`` outputs,
named as OpenLineage's naming spec says (a local path: namespace ``file``, name
the absolute path; ``s3://bucket/key``: namespace ``s3://bucket``, name ``key``).
Every dataset carries the standard ``version`` facet (mltrail's dataset id, or a
single output file's SHA-256) and
a custom ``mltrail`` facet (record seq, dataset id or a file's sha256, size, files, bytes, role);
the run carries a ``mltrail`` run facet (run id, ledger origin, seqs, status).
A run id that is not a UUID becomes a UUID5 of origin and id (OpenLineage needs
UUIDs). Nothing optional is needed: events are plain JSON, posted with urllib.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from mltrail.audit.query import load_run
from mltrail.errors import InputError, StoreError

if TYPE_CHECKING:
    from collections.abc import Iterable, Sequence

    from mltrail.audit.query import RunView
    from mltrail.core.entry import Record
    from mltrail.index import Index
    from mltrail.ledger.home import Home

__all__ = ["FACET_SCHEMA", "SCHEMA_URL", "compute_events", "post_events", "run_events"]

SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
FACET_SCHEMA = "https://mltrail.dev/schema/openlineage/MltrailFacet-1-0-0.json"
_VERSION_FACET = (
    "https://openlineage.io/spec/facets/1-0-1/DatasetVersionDatasetFacet.json"
    "#/$defs/DatasetVersionDatasetFacet"
)
_ENDINGS = {"succeeded": "COMPLETE", "failed": "FAIL"}


def producer(version: str) -> str:
    """The ``producer`` URI of events this mltrail writes."""
    return f"https://mltrail.dev/mltrail/{version}"


def compute_events(
    home: Home, index: Index, run_ids: Iterable[str], *, version: str = "unknown"
) -> list[dict[str, Any]]:
    """The RunEvents of ``run_ids``, in order (each run's START before its end)."""
    events: list[dict[str, Any]] = []
    for run_id in run_ids:
        events.extend(run_events(home, load_run(home, index, run_id), version=version))
    return events


def run_events(
    home: Home, view: RunView, *, version: str = "unknown"
) -> list[dict[str, Any]]:
    """The START event of one run, and its end event when it ended."""
    origin = home.ledger.origin
    by = producer(version)
    started = view.all("run.started")
    ended = view.all("run.ended")
    base = {
        "run": {
            "runId": _uuid(origin, view.id),
            "facets": _run_facets(by, origin, view),
        },
        "job": {"namespace": f"mltrail://{origin}", "name": _job_name(view)},
        "inputs": [_dataset(by, r, "in") for r in view.all("run.data")],
        "outputs": [
            _dataset(by, r, "out")
            for r in view.all("run.artifact")
            if r.entry.body.get("exists") is not False and r.entry.body.get("path")
        ],
        "producer": by,
        "schemaURL": SCHEMA_URL,
    }
    events = [{"eventType": "START", "eventTime": _time(started, view.summary.started),
               **base}]  # fmt: skip
    if view.summary.ended and ended:
        status = str(ended[0].entry.body.get("status"))
        events.append(
            {
                "eventType": _ENDINGS.get(status, "ABORT"),
                "eventTime": view.summary.ended,
                **base,
            }
        )
    return events


def _time(records: list[Record], fallback: str) -> str:
    return records[0].entry.time if records else fallback


def _uuid(origin: str, run_id: str) -> str:
    try:
        return str(uuid.UUID(run_id))
    except ValueError:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"mltrail://{origin}/runs/{run_id}"))


def _job_name(view: RunView) -> str:
    if view.summary.name:
        return view.summary.name
    command = view.summary.command
    return " ".join(command[:2]) if command else view.id


def _run_facets(by: str, origin: str, view: RunView) -> dict[str, Any]:
    return {
        "mltrail": {
            "_producer": by,
            "_schemaURL": FACET_SCHEMA + "#/$defs/MltrailRunFacet",
            "run": view.id,
            "origin": origin,
            "seqs": [r.seq for r in view.records],
            "status": view.summary.status,
            "exit_code": view.summary.exit_code,
            "user": view.summary.user,
            # records of this run another user than its starter signed (their
            # params, end, outputs are in these events too): None when none
            "added_by_others": view.added_by_others(),
        }
    }


def _dataset(by: str, record: Record, direction: str) -> dict[str, Any]:
    body = record.entry.body
    namespace, name = dataset_name(str(body.get("url") or body["path"]))
    mltrail = {
        "_producer": by,
        "_schemaURL": FACET_SCHEMA + "#/$defs/MltrailDatasetFacet",
        "seq": record.seq,
        "direction": direction,
        **{
            k: body[k]
            for k in ("dataset", "sha256", "size", "files", "bytes", "role", "model")
            if body.get(k) is not None
        },
    }
    facets: dict[str, Any] = {"mltrail": mltrail}
    if version := body.get("dataset") or body.get("sha256"):
        facets["version"] = {
            "_producer": by,
            "_schemaURL": _VERSION_FACET,
            "datasetVersion": str(version),
        }
    return {"namespace": namespace, "name": name, "facets": facets}


def dataset_name(location: str) -> tuple[str, str]:
    """(namespace, name) of a dataset location, after OpenLineage's naming spec."""
    parts = urlsplit(location)
    if parts.scheme and parts.scheme != "file" and parts.netloc:
        return f"{parts.scheme}://{parts.netloc}", parts.path.lstrip("/") or "/"
    if parts.scheme == "file":
        return "file", parts.path
    return "file", location


def post_events(
    events: Sequence[dict[str, Any]], url: str, *, api_key: str | None = None,
    timeout: float = 30.0,
) -> int:  # fmt: skip
    """POST each event as JSON to an OpenLineage HTTP endpoint; how many were accepted.

    Raises:
        InputError: ``url`` is not http(s).
        StoreError: the endpoint cannot be reached or refuses an event (the
            events before it were sent).
    """
    if urlsplit(url).scheme not in ("http", "https"):
        raise InputError(
            f"--url {url!r} is not an http(s) URL",
            hint="give the endpoint, e.g. http://localhost:5000/api/v1/lineage",
        )
    headers = {"Content-Type": "application/json"}
    if api_key:
        headers["Authorization"] = f"Bearer {api_key}"
    opener = urllib.request.build_opener(_NoRedirect)
    for n, event in enumerate(events):
        data = json.dumps(event, ensure_ascii=False).encode()
        request = urllib.request.Request(  # noqa: S310 (the scheme is checked above)
            url, data=data, headers=headers, method="POST"
        )
        try:
            with opener.open(request, timeout=timeout) as response:
                response.read()
        except urllib.error.HTTPError as e:
            if 300 <= e.code < 400:
                raise _redirected(url, e, n, len(events)) from None
            raise StoreError(
                f"the OpenLineage endpoint refused event {n + 1} of {len(events)}: "
                f"HTTP {e.code} {e.reason}",
                hint=f"{n} event(s) before it were sent",
            ) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise StoreError(
                f"cannot reach the OpenLineage endpoint {_shown(url)}: {reason}",
                hint=f"{n} event(s) were sent; check the URL and that the server runs",
            ) from None
    return len(events)


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Follows no redirect: urllib's default turns a redirected POST into a GET
    without its body (the event is lost, yet counted as sent) and keeps the
    ``Authorization`` header for whatever host the answer names.

    Each ``http_error_30x`` declines before reading the ``Location`` (urllib's
    own parses it first, and one that is no URL, ``http://[``, raised a
    ValueError): the 3xx answer is raised as an HTTPError."""

    def _decline(self, *args: object, **kwargs: object) -> None:
        return None

    http_error_301 = http_error_302 = http_error_303 = _decline
    http_error_307 = http_error_308 = _decline


def _redirected(url: str, e: urllib.error.HTTPError, n: int, total: int) -> StoreError:
    location = e.headers.get("Location") if e.headers is not None else None
    where = f" to {_shown(str(location))}" if location else ""
    return StoreError(
        f"the OpenLineage endpoint {_shown(url)} redirected event {n + 1} of "
        f"{total}{where} (HTTP {e.code}): events are posted only to the URL given, "
        "and the API key is sent nowhere else",
        hint=f"{n} event(s) before it were sent; give the URL it answers at as --url",
    )


def _shown(url: str) -> str:
    """``url`` without any user:password part (one that is no URL, as it is:
    the printed error masks a password in it)."""
    try:
        parts = urlsplit(url)
    except ValueError:  # "http://[": a redirect's Location the server chose
        return url
    netloc = parts.netloc.rpartition("@")[2]
    return parts._replace(netloc=netloc).geturl()
