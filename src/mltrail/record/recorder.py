"""Recording runs: the writer of one run's entries, run ids, run context, run lists.

The wrapper (``mltrail run``) and the Python API (``mltrail.start_run``) both record
through here, so a run reads the same in the ledger whichever way it was made:

- ``RunWriter`` cleans every body of secrets (``capture.guard``: keyed
  commitments, masking, detection), stores the ``Blob`` values collectors left in
  it, and appends the run's entries atomically. ``secret_guard`` makes the guard
  of a run: the home's commitment key, the run's mask set, the allow-list.
  ``SpoolWriter`` does the same for a process that joined a wrapper's run, which
  cannot sign: its batches go to the wrapper's spool (``mltrail.ledger.spool``).
- ``check_new_run_id`` keeps a run id to one run.
- ``capture_context`` collects code, environment and hardware in parallel.
- Live runs and their lock files are in ``mltrail.record.open_runs``.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import threading
import time
import uuid
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mltrail.capture.machine.environment import capture_environment
from mltrail.capture.machine.hardware import capture_hardware
from mltrail.capture.run.allowlist import load_allow_list
from mltrail.capture.run.blob import Blob, spill_text
from mltrail.capture.run.commitment import Committer
from mltrail.capture.run.git import capture_code
from mltrail.capture.run.guard import SecretGuard
from mltrail.capture.run.mask_channel import channel_reporter
from mltrail.capture.run.mask_sources import collect_mask_set
from mltrail.capture.run.program import capture_code_files, code_paths
from mltrail.core.codec import decode_record, format_time, validate_entry
from mltrail.core.entry import Entry
from mltrail.core.limits import value_problem
from mltrail.errors import InputError, SchemaError
from mltrail.ledger.columns import column_refusal
from mltrail.ledger.keystore import load_commitment_key
from mltrail.ledger.ledger import Draft
from mltrail.ledger.spool import SPOOLED_KINDS, write_batch
from mltrail.record.run_status import (
    OPEN_RUNS,
    RunSummary,
    check_run_id,
    open_run_file,
    run_liveness,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable, Mapping, Sequence
    from pathlib import Path

    from mltrail.core.entry import Record
    from mltrail.ledger.home import Home
    from mltrail.ledger.ledger import Ledger

__all__ = [
    "HOME_ENV",
    "OPEN_RUNS",
    "RUN_ID_ENV",
    "RunSummary",
    "RunWriter",
    "SpoolWriter",
    "active_run",
    "capture_context",
    "capture_rank",
    "check_new_run_id",
    "check_run_id",
    "distributed_run_id",
    "enter_run",
    "leave_run",
    "list_runs",
    "new_run_id",
    "open_run_file",
    "other_rank",
    "run_liveness",
    "run_started_seq",
    "secret_guard",
    "with_rank",
]

RUN_ID_ENV = "MLTRAIL_RUN_ID"
HOME_ENV = "MLTRAIL_HOME"


def new_run_id() -> str:
    """A new run id: a UUIDv7 (RFC 9562), time-ordered with 74 random bits."""
    millis = time.time_ns() // 1_000_000 & (2**48 - 1)
    rand = secrets.randbits(74)
    value = (
        millis << 80
        | 0x7 << 76
        | (rand >> 62) << 64
        | 0b10 << 62
        | (rand & (2**62 - 1))
    )
    return str(uuid.UUID(int=value))


def run_started_seq(ledger: Ledger, run_id: str) -> int | None:
    """The seq of run ``run_id``'s ``run.started``, or None when it never started."""
    needle = f'"run":{json.dumps(run_id)}'.encode()
    for row in ledger.store.rows_of_kinds(["run.started"]):
        if needle not in row.data:
            continue
        entry = decode_record(row.data).record.entry
        if entry.kind != "run.started":  # the store's kind column was edited
            raise column_refusal(
                f"the store lists seq {row.seq} as a run.started record, but its "
                f"signed bytes say {entry.kind!r}"
            )
        if entry.run == run_id:
            return row.seq
    return None


