"""A client-mode home against a test server (tests/server_fixture.py): the
environment that makes a home speak to one of the server's ledgers, notes
appended by another writer. Import it after ``require_extra("client", ...)``.

from client_mode import client_env
env = client_env(server, tmp_path / "carol", "auditor", "carol", "team-b")
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from mltrail.storage.http import HttpStore

if TYPE_CHECKING:
    from pathlib import Path

    from server_fixture import TestServer

__all__ = ["append_notes", "client_env", "ledger_url"]


def ledger_url(server: TestServer, ledger: str) -> str:
    """The URL of ``ledger`` on ``server``, as ``MLTRAIL_URL`` names it."""
    return f"http://127.0.0.1:{server.port}/ledgers/{ledger}"


def client_env(
    server: TestServer, home: Path, role: str, name: str, ledger: str = "team-a",
    **more: str,
) -> dict[str, str]:  # fmt: skip
    """This process's environment less every ``MLTRAIL_*``, with ``home`` as the
    home, in client mode against ``ledger`` with a token of ``role`` for
    ``name``, and ``more`` added."""
    keep = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    return keep | {
        "MLTRAIL_HOME": str(home),
        "MLTRAIL_URL": ledger_url(server, ledger),
        "MLTRAIL_TOKEN": server.token(role, name, ledger=ledger),
        **more,
    }


def append_notes(
    server: TestServer, ledger: str, writer: str, count: int, text: str = "note"
) -> None:
    """``count`` notes "TEXT 0", "TEXT 1", ... signed by ``writer`` and appended
    to ``ledger`` through the server with a writer's token of theirs."""
    token = server.token("writer", writer, ledger)
    with HttpStore(ledger_url(server, ledger), token) as store:
        store.append_entries(
            [
                server.entry(writer, "note", {"text": f"{text} {n}"}, ledger=ledger)
                for n in range(count)
            ]
        )
