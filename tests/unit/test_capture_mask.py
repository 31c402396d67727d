"""Masking (capture.mask, capture.log_capture), detection (capture.detect), names
(capture.secret_names), connection strings, shell strings and the allow-list.

Credential-shaped fixtures are assembled at run time from pieces."""

import base64
import hashlib
import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mltrail.capture.run.allowlist import AllowList, load_allow_list
from mltrail.capture.run.argv_secrets import redact_argv
from mltrail.capture.run.detect import detected_masks, find_credentials
from mltrail.capture.run.log_capture import LogCapture, LogMasking
from mltrail.capture.run.mask import MIN_MASK_LENGTH, MaskSet, mask_window
from mltrail.capture.run.mask_sources import named_secrets
from mltrail.capture.run.redact import connection_string_secrets, redact_tree
from mltrail.capture.run.secret_names import is_secret_name
from mltrail.errors import ConfigError

GITHUB = "ghp" + "_" + "aB3dE5gH7jK9mN1pQ3sT5vX7zA9cE1gI3kM5"
AWS = "AKIA" + "Q7ZK3M9V2XJ8L4NB"

# --- names the old rules missed ------------------------------------------------------


@pytest.mark.parametrize(
    "name",
    ["PGPASSWORD", "DB_PASS", "--db-pass", "SMTP_PASS", "DBPASSWORD", "adminpassword",
     "AZURE_CREDS", "MYCRED", "SERVICE_CREDENTIALS_FILE", "AZURE_STORAGE_CONNECTION_STRING",
     "clientsecret", "conn_str"],
)  # fmt: skip
def test_names_missed_before_are_secret(name):
    assert is_secret_name(name)


@pytest.mark.parametrize(
    "name", ["credit_score", "OLDPWD", "PWD", "forward_pass", "num_pass", "bypass_cache",
             "passes", "discredit"],
)  # fmt: skip
def test_lookalike_names_stay_readable(name):
    assert not is_secret_name(name)


def test_azure_connection_string_keeps_all_but_the_key():
    key = "Ab3+" * 21 + "Zz=="
    conn = f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={key};EndpointSuffix=x"
    assert connection_string_secrets(conn) == [key]
    out = redact_tree({"STORAGE": conn})
    assert out.secrets == (key,)
    assert "AccountName=acct;AccountKey=<redacted hmac-sha256:" in out.value["STORAGE"]
    assert key not in out.value["STORAGE"]


def test_ado_connection_string_password():
    assert connection_string_secrets("Server=db;User Id=sa;Password=Hunter22x;") == [
        "Hunter22x"
    ]


@pytest.mark.parametrize(
    ("argv", "secret"),
    [
        (["sh", "-c", "PGPASSWORD=hunter22 psql -h db"], "hunter22"),
        (["bash", "-lc", "mysql -u root -phunter22 db; echo done"], "hunter22"),
        (["sh", "-c", "python train.py --api-key hunter22"], "hunter22"),
        (["mysql", "-phunter22"], "hunter22"),
        (["sshpass", "-p", "hunter22", "ssh", "host"], "hunter22"),
        (["redis-cli", "-a", "hunter22"], "hunter22"),
        (["docker", "login", "-u", "me", "-p", "hunter22"], "hunter22"),
        (["python", "train.py", "-p", "hunter22"], "hunter22"),
    ],
)
def test_command_line_secrets_are_committed(argv, secret):
    out = redact_argv(argv)
    assert secret in out.secrets
    assert all(secret not in arg for arg in out.value)


def test_a_shell_string_stays_readable_around_its_secret():
    out = redact_argv(["sh", "-c", "PGPASSWORD=hunter22 psql -h db; echo ok"]).value
    assert out[2].startswith("PGPASSWORD=<redacted hmac-sha256:")
    assert out[2].endswith("> psql -h db; echo ok")


