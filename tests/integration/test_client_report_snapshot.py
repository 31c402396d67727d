"""`mltrail report` in client mode reads what its verification read.

`mltrail report MODEL` pinned the records it reads (``pin_reads``: every
record, and the server's checkpoints, evidence and purges, each one request)
before it derived its index, then verified (``verify_pinned``) in a snapshot
of its own (ADR 0004's amendment of 2026-12-08). Over HTTP that was two
reads of the server: an append by another client between them (the index
being derived meanwhile) failed the report with "the ledger grew" (exit 4),
however often it was run against a busy server; and the checkpoints the
report shows ("Newest checkpoint") were the first read's, which the
verification never checked: a server answering that read with a checkpoint
of its choosing had it printed in an intact report. Now the report verifies
first, and pins in the verification's snapshot, as the exports do.

Each case runs the command in a process whose ``HttpStore`` is wrapped
before it runs (a real ``mltrail server``, tests/server_fixture.py).
"""

from __future__ import annotations

import json
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from optional_extras import require_extra

require_extra("server", "fastapi", "uvicorn", "psycopg")
require_extra("client", "httpx2")

from client_mode import client_cli, trained_client  # noqa: E402
from server_fixture import running_server  # noqa: E402

if TYPE_CHECKING:
    from pathlib import Path

TRAIN = "import pathlib; pathlib.Path('model.bin').write_bytes(b'weights v1')"
FORGED = "test.example/team-a\n1000000\nforged root\n\n- nobody signed this\n"


@pytest.fixture(scope="module")
def server():
    with running_server() as running:
        yield running


@pytest.fixture(scope="module")
def project(server, tmp_path_factory) -> tuple[Path, dict[str, dict[str, str]]]:
    """alice (a writer) trained a model through the server; carol audits."""
    base = tmp_path_factory.mktemp("client")
    (base / "project").mkdir()
    envs = trained_client(server, base, "--name", "train", "--output", "model.bin",
                          "--", sys.executable, "-c", TRAIN)  # fmt: skip
    envs["carol"]["WRITER_TOKEN"] = server.token("writer", "bea")
    return base, envs


def _mltrail(
    base: Path, env: dict[str, str], *args: str, script: str | None = None
) -> subprocess.CompletedProcess[str]:
    return client_cli(base, env, *args, script=script)


_WRAPPED = """
import json, os, sys
from mltrail.cli.main import main
from mltrail.storage import http

original = http.HttpStore.get_json
done = []

def get_json(self, path, **params):
    found = original(self, path, **params)
    if not done and {when}:
        done.append(True)
        {act}
    return found

http.HttpStore.get_json = get_json
sys.argv = ["mltrail", *sys.argv[1:]]
main()
"""

_APPEND = """url = self.location
        with http.HttpStore(url, os.environ["WRITER_TOKEN"]) as other:
            sys.stderr.write("appended from inside the report\\n")
            other.append_entries([json.loads(os.environ["ENTRY"])])"""

_FORGE = """sys.stderr.write("forged a checkpoint into one read\\n")
        found["checkpoints"].append({"size": 1000000, "text": os.environ["FORGED"]})"""


def test_a_report_against_a_growing_server_is_of_the_records_it_verified(
    server, project
):
    """Another client appends right after the report's first read of the
    records (before: the report pinned them, the verification read a larger
    ledger, exit 4 "the ledger grew while it ran"): the report is written,
    of the records its verification read."""
    base, envs = project
    env = dict(envs["carol"])
    note = server.entry("bea", "note", {"text": "appended during a report"})
    env["ENTRY"] = json.dumps(note)
    script = _WRAPPED.format(
        when='path == "/records" and "kinds" not in params', act=_APPEND
    )
    done = _mltrail(base, env, "report", "model.bin", "--json", script=script)
    assert "appended from inside the report" in done.stderr, done.stderr
    assert done.returncode == 0, (done.stdout, done.stderr)
    found = json.loads(done.stdout)
    assert found["record_keeping"]["ok"] is True
    size = found["record_keeping"]["records"]
    assert found["record_keeping"]["checkpoint"]["size"] == size


def test_a_report_shows_only_checkpoints_its_verification_read(server, project):
    """The server adds a checkpoint of its choosing to the first answer of
    its checkpoints only (before: the report pinned that answer and showed
    it as the newest checkpoint of an intact ledger, while the verification
    read another answer). Now the checkpoints shown are those verified: the
    forged one is, and the report refuses (exit 3)."""
    base, envs = project
    env = dict(envs["carol"]) | {"FORGED": FORGED}
    script = _WRAPPED.format(when='path == "/checkpoints"', act=_FORGE)
    done = _mltrail(base, env, "report", "model.bin", "--json", script=script)
    assert "forged a checkpoint into one read" in done.stderr, done.stderr
    assert "1000000" not in done.stdout or done.returncode != 0, done.stdout
    assert done.returncode == 3, (done.stdout, done.stderr)
