"""A client-mode verification reads one state of the server's ledger while it grows.

In client mode (ADR 0028) ``Home.verify`` reads the server's ledger through
``HttpStore``, request after request: the checkpoints, the head, the key
records, the records a page at a time, the Merkle nodes, the blobs, the
evidence. Other clients append meanwhile, and the server's admin purges. Read
apart, an append the server committed between two of those requests was
verified as tampering (its record, reached by a later page of the walk, was
covered by no checkpoint read before it: ``uncovered``), and a blob purged
after the walk but before its bytes were read was missing with no purge record
to say why (``blob-missing``). Now a verification over HTTP answers as of the
size of one head read (``HttpStore``'s snapshot, ADR 0004's amendment of
2026-12-08); a blob erased by a purge beyond that size makes the verification
begin again in a new snapshot, which reads the purge record.

Each race is made deterministic: the other writer acts from inside one of the
verifying store's requests (the store's ``request`` wrapped on the instance),
between two reads of one verification. A real ``mltrail server`` subprocess
(tests/server_fixture.py); the other writer is another client (an
``HttpStore`` with a writer's token) or the server's admin (a ``Ledger`` over
the server's PostgreSQL schema, with the log key, as ``keys rotate --db``).
The tampering cases at the end check that a verification that is not racing
still reports what it did before, and that what the server says of a purge
cannot excuse a missing blob.
"""

from __future__ import annotations

import json
import subprocess
import sys
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from optional_extras import require_extra

require_extra("server", "fastapi", "uvicorn", "psycopg")
require_extra("client", "httpx2")

from client_mode import append_attached, append_notes, client_env, ledger_url  # noqa: E402
from mltrail.ledger.home import open_home  # noqa: E402
from mltrail.ledger.stored import KIND_ROLES  # noqa: E402
from mltrail.storage import http  # noqa: E402
from mltrail.storage.http import HttpStore  # noqa: E402
from server_fixture import running_server  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator
    from pathlib import Path

    from mltrail.core.report import VerificationReport
    from mltrail.ledger.home import Home

WRITER = "bea"
PAGE = 3
"""Records a page (the walk then reads the server again after every 3)."""


@pytest.fixture(scope="module")
def server():
    with running_server() as running:
        yield running


def _env(server, home: Path, ledger: str) -> dict[str, str]:
    return client_env(server, home, "auditor", "carol", ledger)


@contextmanager
def _writer(server, ledger: str) -> Iterator[HttpStore]:
    with HttpStore(
        ledger_url(server, ledger), server.token("writer", WRITER, ledger)
    ) as s:
        yield s


def _notes(server, ledger: str, count: int, text: str = "note") -> None:
    append_notes(server, ledger, WRITER, count, text)


def _attached(server, ledger: str, data: bytes) -> str:
    """Append a note with ``data`` attached; its digest."""
    return append_attached(server, ledger, WRITER, data)


@contextmanager
def _admin_ledger(server, ledger: str) -> Iterator[Any]:
    """The server's ledger as its admin opens it: the PostgreSQL schema, the
    log key (what `mltrail keys rotate --db` does)."""
    from mltrail.ledger.ledger import Ledger
    from mltrail.server.control import schema_url
    from mltrail.storage.postgres import PostgresStore

    signer = server.log_signer(ledger)
    url = schema_url(server.owner_url, "ledger_" + ledger.replace("-", "_"))
    store = PostgresStore(url, roles=KIND_ROLES)
    opened = Ledger(
        store, signer, origin=f"test.example/{ledger}", trusted_key=signer.key_id
    )
    try:
        yield opened
    finally:
        opened.close()


@contextmanager
def _auditor(server, tmp_path: Path, ledger: str) -> Iterator[Home]:
    home = open_home(
        tmp_path / "carol", writable=False, env=_env(server, tmp_path / "carol", ledger)
    )
    try:
        assert isinstance(home.ledger.store, HttpStore)
        yield home
    finally:
        home.close()


