"""DSSE envelopes: the spec's PAE vector, round trips, and untrusted envelopes."""

from __future__ import annotations

import base64
import contextlib

from hypothesis import given
from hypothesis import strategies as st

from mltrail.errors import IntegrityError
from mltrail.integrations.dsse import open_envelope, pae, sign_envelope
from mltrail.testing import fixed_signer

SIGNER = fixed_signer()
KEYS = {SIGNER.key_id: SIGNER.public_key}


def test_pae_matches_the_dsse_spec_example():
    # secure-systems-lab/dsse protocol.md, "Test Vectors"
    assert pae("http://example.com/HelloWorld", b"hello world") == (
        b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"
    )


@given(st.binary(max_size=512), st.text(max_size=40))
def test_sign_then_open_round_trips(payload, payload_type):
    envelope = sign_envelope(payload, payload_type, SIGNER)
    assert open_envelope(envelope, KEYS) == payload


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=8), inner, max_size=3)
    ),
    max_leaves=10,
)


@given(
    st.dictionaries(
        st.sampled_from(["payload", "payloadType", "signatures", "x"]), json_values
    )
)
def test_untrusted_envelopes_raise_integrity_errors_only(data):
    data.setdefault("payload", "")
    with contextlib.suppress(IntegrityError):
        open_envelope(data, KEYS)


@given(st.binary(min_size=1, max_size=64), st.integers(min_value=0, max_value=10**6))
def test_any_flipped_payload_byte_is_refused(payload, where):
    envelope = sign_envelope(payload, "t", SIGNER)
    raw = bytearray(payload)
    raw[where % len(raw)] ^= 0x01
    bad = {**envelope, "payload": base64.b64encode(bytes(raw)).decode()}
    try:
        open_envelope(bad, KEYS)
    except IntegrityError:
        return
    raise AssertionError("a changed payload verified")


@given(st.lists(json_values, max_size=4))
def test_odd_signature_lists_are_refused(signatures):
    envelope = {"payload": "", "payloadType": "t", "signatures": signatures}
    try:
        open_envelope(envelope, KEYS)
    except IntegrityError:
        return
    raise AssertionError("an envelope with no valid signature was opened")
