"""The parts of server_trust that read what others wrote: server URLs, trust
files, key records shown by a server (the whole flow against a real server is
in tests/integration/test_client_trust.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mltrail.core.entry import Entry, Record, sign_entry
from mltrail.core.signing import encode_b64
from mltrail.errors import ConfigError, InputError
from mltrail.ledger.keystore import generate_signer
from mltrail.ledger.server_trust import (
    ServerTrust,
    _key_step,
    server_id,
    trust_file_name,
)

TIME = "2026-12-06T10:00:00.000000Z"


def test_one_server_ledger_has_one_id_however_its_url_is_written():
    same = [
        "https://Host.Example/ledgers/team-a",
        "HTTPS://host.example:443/ledgers/team-a/",
        "https://host.example/ledgers/team-a?x=1",
    ]
    assert {server_id(u) for u in same} == {"https://host.example/ledgers/team-a"}
    others = [
        "http://host.example/ledgers/team-a",
        "https://host.example:8443/ledgers/team-a",
        "https://host.example/ledgers/team-b",
        "https://other.example/ledgers/team-a",
        "https://host.example/p/ledgers/team-a",
    ]
    assert len({server_id(u) for u in [same[0], *others]}) == 6
    with pytest.raises(InputError):
        server_id("ftp://host/ledgers/a")


_HOST = st.text("abcXYZ019.-", min_size=1, max_size=20)
_SEGMENT = st.text("abc019-", min_size=1, max_size=6)


@given(
    st.sampled_from(["http", "https", "HTTP"]),
    _HOST,
    st.one_of(st.none(), st.integers(1, 65535)),
    st.builds(
        lambda prefix, name, slash: (
            "".join(f"/{p}" for p in prefix) + f"/ledgers/{name}" + slash
        ),
        st.lists(_SEGMENT, max_size=2),
        _SEGMENT,
        st.sampled_from(["", "/"]),
    ),
)
def test_a_server_id_is_stable_and_keeps_what_tells_servers_apart(
    scheme, host, port, path
):
    netloc = host if port is None else f"{host}:{port}"
    url = f"{scheme}://{netloc}{path}"
    try:
        sid = server_id(url)
    except (InputError, ValueError):
        return  # not a URL of a ledger (e.g. a host that is not one)
    assert server_id(sid) == sid
    assert sid.startswith(scheme.lower() + "://" + host.lower())
    assert sid.endswith(path.rstrip("/"))


@given(st.text(max_size=60), st.text(min_size=1, max_size=80))
def test_a_trust_file_name_is_a_plain_file_name(ledger, origin):
    name = trust_file_name(ledger, "https://h/ledgers/x", origin)
    assert "/" not in name
    assert name.endswith(".json")
    assert "@" in name
    assert name != trust_file_name(ledger, "https://h2/ledgers/x", origin)
    assert name != trust_file_name(ledger, "https://h/ledgers/x", origin + "x")


def _file(signer, **over):
    data = {
        "version": 2,
        "ledger": "team-a",
        "origin": "example.com/team-a",
        "servers": ["https://h/ledgers/team-a"],
        "genesis_key": signer.key_id,
        "log_keys": {signer.key_id: encode_b64(signer.public_key)},
        "key_seqs": {signer.key_id: [-1, None]},
        "pinned_by": "first contact",
        "checkpoint": None,
    }
    return json.dumps(data | over)


def test_a_trust_file_round_trips_and_the_first_format_still_reads(tmp_path):
    signer = generate_signer()
    trust = ServerTrust._from_json(tmp_path / "t.json", _file(signer))
    assert ServerTrust._from_json(tmp_path / "t.json", trust._to_json()) == trust
    first = json.loads(_file(signer))
    for gone in ("version", "servers", "key_seqs"):
        del first[gone]
    old = ServerTrust._from_json(tmp_path / "t.json", json.dumps(first))
    assert old.servers == []
    assert old.valid_at(signer.key_id, 10**9)


def test_a_trust_file_with_a_key_that_is_not_its_id_is_refused(tmp_path):
    signer, other = generate_signer(), generate_signer()
    bad = _file(signer, log_keys={signer.key_id: encode_b64(other.public_key)})
    with pytest.raises(ConfigError, match="not its key's hash"):
        ServerTrust._from_json(tmp_path / "t.json", bad)


@settings(max_examples=200)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda inner: (
            st.lists(inner, max_size=4)
            | st.dictionaries(st.text(max_size=12), inner, max_size=5)
        ),
        max_leaves=20,
    ),
    st.sampled_from(["log_keys", "key_seqs", "servers", "checkpoint", "origin", None]),
)
def test_any_damaged_trust_file_reads_as_a_config_error(value, field):
    signer = generate_signer()
    text = _file(signer, **{field: value}) if field else json.dumps(value)
    try:
        trust = ServerTrust._from_json(Path("t.json"), text)
    except ConfigError:
        return
    assert isinstance(trust.log_keys, dict)
    for key_id in trust.key_seqs:
        assert key_id in trust.log_keys


def _key_record(seq, kind, body, signer, actor=None):
    entry = sign_entry(Entry(kind, TIME, actor or {"user": "srv"}, body), signer)
    return Record(seq, "00" * 32, entry).to_bytes()


def _added(key):
    return {
        "alg": "ed25519",
        "key": key.key_id,
        "public_key": encode_b64(key.public_key),
        "reason": "rotation",
    }


def test_only_a_log_key_record_signed_by_a_valid_pinned_key_is_a_step():
    old, new, stranger = generate_signer(), generate_signer(), generate_signer()
    keys = {old.key_id: old.public_key}
    seqs = {old.key_id: (-1, None)}
    added = _key_record(7, "key.added", _added(new), old)
    assert _key_step(7, added, keys, seqs) == ("key.added", new.key_id, new.public_key)
    assert _key_step(8, added, keys, seqs) is None  # shown under another seq
    forged = _key_record(7, "key.added", _added(new), stranger)
    assert _key_step(7, forged, keys, seqs) is None  # not a pinned key's
    author = _key_record(7, "key.added", _added(new) | {"identity": "bob"}, old)
    assert _key_step(7, author, keys, seqs) is None  # an author key, not a log key
    revoked_first = {old.key_id: (-1, 5)}
    assert _key_step(7, added, keys, revoked_first) is None  # signer revoked at 5
    tampered = added.replace(new.key_id.encode(), stranger.key_id.encode())
    assert _key_step(7, tampered, keys, seqs) is None
    keys2 = keys | {new.key_id: new.public_key}
    seqs2 = seqs | {new.key_id: (7, None)}
    revoke = _key_record(8, "key.revoked", {"key": old.key_id, "reason": "r"}, new)
    assert _key_step(8, revoke, keys2, seqs2) == ("key.revoked", old.key_id, b"")
    assert _key_step(7, revoke, keys2, seqs2) is None  # new key not valid at 7


@given(st.binary(max_size=300))
def test_any_bytes_shown_as_a_key_record_are_no_step_or_a_checked_one(data):
    old = generate_signer()
    assert _key_step(3, data, {old.key_id: old.public_key}, {}) is None
