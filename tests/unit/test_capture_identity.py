"""Who wrote an entry: the OS account of the real uid, never what $USER claims."""

import json
import os
import pwd

import pytest

from mltrail.capture.machine.identity import capture_actor, describe_user, os_account
from mltrail.core.codec import validate_entry

ACCOUNT = pwd.getpwuid(os.getuid()).pw_name


def test_the_user_is_the_account_of_the_real_uid_not_the_environment():
    actor = capture_actor({"USER": "someone-else", "LOGNAME": "someone-else"})
    assert actor["user"] == ACCOUNT
    assert actor["uid"] == os.getuid()
    assert actor["claimed_user"] == "someone-else"


def test_no_claim_is_recorded_when_the_environment_agrees_or_is_silent():
    assert "claimed_user" not in capture_actor({"USER": ACCOUNT, "LOGNAME": ACCOUNT})
    assert "claimed_user" not in capture_actor({})


def test_logname_is_read_first_like_getpass():
    actor = capture_actor({"LOGNAME": "mallory", "USER": ACCOUNT})
    assert actor["claimed_user"] == "mallory"


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to run as another uid")
def test_a_uid_without_a_passwd_entry_is_recorded_by_number():
    uid = next(u for u in range(54321, 60000) if not _has_account(u))
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: become the uid, report what it would record
        try:
            os.setuid(uid)
            actor = capture_actor({"USER": "alice"})
            os.write(write, json.dumps(actor).encode())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as f:
        actor = json.loads(f.read())
    os.waitpid(pid, 0)
    assert (actor["user"], actor["uid"]) == (f"uid:{uid}", uid)
    assert actor["claimed_user"] == "alice"
    assert os_account(uid) == f"uid:{uid}"


def _has_account(uid):
    try:
        pwd.getpwuid(uid)
    except KeyError:
        return False
    return True


def test_the_envelope_accepts_the_claim_and_checks_its_type():
    entry = {
        "v": "mltrail/1",
        "kind": "note",
        "time": "2026-01-01T00:00:00Z",
        "actor": {"user": "root", "uid": 0, "claimed_user": "alice"},
        "body": {"text": "hi"},
    }
    validate_entry(entry)
    with pytest.raises(Exception, match="claimed_user"):
        validate_entry({**entry, "actor": {"user": "root", "claimed_user": 7}})
    with pytest.raises(Exception, match="uid"):
        validate_entry({**entry, "actor": {"user": "root", "uid": "0"}})


def test_describe_user_shows_the_claim_beside_the_account():
    assert describe_user("root", "alice") == "root (claims alice)"
    assert describe_user("root") == "root"
    assert describe_user(None) == "?"
