"""Author key proofs: any identity survives the record's canonical JSON and verifies."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from mltrail.core.codec import decode_record
from mltrail.core.entry import Entry, Record, sign_entry
from mltrail.core.keyring import KeyRing, make_key_proof
from mltrail.core.signing import encode_b64
from mltrail.testing import fixed_signer

ORIGIN = "example.org/proofs"
LOG = fixed_signer("log")
AUTHOR = fixed_signer("author")

identities = st.text(min_size=1, max_size=200)


def _ring() -> KeyRing:
    ring = KeyRing()
    genesis = {
        "alg": "ed25519",
        "key": LOG.key_id,
        "public_key": encode_b64(LOG.public_key),
        "origin": ORIGIN,
    }
    assert ring.apply(0, "key.added", genesis, LOG.key_id) is None
    return ring


@settings(max_examples=60, deadline=None)
@given(identity=identities, other=identities)
def test_any_identity_round_trips_through_a_record_and_its_proof(
    identity: str, other: str
) -> None:
    body = {
        "alg": "ed25519",
        "key": AUTHOR.key_id,
        "public_key": encode_b64(AUTHOR.public_key),
        "identity": identity,
        "proof": encode_b64(make_key_proof(AUTHOR, ORIGIN, identity)),
    }
    entry = sign_entry(Entry("key.added", "2026-01-01T00:00:00.000000Z", {}, body), LOG)
    decoded = decode_record(Record(1, "0" * 64, entry).to_bytes()).record.entry
    assert decoded.body["identity"] == identity
    ring = _ring()
    assert ring.apply(1, "key.added", dict(decoded.body), LOG.key_id) is None
    assert ring.keys[AUTHOR.key_id].identity == identity
    assert ring.signer_problem(AUTHOR.key_id, 2, "note", identity) is None
    if other != identity:
        assert ring.signer_problem(AUTHOR.key_id, 2, "note", other) is not None
        wrong = {**body, "identity": other}
        problem = _ring().apply(1, "key.added", wrong, LOG.key_id)
        assert problem is not None
        assert problem.code == "key-proof"
