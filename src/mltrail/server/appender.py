"""Group commit: one thread per ledger turns concurrent append requests into one
transaction with one checkpoint.

Request threads check their entries first (JSON, schema, role, actor) and hand
them over as a :class:`Job`; the appender takes every job waiting (up to
``MAX_GROUP_ENTRIES`` entries) and appends them with one
``Ledger.append_entries`` call: one lock, one insert of records and nodes, one
signed checkpoint, one WAL flush; under its lock, the check that no entry names
another user's run (:mod:`~mltrail.server.run_owners`). When the group fails
(one entry's key is not valid, its time is off, it names another user's
run...) each job is retried alone, so a bad request is answered with its own
error and never fails the others.

A job with an ``Idempotency-Key`` stores its response in
``mltrail_server.idempotency`` in the same transaction as its records; a key
seen before is answered from there (or refused, 409, when the request differs).
"""

from __future__ import annotations

import contextlib
import json
import queue
import threading
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mltrail.errors import ConfigError, InputError
from mltrail.server.control_schema import CONTROL_SCHEMA
from mltrail.server.run_owners import AppendOwnerCheck
from mltrail.storage.postgres import connection_lost

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import psycopg

    from mltrail.core.entry import Entry
    from mltrail.core.signing import Signer
    from mltrail.ledger.ledger import Ledger
    from mltrail.storage.base import NewBatch

__all__ = ["Appender", "IdempotencyConflictError", "Job", "idempotency_scope"]

MAX_GROUP_ENTRIES = 2000
MAX_GROUP_JOBS = 128
WAIT_SECONDS = 120.0


class IdempotencyConflictError(InputError):
    """An idempotency key was used before with another request (HTTP 409)."""


def idempotency_scope(user: str, key: str) -> str:
    """The key an ``Idempotency-Key`` is kept under: the caller's own, within its
    user (a token's name). Keys were one namespace per ledger: any writer could
    take the key another user's next request would send (``mltrail push``
    derives its keys from what every reader sees) and so have that request
    refused, 409, for good. A name is printable and a header holds no line
    break, so the two parts cannot run into each other."""
    return f"{user}\n{key}"


@dataclass
class Job:
    """One request's entries, its idempotency key (if any), and where its answer goes."""

    entries: Sequence[Entry] = ()
    key: str | None = None
    token_id: str = ""
    request_sha256: bytes = b""
    call: Callable[[Ledger], Any] | None = None
    admin: bool = False
    """Sent with an admin's token: may add records to another user's run."""
    future: Future[Any] = field(default_factory=Future)


