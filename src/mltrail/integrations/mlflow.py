"""MLflow: import its runs into the ledger, and mirror ``mlflow.log_*`` into mltrail.

    >>> import_mlflow(home, index, "sqlite:///mlflow.db")          # doctest: +SKIP
    >>> mirror()   # mlflow.log_param(s)/log_metric(s) also reach the active run

An imported run is written in one atomic append (with up to 99 other runs:
a batch lands whole or not at all; a run MLflow does not say ended, FINISHED,
FAILED or KILLED, waits for an import after its end): ``run.started`` (with
``imported``: where it came from, its MLflow run id, experiment, user, times,
status and tags), ``run.code`` (``mlflow.source.git.commit``), ``run.params``,
``run.metrics`` (every point of every metric's history), ``run.artifact`` (the
artifact folder, hashed, when it is on this machine inside the store's folder
or an artifact root given) and ``run.ended``. The
entries are dated when they are imported (a ledger's time only moves forward);
MLflow's own start and end times are in ``imported``. The mltrail run id is a
UUID5 of the MLflow run id, so importing again adds nothing: a run already in
the index is skipped. Needs ``pip install 'mltrail[mlflow]'`` (mlflow-skinny,
SQLAlchemy and Alembic are enough for a ``sqlite:///`` store).
"""

from __future__ import annotations

import json
import math
import os
import re
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

from mltrail.capture.run.argv_secrets import redact_argv
from mltrail.capture.run.blob import Blob, spill_text
from mltrail.capture.run.redact import committing_with
from mltrail.errors import ConfigError, InputError
from mltrail.ledger.ledger import Draft
from mltrail.record.datasets import artifact_body
from mltrail.record.recorder import secret_guard

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping

    from mltrail.capture.run.guard import SecretGuard
    from mltrail.index import Index
    from mltrail.ledger.home import Home

__all__ = ["ImportResult", "import_mlflow", "imported_run_id", "mirror"]

_NAMESPACE = uuid.UUID("6f1c9e2a-4d0b-5c8e-9a7f-3b2d1e0c4a5f")
_STATUS = {"FINISHED": "succeeded", "FAILED": "failed", "KILLED": "aborted"}
_PAGE = 1000
_BATCH = 100
"""Runs written per atomic append (and whose histories are read together)."""
_BULK_POINTS = 200_000
"""Most points of one metric name a bulk read holds; past it, run by run."""


def _mlflow() -> Any:
    try:
        import mlflow
    except ImportError as e:
        raise ConfigError(
            "MLflow is not installed",
            hint="pip install 'mltrail[mlflow]'",
        ) from e
    return mlflow


def imported_run_id(mlflow_run_id: str) -> str:
    """The mltrail run id an MLflow run is imported as (the same every time)."""
    return str(uuid.uuid5(_NAMESPACE, f"mlflow:{mlflow_run_id}"))


@dataclass
class ImportResult:
    """What an import did: runs written, runs already there, and runs left for
    a later import because MLflow says they have not ended; their MLflow ids."""

    imported: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    unfinished: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    """Runs already imported (among ``skipped``) whose name, user, times,
    status, experiment or tags MLflow now gives otherwise: not imported again."""
    artifacts_elsewhere: list[tuple[str, str]] = field(default_factory=list)
    """(MLflow run id, artifact folder) of each run imported without its
    artifacts: the folder lies outside every artifact root."""
    command_in_clear: list[str] = field(default_factory=list)
    """Runs already imported (among ``skipped``) whose command, imported before
    it was read as a command line, keeps its secrets in clear in the ledger
    (``--db-password VALUE``): not "changed", but to be rotated."""


