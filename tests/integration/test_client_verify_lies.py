"""A lying server against a client-mode verification's snapshot.

A verification over HTTP pins the size of one head read and reads every list
once (ADR 0004, amendment of 2026-12-08). These tests play the server (or
someone with its database in hand) lying at the moments that matter to it:
the head read the size is pinned from, the head reads after each list, the
410 that begins a verification again, the pages of records. What the client
keeps outside the server (its kept checkpoint) still catches a rollback, and
no lie makes a verification go on for ever: it ends in ``StoreError``.
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

import pytest

from optional_extras import require_extra

require_extra("server", "fastapi", "uvicorn", "psycopg")
require_extra("client", "httpx2")

from client_mode import append_attached, append_notes, client_env, ledger_url  # noqa: E402
from mltrail.errors import StoreError  # noqa: E402
from mltrail.ledger.home import open_home  # noqa: E402
from mltrail.storage.http import HttpStore  # noqa: E402
from server_fixture import running_server  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from mltrail.ledger.home import Home

WRITER = "bea"


@pytest.fixture(scope="module")
def server():
    with running_server() as running:
        yield running


def _notes(server, ledger: str, count: int, text: str = "note") -> None:
    append_notes(server, ledger, WRITER, count, text)


@contextmanager
def _auditor(server, tmp_path: Path, ledger: str, **more: str) -> Iterator[Home]:
    env = client_env(server, tmp_path / "carol", "auditor", "carol", ledger, **more)
    home = open_home(tmp_path / "carol", writable=False, env=env)
    try:
        yield home
    finally:
        home.close()


class _Looped(BaseException):
    """A read went on past any honest need (not an ``Exception``: a store
    turns those into ``StoreError``)."""


def _problems(report: Any) -> list[str]:
    return [f"{p.severity}: {p.code} at {p.seq}: {p.message}" for p in report.problems]


def test_a_rollback_told_only_at_the_pin_is_caught_by_the_kept_checkpoint(
    server, tmp_path, monkeypatch
):
    """The server answers the head read a snapshot is pinned from with a
    size two records short, and every later head read with the real one, so
    that its checkpoints beyond the pin read as appends made meanwhile and
    are left out: the checkpoint this client kept (outside the server) is
    not the server's to leave out, and the ledger is ``truncated``."""
    _notes(server, "team-a", 4)
    with _auditor(server, tmp_path, "team-a") as home:
        store = home.ledger.store
        real = store.head().size
        original = store.get_json
        heads: list[int] = []

        def get_json(path: str, **params: Any) -> Any:
            found = original(path, **params)
            if path == "/head":
                heads.append(found["size"])
                if len(heads) == 1:
                    found = dict(found, size=real - 2)
            return found

        monkeypatch.setattr(store, "get_json", get_json)
        report = home.verify()
        assert len(heads) > 1  # the lists were read, then the head again
        assert not report.ok
        assert report.size == real - 2
        truncated = [p for p in report.errors if p.code == "truncated"]
        assert any("this client kept" in p.message for p in truncated), _problems(
            report
        )


def _attached(server, ledger: str, data: bytes) -> str:
    return append_attached(server, ledger, WRITER, data)


class _Gone:
    """A 410 naming a purge at ``seq``."""

    status_code = 410

    def __init__(self, seq: int) -> None:
        self.seq = seq

    def json(self) -> Any:
        return {"error": {"message": "purged", "seq": self.seq}}


@pytest.mark.parametrize("pinned", [False, True], ids=["verify", "export"])
def test_a_410_beyond_the_pin_every_time_ends_in_a_store_error(
    server, tmp_path, monkeypatch, pinned
):
    """A blob answers 410 naming a purge at the pinned size, and every head
    read inside a snapshot after its first says the ledger grew one record:
    each snapshot is stale, and the verification (or the one an export
    makes, ``verify_pinned``) ends in ``StoreError`` after its tries,
    neither intact nor TAMPERED."""
    from mltrail.ledger.home import verify_pinned
    from mltrail.storage.base import SNAPSHOT_TRIES, StaleSnapshotError

    digest = _attached(server, "team-b", b"a blob the server says is gone")
    with _auditor(server, tmp_path, "team-b") as home:
        store = home.ledger.store
        real = store.head().size
        original_json = store.get_json
        original = store.request
        asked: list[str] = []

        def get_json(path: str, **params: Any) -> Any:
            found = original_json(path, **params)
            if path == "/head" and store._pin is not None:
                found = dict(found, size=real + 1)
            return found

        def request(method: str, path: str, **kw: Any) -> Any:
            if path == f"/blobs/{digest}":
                asked.append(path)
                return _Gone(real)
            return original(method, path, **kw)

        monkeypatch.setattr(store, "get_json", get_json)
        monkeypatch.setattr(store, "request", request)
        with pytest.raises(StaleSnapshotError) as raised:
            verify_pinned(home) if pinned else home.verify()
        assert isinstance(raised.value, StoreError)
        assert len(asked) == SNAPSHOT_TRIES
        assert "run it again" in (raised.value.hint or "")