def _between(
    store: HttpStore,
    monkeypatch: pytest.MonkeyPatch,
    when: Callable[[str, str, dict[str, Any]], bool],
    act: Callable[[], None],
    *,
    before: bool = False,
) -> list[str]:
    """Run ``act`` once, from inside the first request of ``store`` that
    ``when(method, path, params)`` picks: after it was answered (or before it
    was sent, ``before``). Returns the paths requested, in order."""
    original = store.request
    asked: list[str] = []
    done: list[bool] = []

    def request(method: str, path: str, **kw: Any) -> Any:
        asked.append(path)
        picked = not done and when(method, path, dict(kw.get("params") or {}))
        if picked and before:
            done.append(True)
            act()
        answer = original(method, path, **kw)
        if picked and not before:
            done.append(True)
            act()
        return answer

    monkeypatch.setattr(store, "request", request)
    return asked


def _problems(report: VerificationReport) -> list[str]:
    return [f"{p.severity}: {p.code} at {p.seq}: {p.message}" for p in report.problems]


def _errors(report: VerificationReport) -> list[str]:
    return [p.code for p in report.problems if str(p.severity) == "error"]


def _pending(report: VerificationReport) -> list[int | None]:
    """Where the checkpoints still waiting for a timestamp end (seq)."""
    return [p.seq for p in report.problems if p.code == "timestamp-pending"]


def _walk_page(method: str, path: str, params: dict[str, Any]) -> bool:
    """A page of the walk over every record (not the key records)."""
    return path == "/records" and "kinds" not in params


# -- racing: an intact ledger must verify intact --------------------------------


def test_an_append_during_a_verification_is_left_for_the_next(
    server, tmp_path, monkeypatch
):
    """Another client appends after the walk's first page: the next pages read
    its records, which no checkpoint read before covers (before: TAMPERED,
    ``uncovered``). Now the walk stops at the size pinned when it began."""
    _notes(server, "team-a", 8)
    monkeypatch.setattr(http, "PAGE", PAGE)
    with _auditor(server, tmp_path, "team-a") as home:
        size = home.ledger.store.head().size
        _between(
            home.ledger.store,
            monkeypatch,
            _walk_page,
            lambda: _notes(server, "team-a", 2, "appended during a verification"),
        )
        report = home.verify()
        assert report.ok, _problems(report)
        assert report.size == size
        monkeypatch.undo()
        again = home.verify()
        assert again.ok, _problems(again)
        assert again.size == size + 2


def test_a_purge_during_a_verification_is_verified_in_a_new_snapshot(
    server, tmp_path, monkeypatch
):
    """The server's admin purges a blob after the walk, before its bytes are
    read: gone (410), and the purge record lies beyond the records walked
    (before: TAMPERED, ``blob-missing``). Now the verification begins again
    in a new snapshot, whose walk reads the purge record: purged by policy."""
    from mltrail.ledger.erasure import purge_blob

    digest = _attached(server, "team-a", b"bytes purged while a verification reads")
    _notes(server, "team-a", 4)

    def purge() -> None:
        with _admin_ledger(server, "team-a") as admin:
            purge_blob(admin, digest, reason="purged during a verification")

    with _auditor(server, tmp_path, "team-a") as home:
        size = home.ledger.store.head().size
        asked = _between(
            home.ledger.store,
            monkeypatch,
            lambda method, path, params: path == f"/blobs/{digest}",
            purge,
            before=True,
        )
        report = home.verify()
        assert report.ok, _problems(report)
        assert report.size == size + 1  # the purge record's
        assert [p.digest for p in report.purged] == [digest]
        assert asked.count(f"/blobs/{digest}") == 2  # read in each snapshot


def test_reads_pinned_to_a_verification_begun_again_are_its_last(
    server, tmp_path, monkeypatch
):
    """``verify_pinned`` (exports, reports): the records pinned for the
    command are those of the snapshot the verification ended in, not of the
    one a purge made stale (else: the verified records are not the ones
    read, an integrity error on an intact ledger)."""
    from mltrail.ledger.erasure import purge_blob
    from mltrail.ledger.home import verify_pinned
    from mltrail.ledger.pinned import PinnedStore

    digest = _attached(server, "team-a", b"bytes purged while an export reads")

    def purge() -> None:
        with _admin_ledger(server, "team-a") as admin:
            purge_blob(admin, digest, reason="purged during an export")

    with _auditor(server, tmp_path, "team-a") as home:
        size = home.ledger.store.head().size
        _between(
            home.ledger.store,
            monkeypatch,
            lambda method, path, params: path == f"/blobs/{digest}",
            purge,
            before=True,
        )
        report = verify_pinned(home)
        assert report.ok, _problems(report)
        assert isinstance(home.ledger.store, PinnedStore)
        assert home.ledger.store.size == report.size == size + 1


