"""Secret redaction (mltrail.capture.run.redact): names, shapes, commitments, argv, env, trees.

Credential-shaped fixtures are assembled at run time from pieces so that secret
scanners do not flag this file.
"""

import copy
import json
import re

import pytest

from mltrail.capture.run import commitment as keyed
from mltrail.capture.run.argv_secrets import redact_argv
from mltrail.capture.run.blob import Blob
from mltrail.capture.run.commitment import CommitmentKey, Committer
from mltrail.capture.run.mask import MaskSet
from mltrail.capture.run.redact import (
    Redacted,
    commit_secret,
    committing_with,
    is_secret_name,
    looks_like_secret,
    redact_env,
    redact_tree,
    redact_url,
    redaction_marker,
)

KEY = CommitmentKey(bytes(range(32)))


@pytest.fixture(autouse=True)
def _commitment_key():
    with committing_with(Committer(KEY)):
        yield


def check_commitment(value, commitment):
    return keyed.check_commitment(value, commitment, KEY)


def check_marker(value, marker):
    return keyed.check_marker(value, marker, KEY)


def scrub_text(data, secrets):
    """The old scrubbing, now masking: each secret becomes ``[MASKED:s]``."""
    return MaskSet.build(("s", v) for v in secrets).mask(data)[0]


GITHUB = "ghp" + "_" + "A1b2C3d4" * 5
OPENAI = "sk" + "-" + "Ab3De6Gh9Jk2Mn5Pq8St1Vw4Yz7" * 2
OPENAI_PROJ = "sk" + "-proj-" + "Ab3_De6-Gh9Jk2Mn5Pq8St1Vw4"
HUGGINGFACE = "hf" + "_" + "AbCdEfGhIjKlMnOpQrStUvWxYzAbCdEfGh"
AWS = "AKIA" + "IOSFODNN7EXAMPLE"
JWT = (
    "eyJ"
    + "hbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0In0.dBjftJeZ4CVPmB92K27uhbUJU1p1r_wW1gFWFOEjXk"
)

CREDENTIALS = {
    "aws access key id": AWS,
    "aws temporary key id": "ASIA" + "ABCDEFGHIJ123456",
    "github classic": GITHUB,
    "github oauth": "gho" + "_" + "Z9y8X7w6" * 5,
    "github fine-grained": "github"
    + "_pat_"
    + "11ABCDEFG0"
    + "_abcdefghijKLMNOP1234567890",
    "gitlab": "glpat" + "-" + "xYz12AbC34dEf56GhI78",
    "slack": "xoxb" + "-123456789012-1234567890123-AbCdEfGhIjKl",
    "openai": OPENAI,
    "openai project": OPENAI_PROJ,
    "huggingface": HUGGINGFACE,
    "google api key": "AIza" + "SyA1b2C3d4E5f6G7h8I9j0K1l2M3n4O5p6Q",
    "stripe live": "sk" + "_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "stripe restricted": "rk" + "_live_" + "4eC39HqLyjWDarjtT1zdp7dc",
    "jwt": JWT,
    "pem rsa": "-----BEGIN RSA "
    + "PRIVATE KEY-----\nMIIEow...\n-----END RSA PRIVATE KEY-----",
    "pem openssh": "-----BEGIN OPENSSH " + "PRIVATE KEY-----",
    "pem pkcs8": "-----BEGIN " + "PRIVATE KEY-----",
    "bearer": "Bearer " + "abcDEF1234567890ghiJKL",
    "authorization header": "Authorization: Bearer " + "abc.DEF-1234567890_ghi",
    "basic": "Basic " + "dXNlcjpodW50ZXIy",  # user:hunter2
    "url with password": "postgres://" + "alice:s3cret@db.example.com:5432/runs",
    "url with empty user": "redis://" + ":s3cret@cache:6379/0",
    "embedded in text": "export TOKEN=" + GITHUB + " and go",
}