def check_new_run_id(ledger: Ledger, run_id: str, source: str) -> str:
    """``run_id`` when no run in ``ledger`` has it yet: a run id names one run.

    Raises:
        InputError: a run with this id has already started (nothing recorded).
    """
    seq = run_started_seq(ledger, check_run_id(run_id))
    if seq is not None:
        raise InputError(
            f"run id {run_id} ({source}) already names the run started at seq "
            f"{seq}: a run id names one run; nothing was recorded",
            hint="unset MLTRAIL_RUN_ID for a fresh id, or give an unused one",
        )
    return run_id


_ACTIVE: list[Any] = []
_ACTIVE_LOCK = threading.Lock()


def active_run() -> Any | None:
    """The run this process records into (started by ``start_run``, autolog or
    ``python -m mltrail.auto``) while it has not ended, else None.

    One process makes one run: a nested ``start_run()`` gets a handle on this one
    (``Run.nested``), whose end flushes its metrics and leaves the run open.
    """
    with _ACTIVE_LOCK:
        live = [r for r in _ACTIVE if getattr(r, "status", None) is None]
        _ACTIVE[:] = live
        return live[0] if live else None


def enter_run(run: Any) -> None:
    """Make ``run`` the run of this process (see ``active_run``)."""
    with _ACTIVE_LOCK:
        _ACTIVE.append(run)


def leave_run(run: Any) -> None:
    """``run`` ended: it is no longer the run of this process."""
    with _ACTIVE_LOCK:
        _ACTIVE[:] = [r for r in _ACTIVE if r is not run]


def other_rank(env: Mapping[str, str]) -> bool:
    """Whether this process is a rank above 0 (``RANK`` or ``LOCAL_RANK`` > 0):
    it adds only what is its own (hardware, rank), never the code or packages."""
    for name in ("RANK", "LOCAL_RANK"):
        with contextlib.suppress(KeyError, ValueError):
            if int(env[name]) > 0:
                return True
    return False


def capture_rank(env: Mapping[str, str]) -> dict[str, int] | None:
    """Distributed-training rank (``RANK``, ``WORLD_SIZE``, ...) or None outside one."""
    names = {
        "rank": "RANK",
        "world_size": "WORLD_SIZE",
        "local_rank": "LOCAL_RANK",
        "node_rank": "NODE_RANK",
    }
    found: dict[str, int] = {}
    for key, name in names.items():
        with contextlib.suppress(KeyError, ValueError):
            found[key] = int(env[name])
    if "rank" not in found or found.get("world_size", 0) < 1:
        return None
    return found


_LAUNCH_NAMESPACE = uuid.UUID("6f1c2a7e-9d4b-5e0a-8c3f-2b7d1e9a4c60")


def distributed_run_id(
    env: Mapping[str, str], rank: Mapping[str, int] | None
) -> str | None:
    """The run id every rank of one distributed launch derives alike, or None.

    From torchrun's ``TORCHELASTIC_RUN_ID`` (set for multi-node rendezvous), else
    from the master address and port and the launcher's pid, which ranks on one node
    share. Across nodes without a rendezvous id, set ``MLTRAIL_RUN_ID`` instead.
    """
    if rank is None or rank.get("world_size", 1) < 2:
        return None
    job = env.get("TORCHELASTIC_RUN_ID", "none")
    if job in ("", "none"):
        master = f"{env.get('MASTER_ADDR', '')}:{env.get('MASTER_PORT', '')}"
        job = f"{master}/launcher-{os.getppid()}"
    restart = env.get("TORCHELASTIC_RESTART_COUNT", "0")
    return str(uuid.uuid5(_LAUNCH_NAMESPACE, f"{job}/restart-{restart}"))


_PARAM_KINDS = ("run.params", "run.step")
_TEXT_FIELDS: dict[str, tuple[str, ...]] = {
    "run.started": ("name",),
    "run.ended": ("error", "reason", "warnings"),
    "run.step": ("name",),
    "run.data": ("role",),
    "run.artifact": ("name", "error", "model_error"),
    "run.finetune": ("error",),
    "note": ("text",),
}
"""Free text a run's entries keep as strings (a name, an error message, a note):
a credential in it is masked in place (``SecretGuard.clean_text``), its words
kept; committed whole, it would be a mapping the schema refuses."""