def import_mlflow(
    home: Home,
    index: Index,
    tracking_uri: str,
    *,
    experiments: tuple[str, ...] = (),
    on_run: Callable[[str, bool], None] | None = None,
    env: Mapping[str, str] | None = None,
    artifact_roots: tuple[Path, ...] = (),
) -> ImportResult:
    """Import every ended run of ``experiments`` (names or ids; all when empty).

    A run MLflow does not say ended (FINISHED, FAILED, KILLED: RUNNING,
    SCHEDULED, or a status mltrail does not know) is not imported
    (``unfinished`` in the result): its end is not known yet, and a run once
    imported is skipped by every later import.

    Runs are read a page at a time and written ``_BATCH`` at a time: the metric
    histories of a batch in one query per metric name (where the store can),
    its blobs together, its entries in one atomic ``append_many``.

    A run's artifact folder is hashed (``run.artifact``) only when it lies,
    links resolved, inside one of ``artifact_roots``, or is the run's own
    ``<run id>/artifacts`` inside the folder of a local store (a ``sqlite:///``
    file's folder, a file store): the store names the
    folder, and whoever wrote the store or its artifact folders could point it
    anywhere on this machine (a home folder, a symbolic link out), whose file
    names and digests would then be recorded. Others are listed in
    ``artifacts_elsewhere``.

    Every body goes through the home's secret guard (``env``, default this
    process's environment, adds its secrets to the mask set), as a recorded
    run's do; long or multi-line params and tags become blobs.

    Raises:
        ConfigError: MLflow is not installed, or the commitment key cannot be
            read or made.
        InputError: an experiment does not exist.
    """
    from mlflow.tracking import MlflowClient

    _mlflow()
    client = MlflowClient(tracking_uri=tracking_uri)
    ids = _experiment_ids(client, experiments)
    guard = secret_guard(home.path, os.environ if env is None else env)
    result = ImportResult()
    roots = _artifact_roots(tracking_uri, artifact_roots)
    for listed in _batches(_runs(client, ids), _BATCH):
        known = _already_imported(index, listed)
        # a run not ended (RUNNING, SCHEDULED, or a status mltrail does not know)
        # has no end to record, and once imported it would be skipped ever
        # after: it waits for an import after its end. One imported before is
        # checked like any other (made RUNNING again, it is a change)
        batch = [r for r in listed if r.info.run_id in known or _ended(r)]
        result.unfinished += [
            r.info.run_id
            for r in listed
            if r.info.run_id not in known and not _ended(r)
        ]
        if not batch:
            continue
        changed, in_clear = _changed(
            home, guard, [run for run in batch if run.info.run_id in known], known,
            tracking_uri,
        )  # fmt: skip
        result.changed += changed
        result.command_in_clear += in_clear
        new = [run for run in batch if run.info.run_id not in known]
        histories = _histories(client, new)
        drafts = [
            _cleaned(guard, draft)
            for run in new
            for draft in _drafts(
                run, histories[run.info.run_id], tracking_uri,
                _artifacts(run, roots, result.artifacts_elsewhere), guard,
            )
        ]  # fmt: skip
        if drafts:
            home.ledger.append_many(_blobs_stored(home, drafts))
        for run in batch:
            skipped = run.info.run_id in known
            (result.skipped if skipped else result.imported).append(run.info.run_id)
            if on_run is not None:
                on_run(run.info.run_id, skipped)
    return result


def _batches(runs: Iterator[Any], size: int) -> Iterator[list[Any]]:
    batch: list[Any] = []
    for run in runs:
        batch.append(run)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _ended(run: Any) -> bool:
    """Whether MLflow says ``run`` has ended: FINISHED, FAILED or KILLED, never a
    status mltrail does not know (it may be one of a run still going)."""
    return run.info.status in _STATUS


def _already_imported(index: Index, runs: list[Any]) -> dict[str, int]:
    """The MLflow run ids of ``runs`` whose mltrail run the index already has,
    with the seq of that run's ``run.started``."""
    by_id = {imported_run_id(run.info.run_id): run.info.run_id for run in runs}
    marks = ",".join("?" * len(by_id))
    rows = index.query(f"SELECT id, seq FROM runs WHERE id IN ({marks})", list(by_id))  # noqa: S608
    return {by_id[row[0]]: int(row[1]) for row in rows}


def _changed(
    home: Home,
    guard: SecretGuard,
    runs: list[Any],
    known: Mapping[str, int],
    tracking_uri: str,
) -> tuple[list[str], list[str]]:
    """The MLflow ids of ``runs`` (imported before) whose ``run.started``, made
    now as an import would make it, differs from the one in the ledger other
    than by its command's secrets; and of those whose command an import before
    it was read as a command line kept with its secrets in clear (ADR 0013,
    amendment 2026-12-08): that alone is no change of the run, but a secret
    the ledger holds.
    Idempotence is keyed on the MLflow run id alone, so such a run is not
    imported again; it is told instead of passing as "already imported".

    Compared as far as the ledger can tell (:func:`_same`)."""
    changed, in_clear = [], []
    for run in runs:
        stored = home.ledger.record(known[run.info.run_id]).entry.body
        draft = Draft("run.started", _started(run, tracking_uri, guard), "")
        fresh = _cleaned(guard, draft).body
        if _same(home, stored, fresh):
            continue
        reread = _command_reread(guard, stored)
        if reread is not None:
            in_clear.append(run.info.run_id)
        if reread is None or not _same(home, reread, fresh):
            changed.append(run.info.run_id)
    return changed, in_clear


