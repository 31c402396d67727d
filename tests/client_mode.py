"""A client-mode home against a test server (tests/server_fixture.py): the
environment that makes a home speak to one of the server's ledgers, a project
trained through it, the CLI run there, notes and attachments appended by
another writer. Import it after ``require_extra("client", ...)``.

from client_mode import client_env
env = client_env(server, tmp_path / "carol", "auditor", "carol", "team-b")
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from typing import TYPE_CHECKING

from mltrail.storage.http import HttpStore

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

    from server_fixture import TestServer

__all__ = [
    "append_attached",
    "append_notes",
    "client_cli",
    "client_env",
    "ledger_url",
    "trained_client",
]


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


def append_attached(server: TestServer, ledger: str, writer: str, data: bytes) -> str:
    """Append to ``ledger``, as ``writer``, a note with ``data`` attached (the
    blob put first); its digest."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    token = server.token("writer", writer, ledger)
    with HttpStore(ledger_url(server, ledger), token) as store:
        store.put_blob(digest, data)
        ref = {"blob": digest, "size": len(data)}
        entry = server.entry(
            writer, "note", {"text": "attached", "attachments": [ref]}, ledger=ledger
        )
        store.append_entries([entry])
    return digest


def client_cli(
    base: Path, env: Mapping[str, str], *args: str, script: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``python -m mltrail ARGS`` in ``base/project`` with exactly ``env``
    (asserts exit 0), or with ``script``, ``python -c SCRIPT ARGS`` (not
    checked: the caller asserts what it expects)."""
    command = ["-m", "mltrail"] if script is None else ["-c", script]
    done = subprocess.run(
        [sys.executable, *command, *args], cwd=base / "project", env=env,
        capture_output=True, text=True, timeout=180, check=False,
    )  # fmt: skip
    if script is None:
        assert done.returncode == 0, (args, done.stdout, done.stderr)
    return done


def trained_client(
    server: TestServer, base: Path, *run_args: str
) -> dict[str, dict[str, str]]:
    """The environments of alice (a writer) and carol (an auditor), homes
    ``base/NAME`` in client mode against ``team-a``, no git repository found
    above ``base``; alice has run ``init``, ``keys register`` and ``run
    RUN_ARGS`` in ``base/project`` (which the caller made), each exit 0."""
    envs = {
        name: client_env(
            server, base / name, role, name, GIT_CEILING_DIRECTORIES=str(base)
        )
        for name, role in (("alice", "writer"), ("carol", "auditor"))
    }
    for args in (("init",), ("keys", "register"), ("run", *run_args)):
        client_cli(base, envs["alice"], *args)
    return envs