def with_rank(
    kind: str, body: dict[str, Any], rank: Mapping[str, int] | None
) -> tuple[str, dict[str, Any]]:
    """``(kind, body)`` with the rank added to a ``run.hardware`` body."""
    if kind == "run.hardware" and rank is not None:
        return kind, {**body, "rank": dict(rank)}
    return kind, body


def secret_guard(
    home: Path,
    env: Mapping[str, str],
    *,
    argv: Sequence[str] = (),
    params: Iterable[Mapping[str, Any]] = (),
    create_key: bool = True,
) -> SecretGuard:
    """The secret guard of a run recorded into ``home``: its commitment key (made
    on first need), the mask set of ``env``, ``argv`` and config ``params``, and
    the allow-list.

    Raises:
        ConfigError: the commitment key cannot be read or made, or the allow-list
            is malformed.
    """
    allow = load_allow_list(home, env)
    key = load_commitment_key(home, create=create_key)
    masks = collect_mask_set(env=env, argv=argv, params=params, allow=allow)
    guard = SecretGuard(Committer(key), masks, allow=allow)
    guard.report = channel_reporter(env)  # a wrapper stores this process's output
    return guard


class RunWriter:
    """Appends the entries of one run: secrets cleaned, blobs stored, atomically.

    Without a ``guard``, commitments are made under a key nobody keeps (they can
    never be checked) and only what the detector finds is masked: recording
    paths pass the guard of their home (``secret_guard``).
    """

    def __init__(
        self, ledger: Ledger, run_id: str, guard: SecretGuard | None = None
    ) -> None:
        self.ledger = ledger
        self.run_id = run_id
        self.guard = guard or SecretGuard()

    def draft(self, kind: str, body: Mapping[str, Any]) -> Draft:
        """Clean ``body`` of secrets, store its blobs, and return the draft.

        Raises:
            SchemaError: ``body`` nests too deep to be walked (see ``core.limits``).
        """
        problem = value_problem(dict(body), "body", exact_ints=False)
        if problem is not None:  # the append would refuse it; redacting would recurse
            raise SchemaError(f"cannot append: {problem}")
        body = self._text_cleaned(kind, body)
        cleaned = self.guard.clean(body)
        if kind in _PARAM_KINDS and "params" in cleaned:  # long text is content
            # a blob now, so masked and scanned by the guard like every text blob
            spilled = {**cleaned, "params": spill_text(cleaned["params"])}
            cleaned = self.guard.clean(spilled)
        return Draft(kind, self._store_blobs(cleaned), self.run_id)

    def _text_cleaned(self, kind: str, body: Mapping[str, Any]) -> Mapping[str, Any]:
        """``body`` with its free-text fields (:data:`_TEXT_FIELDS`) cleaned in
        place: they must stay strings, and a credential shape in a string
        commits it whole, as a mapping the schema refuses."""
        fields = [f for f in _TEXT_FIELDS.get(kind, ()) if f in body]
        if not fields:
            return body
        out = dict(body)
        for name in fields:
            value = out[name]
            if isinstance(value, str):
                out[name] = self.guard.clean_text(value)
            elif isinstance(value, list):
                out[name] = [
                    self.guard.clean_text(v) if isinstance(v, str) else v for v in value
                ]
        return out

    def write(self, entries: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Record]:
        """Append ``(kind, body)`` entries of this run, all or nothing."""
        drafts = [self.draft(kind, body) for kind, body in entries]
        return self.ledger.append_many(drafts) if drafts else []

    def _store_blobs(self, value: Any) -> Any:
        if isinstance(value, Blob):
            ref = self.ledger.put_blob(value.data)
            if value.media_type:
                ref["media_type"] = value.media_type
            return ref
        if isinstance(value, dict):
            return {k: self._store_blobs(v) for k, v in value.items()}
        if isinstance(value, list):
            return [self._store_blobs(v) for v in value]
        return value


