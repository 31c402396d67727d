"""decode_record's fast path accepts only what the full path accepts, with the same result.

``codec._decode_fast`` answers a record or None; the full path (``_decode_full``)
is the definition. Whatever the fast path answers must be exactly what the full
path answers, and it must never answer for bytes the full path refuses (altered,
non-canonical, duplicate keys, floats, large integers, keys that sort
differently in UTF-16, newer formats, extra members).
"""

import json

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from mltrail.core.codec import (
    _check_time,
    _decode_fast,
    _decode_full,
    decode_record,
    parse_time,
)
from mltrail.core.entry import Entry, Record, sign_entry
from mltrail.errors import SchemaError
from mltrail.testing import fixed_signer

SIGNER = fixed_signer()

KEYS = st.text(max_size=6) | st.sampled_from(
    ["blob", "size", "sig", "\ud7ff", "\ue000", "\U0001f600"]
)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8)
    | st.sampled_from(["sha256:" + "a" * 64, "\u2028", "\x7f", '"', "\\"])
)
JSON_VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3)
    ),
    max_leaves=10,
)
ACTORS = st.sampled_from(
    [{}, {"user": "u", "host": "h"}, {"user": "é", "uid": 7, "ci": None}]
)


def record_bytes(
    kind: str, body: object, actor: dict, run: str | None, seq: int
) -> bytes | None:
    """A signed record's bytes, or None where the body cannot be signed."""
    entry = Entry(
        kind=kind,
        time="2026-11-24T17:56:18.123456Z",
        actor=actor,
        body=body,  # type: ignore[arg-type]
        run=run,
    )
    prev = "0" * 64 if seq == 0 else "ab" * 32
    try:
        return Record(seq=seq, prev=prev, entry=sign_entry(entry, SIGNER)).to_bytes()
    except SchemaError:
        return None  # integers beyond 2**53 - 1: no record holds them


def agree(data: bytes) -> None:
    """The fast path answers None or exactly what the full path answers."""
    fast = _decode_fast(data)
    try:
        full = _decode_full(data)
    except SchemaError:
        assert fast is None, data
        return
    assert fast is None or fast == full, data
    assert decode_record(data) == full


RECORDS = st.builds(
    record_bytes,
    kind=st.sampled_from(["note", "unknown.kind", "run.params"]),
    body=st.dictionaries(KEYS, JSON_VALUES, max_size=4),
    actor=ACTORS,
    run=st.none() | st.sampled_from(["r1", "train-7"]),
    seq=st.integers(0, 2**40),
).filter(lambda data: data is not None)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(data=RECORDS)
def test_fast_path_agrees_on_records(data):
    agree(data)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(data=RECORDS, position=st.integers(min_value=0), byte=st.integers(0, 255))
def test_fast_path_agrees_on_altered_records(data, position, byte):
    altered = bytearray(data)
    altered[position % len(data)] = byte
    agree(bytes(altered))


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=RECORDS, position=st.integers(min_value=0), extra=st.binary(max_size=4))
def test_fast_path_agrees_on_inserted_bytes(data, position, extra):
    position %= len(data)
    agree(data[:position] + extra + data[position:])


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=RECORDS, start=st.integers(min_value=0), length=st.integers(1, 8))
def test_fast_path_agrees_on_removed_bytes(data, start, length):
    start %= len(data)
    agree(data[:start] + data[start + length :])


@given(st.binary(max_size=300))
def test_fast_path_agrees_on_arbitrary_bytes(data):
    agree(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(
    body=st.dictionaries(st.text(max_size=6), st.text(max_size=20), max_size=4),
    actor=ACTORS,
)
def test_plain_records_take_the_fast_path(body, actor):
    """Records of strings and text below U+D000 (most records)
    are decoded by the fast path, so the property tests above exercise it."""
    assume(all(max(k, default="a") < "\ud000" for k in body))
    assume(all(max(v, default="a") < "\ud000" for v in body.values()))
    data = record_bytes("note", {**body, "text": "t"}, actor, None, 3)
    assert data is not None
    assert _decode_fast(data) is not None


def reserialised(data: bytes, mutate) -> bytes:
    value = json.loads(data)
    mutate(value)
    return json.dumps(
        value, ensure_ascii=False, sort_keys=True, separators=(",", ":")
    ).encode()


def _duplicate_sig(data: bytes) -> bytes:
    """The entry's sig member twice: JSON with a duplicate key."""
    start = data.index(b',"sig":')
    end = data.index(b"}", start) + 1
    return data[:end] + data[start:end] + data[end:]


@pytest.mark.parametrize(
    "make",
    [
        _duplicate_sig,
        lambda d: d.replace(b'"refers_to":5', b'"refers_to":5.0'),
        lambda d: d.replace(b'"refers_to":5', b'"refers_to":5e-7'),
        lambda d: d.replace(b'"refers_to":5', b'"refers_to":0.00001'),
        lambda d: d.replace(b'"refers_to":5', b'"refers_to":-0.0'),
        lambda d: d.replace(b'"refers_to":5', b'"refers_to":10000000000000000'),
        lambda d: d.replace(b'"refers_to":5', b'"refers_to":9007199254740993'),
        lambda d: d.replace(b'"refers_to":5', b'"refers_to":NaN'),
        lambda d: d.replace(b'"text":', b'"text" :'),
        lambda d: d + b" ",
        lambda d: reserialised(d, lambda v: v["entry"].update(x_extra=1)),
        lambda d: reserialised(
            d, lambda v: v["entry"]["body"].update({"\ufb01": 1, "\U0001f600": 2})
        ),
    ],
)
def test_fast_path_leaves_these_to_the_full_path(make):
    plain = record_bytes("note", {"text": "t", "refers_to": 5}, {}, None, 4)
    assert plain is not None
    assert _decode_fast(plain) is not None
    data = make(plain)
    assert _decode_fast(data) is None
    agree(data)


def test_a_newer_format_agrees():
    plain = record_bytes("note", {"text": "t"}, {}, None, 4)
    assert plain is not None
    agree(reserialised(plain, lambda v: v["entry"].update(v="mltrail/2")))


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(
    value=st.floats(allow_nan=False, allow_infinity=False)
    | st.floats(min_value=1e-8, max_value=1e22)
    | st.floats(min_value=-1e22, max_value=-1e-8)
)
def test_floats_agree(value):
    """Floats take the fast path only where ``repr`` writes them as RFC 8785 does."""
    data = record_bytes("note", {"text": "t", "x": value}, {}, None, 5)
    assert data is not None
    agree(data)
    written = data.split(b'"x":')[1].split(b"}")[0].decode()
    if written == repr(value) and "e" not in written and not written.endswith(".0"):
        assert _decode_fast(data) is not None, written  # written alike by both


def _outcome(check, text):
    try:
        check(text)
    except SchemaError as e:
        return str(e)
    return "ok"


@settings(max_examples=500)
@given(
    st.builds(
        "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}{}Z".format,
        st.integers(0, 9999),
        st.integers(0, 13),
        st.integers(0, 32),
        st.integers(0, 25),
        st.integers(0, 61),
        st.integers(0, 61),
        st.sampled_from(["", ".1", ".123456", ".123456789", ".1234567890"]),
    )
    | st.text(max_size=30)
)
def test_the_envelope_time_check_agrees_with_parse_time(text):
    """The envelope's time check (no datetime made when surely valid) accepts and
    refuses exactly what parse_time does, with its message."""
    assert _outcome(_check_time, text) == _outcome(parse_time, text)