def _command_reread(guard: SecretGuard, stored: Mapping[str, Any]) -> Any:
    """``stored`` (a ``run.started`` in the ledger) with its command, and the
    tag it was taken from, read as a command line as an import does now; None
    when that changes nothing."""
    command = stored.get("command")
    if not (isinstance(command, list) and len(command) == 1):
        return None
    [before] = command
    if not isinstance(before, str) or (after := _command_line(guard, before)) == before:
        return None
    imported = dict(stored.get("imported") or {})
    tags = imported.get("tags")
    if isinstance(tags, dict):
        imported["tags"] = {k: after if v == before else v for k, v in tags.items()}
    return {**stored, "command": [after], "imported": imported}


def _same(home: Home, stored: Any, fresh: Any, key: str = "") -> bool:
    """Whether ``stored`` (a body in the ledger) and ``fresh`` (the same body
    made and cleaned now) say the same, with what differs between two cleanings
    of one value made alike: the tracking URI (one store may be named
    otherwise), commitments (each salted anew: any two are alike), and a text
    spilled into a blob (compared by its bytes, commitments in it as above).

    The fresh body leads: only where it holds a ``Blob`` is the stored value
    taken as a blob reference, and MLflow's tags mapping is never taken as a
    commitment (whoever writes the store names its keys: ``blob``, ``salt``)."""
    from mltrail.capture.run.commitment import MARKER_PATTERN, is_commitment

    commitments = key != "tags" and is_commitment(stored) and is_commitment(fresh)
    if key == "tracking_uri" or commitments:
        return True
    if isinstance(fresh, Blob):
        return _same_text(home, stored, fresh)
    if isinstance(stored, dict) and isinstance(fresh, dict):
        return stored.keys() == fresh.keys() and all(
            _same(home, stored[k], fresh[k], str(k)) for k in stored
        )
    if isinstance(stored, list) and isinstance(fresh, (list, tuple)):
        return len(stored) == len(fresh) and all(
            _same(home, a, b) for a, b in zip(stored, fresh, strict=True)
        )
    if isinstance(stored, str) and isinstance(fresh, str):
        alike = "<redacted>"
        return re.sub(MARKER_PATTERN, alike, stored) == re.sub(
            MARKER_PATTERN, alike, fresh
        )
    return type(stored) is type(fresh) and bool(stored == fresh)


def _same_text(home: Home, stored: Any, fresh: Blob) -> bool:
    """Whether ``stored`` (a blob reference, or a text an older import kept
    inline) holds the text of ``fresh``. A blob that cannot be read (purged,
    or gone) is compared by its digest: equal bytes have equal digests, and
    only commitments (salted) make two cleanings of one text differ, so a
    text without one that hashes otherwise has changed."""
    from mltrail.capture.run.commitment import MARKER_PATTERN
    from mltrail.core.canonical import compute_blob_digest

    marker = re.compile(MARKER_PATTERN.encode())
    if isinstance(stored, str):
        data = stored.encode("utf-8", "surrogatepass")
    elif isinstance(stored, dict) and set(stored) <= _BLOB_REF_KEYS:
        digest = str(stored.get("blob"))
        if digest == compute_blob_digest(fresh.data):
            return True
        try:
            data = home.ledger.get_blob(digest)
        except InputError:  # purged (BlobPurgedError) or gone
            return marker.search(fresh.data) is not None
    else:
        return False
    return marker.sub(b"<redacted>", data) == marker.sub(b"<redacted>", fresh.data)


_BLOB_REF_KEYS = frozenset({"blob", "size", "media_type"})


def _histories(client: Any, runs: list[Any]) -> dict[str, dict[str, list[Any]]]:
    """Every metric's history of each run: ``{run id: {key: [Metric]}}``.

    A SQL store reads them with one query per metric name for all the runs
    (``get_metric_history_bulk``: ``Metric``s with their run id, each run's in
    the order ``get_metric_history`` gives); other stores, and a name with more
    than ``_BULK_POINTS`` points in all, are read one run at a time.
    """
    found: dict[str, dict[str, list[Any]]] = {run.info.run_id: {} for run in runs}
    bulk = _bulk_reader(client)
    names = sorted({key for run in runs for key in run.data.metrics})
    for key in names:
        having = [run.info.run_id for run in runs if key in run.data.metrics]
        rows = bulk(having, key, _BULK_POINTS + 1) if bulk is not None else None
        if rows is not None and len(rows) <= _BULK_POINTS:
            for row in rows:
                found[row.run_id].setdefault(key, []).append(row)
        for run_id in having:
            if key not in found[run_id]:
                found[run_id][key] = client.get_metric_history(run_id, key)
    return found