def test_named_secrets_name_their_source():
    named = named_secrets(
        env={"HF_TOKEN": "abcdefghij", "PATH": "/usr/bin"},
        argv=["python", "t.py", "--password=hunter22", "--db-pass", "s3cret99"],
        params=[{"db.password": "zz9zz9zz"}],
    )
    assert ("HF_TOKEN", "abcdefghij") in named
    assert ("--password", "hunter22") in named
    assert ("--db-pass", "s3cret99") in named
    assert ("db.password", "zz9zz9zz") in named


# --- the mask set --------------------------------------------------------------------


def test_masking_replaces_every_form_by_the_name_only():
    masks = MaskSet.build([("DB", "p@ss w0rd!")])
    data = b'a p@ss w0rd! b p%40ss%20w0rd%21 c p%40ss+w0rd%21 d "p@ss w0rd!"'
    out, count = masks.mask(data)
    assert count == 4
    assert b"w0rd" not in out
    assert out.count(b"[MASKED:DB]") == 4


def test_short_values_are_not_masked_in_text():
    masks = MaskSet.build([("P", "abc"), ("Q", "x" * (MIN_MASK_LENGTH - 1))])
    assert not masks
    assert masks.mask(b"abc xxxxx") == (b"abc xxxxx", 0)


def test_allow_listed_values_are_not_masked():
    allow = AllowList.parse(["notasecret1", "re:^sample-[0-9]+$"], source="test")
    masks = MaskSet.build([("A", "notasecret1"), ("B", "sample-123"), ("C", "real-99x")],
                          allow)  # fmt: skip
    out, _ = masks.mask(b"notasecret1 sample-123 real-99x")
    assert out == b"notasecret1 sample-123 [MASKED:C]"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(st.text("ab\n", max_size=30), min_size=1, max_size=12),
    st.lists(st.integers(1, 40), min_size=1, max_size=20),
)
def test_streaming_masks_values_split_anywhere(pieces, cuts):
    secrets = ["abababba", "bbbbbbbbbbbb", "aab\nbaab"]
    masks = MaskSet.build((f"s{n}", s) for n, s in enumerate(secrets))
    data = "".join(p + secrets[n % 3] for n, p in enumerate(pieces)).encode()
    whole, _ = masks.mask(data)
    stream, out, pos = masks.stream(), [], 0
    for cut in cuts * 50:
        if pos >= len(data):
            break
        out.append(stream.feed(data[pos : pos + cut]))
        pos += cut
    out += [stream.feed(data[pos:]), stream.finish()]
    assert b"".join(out) == whole
    for secret in secrets:
        assert secret.encode() not in b"".join(out)


def test_a_window_masks_values_across_its_edges():
    masks = MaskSet.build([("T", "0123456789")])
    out, count = mask_window(masks, b"xx0123", b"456789yy01234", b"56789")
    assert out == b"[MASKED:T]yy[MASKED:T]"
    assert count == 2


# --- the log capture -----------------------------------------------------------------


def feed(capture, data, size=7):
    for i in range(0, len(data), size):
        capture.update(data[i : i + size])
    return capture.result()


def test_a_whole_log_is_hashed_as_stored():
    masking = LogMasking(MaskSet.build([("PW", "hunter22")]))
    got = feed(
        LogCapture(1024, masking), b"pw=hunter22\ntoken " + GITHUB.encode() + b"\n"
    )
    assert got.stored == b"pw=[MASKED:PW]\ntoken [MASKED:detected:GitHub_Token]\n"
    assert got.sha256 == hashlib.sha256(got.stored).hexdigest()
    assert got.masked == 2


def test_a_truncated_log_masks_tokens_cut_at_its_edges():
    filler = b"loss=0.1\n" * 10000  # past 64 KiB: not held whole
    data = b"x" * 95 + AWS.encode() + b"\n" + filler + GITHUB.encode()[:-5]
    data += GITHUB.encode()[-5:] + b" end\n"
    got = feed(LogCapture(200, LogMasking()), data, size=333)
    assert got.truncated
    assert AWS[:5].encode() not in got.head
    assert got.head.startswith(b"x" * 95 + b"[MASKED:detected:AWS")
    assert GITHUB[-10:].encode() not in got.tail
    assert b"end" in got.tail
    assert got.size == len(data)


