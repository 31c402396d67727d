"""Who a record says ran it, when every identity variable of the environment lies.

DESIGN.md trust model: identity comes from the OS account (uid) or an
authenticated token, never from environment variables alone. ``$USER`` and
``$LOGNAME`` are kept as ``claimed_user`` and shown as a claim; CI variables
are kept under ``actor.ci`` and shown by no reading command as who ran it;
``$HOSTNAME`` is not the host. (The server side, ``actor.user`` against the
token's name, is in ``test_store_contract_http.py``: "another-user".)
"""

from __future__ import annotations

import json
import os
import pwd
import re
from typing import TYPE_CHECKING

from cli_runner import mltrail
from ledger_reading import entries

if TYPE_CHECKING:
    from pathlib import Path

LIAR = "mallory"
LIES = {
    "USER": LIAR,
    "LOGNAME": LIAR,
    "LNAME": LIAR,
    "USERNAME": LIAR,
    "MLTRAIL_USER": LIAR,
    "MLTRAIL_ACTOR": LIAR,
    "HOSTNAME": "prod-build-01",
    "GITHUB_ACTIONS": "true",
    "GITHUB_ACTOR": LIAR,
    "GITHUB_REPOSITORY": "corp/model",
    "GITHUB_RUN_ID": "42",
    "GITLAB_USER_LOGIN": LIAR,
    "BUILDKITE_BUILD_CREATOR": LIAR,
    "CI": "true",
}


def test_identity_variables_change_no_record_s_user_or_host(tmp_path: Path) -> None:
    home = tmp_path / "home"
    assert mltrail(home, "init").returncode == 0
    proc = mltrail(home, "run", "--name", "lied", "--", "true", cwd=tmp_path, env=LIES)
    assert proc.returncode == 0, proc.stderr
    account = pwd.getpwuid(os.getuid()).pw_name
    started = [e for e in entries(home) if e.kind == "run.started"]
    assert len(started) == 1
    actor = started[0].actor
    assert (actor["user"], actor["uid"]) == (account, os.getuid())
    assert actor["host"] == os.uname().nodename != LIES["HOSTNAME"]
    assert actor["claimed_user"] == LIAR
    assert actor["ci"]["system"] == "github-actions"
    assert actor["ci"]["actor"] == LIAR  # kept, under ci: what the job's env said
    run_id = started[0].run
    for args in (("show", run_id), ("runs",), ("log",)):
        shown = mltrail(home, *args, env={"COLUMNS": "400"})  # no cell wraps
        assert shown.returncode == 0, shown.stderr
        text = " ".join(shown.stdout.split())
        # the liar's name appears only as a claim beside the account
        assert re.sub(rf"{account} \(claims {LIAR}\)", "", text).count(LIAR) == 0
        assert f"{account} (claims {LIAR})" in text
    listed = mltrail(home, "runs", "--user", LIAR, "--json")
    assert json.loads(listed.stdout) == []
