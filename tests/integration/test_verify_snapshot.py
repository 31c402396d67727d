"""A verification reads one state of its store while another process writes.

A verification reads checkpoints, then records (a page of 2,000 at a time),
Merkle nodes, blobs and purges, one after the other. Read apart, an append
another process committed between two of those reads was verified as
tampering: its record, read by the walk, was covered by no checkpoint read
before it (``uncovered``, once seen from the team server's ``POST /verify``
under load), and a blob purged after the walk but before its bytes were read
was missing with no purge record to say why (``blob-missing``). Now every read
of a verification is made in one snapshot (``Store.snapshot``: a REPEATABLE
READ transaction in PostgreSQL, one read transaction in SQLite's WAL), and the
report's size is the size it verified. ADR 0004, amendment of 2026-12-07.

The other process is a real one (``python -c``), started from the
verification's progress callback: deterministically between two of its reads.
SQLite on a temporary file; PostgreSQL on a schema of the test server
(tests/postgres_db.py: skipped without one, a failure under CI).
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from mltrail.ledger.ledger import Draft, Ledger
from mltrail.ledger.stored import KIND_ROLES
from mltrail.storage.sqlite import SQLiteStore
from mltrail.testing import fixed_signer
from postgres_db import throwaway_database, throwaway_schema

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from mltrail.storage.base import Store

SIGNER = fixed_signer("verify-snapshot")
ORIGIN = "test.example/verify-snapshot"
NOTES = 2_100
"""More records than one page the walk reads (2,000): it reads the store
again after its first thousand, when ``progress`` is first called."""
SRC = Path(__file__).resolve().parents[2] / "src"

WRITER = textwrap.dedent(
    """
    import json, sys
    from mltrail.errors import StoreError
    from mltrail.ledger.erasure import purge_blob
    from mltrail.ledger.ledger import Ledger
    from mltrail.ledger.stored import KIND_ROLES
    from mltrail.testing import fixed_signer

    backend, where, action = sys.argv[1:4]
    if backend == "sqlite":
        from mltrail.storage.sqlite import SQLiteStore as Opened
    else:
        from mltrail.storage.postgres import PostgresStore as Opened
    signer = fixed_signer("verify-snapshot")
    ledger = Ledger(
        Opened(where, roles=KIND_ROLES), signer, origin=sys.argv[4],
        trusted_key=signer.key_id,
    )
    if action == "append":
        seq = ledger.append("note", {"text": "appended during a verification"}).seq
        print(json.dumps({"seq": seq}))
    else:
        try:
            purge_blob(ledger, action, reason="purged during a verification")
            print(json.dumps({"erased": True}))
        except StoreError as e:
            print(json.dumps({"erased": False, "error": str(e)}))
    ledger.close()
    """
)


@pytest.fixture(scope="module")
def postgres_database() -> Iterator[str]:
    with throwaway_database() as url:
        yield url


@pytest.fixture(params=["sqlite", "postgres"])
def backend(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[str, str, Callable[..., Store]]]:
    """(backend, where another process opens it, an opener for this one)."""
    if request.param == "sqlite":
        path = str(tmp_path / "ledger.db")
        yield "sqlite", path, lambda **o: SQLiteStore(path, roles=KIND_ROLES, **o)
        return
    from mltrail.storage.postgres import PostgresStore

    database = request.getfixturevalue("postgres_database")
    with throwaway_schema(database) as url:
        yield "postgres", url, lambda **o: PostgresStore(url, roles=KIND_ROLES, **o)


def _writer(backend: str, where: str, action: str) -> subprocess.Popen[str]:
    """Start the other process: an append, or a purge of a blob."""
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, backend, where, action, ORIGIN],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(SRC)},
    )  # fmt: skip


def _ended(process: subprocess.Popen[str]) -> dict:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return json.loads(out)


def _wait_until(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 60
    while not check():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)


def _reader(opener: Callable[..., Store]) -> Ledger:
    return Ledger(opener(), None, origin=ORIGIN, trusted_key=SIGNER.key_id)


def test_an_append_committed_during_a_verification_is_left_for_the_next(backend):
    name, where, opener = backend
    ledger = Ledger.create(opener(create=True), SIGNER, origin=ORIGIN)
    ledger.append_many([Draft("note", {"text": f"note {i}"}) for i in range(NOTES)])
    ledger.close()
    appended: list[dict] = []

    def progress(done: int, total: int) -> None:
        if not appended:  # after the first thousand, before the next page
            appended.append(_ended(_writer(name, where, "append")))

    reader = _reader(opener)
    report = reader.verify(progress=progress)
    assert appended == [{"seq": NOTES + 1}]
    assert report.ok, [str(p) for p in report.problems]
    assert report.size == NOTES + 1  # what was there when it began
    assert reader.store.head().size == NOTES + 2
    again = reader.verify()
    assert again.ok, [str(p) for p in again.problems]
    assert again.size == NOTES + 2
    reader.close()


def test_a_purge_during_a_verification_is_left_for_the_next(backend):
    """The purge deletes the blob's row while the verification reads (its
    snapshot still holds the bytes); in SQLite its erasure then waits for the
    snapshot to end, so that no copy is left in the write-ahead log."""
    name, where, opener = backend
    ledger = Ledger.create(opener(create=True), SIGNER, origin=ORIGIN)
    ref = ledger.put_blob(b"bytes purged while a verification reads")
    ledger.append("note", {"text": "attached", "attachments": [ref]})
    ledger.close()
    purging: list[subprocess.Popen[str]] = []

    def deleted() -> bool:
        with opener() as other:
            return not other.find_blobs(ref["blob"])

    def progress(done: int, total: int) -> None:
        if not purging:  # the walk is done; the blob is read next
            purging.append(_writer(name, where, ref["blob"]))
            _wait_until(deleted, "the purge to delete the blob")

    reader = _reader(opener)
    report = reader.verify(progress=progress)
    assert report.ok, [str(p) for p in report.problems]
    assert (report.size, report.blobs_checked, report.purged) == (2, 1, [])
    assert _ended(purging[0]) == {"erased": True}
    again = reader.verify()
    assert again.ok, [str(p) for p in again.problems]
    assert again.size == 3
    assert [p.digest for p in again.purged] == [ref["blob"]]
    reader.close()


def test_reads_in_a_snapshot_see_one_state(backend):
    """Head, records, nodes, checkpoints and blobs read inside ``snapshot()``
    stay as its first read found them while another opener appends; one
    snapshot inside another is the outer one; after it, the append is seen."""
    _, _, opener = backend
    writer = Ledger.create(opener(create=True), SIGNER, origin=ORIGIN)
    writer.append("note", {"text": "before"})
    store = opener()
    with store.snapshot():
        before = store.head()
        checkpoints = store.checkpoints()
        writer.append("note", {"text": "during"})
        writer.put_blob(b"a blob stored during the snapshot")
        with store.snapshot():
            assert store.head() == before
        assert len(list(store.rows())) == before.size == 2
        assert store.checkpoints() == checkpoints
        assert store.node_range(0, 0, 10).keys() == {0, 1}
        assert store.find_blobs("sha256:") == []
    assert store.head().size == 3
    assert len(store.checkpoints()) == len(checkpoints) + 1
    assert len(store.find_blobs("sha256:")) == 1
    store.close()
    writer.close()
