"""An auditor's read-only copy of a client-mode home (a home that reads a
server's ledger, keeping the server's pinned keys and newest checkpoint in
``server-trust/``): reading commands work and write nothing into it (ADR 0012).

The server's log grew since the copy was made, so the client has a newer
checkpoint to keep: it keeps it in memory only. Root on a ``chmod -R a-w`` copy
rewrote the trust file; through a read-only mount every command ended in a
traceback (creating ``server-trust/.pin.lock`` failed).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from optional_extras import require_extra

require_extra("server", "fastapi", "uvicorn", "psycopg")
require_extra("client", "httpx2")

from client_mode import append_notes, client_env  # noqa: E402
from home_setup import read_only_mount, tree_listing  # noqa: E402
from server_fixture import running_server  # noqa: E402

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


@pytest.fixture(scope="module")
def server():
    with running_server() as running:
        yield running


def _cli(env: dict[str, str], cwd: Path, *args: str, prefix: tuple[str, ...] = ()):
    return subprocess.run(
        [*prefix, sys.executable, "-m", "mltrail", *args], cwd=cwd, env=env,
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def stale_copy(server, tmp_path: Path) -> Iterator[tuple[Path, dict[str, str]]]:
    """(copy, env): an auditor's home that verified the server's ledger once,
    copied; then the log grew by three notes."""
    if os.geteuid() != 0:
        pytest.skip("needs root: root passes permission checks, which is the point")
    home, copy = tmp_path / "carol", tmp_path / "copy"
    env = client_env(server, home, "auditor", "carol", "team-b")
    append_notes(server, "team-b", "alice", 2)
    done = _cli(env, tmp_path, "verify")
    assert done.returncode == 0, (done.stdout, done.stderr)
    shutil.copytree(home, copy)
    append_notes(server, "team-b", "alice", 3, "later")
    yield copy, env
    subprocess.run(["chmod", "-R", "u+w", str(copy)], check=True)


@pytest.mark.parametrize("way", ["a-w copy", "read-only mount"])
def test_reading_a_servers_ledger_writes_nothing_into_a_read_only_home(
    stale_copy: tuple[Path, dict[str, str]], tmp_path: Path, way: str
) -> None:
    """``verify``, ``runs`` and ``log`` work on a read-only client-mode home
    whose kept checkpoint is older than the server's, and change nothing."""
    copy, env = stale_copy
    prefix: tuple[str, ...] = ()
    read = copy
    if way == "a-w copy":
        subprocess.run(["chmod", "-R", "a-w", str(copy)], check=True)
    else:
        read = tmp_path / "mnt"
        prefix = read_only_mount(copy, read)
    before = tree_listing(copy)
    for args in (("verify",), ("runs",), ("log", "--json")):
        done = _cli({**env, "MLTRAIL_HOME": str(read)}, tmp_path, *args, prefix=prefix)
        assert done.returncode == 0, (args, done.stdout, done.stderr)
        assert "Traceback" not in done.stderr
        assert tree_listing(copy) == before, args
    assert "later 2" in done.stdout