@pytest.mark.parametrize("before", [False, True], ids=["after", "before"])
def test_evidence_and_checkpoints_beyond_the_pinned_size_are_left_for_the_next(
    server, tmp_path, monkeypatch, before
):
    """Right after (or just before) the verification's first read of the
    checkpoints another client appends, and the admin marks the new
    checkpoint as waiting for its timestamp: evidence about a checkpoint
    beyond the size pinned is left for the next verification, like the
    checkpoint itself (not ``truncated``)."""
    from mltrail.evidence.policy import PENDING

    _notes(server, "team-a", 2)

    def append_and_mark() -> None:
        _notes(server, "team-a", 1, "appended, then marked pending")
        with _admin_ledger(server, "team-a") as admin:
            latest = admin.store.latest_checkpoint()
            admin.store.add_evidence(
                PENDING, latest.size, latest.text, b"", "2026-12-08T00:00:00Z"
            )

    with _auditor(server, tmp_path, "team-a") as home:
        size = home.ledger.store.head().size
        _between(
            home.ledger.store,
            monkeypatch,
            lambda method, path, params: path == "/checkpoints",
            append_and_mark,
            before=before,
        )
        report = home.verify()
        assert report.ok, _problems(report)
        assert report.size == size
        assert size not in _pending(report)  # the new checkpoint (of size + 1)
        monkeypatch.undo()
        again = home.verify()
        assert again.ok, _problems(again)
        assert again.size == size + 1
        assert size in _pending(again)