def test_a_short_log_is_hashed_after_masking_even_when_not_stored():
    masking = LogMasking(MaskSet.build([("PW", "hunter22")]))
    got = feed(LogCapture(0, masking), b"pw=hunter22\n")
    assert got.stored == b""
    assert got.sha256 == hashlib.sha256(b"pw=[MASKED:PW]\n").hexdigest()


# --- the detector --------------------------------------------------------------------


def test_detector_finds_shapes_but_not_mltrail_own_output():
    jwt = (
        "eyJ"
        + "hbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1rwW1gF"
    )
    text = (
        f"key {AWS}\ntok {GITHUB}\nauth {jwt}\n"
        f"sha {hashlib.sha256(b'a').hexdigest()}\n"
        f"commit {hashlib.sha1(b'b').hexdigest()}\n"
        "run 0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b\n"
        f'sig "{base64.b64encode(os.urandom(64)).decode()}"\n'
        f"dataset sha256:{hashlib.sha256(b'c').hexdigest()}\n"
    )
    found = {value for _, value in find_credentials(text)}
    assert {AWS, GITHUB, jwt} <= found
    assert all(v in (AWS, GITHUB) or v.startswith("eyJ") for v in found), found


def test_detector_masks_a_whole_private_key_block():
    lines = ["".join(random.Random(n).choice("ABCDEFabcdef0123456789+/") for _ in range(64))
             for n in range(4)]  # fmt: skip
    kind = "RSA " + "PRIVATE KEY"
    pem = f"-----BEGIN {kind}-----\n" + "\n".join(lines) + f"\n-----END {kind}-----\n"
    diff = "".join("+" + line + "\n" for line in pem.splitlines())
    for text in (pem, diff):
        out, _ = detected_masks(text.encode()).mask(text.encode())
        assert all(line.encode() not in out for line in lines)


def test_detector_allow_list(monkeypatch, tmp_path):
    (tmp_path / "secret-allow.txt").write_text(f"# a sample key\n{AWS}\n")
    monkeypatch.setenv("MLTRAIL_SECRET_ALLOW", "re:^ghp_.*$")
    allow = load_allow_list(tmp_path, os.environ)
    assert find_credentials(f"a {AWS} b {GITHUB}\n", allow=allow) == []


def test_a_bad_allow_list_pattern_is_a_config_error(tmp_path):
    (tmp_path / "secret-allow.txt").write_text("re:([\n")
    with pytest.raises(ConfigError, match="bad pattern"):
        load_allow_list(tmp_path, {})


# --- the guard -----------------------------------------------------------------------


def test_the_guard_replaces_the_digest_of_a_masked_file():
    from mltrail.capture.run.blob import Blob
    from mltrail.capture.run.commitment import (
        CommitmentKey,
        Committer,
        check_commitment,
    )
    from mltrail.capture.run.guard import SecretGuard

    key = CommitmentKey(bytes(32))
    guard = SecretGuard(Committer(key), MaskSet.build([("PW", "hunter22")]))
    raw = b"password = 'hunter22'\n"
    body = {
        "script": {
            "sha256": hashlib.sha256(raw).hexdigest(),
            "size": len(raw),
            "content": Blob(raw, "text/plain", text=True),
        },
        "error": "login failed for hunter22",
        "manifest": Blob(b"hunter22", "application/x-manifest"),
    }
    out = guard.clean(body)
    script = out["script"]
    assert script["content"].data == b"password = '[MASKED:PW]'\n"
    assert script["sha256"] == hashlib.sha256(script["content"].data).hexdigest()
    assert check_commitment(raw, script["sha256_original"], key)
    assert script["masked"] == 1
    assert out["error"] == "login failed for [MASKED:PW]"
    assert out["manifest"].data == b"hunter22"  # structural blobs are left as written


def test_the_guard_learns_secrets_from_bodies():
    from mltrail.capture.run.guard import SecretGuard

    guard = SecretGuard()
    guard.clean({"db_password": "s3cret-99"})
    assert guard.clean({"note": "it was s3cret-99"})["note"] == "it was [MASKED:secret]"