class SpoolWriter(RunWriter):
    """The writer of a process that joined a wrapper's run without its key.

    It checks, redacts and stores blobs like ``RunWriter``, then hands each batch
    to the wrapper's spool (``mltrail.ledger.spool``), which signs and appends it.
    """

    def __init__(
        self,
        ledger: Ledger,
        run_id: str,
        spool: Path,
        guard: SecretGuard | None = None,
    ) -> None:
        super().__init__(ledger, run_id, guard)
        self.spool = spool

    def write(self, entries: Iterable[tuple[str, Mapping[str, Any]]]) -> list[Record]:
        """Spool ``(kind, body)`` entries as one batch; nothing is appended yet.

        Raises:
            InputError: a kind a joined process may not add, or a body off-schema.
        """
        drafts = [self.draft(kind, body) for kind, body in entries]
        for draft in drafts:
            self._check(draft)
        if drafts:
            batch = [{"kind": d.kind, "body": dict(d.body)} for d in drafts]
            write_batch(self.spool, batch)
        return []

    def _check(self, draft: Draft) -> None:
        if draft.kind not in SPOOLED_KINDS:
            raise InputError(f"a process joined to a run may not add {draft.kind}")
        now = format_time(datetime.now(UTC))
        entry = Entry(draft.kind, now, self.ledger.actor, dict(draft.body), self.run_id)
        validate_entry(entry.to_dict(with_sig=False))


def capture_context(
    *,
    cwd: Path,
    env: Mapping[str, str],
    python: str | None = None,
    extra_vars: Sequence[str] = (),
    argv: Sequence[str] = (),
    program: str | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Code, environment and hardware bodies, collected in parallel threads.

    The code is the git state of ``cwd`` plus the files command ``argv`` runs
    (``program`` is its resolved executable): see ``capture.program``.

    Raises:
        Exception: whatever a collector raised (they report problems in the body).
    """
    jobs: dict[str, Callable[[], dict[str, Any]]] = {
        "run.code": lambda: capture_code_files(
            capture_code(cwd, watch=code_paths(argv, cwd, program)), argv, cwd, program
        ),
        "run.environment": lambda: capture_environment(
            env, python=python, extra_vars=extra_vars
        ),
        "run.hardware": lambda: capture_hardware(env),
    }
    results: dict[str, Any] = {}

    def work(kind: str, job: Callable[[], dict[str, Any]]) -> None:
        try:
            results[kind] = job()
        except BaseException as e:
            results[kind] = e

    threads = [
        threading.Thread(target=work, args=item, name=f"mltrail-{item[0]}", daemon=True)
        for item in jobs.items()
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for value in results.values():
        if isinstance(value, BaseException):
            raise value
    return [(kind, results[kind]) for kind in jobs]


def list_runs(home: Home) -> list[RunSummary]:
    """Every run in the ledger, oldest first, with its status.

    A run without ``run.ended`` is ``running`` while its recorder lives and
    ``stale`` once it died (``close_stale_runs`` records those as aborted).
    """
    runs: dict[str, RunSummary] = {}
    for record in home.ledger.records_of_kinds(["run.started", "run.ended"]):
        entry, run_id = record.entry, record.entry.run
        if run_id is None:
            continue
        if entry.kind == "run.started" and run_id not in runs:
            runs[run_id] = _summary(record)
        elif entry.kind == "run.ended" and run_id in runs:
            _apply_end(runs[run_id], record)
    for summary in runs.values():
        if summary.status == "open":
            summary.status = run_liveness(home.path, summary.id, home.ledger.store)
    return list(runs.values())


def _summary(record: Record) -> RunSummary:
    entry = record.entry
    body = entry.body
    return RunSummary(
        id=str(entry.run),
        name=body.get("name"),
        status="open",
        started=entry.time,
        ended=None,
        duration_s=None,
        exit_code=None,
        user=entry.actor.get("user"),
        host=entry.actor.get("host"),
        command=list(body.get("command", [])),
        seq=record.seq,
        claimed_user=entry.actor.get("claimed_user"),
    )


def _apply_end(summary: RunSummary, record: Record) -> None:
    body = record.entry.body
    summary.status = str(body.get("status", "ended"))
    summary.ended = record.entry.time
    summary.duration_s = body.get("duration_s")
    summary.exit_code = body.get("exit_code")