NOT_CREDENTIALS = {
    "sha256 hex": "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855",
    "sha256 with prefix": "sha256:" + "ab" * 32,
    "git commit": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    "uppercase hex": "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709",
    "uuid": "123e4567-e89b-12d3-a456-426614174000",
    "posix path": "/home/alice/data/train-00001-of-00064.parquet",
    "path with sk-": "/models/sk-learn-classifier-final-version-two",
    "word ending in sk": "/tmp/task-abcdefghijklmnopqrstuvwxyz0123",
    "windows path": "C:\\Users\\alice\\runs\\config.yaml",
    "integer": "1234567890",
    "float": "3.0e-4",
    "model id": "meta-llama/Llama-3.1-8B-Instruct",
    "hf cache dir": "hf_cache_directory_for_models",
    "url without password": "https://huggingface.co/datasets/squad",
    "url with user only": "ssh://git@github.com/org/repo.git",
    "url with port and @ in path": "https://registry.example.com:8443/@scope/pkg",
    "prose with basic": "Basic training configuration for the baseline",
    "prose with bearer": "the bearer of bad news",
    "base64 without colon": "Basic " + "aGVsbG93b3JsZA==",  # helloworld
    "empty": "",
}


@pytest.mark.parametrize("value", CREDENTIALS.values(), ids=CREDENTIALS.keys())
def test_credential_shapes_are_detected(value):
    assert looks_like_secret(value)


@pytest.mark.parametrize("value", NOT_CREDENTIALS.values(), ids=NOT_CREDENTIALS.keys())
def test_ordinary_values_are_not_flagged(value):
    assert not looks_like_secret(value)


SECRET_NAMES = [
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "GITHUB_TOKEN",
    "token",
    "apiKey",
    "APIKey",
    "api_key",
    "WANDB_API_KEY",
    "--api-key",
    "OPENAI_API_KEY",
    "apikey",
    "--db-password",
    "db.password",
    "PASSWORD",
    "passwd",
    "pwd",
    "client_secret",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_ACCESS_KEY_ID",
    "AWS_SESSION_TOKEN",
    "aws_credentials",
    "auth",
    "use_auth_token",
    "Authorization",
    "cookie",
    "session_id",
    "sessionToken",
    "private_key",
    "private_key_path",
    "access_token",
    "refresh_token",
    "X-Amz-Signature",
    "SENTRY_DSN",
    "key",
    "encryption_key",
    "OAuth2Token",
    "api_key_2",
    "MLTRAIL_KEY_PASSWORD",
]

ML_NAMES = [
    "bos_token",
    "eos_token",
    "pad_token",
    "unk_token",
    "sep_token",
    "cls_token",
    "mask_token",
    "decoder_start_token",
    "pad_token_id",
    "eos_token_id",
    "additional_special_tokens",
    "token_type_ids",
    "token_count",
    "max_tokens",
    "num_tokens",
    "max_new_tokens",
    "tokens",
    "tokenizer",
    "tokenizer_name",
    "label_key",
    "text_key",
    "image_key",
    "input_key",
    "target_key",
    "sort_key",
    "group_key",
    "join_key",
    "primary_key",
    "partition_key",
    "dict_key",
    "cache_key",
    "rng_key",
    "key_field",
    "key_column",
    "sort_keys",
    "lr",
    "learning_rate",
    "monkey_patch",
    "keyboard",
    "author",
    "session",
    "DBUS_SESSION_BUS_ADDRESS",
    "signature_version",
    "PWD",
    "OLDPWD",
    "",
    "__",
]


@pytest.mark.parametrize("name", SECRET_NAMES)
def test_secret_names(name):
    assert is_secret_name(name)


@pytest.mark.parametrize("name", ML_NAMES)
def test_ml_vocabulary_is_not_secret(name):
    assert not is_secret_name(name)


# --- commitments --------------------------------------------------------------------


def test_commitment_format_and_check():
    c = commit_secret("hunter22")
    assert set(c) == {"redacted", "salt", "key"}
    assert c["redacted"].startswith("hmac-sha256:")
    assert len(c["redacted"]) == len("hmac-sha256:") + 64
    assert c["key"] == KEY.key_id
    assert len(bytes.fromhex(c["salt"])) == 16
    assert check_commitment("hunter22", c)
    assert not check_commitment("hunter23", c)
    assert not check_commitment("", c)