def test_mltrail_verify_against_a_growing_server(server, tmp_path):
    """The command: ``mltrail verify`` in a process whose store appends through
    another client after the walk's first page (a wrapper patches the store
    class before the command runs)."""
    _notes(server, "team-a", 8)
    env = _env(server, tmp_path / "dave", "team-a")
    env["WRITER_TOKEN"] = server.token("writer", WRITER)
    note = {"text": "appended during mltrail verify"}
    env["ENTRY"] = json.dumps(server.entry(WRITER, "note", note))
    script = _RACING_VERIFY.format(page=PAGE)
    done = subprocess.run(
        [sys.executable, "-c", script, "verify", "--json"], env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert "appended from inside the verification" in done.stderr, done.stderr
    assert done.returncode == 0, (done.stdout, done.stderr)


_RACING_VERIFY = """
import json, os, sys
from mltrail.cli.main import main
from mltrail.storage import http

http.PAGE = {page}
original = http.HttpStore.request
done = []

def request(self, method, path, **kw):
    answer = original(self, method, path, **kw)
    params = kw.get("params") or {{}}
    if not done and path == "/records" and "kinds" not in params:
        done.append(True)
        url = self.location
        with http.HttpStore(url, os.environ["WRITER_TOKEN"]) as other:
            sys.stderr.write("appended from inside the verification\\n")
            other.append_entries([json.loads(os.environ["ENTRY"])])
    return answer

http.HttpStore.request = request
sys.argv = ["mltrail", *sys.argv[1:]]
main()
"""


# -- not racing: tampering is still found ----------------------------------------


@contextmanager
def _owner_sql(server, ledger: str) -> Iterator[Any]:
    """A connection as the owner of the ledger's schema (who may turn its
    append-only triggers off: someone with the database in hand)."""
    import psycopg

    schema = "ledger_" + ledger.replace("-", "_")
    with psycopg.connect(server.owner_url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        yield conn


def test_a_blob_deleted_behind_a_purge_claimed_beyond_the_head_is_missing(
    server, tmp_path
):
    """Someone deletes a blob's bytes from the server's database and files a
    purge at a seq beyond the head, so that the server answers 410 naming it:
    not a purge the verification could read in a new snapshot, so the blob is
    missing (TAMPERED, ``blob-missing``), at once, as before."""
    data = b"bytes deleted by hand"
    digest = _attached(server, "team-b", data)
    with _auditor(server, tmp_path, "team-b") as home:
        head = home.ledger.store.head().size
        with _owner_sql(server, "team-b") as conn:
            conn.execute("ALTER TABLE blobs DISABLE TRIGGER USER")
            conn.execute("ALTER TABLE purges DISABLE TRIGGER USER")
            conn.execute("DELETE FROM blobs WHERE digest = %s", (digest,))
            conn.execute(
                "INSERT INTO purges (digest, size, seq) VALUES (%s, 1, %s)",
                (digest, head + 5),
            )
            conn.execute("ALTER TABLE purges ENABLE TRIGGER USER")
            conn.execute("ALTER TABLE blobs ENABLE TRIGGER USER")
        try:
            report = home.verify()
        finally:  # team-b as it was, for the other tests
            with _owner_sql(server, "team-b") as conn:
                conn.execute("ALTER TABLE purges DISABLE TRIGGER USER")
                conn.execute("DELETE FROM purges WHERE digest = %s", (digest,))
                conn.execute("ALTER TABLE purges ENABLE TRIGGER USER")
                conn.execute(
                    "INSERT INTO blobs (digest, size, data) VALUES (%s, %s, %s)",
                    (digest, len(data), data),
                )
        assert not report.ok
        assert "blob-missing" in _errors(report), _problems(report)
        assert report.size == head


def test_a_record_altered_on_the_server_is_tampering(server, tmp_path):
    """A record's bytes changed in the server's database: TAMPERED, as before."""
    _notes(server, "team-b", 3)
    with _auditor(server, tmp_path, "team-b") as home:
        head = home.ledger.store.head().size
        with _owner_sql(server, "team-b") as conn:
            (data,) = conn.execute(
                "SELECT record FROM records WHERE seq = %s", (head - 1,)
            ).fetchone()
            altered = bytes(data).replace(b"note 2", b"note 9")
            assert altered != bytes(data)
            conn.execute("ALTER TABLE records DISABLE TRIGGER USER")
            conn.execute(
                "UPDATE records SET record = %s WHERE seq = %s", (altered, head - 1)
            )
            conn.execute("ALTER TABLE records ENABLE TRIGGER USER")
        try:
            report = home.verify()
        finally:  # team-b as it was, for the other tests
            with _owner_sql(server, "team-b") as conn:
                conn.execute("ALTER TABLE records DISABLE TRIGGER USER")
                conn.execute(
                    "UPDATE records SET record = %s WHERE seq = %s",
                    (bytes(data), head - 1),
                )
                conn.execute("ALTER TABLE records ENABLE TRIGGER USER")
        assert not report.ok
        assert report.size == head
        bad = [p.seq for p in report.problems if str(p.severity) == "error"]
        assert head - 1 in bad, _problems(report)


def test_a_ledger_cut_on_the_server_keeps_its_checkpoints_in_a_snapshot(
    server, tmp_path
):
    """The last record deleted from the server's database, its checkpoint
    left: a snapshot pinned at the cut size still lists that checkpoint (no
    head read after it covers it), and the verification finds it
    ``truncated``, as before."""
    _notes(server, "team-b", 2)
    token = server.token("auditor", "carol", ledger="team-b")
    with _auditor(server, tmp_path, "team-b") as home:
        head = home.ledger.store.head().size
        with _owner_sql(server, "team-b") as conn:
            row = conn.execute(
                "SELECT seq, hash, kind, run, time, record FROM records WHERE seq = %s",
                (head - 1,),
            ).fetchone()
            conn.execute("ALTER TABLE records DISABLE TRIGGER USER")
            conn.execute("DELETE FROM records WHERE seq = %s", (head - 1,))
            conn.execute("ALTER TABLE records ENABLE TRIGGER USER")
        try:
            with (
                HttpStore(ledger_url(server, "team-b"), token) as store,
                store.snapshot(),
            ):
                assert store.head().size == head - 1
                assert max(c.size for c in store.checkpoints()) == head
                assert [r.seq for r in store.rows(head - 2)] == [head - 2]
            report = home.verify()
        finally:  # team-b as it was, for the other tests
            with _owner_sql(server, "team-b") as conn:
                conn.execute(
                    "INSERT INTO records (seq, hash, kind, run, time, record) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    row,
                )
        assert not report.ok
        assert report.size == head - 1
        assert "truncated" in _errors(report), _problems(report)
