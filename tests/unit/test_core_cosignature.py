"""cosignature/v1 lines, checked against the C2SP tlog-cosignature text itself.

The expected bytes are written out here from the specification (key ID type
byte 0x04, the ``cosignature/v1`` and ``time`` lines, the big-endian u64 time),
and the signatures checked with ``cryptography`` directly, not with our code.
"""

import base64
import hashlib

import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from mltrail.core.checkpoint import (
    Checkpoint,
    parse_note,
    parse_signed_checkpoint,
    parse_verifier_key,
    sign_checkpoint,
)
from mltrail.core.cosignature import (
    WitnessKey,
    cosign_checkpoint,
    cosigned_message,
    find_cosignature,
    parse_witness_key,
)
from mltrail.errors import BadSignatureError, SchemaError
from mltrail.testing import fixed_signer

LOG = fixed_signer("cosign-log")
WITNESS = fixed_signer("cosign-witness")
NAME = "witness.example/w1"
T = 1679315147


def _signed():
    checkpoint = Checkpoint("example.com/behind-the-sofa", 20852163, bytes(range(32)))
    return sign_checkpoint(checkpoint, LOG)


def test_the_signed_message_is_the_spec_s():
    body = b"example.com/behind-the-sofa\n20852163\nCsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=\n"
    assert cosigned_message(body, T) == b"cosignature/v1\ntime 1679315147\n" + body


def test_a_cosignature_line_as_the_spec_describes_it():
    signed = _signed()
    cosigned = cosign_checkpoint(signed, WITNESS, NAME, T)
    line = cosigned.signatures[-1]
    key_id = hashlib.sha256(NAME.encode() + b"\n\x04" + WITNESS.public_key).digest()[:4]
    assert line.name == NAME
    assert line.key_hash == key_id
    assert line.signature[:8] == T.to_bytes(8, "big")
    message = b"cosignature/v1\ntime %d\n" % T + signed.checkpoint.body()
    Ed25519PublicKey.from_public_bytes(WITNESS.public_key).verify(
        line.signature[8:], message
    )
    text = cosigned.to_text()
    raw = base64.b64decode(text.splitlines()[-1].rsplit(" ", 1)[1])
    assert len(raw) == 4 + 8 + 64
    with pytest.raises(InvalidSignature):  # not a plain note signature of the body
        Ed25519PublicKey.from_public_bytes(WITNESS.public_key).verify(
            line.signature[8:], signed.checkpoint.body()
        )


def test_find_cosignature_round_trip_and_other_keys_ignored():
    text = cosign_checkpoint(_signed(), WITNESS, NAME, T).to_text()
    note = parse_note(text)
    key = WitnessKey(NAME, WITNESS.public_key)
    assert find_cosignature(note, key) == T
    assert find_cosignature(note, WitnessKey(NAME, LOG.public_key)) is None
    assert (
        find_cosignature(note, WitnessKey("other.example/w", WITNESS.public_key))
        is None
    )


def test_cosigning_again_replaces_the_witness_line():
    once = cosign_checkpoint(_signed(), WITNESS, NAME, T)
    twice = cosign_checkpoint(once, WITNESS, NAME, T + 60)
    assert len(twice.signatures) == 2
    assert (
        find_cosignature(twice.note(), WitnessKey(NAME, WITNESS.public_key)) == T + 60
    )


@pytest.mark.parametrize("offset", [0, 7, 8, 40, 71])
def test_an_altered_cosignature_fails(offset):
    cosigned = cosign_checkpoint(_signed(), WITNESS, NAME, T)
    text = cosigned.to_text()
    head, _, line = text.rstrip("\n").rpartition("\n")
    prefix, encoded = line.rsplit(" ", 1)
    raw = bytearray(base64.b64decode(encoded))
    raw[4 + offset] ^= 0x01
    forged = f"{head}\n{prefix} {base64.b64encode(bytes(raw)).decode()}\n"
    with pytest.raises(BadSignatureError):
        find_cosignature(parse_note(forged), WitnessKey(NAME, WITNESS.public_key))


def test_a_cosignature_of_another_body_fails():
    cosigned = cosign_checkpoint(_signed(), WITNESS, NAME, T)
    other = Checkpoint("example.com/behind-the-sofa", 20852164, bytes(range(32)))
    moved = parse_signed_checkpoint(cosigned.to_text())
    from mltrail.core.checkpoint import SignedCheckpoint

    swapped = SignedCheckpoint(other, moved.signatures)
    with pytest.raises(BadSignatureError):
        find_cosignature(swapped.note(), WitnessKey(NAME, WITNESS.public_key))


def test_witness_verifier_keys():
    key = WitnessKey(NAME, WITNESS.public_key)
    vkey = key.to_vkey()
    name, hash_hex, data = vkey.split("+")
    assert (name, hash_hex) == (NAME, key.key_hash.hex())
    assert base64.b64decode(data) == b"\x04" + WITNESS.public_key
    assert parse_witness_key(vkey + "\n") == key
    with pytest.raises(SchemaError, match="0x04 is expected"):
        parse_witness_key(_note_vkey())
    with pytest.raises(SchemaError, match="0x01 is expected"):
        parse_verifier_key(vkey)


def _note_vkey():
    from mltrail.core.checkpoint import format_verifier_key

    return format_verifier_key(NAME, WITNESS.public_key)


def test_a_wrong_length_line_is_a_schema_error():
    signed = _signed()
    key = WitnessKey(NAME, WITNESS.public_key)
    line = f"\u2014 {NAME} {base64.b64encode(key.key_hash + bytes(64)).decode()}\n"
    with pytest.raises(SchemaError, match="cosignature/v1"):
        find_cosignature(parse_note(signed.to_text() + line), key)


def test_times_out_of_range_are_refused():
    with pytest.raises(ValueError, match="2\\*\\*63"):
        cosigned_message(b"x\n", 2**63)
    with pytest.raises(ValueError, match="2\\*\\*63"):
        cosigned_message(b"x\n", -1)


@pytest.mark.parametrize("old", ["\u00b2", "1" * 5000, "1" * 21])
def test_an_add_checkpoint_size_int_cannot_read_is_refused(old):
    """A witness reads ``old N`` from whoever asks it to cosign: "old ²" (a
    digit to str.isdigit, not to int) or 5,000 digits raised a ValueError out
    of `mltrail witness cosign`; they are input errors like any malformed body."""
    from mltrail.errors import InputError
    from mltrail.evidence.cosigner import parse_add_checkpoint

    with pytest.raises(InputError, match="not a tlog-witness add-checkpoint body"):
        parse_add_checkpoint(f"old {old}\n\n" + _signed().to_text())