def test_commitment_is_keyed_hmac_sha256():
    import hashlib
    import hmac

    c = commit_secret("héllo", salt=b"\x01" * 16)
    message = b"mltrail/commitment/v1\0" + b"\x01" * 16 + "héllo".encode()
    expected = hmac.new(KEY.secret, message, hashlib.sha256).hexdigest()
    assert c == {
        "redacted": "hmac-sha256:" + expected,
        "salt": "01" * 16,
        "key": KEY.key_id,
    }


def test_commitments_differ_by_salt():
    assert commit_secret("same") != commit_secret("same")


@pytest.mark.parametrize(
    "commitment",
    [
        {},
        {"redacted": "sha256:00", "salt": "zz"},
        {"redacted": None, "salt": "00"},
        {"redacted": "sha256:" + "0" * 64},
        {"salt": 5, "redacted": "x"},
    ],
)
def test_malformed_commitments_never_match(commitment):
    assert not check_commitment("anything", commitment)


def test_marker_round_trip():
    marker = redaction_marker("p@ss word")
    assert marker.startswith("<redacted hmac-sha256:")
    assert " salt:" in marker
    assert marker.endswith(">")
    assert check_marker("p@ss word", marker)
    assert not check_marker("p@ss words", marker)
    assert not check_marker("p@ss word", "not a marker")


# --- URLs ---------------------------------------------------------------------------


def test_url_password_only_is_redacted():
    out = redact_url("postgres://alice:s3cret@db.example.com:5432/runs?sslmode=require")
    assert out.startswith("postgres://alice:<redacted hmac-sha256:")
    assert out.endswith(">@db.example.com:5432/runs?sslmode=require")
    assert "s3cret" not in out
    assert check_marker("s3cret", out[len("postgres://alice:") : out.index("@")])


def test_url_percent_encoded_password_commits_the_decoded_value():
    out = redact_url("https://u:p%40ss@host/")
    marker = out[len("https://u:") : out.index("@host")]
    assert check_marker("p@ss", marker)


def test_url_password_plus_is_literal():
    out = redact_url("https://u:a+b@host/")
    assert check_marker("a+b", out[len("https://u:") : out.index("@host")])


def test_url_password_with_unencoded_specials_is_caught_whole():
    out = redact_url("mysql://root:pa/ss#w@rd@db/x")
    assert "pa/ss" not in out
    assert "w@rd" not in out
    assert out.endswith("@db/x")


@pytest.mark.parametrize(
    "name",
    [
        "token", "access_token", "X-Amz-Signature", "sig", "api_key", "key",
        "hmac", "jsessionid", "JSESSIONID", "PHPSESSID", "passkey",
    ],
)  # fmt: skip
def test_url_secret_query_values_are_redacted(name):
    out = redact_url(f"https://host/path?page=2&{name}=abc123xyz&lang=en")
    assert "abc123xyz" not in out
    assert "page=2" in out
    assert "lang=en" in out
    assert f"{name}=<redacted hmac-sha256:" in out


def test_url_fragment_tokens_are_redacted():
    out = redact_url("https://app/callback#access_token=abc123xyz&state=ok")
    assert "abc123xyz" not in out
    assert out.endswith("&state=ok")


@pytest.mark.parametrize(
    "url",
    [
        "https://huggingface.co/datasets/squad?revision=main",
        "ssh://git@github.com/org/repo.git",
        "s3://bucket/key/prefix",
        "not a url",
        "https://host:8443/@scope/pkg",
    ],
)
def test_urls_without_credentials_are_unchanged(url):
    assert redact_url(url) == url


@pytest.mark.parametrize(
    "text", ["a://b:" * 20000, "sk-" * 30000, "a" * 100000, "x://u:" + "p" * 300 + "@h"]
)
def test_long_inputs_are_scanned_in_linear_time(text):
    assert not looks_like_secret(text)  # quadratic regexes would take minutes here


def test_very_long_url_password_is_still_redacted():
    out = redact_tree(["x://u:" + "p" * 300 + "@h"]).value[0]
    assert out.startswith("x://u:<redacted hmac-sha256:")
    assert out.endswith("@h")