@pytest.mark.parametrize("where", ["same", "back", "empty"])
def test_pages_that_do_not_move_on_end_in_a_store_error(
    server, tmp_path, monkeypatch, where
):
    """A page of records whose ``next`` is not after the records it sent
    (the same start, one already sent, or an empty page that says there is
    more): the client asked again for ever, walking the same records. Now
    it refuses the page (``StoreError``)."""
    from mltrail.storage import http

    _notes(server, "team-a", 5)
    monkeypatch.setattr(http, "PAGE", 2)
    with _auditor(server, tmp_path, "team-a") as home:
        store = home.ledger.store
        original = store.get_json
        pages: list[int] = []

        def get_json(path: str, **params: Any) -> Any:
            found = original(path, **params)
            if path != "/records" or "kinds" in params:
                return found
            pages.append(params["start"])
            if len(pages) > 50:
                raise _Looped
            if found.get("next") is None:
                return found
            if where == "same":
                return dict(found, next=params["start"])
            if where == "back":
                return dict(found, next=found["records"][0]["seq"])
            return {"records": [], "next": params["start"] + 1}

        monkeypatch.setattr(store, "get_json", get_json)
        with pytest.raises(StoreError, match="records"):
            home.verify()
        assert len(pages) == 1


@contextmanager
def _rolled_back(server, ledger: str, count: int) -> Iterator[None]:
    """The server's ledger without its last ``count`` records and the
    checkpoints beyond them (someone with its database in hand), restored
    after."""
    import psycopg

    schema = "ledger_" + ledger.replace("-", "_")
    with psycopg.connect(server.owner_url, autocommit=True) as conn:
        conn.execute(f'SET search_path TO "{schema}"')
        (size,) = conn.execute("SELECT count(*) FROM records").fetchone()
        cut = size - count
        records = conn.execute(
            "SELECT seq, hash, kind, run, time, record FROM records WHERE seq >= %s",
            (cut,),
        ).fetchall()
        checkpoints = conn.execute(
            "SELECT id, size, note FROM checkpoints WHERE size > %s", (cut,)
        ).fetchall()
        for table in ("records", "checkpoints"):
            conn.execute(f"ALTER TABLE {table} DISABLE TRIGGER USER")
        conn.execute("DELETE FROM records WHERE seq >= %s", (cut,))
        conn.execute("DELETE FROM checkpoints WHERE size > %s", (cut,))
        try:
            yield
        finally:
            for row in records:
                conn.execute(
                    "INSERT INTO records (seq, hash, kind, run, time, record) "
                    "VALUES (%s, %s, %s, %s, %s, %s)",
                    row,
                )
            for row in checkpoints:
                conn.execute(
                    "INSERT INTO checkpoints (id, size, note) OVERRIDING SYSTEM VALUE "
                    "VALUES (%s, %s, %s)",
                    row,
                )
            for table in ("records", "checkpoints"):
                conn.execute(f"ALTER TABLE {table} ENABLE TRIGGER USER")


def test_a_witness_the_auditor_names_catches_a_rollback_in_client_mode(
    server, tmp_path
):
    """An auditor keeps a checkpoint of the server's ledger outside the home
    (``MLTRAIL_WITNESS``) and verifies from a home that meets the server for
    the first time after its last batch was cut (its kept checkpoint is the
    cut ledger's newest): the witness named is an anchor of the
    verification, and the ledger is ``truncated`` (it was ignored in client
    mode: intact)."""
    _notes(server, "team-b", 3, "before the cut")
    _notes(server, "team-b", 3, "cut")
    token = server.token("auditor", "carol", ledger="team-b")
    with HttpStore(ledger_url(server, "team-b"), token) as store:
        latest = store.latest_checkpoint()
    assert latest is not None
    witness = tmp_path / "kept" / "witness.cp"
    witness.parent.mkdir()
    witness.write_text(latest.text, "utf-8")
    named = {"MLTRAIL_WITNESS": str(witness)}
    with (
        _rolled_back(server, "team-b", 3),
        _auditor(server, tmp_path, "team-b", **named) as home,
    ):
        report = home.verify()
    assert report.size == latest.size - 3
    assert not report.ok, _problems(report)
    truncated = [p for p in report.errors if p.code == "truncated"]
    assert any(str(witness) in p.message for p in truncated), _problems(report)