def _bulk_reader(client: Any) -> Callable[[list[str], str, int], list[Any]] | None:
    """The store's ``get_metric_history_bulk`` (SQL stores), else None: it is not
    on ``MlflowClient``, so it is reached through the client's store."""
    tracking = getattr(client, "_tracking_client", None)
    store = getattr(tracking, "store", None)
    return getattr(store, "get_metric_history_bulk", None)


def _blobs_stored(home: Home, drafts: list[Draft]) -> list[Draft]:
    """``drafts`` with their ``Blob`` values, at any depth, stored (together) and
    replaced by references."""
    blobs: list[Blob] = []
    for draft in drafts:
        _collect_blobs(draft.body, blobs)
    refs = iter(home.ledger.put_blobs([blob.data for blob in blobs]))
    return [
        Draft(draft.kind, _with_refs(draft.body, refs), draft.run) for draft in drafts
    ]


def _name_as_text(guard: SecretGuard, body: Mapping[str, Any]) -> Mapping[str, Any]:
    """``body`` with a run name holding a credential (``eval with hf_…``) cleaned
    in place: the name must stay a string, and a credential shape commits a
    whole string as a mapping."""
    name = body.get("name")
    if not isinstance(name, str):
        return body
    return {**body, "name": guard.clean_text(name)}


def _collect_blobs(value: Any, into: list[Blob]) -> None:
    if isinstance(value, Blob):
        into.append(value)
    elif isinstance(value, dict):
        for item in value.values():
            _collect_blobs(item, into)
    elif isinstance(value, list):
        for item in value:
            _collect_blobs(item, into)


def _with_refs(value: Any, refs: Iterator[dict[str, Any]]) -> Any:
    """``value`` with each ``Blob`` replaced by the next of ``refs`` (the order
    :func:`_collect_blobs` found them in)."""
    if isinstance(value, Blob):
        ref = next(refs)
        return ref | {"media_type": value.media_type} if value.media_type else ref
    if isinstance(value, dict):
        return {key: _with_refs(item, refs) for key, item in value.items()}
    if isinstance(value, list):
        return [_with_refs(item, refs) for item in value]
    return value


def _cleaned(guard: SecretGuard, draft: Draft) -> Draft:
    """``draft`` through the home's secret guard, as a recorded run's bodies are
    (commitments under the home's key, masking, the detector on text), with long
    or multi-line params and tags spilled into blobs that ``mltrail purge`` can
    erase (ADR 0014): an MLflow note or prompt is content, not a name."""
    body = guard.clean(_name_as_text(guard, draft.body))
    if draft.kind == "run.params":
        body = guard.clean({**body, "params": spill_text(body["params"])})
    elif draft.kind == "run.started":
        imported = body["imported"]
        tags = spill_text(imported["tags"])
        body = guard.clean({**body, "imported": {**imported, "tags": tags}})
    return Draft(draft.kind, body, draft.run)


def _experiment_ids(client: Any, names: tuple[str, ...]) -> list[str]:
    if not names:
        return [e.experiment_id for e in client.search_experiments()]
    ids = []
    for name in names:
        found = client.get_experiment_by_name(name)
        if found is None and name.isdigit():
            found = client.get_experiment(name)
        if found is None:
            raise InputError(
                f"no MLflow experiment {name!r} at this tracking URI",
                hint="give an experiment name or id (mlflow experiments search)",
            )
        ids.append(found.experiment_id)
    return ids


def _runs(client: Any, experiment_ids: list[str]) -> Iterator[Any]:
    """Every run, oldest first, page by page."""
    token = None
    while True:
        page = client.search_runs(
            experiment_ids, max_results=_PAGE, order_by=["attributes.start_time ASC"],
            page_token=token,
        )  # fmt: skip
        yield from page
        token = page.token
        if not token:
            return