def test_redact_url_is_idempotent():
    once = redact_url("https://u:pw@host/?token=t0ken")
    assert redact_url(once) == once


# --- trees --------------------------------------------------------------------------


def test_tree_redacts_secret_names_and_shapes():
    config = {
        "lr": 3e-4,
        "wandb": {"api_key": "0123456789abcdef", "project": "demo"},
        "hf_token": 12345678,
        "db": {"url": "postgres://u:pw1234@h/db", "password": None},
        "notes": ["fine", GITHUB],
        "use_auth_token": True,
        "bos_token": "<s>",
        "commit": "da39a3ee5e6b4b0d3255bfef95601890afd80709",
    }
    result = redact_tree(config)
    out = result.value
    assert out["lr"] == 3e-4
    assert out["wandb"]["project"] == "demo"
    assert check_commitment("0123456789abcdef", out["wandb"]["api_key"])
    assert check_commitment("12345678", out["hf_token"])
    assert out["db"]["password"] is None
    assert out["db"]["url"].startswith("postgres://u:<redacted")
    assert out["notes"][0] == "fine"
    assert check_commitment(GITHUB, out["notes"][1])
    assert out["use_auth_token"] is True
    assert out["bos_token"] == "<s>"
    assert out["commit"] == config["commit"]
    assert set(result.secrets) >= {"0123456789abcdef", "12345678", "pw1234", GITHUB}
    dumped = json.dumps(out)
    for secret in ("0123456789abcdef", "12345678", "pw1234", GITHUB):
        assert secret not in dumped


def test_everything_under_a_secret_name_is_redacted():
    out = redact_tree(
        {"credentials": {"user": "alice", "pins": [1234, 5678], "on": True}}
    )
    creds = out.value["credentials"]
    assert check_commitment("alice", creds["user"])
    assert check_commitment("1234", creds["pins"][0])
    assert creds["on"] is True


def test_empty_and_bool_values_under_secret_names_are_kept():
    out = redact_tree({"password": "", "token": False, "api_key": None})
    assert out.value == {"password": "", "token": False, "api_key": None}
    assert out.secrets == ()


def test_tree_does_not_mutate_and_is_idempotent():
    config = {"a": [{"token": "abcdefgh"}], "b": ("x", AWS), "c": {"d": Blob(b"token")}}
    before = copy.deepcopy(config)
    once = redact_tree(config)
    assert config == before
    twice = redact_tree(once.value)
    assert twice.value == once.value
    assert twice.secrets == ()
    assert isinstance(once.value["b"], tuple)


def test_blobs_are_not_walked():
    blob = Blob(GITHUB.encode(), "text/plain")
    out = redact_tree({"token_blob": blob, "file": blob})
    assert out.value["file"] is blob
    assert out.value["token_blob"] is blob


def test_credential_shaped_dict_keys_become_markers():
    out = redact_tree({GITHUB: 1})
    (key,) = out.value
    assert check_marker(GITHUB, key)


def test_redacted_repr_hides_secrets():
    result = redact_tree({"password": "hunter22"})
    assert isinstance(result, Redacted)
    assert "hunter22" not in repr(result)


# --- argv ---------------------------------------------------------------------------

ARGV_CASES = [
    # (argv, index of the redacted element, kept prefix, secret)
    (["train.py", "--api-key=XYZ12345"], 1, "--api-key=", "XYZ12345"),
    (["train.py", "--api-key", "XYZ12345", "--lr", "1"], 2, "", "XYZ12345"),
    (["train.py", "-api_key", "XYZ12345"], 2, "", "XYZ12345"),
    (["train.py", "--hf_token=abcd1234"], 1, "--hf_token=", "abcd1234"),
    (["train.py", "password=hunter22"], 1, "password=", "hunter22"),
    (["train.py", "+db.password=hunter22"], 1, "+db.password=", "hunter22"),
    (["train.py", "++wandb.api_key=hunter22"], 1, "++wandb.api_key=", "hunter22"),
    (["HF_TOKEN=abc123", "python", "train.py"], 0, "HF_TOKEN=", "abc123"),
    (["train.py", "--push", GITHUB], 2, "", GITHUB),
    (["train.py", "--hub=" + GITHUB], 1, "--hub=", GITHUB),
    # the header's name and scheme are kept, the token committed in place
    (
        ["curl", "-H", "Authorization: Bearer abc123DEF456ghi789"],
        2,
        "Authorization: Bearer ",
        "abc123DEF456ghi789",
    ),
]


