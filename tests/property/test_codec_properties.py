"""The codec is the one parser of untrusted bytes: it never fails except with SchemaError."""

import contextlib
import json

import jsonschema
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mltrail.core.codec import (
    decode_record,
    is_newer_version,
    parse_json,
    validate_entry,
)
from mltrail.core.entry import Entry, Record, sign_entry
from mltrail.core.schema import KNOWN_KINDS, load_schema
from mltrail.errors import SchemaError
from mltrail.testing import fixed_signer

SIGNER = fixed_signer()


def make_record(text: str) -> bytes:
    entry = Entry(
        kind="note",
        time="2026-11-24T17:56:18.123456Z",
        actor={"user": "u", "host": "h"},
        body={"text": text},
    )
    return Record(seq=0, prev="0" * 64, entry=sign_entry(entry, SIGNER)).to_bytes()


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    text=st.text(max_size=40),
    position=st.integers(min_value=0),
    byte=st.integers(min_value=0, max_value=255),
)
def test_any_single_byte_change_is_rejected_or_decodes_to_the_change(
    text, position, byte
):
    data = bytearray(make_record(text))
    position %= len(data)
    original = data[position]
    data[position] = byte
    try:
        decoded = decode_record(bytes(data))
    except SchemaError:
        return
    assert byte == original or decoded.record_bytes == bytes(data)


@given(st.binary(max_size=300))
def test_arbitrary_bytes_never_escape_as_other_errors(data):
    with contextlib.suppress(SchemaError):
        decode_record(data)


JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
ENVELOPE_FIELDS = {
    "v": st.sampled_from(["mltrail/1", "mltrail/2", "mltrail/0", "mltrail/01", 1]),
    "kind": st.sampled_from(["note", "run.params", "Note", "a..b", "", 5]),
    "run": st.sampled_from(["r1", "", "x" * 129, 3]),
    "time": st.sampled_from(
        [
            "2026-11-24T17:56:18.123456Z",
            "2026-11-24T17:56:18Z",
            "2026-11-24 17:56:18Z",
            0,
        ]
    ),
    "actor": st.sampled_from(
        [{"user": "u", "host": "h"}, {"user": 1}, {"ci": None}, {"ci": "x"}, [], {}]
    ),
    "body": st.sampled_from([{"text": "t"}, [], {}]),
    "sig": st.sampled_from(
        [
            {"alg": "ed25519", "key": "a" * 64, "value": "A" * 86 + "=="},
            {"alg": "rsa", "key": "a" * 64, "value": "A" * 86 + "=="},
            {"alg": "ed25519", "key": "A" * 64, "value": "A" * 86 + "=="},
            {"alg": "ed25519", "key": "a" * 64, "value": "short"},
            {"alg": "ed25519", "key": "a" * 64},
            "sig",
        ]
    ),
    "extra": JSON_VALUES,
}


@settings(max_examples=400)
@given(st.fixed_dictionaries({}, optional=ENVELOPE_FIELDS))
def test_fast_envelope_check_agrees_with_the_published_schema(entry):
    newer = is_newer_version(entry.get("v"))
    # A newer format's record is checked as far as every version agrees: its
    # envelope as if it were mltrail/1, and not its body.
    as_v1 = {**entry, "v": "mltrail/1"} if newer else entry
    schema_ok = jsonschema.Draft202012Validator(load_schema("entry")).is_valid(as_v1)
    if schema_ok and not newer and entry["kind"] in KNOWN_KINDS:
        # validate_entry also checks a known kind's body against its own schema
        body_schema = load_schema(entry["kind"])
        schema_ok = jsonschema.Draft202012Validator(body_schema).is_valid(entry["body"])
    try:
        validate_entry(entry, require_known_kind=False)
        fast_ok = True
    except SchemaError:
        fast_ok = False
    assert fast_ok == schema_ok, json.dumps(entry, default=str)


@given(st.text(max_size=30))
def test_parse_json_raises_only_schema_error(text):
    with contextlib.suppress(SchemaError):
        parse_json(text)
