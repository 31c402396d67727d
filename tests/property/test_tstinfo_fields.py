"""Property tests: the TSTInfo fields read from a token's DER by hand (genTime's
fraction and the accuracy, which rfc3161-client drops or reads wrongly) are the
fields written, and any other bytes are a ``ValueError``, never another error.

The bytes come from a TSA or whoever answers in its place, so this is a parser
of untrusted input (ADR 0015 amendment of 2026-12-08, "an anchor is never
earlier than its token proves")."""

from __future__ import annotations

import contextlib
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mltrail.core.timestamp import _der_items, _time_fields


def der(tag: int, body: bytes) -> bytes:
    """One DER element (definite length, short or long form)."""
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = (n.bit_length() + 7) // 8
    return bytes([tag, 0x80 | size]) + n.to_bytes(size, "big") + body


def der_int(tag: int, value: int) -> bytes:
    size = max(1, (value.bit_length() + 8) // 8)  # room for the sign bit
    return der(tag, value.to_bytes(size, "big", signed=True))


def tst_info(
    fraction: str, accuracy: tuple[int | None, int | None, int | None] | None
) -> bytes:
    """A TSTInfo's shape: version, policy, imprint, serial, genTime, accuracy?,
    nonce (fields after genTime the reader must not take for an accuracy)."""
    gen_time = (
        b"20261208031500" + (b"." + fraction.encode() if fraction else b"") + b"Z"
    )
    fields = [
        der_int(0x02, 1),
        der(0x06, bytes([0x2B, 0x06, 0x01, 0x04, 0x01, 0x82, 0x37])),
        der(
            0x30, der(0x30, der(0x06, bytes([0x60, 0x86, 0x48]))) + der(0x04, bytes(32))
        ),
        der_int(0x02, 123456789),
        der(0x18, gen_time),
    ]
    if accuracy is not None:
        seconds, millis, micros = accuracy
        parts = b""
        if seconds is not None:
            parts += der_int(0x02, seconds)
        if millis is not None:
            parts += der_int(0x80, millis)
        if micros is not None:
            parts += der_int(0x81, micros)
        fields.append(der(0x30, parts))
    fields.append(der_int(0x02, 987654321))  # a nonce
    return der(0x30, b"".join(fields))


OPTIONAL_SECONDS = st.none() | st.integers(0, 366 * 86400)
OPTIONAL_SUB = st.none() | st.integers(0, 999)


@given(
    fraction=st.text("0123456789", max_size=6),
    accuracy=st.none() | st.tuples(OPTIONAL_SECONDS, OPTIONAL_SUB, OPTIONAL_SUB),
)
def test_the_fields_written_are_the_fields_read(fraction, accuracy):
    fractional, read = _time_fields(tst_info(fraction, accuracy))
    assert fractional == (fraction.strip("0") != "")
    seconds, millis, micros = accuracy or (None, None, None)
    assert read == timedelta(
        seconds=seconds or 0, milliseconds=millis or 0, microseconds=micros or 0
    )


@given(
    seconds=st.integers(366 * 86400 + 1, 2**300) | st.integers(-(2**300), -1),
)
def test_an_accuracy_out_of_range_is_refused_with_a_short_message(seconds):
    with pytest.raises(ValueError, match="out of range") as caught:
        _time_fields(tst_info("", (seconds, None, None)))
    assert len(str(caught.value)) < 120


@given(st.binary(max_size=300))
def test_any_bytes_are_read_or_refused_with_a_value_error(data):
    with contextlib.suppress(ValueError):
        _time_fields(data)
    try:
        items = _der_items(data)
    except ValueError:
        return
    assert all(isinstance(tag, int) and isinstance(body, bytes) for tag, body in items)


@given(st.binary(min_size=1, max_size=40), st.data())
def test_a_token_cut_short_or_edited_is_read_or_refused(extra, data):
    whole = tst_info("123", (1, 500, None))
    at = data.draw(st.integers(0, len(whole)))
    for edited in (whole[:at], whole[:at] + extra + whole[at + len(extra) :]):
        with contextlib.suppress(ValueError):
            _time_fields(edited)