@pytest.mark.parametrize(("argv", "index", "prefix", "secret"), ARGV_CASES)
def test_argv_forms(argv, index, prefix, secret):
    result = redact_argv(argv)
    secret = argv[index][len(prefix) :] if secret is None else secret
    out = result.value
    assert isinstance(out, list)
    assert len(out) == len(argv)
    assert out[index].startswith(prefix + "<redacted hmac-sha256:")
    assert check_marker(secret, out[index][len(prefix) :])
    assert secret in result.secrets
    assert [a for n, a in enumerate(out) if n != index] == [
        a for n, a in enumerate(argv) if n != index
    ]


def test_argv_url_keeps_everything_but_the_password():
    out = redact_argv(["train.py", "--db", "postgres://u:pw1234@h/db"]).value
    assert out[2].startswith("postgres://u:<redacted")
    assert out[2].endswith("@h/db")


def test_argv_single_letter_options_other_than_p_are_not_redacted_by_name():
    assert redact_argv(["-k", "5", "-n", "3"]).value == ["-k", "5", "-n", "3"]


def test_argv_p_of_a_script_is_committed_a_port_loses_only_readability():
    out = redact_argv(["python", "train.py", "-p", "8080"])
    assert out.value[:3] == ["python", "train.py", "-p"]
    assert check_marker("8080", out.value[3])
    assert out.options == ("p",)


@pytest.mark.parametrize(
    "argv",
    [
        ["mkdir", "-p", "out/dir"],
        ["psql", "-h", "db", "-p", "5432"],
        ["ssh", "-p", "2222", "host"],
        ["docker", "run", "-p", "8080:80", "image"],
    ],
)
def test_argv_p_is_kept_for_tools_where_it_is_no_secret(argv):
    assert redact_argv(argv).value == argv


def test_argv_secret_flag_followed_by_an_option_redacts_nothing():
    argv = ["--use_auth_token", "--lr", "0.1"]
    assert redact_argv(argv).value == argv


def test_argv_plain_command_is_unchanged():
    argv = [
        "python",
        "train.py",
        "--lr",
        "3e-4",
        "--tokenizer",
        "gpt2",
        "--bos_token=<s>",
    ]
    result = redact_argv(argv)
    assert result.value == argv
    assert result.secrets == ()


def test_argv_is_idempotent():
    once = redact_argv(
        ["--password", "hunter22", "token=abc123", "--key=val1234"]
    ).value
    assert redact_argv(once).value == once


# --- env ----------------------------------------------------------------------------


def test_env_redacts_secret_names_and_values():
    env = {
        "HF_TOKEN": "abc",
        "WANDB_API_KEY": "0123456789",
        "DATABASE_URL": "postgres://u:pw1234@h/db",
        "SOME_VAR": GITHUB,
        "PATH": "/usr/bin:/bin",
        "PWD": "/home/alice/project",
        "CUDA_VISIBLE_DEVICES": "0,1",
        "EMPTY_TOKEN": "",
    }
    result = redact_env(env)
    out = result.value
    assert check_commitment("abc", out["HF_TOKEN"])
    assert check_commitment("0123456789", out["WANDB_API_KEY"])
    assert check_commitment(GITHUB, out["SOME_VAR"])
    assert out["DATABASE_URL"].startswith("postgres://u:<redacted")
    assert out["PATH"] == "/usr/bin:/bin"
    assert out["PWD"] == "/home/alice/project"
    assert out["CUDA_VISIBLE_DEVICES"] == "0,1"
    assert out["EMPTY_TOKEN"] == ""
    assert env["HF_TOKEN"] == "abc"


# --- scrub_text ---------------------------------------------------------------------


