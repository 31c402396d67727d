"""Author keys on a team server, attacked (ADR 0025, amendment of 2026-12-07).

A real ``mltrail server`` subprocess on PostgreSQL, client homes driven with the
real CLI. Found by the review: an author key of a server's ledger could not be
revoked at all. The server appends no ``key.revoked`` (``POST /entries``
refuses key kinds, and it has no route for it), and ``mltrail keys revoke`` in
client mode was refused as "the server admin's work", with no command for
that admin: a leaked author key stayed valid for good.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from optional_extras import require_extra

require_extra("server", "fastapi", "uvicorn", "psycopg")
require_extra("client", "httpx2")

A = "/ledgers/team-a"


def _env(home: Path, server: Any, role: str, name: str) -> dict[str, str]:
    keep = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    return keep | {
        "MLTRAIL_HOME": str(home),
        "MLTRAIL_URL": f"http://127.0.0.1:{server.port}{A}",
        "MLTRAIL_TOKEN": server.token(role, name),
    }


def _cli(env: dict[str, str], *args: str, code: int = 0) -> Any:
    proc = subprocess.run(
        [sys.executable, "-m", "mltrail", *args], env=env, capture_output=True,
        text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == code, (args, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr
    return proc


def _keys(env: dict[str, str]) -> dict[str, dict[str, Any]]:
    listed = json.loads(_cli(env, "keys", "list", "--json").stdout)
    return {row["key"]: row for row in listed}


def test_the_servers_admin_revokes_an_author_key_and_the_server_refuses_it(
    team_server: Any, tmp_path: Path
) -> None:
    s = team_server
    bob = _env(tmp_path / "bob", s, "writer", "revoked-bob")
    _cli(bob, "init")
    key = json.loads(_cli(bob, "keys", "register", "--json").stdout)["key"]
    _cli(bob, "append", "--kind", "note", "--body", '{"text": "before"}')

    # bob holds no log key: his client cannot revoke, and says who can
    refused = _cli(bob, "keys", "revoke", key, "--reason", "leaked", code=2)
    assert "mltrail server" in refused.stderr

    revoked = _cli(
        {k: v for k, v in bob.items() if k not in ("MLTRAIL_URL", "MLTRAIL_TOKEN")},
        "keys", "revoke", key, "--reason", "laptop lost", "--db", s.owner_url,
        "--ledger", "team-a", "--keys", str(s.keys), "--json",
    )  # fmt: skip
    seq = json.loads(revoked.stdout)["seq"]
    assert _keys(bob)[key]["revoked_seq"] == seq

    # whoever holds the revoked key (and bob's token) appends nothing with it
    after = _cli(bob, "append", "--kind", "note", "--body", '{"text": "after"}', code=2)
    assert "revoked" in after.stderr
    status, answer = s.call(
        "POST",
        f"{A}/entries",
        s.token("writer", "revoked-bob"),
        {"entries": [_signed_note(bob, "revoked-bob", "after, by hand")]},
    )
    assert status in (400, 403, 409, 422), answer
    assert "revoked" in json.dumps(answer)
    # nor registers it again, for himself or anyone
    again = _cli(bob, "keys", "register", code=2)
    assert "already a key" in again.stderr

    _, texts = s.stored_notes()
    assert "before" in texts
    assert not [t for t in texts if t.startswith("after")]
    auditor = _env(tmp_path / "auditor", s, "auditor", "auditor")
    report = json.loads(_cli(auditor, "verify", "--json").stdout)
    assert [p for p in report["problems"] if p["severity"] == "error"] == []


def test_revoking_a_servers_key_refuses_log_keys_and_bad_options(
    team_server: Any, tmp_path: Path
) -> None:
    s = team_server
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLTRAIL_")}
    env["MLTRAIL_HOME"] = str(tmp_path / "admin")
    log_key = s.log_signer().key_id
    on_server = ("--db", s.owner_url, "--keys", str(s.keys))
    log = _cli(env, "keys", "revoke", log_key, "--reason", "x", *on_server,
               "--ledger", "team-a", code=2)  # fmt: skip
    assert "log key" in log.stderr
    unknown = _cli(env, "keys", "revoke", "ab" * 32, "--reason", "x", *on_server,
                   "--ledger", "team-a", code=2)  # fmt: skip
    assert "not a key of this ledger" in unknown.stderr
    no_ledger = _cli(env, "keys", "revoke", log_key, "--reason", "x", *on_server,
                     "--ledger", "no-such", code=2)  # fmt: skip
    assert "serves no ledger no-such" in no_ledger.stderr
    sqlite = _cli(env, "keys", "revoke", log_key, "--reason", "x", "--db",
                  "sqlite:///x.db", "--ledger", "team-a", code=2)  # fmt: skip
    assert "--db postgresql://" in sqlite.stderr


def _signed_note(env: dict[str, str], user: str, text: str) -> dict[str, Any]:
    """A note of ``user`` signed with the client home's own key file, as JSON."""
    from datetime import UTC, datetime

    from mltrail.core.codec import format_time
    from mltrail.core.entry import Entry, sign_entry
    from mltrail.ledger.keystore import load_signer

    (key_file,) = (Path(env["MLTRAIL_HOME"]) / "keys").glob("*.key")
    entry = Entry(
        "note", format_time(datetime.now(UTC)), {"user": user}, {"text": text}
    )
    return sign_entry(entry, load_signer(key_file)).to_dict()