class Appender:
    """The one writer of a ledger (in this process): a thread draining a queue."""

    def __init__(
        self,
        name: str,
        open_ledger: Callable[[], Ledger],
        fresh_signer: Callable[[Ledger], Signer | None] | None = None,
    ) -> None:
        self.name = name
        self._open = open_ledger
        self._fresh_signer = fresh_signer
        """Called before each write, and again when a write was refused with a
        revoked log key: a new log key to sign with (the admin rotated it), or
        None."""
        self._queue: queue.Queue[Job | None] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._start_lock = threading.Lock()
        self._ledger: Ledger | None = None
        self._owners = AppendOwnerCheck()
        self.groups = 0
        """Transactions written (for the benchmark: requests / groups)."""

    def append(
        self,
        entries: Sequence[Entry],
        *,
        key: str | None = None,
        token_id: str = "",
        request_sha256: bytes = b"",
        admin: bool = False,
    ) -> Future[dict[str, Any]]:
        """Queue one request's entries (grouped with others); the future of its
        response body (or of the error that refused it). ``admin``: sent with an
        admin's token (see :mod:`~mltrail.server.run_owners`)."""
        job = Job(entries, key, token_id, request_sha256, admin=admin)
        self._ensure_started()
        self._queue.put(job)
        return job.future

    def call(self, fn: Callable[[Ledger], Any]) -> Any:
        """Run ``fn(ledger)`` on the appender thread (key registration), alone."""
        return self._submit(Job(call=fn))

    def _submit(self, job: Job) -> Any:
        self._ensure_started()
        self._queue.put(job)
        return job.future.result(timeout=WAIT_SECONDS)

    def _ensure_started(self) -> None:
        if self._thread is not None:
            return
        with self._start_lock:
            if self._thread is None:
                thread = threading.Thread(
                    target=self._run, name=f"mltrail-appender-{self.name}", daemon=True
                )
                thread.start()
                self._thread = thread

    def stop(self) -> None:
        """Finish the queued jobs, then stop the thread and close the ledger."""
        if self._thread is not None:
            self._queue.put(None)
            self._thread.join(timeout=30)
        if self._ledger is not None:
            self._ledger.close()

    # -- the appender thread ---------------------------------------------------

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None:
                return
            group, later = [job], []
            count = len(job.entries)
            while count < MAX_GROUP_ENTRIES and len(group) < MAX_GROUP_JOBS:
                try:
                    nxt = self._queue.get_nowait()
                except queue.Empty:
                    break
                if nxt is None:
                    later.append(nxt)
                    break
                group.append(nxt)
                count += len(nxt.entries)
            try:
                self._serve(group)
            except BaseException as e:  # a bug must not kill the thread
                for job in group:
                    if not job.future.done():
                        job.future.set_exception(e)
            if later:
                return

    def _ledger_now(self) -> Ledger:
        ledger = self._ledger
        if ledger is not None and connection_lost(ledger.store._conn):  # type: ignore[attr-defined]
            self._ledger = None  # lost while idle: the database restarted
            with contextlib.suppress(Exception):
                ledger.close()
        if self._ledger is None:
            self._ledger = self._open()
        self._take_fresh_signer(self._ledger)
        return self._ledger

    def _take_fresh_signer(self, ledger: Ledger) -> bool:
        """Sign with the log key the admin rotated in, if any; True if taken."""
        if self._fresh_signer is None:
            return False
        signer = self._fresh_signer(ledger)
        if signer is None:
            return False
        ledger.signer = signer
        return True

    def _serve(self, group: list[Job]) -> None:
        ready: list[Job] = []
        later: list[Job] = []  # a key twice in one group, or a key call: after
        keys: set[str] = set()
        for job in group:
            if job.call is not None or (job.key is not None and job.key in keys):
                later.append(job)
                continue
            if job.key is not None:
                keys.add(job.key)
            if not self._answered(job):
                ready.append(job)
        if len(ready) > 1:
            try:
                self._commit(ready)
            except BaseException:
                self._reset_if_broken()
            else:
                ready = []
        for job in ready:
            self._alone(job)
        for job in later:
            if job.call is not None or not self._answered(job):
                self._alone(job)

    def _alone(self, job: Job) -> None:
        try:
            if job.call is not None:
                job.future.set_result(job.call(self._ledger_now()))
            else:
                self._commit([job])
        except BaseException as e:
            self._reset_if_broken()
            if not job.future.done():
                job.future.set_exception(e)

    def _reset_if_broken(self) -> None:
        """Drop the ledger whose connection broke; the next job opens another."""
        ledger = self._ledger
        if ledger is not None and connection_lost(ledger.store._conn):  # type: ignore[attr-defined]
            self._ledger = None
            ledger.close()

    def _answered(self, job: Job) -> bool:
        """Answer a job whose idempotency key is known already; True if answered."""
        if job.key is None:
            return False
        try:
            found = (
                self._ledger_now()
                .store._conn.execute(  # type: ignore[attr-defined]
                    f"SELECT token_id, request_sha256, response FROM {CONTROL_SCHEMA}"  # noqa: S608
                    ".idempotency WHERE ledger = %s AND key = %s",
                    (self.name, job.key),
                )
                .fetchone()
            )
        except BaseException as e:
            self._reset_if_broken()  # the database restarted: reconnect next time
            job.future.set_exception(e)
            return True
        if found is None:
            return False
        token_id, digest, response = found
        if token_id != job.token_id or bytes(digest) != job.request_sha256:
            job.future.set_exception(
                IdempotencyConflictError(
                    f"Idempotency-Key {job.key.partition(chr(10))[2]!r} was used "
                    "with another request",
                    hint="use a new key for a new request",
                )
            )
        else:
            job.future.set_result(response)
        return True

    def _commit(self, jobs: list[Job]) -> None:
        """Append the jobs' entries in one transaction and answer each job."""
        ledger = self._ledger_now()
        store = ledger.store
        answers: list[dict[str, Any]] = []

        def on_write(conn: psycopg.Connection[Any], batch: NewBatch) -> None:
            answers[:] = _responses(jobs, batch)
            rows = [
                (self.name, j.key, j.token_id, j.request_sha256, json.dumps(a))
                for j, a in zip(jobs, answers, strict=True)
                if j.key is not None
            ]
            if rows:
                with conn.cursor() as cur:
                    cur.executemany(
                        f"INSERT INTO {CONTROL_SCHEMA}.idempotency (ledger, key, "  # noqa: S608
                        "token_id, request_sha256, response) VALUES (%s, %s, %s, %s, %s)",
                        rows,
                    )

        def before_write() -> None:
            self._owners.check(store, [(j.entries, j.admin) for j in jobs])

        store.on_write = on_write  # type: ignore[attr-defined]
        store.before_write = before_write  # type: ignore[attr-defined]
        entries = [e for j in jobs for e in j.entries]
        try:
            try:
                ledger.append_entries(entries)
            except ConfigError:
                # the log key was revoked under this write (a rotation stored
                # since the last): once with the key it was rotated to
                if not (ledger.signer_revoked() and self._take_fresh_signer(ledger)):
                    raise
                ledger.append_entries(entries)
        finally:
            store.on_write = None  # type: ignore[attr-defined]
            store.before_write = None  # type: ignore[attr-defined]
        self._owners.committed()
        self.groups += 1
        for job, answer in zip(jobs, answers, strict=True):
            job.future.set_result(answer)


def _responses(jobs: list[Job], batch: NewBatch) -> list[dict[str, Any]]:
    out, at = [], 0
    for job in jobs:
        records = batch.records[at : at + len(job.entries)]
        at += len(job.entries)
        out.append(
            {
                "records": [
                    {"seq": r.seq, "prev": r.prev, "hash": r.hash.hex()}
                    for r in records
                ],
                "size": batch.head.size,
                "checkpoint": batch.checkpoint,
            }
        )
    return out