def test_scrub_replaces_every_occurrence_longest_first():
    data = b"password: hunter22\nagain: hunter22\nprefix: hunter\n"
    out = scrub_text(data, ["hunter", "hunter22"])
    assert out == b"password: [MASKED:s]\nagain: [MASKED:s]\nprefix: [MASKED:s]\n"


def test_scrub_skips_short_secrets_and_handles_none():
    assert scrub_text(b"abc 123", ["abc", "123", ""]) == b"abc 123"
    assert scrub_text(b"abc", []) == b"abc"


def test_scrub_handles_utf8_and_percent_encoding():
    data = "url: postgres://u:p%C3%A9ss%40wd@h/db\nraw: péss@wd\n".encode()
    out = scrub_text(data, ["péss@wd"])
    assert "péss".encode() not in out
    assert b"p%C3%A9ss" not in out
    assert out.count(b"[MASKED:s]") == 2


def test_scrub_does_not_rescan_its_own_replacements():
    assert scrub_text(b"dacted x", ["dacted", "redacted"]) == b"[MASKED:s] x"


def test_tree_secrets_scrub_the_config_text():
    text = b"wandb:\n  api_key: 0123456789abcdef\nlr: 0.1\n"
    result = redact_tree({"wandb": {"api_key": "0123456789abcdef"}, "lr": 0.1})
    assert (
        scrub_text(text, result.secrets) == b"wandb:\n  api_key: [MASKED:s]\nlr: 0.1\n"
    )


def test_undecodable_argv_bytes_are_committed_as_their_bytes():
    import os

    secret = os.fsdecode(b"pa\xffssword")  # a lone surrogate, as Python decodes argv
    marker = redact_argv(["--password=" + secret]).value[0][len("--password=") :]
    assert check_marker(secret, marker)
    c = commit_secret(secret, salt=b"\x00" * 16)
    assert check_commitment(b"pa\xffssword", c)
    assert check_commitment("\ud800x", commit_secret("\ud800x"))
    data = b"a pa\xffssword b pa%FFssword"
    assert scrub_text(data, [secret]) == b"a [MASKED:s] b [MASKED:s]"


# --- secrets found by attacking real runs (ADR 0013, amendment 2026-12-07) ---------

# Assembled from pieces so that secret scanners do not flag this file.
SLACK_HOOK = (
    "https://hooks."
    + "slack.com/services/T0ABC1234/B0ABC1234/"
    + "4zGtSnovm14TUOizwd1iaeOV"
)
DISCORD_HOOK = (
    "https://discord.com/api/"
    + "webhooks/123456789012345678/"
    + "4qBkdfQ1y3GQsMpSscDlkrCaqx9v"
)
TELEGRAM = "123456789:" + "H2WjQ5TY4MyWuUFjsUNPjc01T5GOBUSZGi6"
TEAMS_HOOK = (
    "https://acme.webhook."
    + "office.com/webhookb2/"
    + "a1b2c3d4-e5f6@x/IncomingWebhook/9f8e7d6c"
)


def _only_commitments(text):
    return re.sub(r"<redacted hmac-sha256:[0-9a-f]{64} salt:[0-9a-f]{32} key:[0-9a-f]{16}>",
                  "<R>", text)  # fmt: skip


@pytest.mark.parametrize(
    ("value", "kept", "secret"),
    [
        # URLs anywhere in a string, not only a string that is one URL
        ("got https://h.example.com/f?token=Qx81hsT7kLm2&page=2 ok",
         "got https://h.example.com/f?token=<R>&page=2 ok", "Qx81hsT7kLm2"),
        ("from https://u:Pw9xZq7Lm2Kd@h.example.com/x today",
         "from https://u:<R>@h.example.com/x today", "Pw9xZq7Lm2Kd"),
        # JDBC: a scheme before the scheme
        ("jdbc:postgresql://h:5432/db?user=u&password=Pw9xZq7Lm2Kd",
         "jdbc:postgresql://h:5432/db?user=u&password=<R>", "Pw9xZq7Lm2Kd"),
        # a token given as the URL's user name
        ("https://072014b3ce107f80e222f828767efc2f91624a89@github.com/o/r.git",
         "https://<R>@github.com/o/r.git", "072014b3ce107f80e222f828767efc2f91624a89"),
        # Authorization headers of any scheme, API-key headers, NAME=value in text
        ("Authorization: token d1QsO7jprBGumXxY9B4bZWOz648JJn",
         "Authorization: token <R>", "d1QsO7jprBGumXxY9B4bZWOz648JJn"),
        ("X-Api-Key: Ufd7UACNWiP3sFd67JikEAvstqVVPq",
         "X-Api-Key: <R>", "Ufd7UACNWiP3sFd67JikEAvstqVVPq"),
        ("rerun with DB_PASSWORD=a8FRCztUjAwyuh1vau please",
         "rerun with DB_PASSWORD=<R> please", "a8FRCztUjAwyuh1vau"),
    ],
)  # fmt: skip
def test_secrets_inside_free_text_are_committed_in_place(value, kept, secret):
    out = redact_tree({"note": value})
    assert secret not in json.dumps(out.value)
    assert _only_commitments(out.value["note"]) == kept
    assert secret in out.secrets
    assert redact_tree(out.value).value == out.value  # idempotent