def _artifact_roots(
    tracking_uri: str, given: tuple[Path, ...]
) -> list[tuple[str, bool]]:
    """Real paths of the folders artifacts may be hashed in, each with whether
    any folder inside it may be: ``given`` (the user vouches for them), and
    the folder of a local store (a ``sqlite:///`` file's, or a file store's
    own), where only a run's own ``<run id>/artifacts`` folder may."""
    roots = [(os.path.realpath(root), True) for root in given]
    parts = urlsplit(tracking_uri)
    store: Path | None = None
    if parts.scheme == "sqlite" and tracking_uri.startswith("sqlite:///"):
        database = unquote(tracking_uri[len("sqlite:///") :].partition("?")[0])
        if database and database != ":memory:":
            store = Path(database).parent
    else:
        store = _local(tracking_uri)
    if store is not None:
        roots.append((os.path.realpath(store), False))
    return roots


def _artifacts(
    run: Any, roots: list[tuple[str, bool]], elsewhere: list[tuple[str, str]]
) -> Path | None:
    """The run's local artifact folder, by its real path (links and ``..``
    resolved), when it exists and lies inside one of ``roots`` (inside a
    store's folder, only as the run's own ``<run id>/artifacts``: a store kept
    in a home folder could name any other folder of it); one outside is added
    to ``elsewhere``. The real path checked is the one hashed: a link pointed
    elsewhere after the check is not followed by the walk."""
    artifacts = _local(run.info.artifact_uri)
    if artifacts is None or not artifacts.exists():
        return None
    real = os.path.realpath(artifacts)
    own = Path(real).parts[-2:] == (run.info.run_id, "artifacts")
    if any(
        os.path.commonpath([real, root]) == root and (whole or own)
        for root, whole in roots
    ):
        return Path(real)
    elsewhere.append((run.info.run_id, str(artifacts)))
    return None


def _drafts(
    run: Any,
    histories: dict[str, list[Any]],
    tracking_uri: str,
    artifacts: Path | None,
    guard: SecretGuard,
) -> list[Draft]:
    """The entries of one MLflow run, as read: the guard cleans them after
    (:func:`_cleaned`), with the home's key, so that its commitments can be
    checked; only the command is cleaned here (:func:`_started`)."""
    info, data = run.info, run.data
    run_id = imported_run_id(info.run_id)
    tags = dict(data.tags)
    drafts = [
        Draft("run.started", _started(run, tracking_uri, guard), run_id),
        Draft("run.code", _code(tags), run_id),
    ]
    if data.params:
        params = dict(data.params)
        drafts.append(Draft("run.params", {"source": "api", "params": params}, run_id))
    if data.metrics:
        drafts.append(Draft("run.metrics", _metrics(histories, data), run_id))
    if artifacts is not None:
        body = artifact_body(artifacts, "mlflow-artifacts")
        drafts.append(Draft("run.artifact", body, run_id))
    ended = {"status": _STATUS.get(info.status, "aborted"), "exit_code": None}
    if info.end_time and info.start_time:
        ended["duration_s"] = max(0.0, (info.end_time - info.start_time) / 1000)
    drafts.append(Draft("run.ended", ended, run_id))
    return drafts


def _started(run: Any, tracking_uri: str, guard: SecretGuard) -> dict[str, Any]:
    """The ``run.started`` body of an MLflow run, before the secret guard but
    for its command, read as a command line."""
    info, data = run.info, run.data
    tags = dict(data.tags)
    source = ""
    for name in ("mltrail.source.name", "mlflow.source.name"):
        if tags.get(name):
            source = tags[name] = _command_line(guard, str(tags[name]))
            break
    return {
        "source": "api",
        "name": info.run_name or tags.get("mlflow.runName"),
        "command": [source] if source else ["mlflow"],
        "imported": {
            "from": "mlflow",
            "run_id": info.run_id,
            "experiment_id": str(info.experiment_id),
            "tracking_uri": _without_credentials(tracking_uri),
            "user": info.user_id or tags.get("mlflow.user"),
            "start_time": _time(info.start_time),
            "end_time": _time(info.end_time),
            "status": info.status,
            "tags": tags,
        },
    }


def _command_line(guard: SecretGuard, source: str) -> str:
    """``source`` (the tag a run's command is taken from) with its secrets
    committed under the home's key, read as a shell command line
    (``--db-password VALUE``, ``-p VALUE``) as a DVC stage's ``cmd`` is; as free
    text only ``NAME=VALUE`` and credential shapes were found."""
    with committing_with(guard.committer):
        redacted = redact_argv([source])
    guard.learn([("secret", value) for value in redacted.secrets])
    return str(redacted.value[0])


