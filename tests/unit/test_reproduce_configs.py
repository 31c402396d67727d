"""Which key each redacted value of a stored config file belongs to, and its check.

Configs go through the same path as `mltrail run` (load_config, `config_body`,
then the recorder's SecretGuard, which commits and masks), so a change there that
breaks reproduce shows here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from mltrail.capture.run.commitment import CommitmentKey, Committer
from mltrail.capture.run.guard import SecretGuard
from mltrail.capture.run.mask import MASKED_PATTERN, masked_marker
from mltrail.capture.run.params import load_config
from mltrail.record.wrap_plan import config_body
from mltrail.reproduce.configs import (
    argument_index,
    is_masked,
    redacted_slots,
    split_masked,
)
from mltrail.reproduce.secrets import Secret, check_supplied

KEY = CommitmentKey(bytes(range(32)))

if TYPE_CHECKING:
    from pathlib import Path


def stored(tmp_path: Path, name: str, text: str) -> tuple[bytes, dict, str]:
    path = tmp_path / name
    path.write_text(text)
    body = SecretGuard(Committer(KEY)).clean(config_body(load_config(path)))
    return body["file"]["content"].data, body["params"], body["file"]["format"]


def test_the_masked_values_are_what_the_recorder_writes(tmp_path):
    data, _, _ = stored(tmp_path, "c.yaml", "api_key: hunter22-long\nlr: 0.1\n")
    assert data == b"api_key: " + masked_marker("secret") + b"\nlr: 0.1\n"
    assert is_masked(data)
    assert split_masked(data) == [b"api_key: ", b"\nlr: 0.1\n"]


@pytest.mark.parametrize(
    ("name", "text"),
    [
        (
            "c.yaml",
            "lr: 0.1\ndb:\n  password: pw-one-1\n  user: bob\napi_key: key-two-2\n",
        ),
        (
            "c.json",
            '{"lr": 0.1, "db": {"password": "pw-one-1"}, "api_key": "key-two-2"}',
        ),
        ("c.toml", 'lr = 0.1\napi_key = "key-two-2"\n[db]\npassword = "pw-one-1"\n'),
    ],
)
def test_each_value_is_named_by_its_key_and_checked(tmp_path, name, text):
    data, params, fmt = stored(tmp_path, name, text)
    slots = redacted_slots(data, fmt, params, f"configs/{name}", first=3)
    assert len(MASKED_PATTERN.findall(data)) == len(slots) == 2
    found = {s.what: s for s in slots}
    assert set(found) == {
        f"db.password in configs/{name}",
        f"api_key in configs/{name}",
    }
    assert sorted(s.name for s in slots) == ["MLTRAIL_SECRET_3", "MLTRAIL_SECRET_4"]
    password = found[f"db.password in configs/{name}"]
    api_key = found[f"api_key in configs/{name}"]
    check_supplied(slots, {password.name: "pw-one-1", api_key.name: "wrong"}, KEY)
    assert (password.set, password.matches) == (True, True)
    assert (api_key.set, api_key.matches) == (True, False)
    # joining the pieces with the values gives the file back, byte for byte
    values = {password.name: "pw-one-1", api_key.name: "key-two-2"}
    pieces = split_masked(data)
    joined = pieces[0] + b"".join(
        values[s.name].encode() + p for s, p in zip(slots, pieces[1:], strict=True)
    )
    assert joined == text.encode()


def test_a_password_inside_a_url_and_a_value_in_a_comment(tmp_path):
    text = (
        "db_url: postgres://app:s3cret-pw@db/x\n# old: postgres://app:s3cret-pw@db/x\n"
    )
    data, params, fmt = stored(tmp_path, "c.yaml", text)
    slots = redacted_slots(data, fmt, params, "configs/c.yaml", first=1)
    assert [s.what for s in slots] == [
        "part of db_url in configs/c.yaml",
        "line 2 of configs/c.yaml",
    ]
    assert slots[1].commitment is None  # checked only with the whole file's SHA-256
    check_supplied(
        slots, {"MLTRAIL_SECRET_1": "s3cret-pw", "MLTRAIL_SECRET_2": "x"}, KEY
    )
    assert slots[0].matches is True
    assert slots[1].matches is None


def test_an_unparsable_template_names_lines(tmp_path):
    data = b"a: 1\n{{ broken\nkey: " + masked_marker("secret") + b"\n"
    (slot,) = redacted_slots(data, "yaml", {}, "configs/c.yaml", first=1)
    assert slot.what == "line 3 of configs/c.yaml"


def test_a_secret_not_set_is_not_checked():
    secret = Secret("MLTRAIL_SECRET_1", "x", {"redacted": "sha256:00", "salt": ""})
    check_supplied([secret], {"MLTRAIL_SECRET_1": ""})
    assert (secret.set, secret.matches) == (False, None)
    assert "commitment" not in secret.to_dict()


def test_the_argument_that_names_a_config():
    argv = ["python", "train.py", "--config=conf/a.yaml", "b.yaml", "--other", "c.yaml"]
    assert argument_index(argv, "/p/conf/a.yaml", "/p") == 2
    assert argument_index(argv, "/p/b.yaml", "/p") == 3
    assert argument_index(argv, "/p/d.yaml", "/p") is None
    assert argument_index(["c.yaml"], "/p/c.yaml", "/p") is None  # the program itself


def test_the_command_line_reads_the_folders_config_and_the_secret_variables():
    from mltrail.reproduce.script import argv_secrets, quote_command

    marker = "<redacted sha256:" + "0" * 64 + " salt:00>"
    argv = [
        "python",
        "t.py",
        "--config=a b.yaml",
        "--api-key",
        marker,
        f"--pw={marker}",
    ]
    line, pairs = quote_command(argv, {2: "configs/a b.yaml"})
    assert line == (
        "python t.py --config=\"$here\"/'configs/a b.yaml' --api-key "
        '"${MLTRAIL_SECRET_1}" --pw="${MLTRAIL_SECRET_2}"'
    )
    assert [name for name, _ in pairs] == ["MLTRAIL_SECRET_1", "MLTRAIL_SECRET_2"]
    assert [(s.name, s.what) for s in argv_secrets(argv)] == [
        ("MLTRAIL_SECRET_1", "argument 4 of the command (--api-key)"),
        ("MLTRAIL_SECRET_2", "argument 5 of the command (--pw)"),
    ]
