"""Evidence values and their offline checks (cosignatures; tokens are checked
against a real TSA in tests/integration/test_timestamps.py)."""

import pytest

from mltrail.core.checkpoint import Checkpoint, sign_checkpoint
from mltrail.core.cosignature import WitnessKey, cosign_checkpoint
from mltrail.core.evidence import (
    COSIGNATURE,
    RFC3161,
    Evidence,
    EvidenceStatus,
    verify_evidence,
)
from mltrail.errors import SchemaError
from mltrail.testing import fixed_signer
from optional_extras import require_extra

LOG = fixed_signer("evidence-log")
WITNESS = fixed_signer("evidence-witness")
KEY = WitnessKey("w.example/1", WITNESS.public_key)


def _checkpoint(size=3):
    return sign_checkpoint(Checkpoint("example.org/log", size, bytes(32)), LOG)


def _cosigned(size=3):
    signed = _checkpoint(size)
    cosigned = cosign_checkpoint(signed, WITNESS, KEY.name, 1_700_000_000)
    return signed.to_text(), cosigned.to_text()


def test_round_trip_through_json():
    text, cosigned = _cosigned()
    for item in (
        Evidence(RFC3161, text, b"\x30\x03\x02\x01\x00"),
        Evidence(COSIGNATURE, text, cosigned.encode()),
    ):
        assert Evidence.from_dict(item.to_dict(), text) == item


@pytest.mark.parametrize(
    "data",
    [{"kind": "other"}, {"kind": RFC3161}, {"kind": RFC3161, "token": "not base64!"}],
)
def test_malformed_evidence_is_a_schema_error(data):
    with pytest.raises(SchemaError):
        Evidence.from_dict(data, "x")


def test_a_trusted_witness_cosignature_verifies():
    text, cosigned = _cosigned()
    checks = verify_evidence(
        text, [Evidence(COSIGNATURE, text, cosigned.encode())], witness_keys=[KEY]
    )
    assert [c.status for c in checks] == [EvidenceStatus.VERIFIED]
    assert checks[0].time is not None
    assert checks[0].time.year == 2023
    assert checks[0].to_dict()["issuer"] == KEY.short()


def test_an_unknown_witness_yields_no_check():
    text, cosigned = _cosigned()
    other = WitnessKey("w.example/2", LOG.public_key)
    item = Evidence(COSIGNATURE, text, cosigned.encode())
    assert verify_evidence(text, [item], witness_keys=[other]) == []


def test_a_cosigned_note_of_another_checkpoint_fails():
    text, _ = _cosigned(3)
    _, other = _cosigned(4)
    checks = verify_evidence(
        text, [Evidence(COSIGNATURE, text, other.encode())], witness_keys=[KEY]
    )
    assert [c.status for c in checks] == [EvidenceStatus.FAILED]
    assert "another checkpoint" in checks[0].message


def test_evidence_filed_under_another_checkpoint_fails():
    text, cosigned = _cosigned(3)
    other, _ = _cosigned(4)
    checks = verify_evidence(
        other, [Evidence(COSIGNATURE, text, cosigned.encode())], witness_keys=[KEY]
    )
    assert [c.ok for c in checks] == [False]


def test_garbage_instead_of_a_token_fails():
    text, _ = _cosigned()
    require_extra("timestamps", "rfc3161_client")
    checks = verify_evidence(text, [Evidence(RFC3161, text, b"garbage")])
    assert [c.status for c in checks] == [EvidenceStatus.FAILED]
    assert "not a valid RFC 3161 reply" in checks[0].message