def _code(tags: dict[str, Any]) -> dict[str, Any]:
    commit = tags.get("mlflow.source.git.commit")
    if isinstance(commit, str) and len(commit) in (40, 64):
        body: dict[str, Any] = {"vcs": "git", "commit": commit.lower()}
        if tags.get("mlflow.source.git.repoURL"):
            body["remote"] = str(tags["mlflow.source.git.repoURL"])
        if tags.get("mlflow.source.git.branch"):
            body["branch"] = str(tags["mlflow.source.git.branch"])
        return body
    return {"vcs": None, "reason": "imported from MLflow without a git commit tag"}


def _metrics(histories: dict[str, list[Any]], data: Any) -> dict[str, Any]:
    points: dict[str, dict[str, list[Any]]] = {}
    series: dict[str, Any] = {}
    for key in sorted(data.metrics):
        history = sorted(histories[key], key=lambda m: m.step)
        steps = [int(m.step) for m in history]
        values = [_finite(m.value) for m in history]
        points[key] = {"steps": steps, "values": values}
        numbers = [v for v in values if isinstance(v, float)]
        series[key] = {
            "count": len(history), "first_step": steps[0], "last_step": steps[-1],
            "last": values[-1], "min": min(numbers, default=None),
            "max": max(numbers, default=None),
        }  # fmt: skip
    blob = json.dumps(points, separators=(",", ":"), allow_nan=False).encode()
    return {"series": series, "points": Blob(blob, "application/json")}


def _finite(value: float) -> float | str:
    number = float(value)
    return number if math.isfinite(number) else str(number)


def _local(uri: str | None) -> Path | None:
    if not uri:
        return None
    parts = urlsplit(uri)
    if parts.scheme == "file":
        return Path(unquote(parts.path))
    if not parts.scheme or (len(parts.scheme) == 1 and uri[1:2] == ":"):
        return Path(uri)
    return None


def _time(millis: int | None) -> str | None:
    if not millis:
        return None
    moment = datetime.fromtimestamp(millis / 1000, tz=UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _without_credentials(uri: str) -> str:
    parts = urlsplit(uri)
    if "@" not in parts.netloc:
        return uri
    return parts._replace(netloc=parts.netloc.rpartition("@")[2]).geturl()


# --- mirror ---------------------------------------------------------------------------

_MIRRORED: dict[str, Any] = {}


def mirror() -> None:
    """Make ``mlflow.log_param/log_params/log_metric/log_metrics`` also log to the
    active mltrail run (the one ``mltrail.start_run`` or ``mltrail run`` opened);
    with no active run they only reach MLflow. Idempotent; ``unmirror()`` undoes it.

    Raises:
        ConfigError: MLflow is not installed.
    """
    mlflow = _mlflow()
    if _MIRRORED:
        return
    for name in ("log_param", "log_params", "log_metric", "log_metrics"):
        original = getattr(mlflow, name)
        _MIRRORED[name] = original
        setattr(mlflow, name, _mirrored(name, original))


def unmirror() -> None:
    """Restore MLflow's own ``log_*`` functions."""
    if not _MIRRORED:
        return
    mlflow = _mlflow()
    for name, original in _MIRRORED.items():
        setattr(mlflow, name, original)
    _MIRRORED.clear()


def _mirrored(name: str, original: Callable[..., Any]) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        result = original(*args, **kwargs)
        _to_mltrail(name, args, kwargs)
        return result

    wrapper.__name__ = name
    wrapper.__doc__ = original.__doc__
    wrapper.__wrapped__ = original  # type: ignore[attr-defined]
    return wrapper


def _to_mltrail(name: str, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
    from mltrail.record.recorder import active_run

    run = active_run()
    if run is None:
        return
    if name == "log_param":
        key, value = _two(args, kwargs, "key", "value")
        run.log_params({key: value})
    elif name == "log_params":
        run.log_params(dict(args[0] if args else kwargs["params"]))
    else:
        if name == "log_metric":
            key, value = _two(args, kwargs, "key", "value")
            metrics = {key: value}
        else:
            metrics = dict(args[0] if args else kwargs["metrics"])
        step = args[2 if name == "log_metric" else 1] if len(args) > (
            2 if name == "log_metric" else 1
        ) else kwargs.get("step")  # fmt: skip
        run.log_metrics(metrics, step=step)


def _two(
    args: tuple[Any, ...], kwargs: dict[str, Any], a: str, b: str
) -> tuple[Any, Any]:
    values = list(args[:2])
    for key in (a, b)[len(values) :]:
        values.append(kwargs[key])
    return values[0], values[1]