@pytest.mark.parametrize("hook", [SLACK_HOOK, DISCORD_HOOK, TEAMS_HOOK,
                                  "https://api.telegram.org/bot" + TELEGRAM + "/send"])  # fmt: skip
def test_webhook_urls_and_bot_tokens_are_committed(hook):
    out = redact_tree({"notify": hook, "env": {"HF_HUB_WEBHOOK": hook}})
    assert check_commitment(hook, out.value["notify"])
    assert check_commitment(hook, out.value["env"]["HF_HUB_WEBHOOK"])
    assert looks_like_secret(hook)


def test_json_in_a_string_is_redacted_as_a_tree_and_stays_json():
    text = json.dumps({"type": "service_account", "private_key_id": "e737443e2104719",
                       "hub": {"hub_token": "Zq7Zq7Zq7Zq7Zq7"}, "lr": 0.1})  # fmt: skip
    out = redact_tree({"gcp": text})
    back = json.loads(out.value["gcp"])
    assert back["type"] == "service_account"
    assert back["lr"] == 0.1
    assert check_commitment("e737443e2104719", back["private_key_id"])
    assert check_commitment("Zq7Zq7Zq7Zq7Zq7", back["hub"]["hub_token"])
    assert redact_tree(out.value).value == out.value
    assert redact_tree({"plain": '{"lr": 0.1}'}).value == {"plain": '{"lr": 0.1}'}


def test_plain_text_urls_and_assignments_are_unchanged():
    for text in ("see https://example.com/docs?page=2#top", "git@github.com:o/r.git",
                 "https://alice@example.com/x", "key: train_loss", "token: 50256",
                 "lr=0.1 epochs=3", "https://pypi.org/simple/torch/"):  # fmt: skip
        assert redact_tree({"t": text}).value == {"t": text}


def test_pw_names_and_plural_token_names_are_secret():
    assert is_secret_name("--pw")
    assert is_secret_name("DB_PW")
    assert not is_secret_name("pw_conv")
    assert is_secret_name("api_tokens")
    assert is_secret_name("access_keys")


@pytest.mark.parametrize(
    ("argv", "secret"),
    [
        (["curl", "-u", "admin:Pw9xZq7Lm2Kd", "https://h/x"], "admin:Pw9xZq7Lm2Kd"),
        (["curl", "--user", "admin:Pw9xZq7Lm2Kd", "https://h/x"], "admin:Pw9xZq7Lm2Kd"),
        (["curl", "--user=admin:Pw9xZq7Lm2Kd", "https://h/x"], "admin:Pw9xZq7Lm2Kd"),
        (["sh", "-c", "curl -u admin:Pw9xZq7Lm2Kd https://h/x"], "admin:Pw9xZq7Lm2Kd"),
        (["python", "t.py", "--pw", "Pw9xZq7Lm2Kd"], "Pw9xZq7Lm2Kd"),
    ],
)
def test_argv_http_client_logins_are_committed(argv, secret):
    out = redact_argv(argv)
    assert secret not in " ".join(out.value)
    assert secret in out.secrets
    assert redact_argv(out.value).value == out.value
