"""RFC 8032 section 7.1 Ed25519 vectors (tests/vectors/rfc8032).

Signing goes through ``cryptography`` (OpenSSL) and verification through
PyNaCl (libsodium); both must agree with the RFC on every vector.
"""

import hashlib
import json
from pathlib import Path

import pytest

from mltrail.core.signing import (
    Ed25519Signer,
    compute_key_id,
    is_valid_public_key,
    verify_signature,
)

VECTORS_DIR = Path(__file__).parent / "rfc8032"
DOC = json.loads((VECTORS_DIR / "ed25519.json").read_text())
VECTORS = {v["name"]: v for v in DOC["vectors"]}


def _bytes(vector):
    return tuple(
        bytes.fromhex(vector[k])
        for k in ("secret_key", "public_key", "message", "signature")
    )


def _flip(data, index):
    """Flip the lowest bit of byte ``index``."""
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


def test_all_vectors_are_present():
    assert list(VECTORS) == [
        "TEST 1",
        "TEST 2",
        "TEST 3",
        "TEST 1024",
        "TEST SHA(abc)",
    ]
    assert (VECTORS_DIR / "NOTICE").is_file()


def test_vector_shapes():
    for vector in VECTORS.values():
        sk, pk, _, sig = _bytes(vector)
        assert (len(sk), len(pk), len(sig)) == (32, 32, 64)
    assert len(bytes.fromhex(VECTORS["TEST 1024"]["message"])) == 1023
    sha_abc = bytes.fromhex(VECTORS["TEST SHA(abc)"]["message"])
    assert sha_abc == hashlib.sha512(b"abc").digest()


@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_public_key_from_seed(vector):
    sk, pk, _, _ = _bytes(vector)
    assert Ed25519Signer.from_seed(sk).public_key == pk


@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_signature_is_reproduced(vector):
    sk, _, msg, sig = _bytes(vector)
    assert Ed25519Signer.from_seed(sk).sign(msg) == sig


@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_signature_verifies(vector):
    _, pk, msg, sig = _bytes(vector)
    assert verify_signature(pk, msg, sig) is True


@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_flipped_message_bit_is_rejected(vector):
    _, pk, msg, sig = _bytes(vector)
    if msg:
        assert verify_signature(pk, _flip(msg, len(msg) // 2), sig) is False
    assert verify_signature(pk, msg + b"\x00", sig) is False


@pytest.mark.parametrize("index", [0, 31, 32, 63], ids=lambda i: f"byte{i}")
@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_flipped_signature_bit_is_rejected(vector, index):
    _, pk, msg, sig = _bytes(vector)
    assert verify_signature(pk, msg, _flip(sig, index)) is False


@pytest.mark.parametrize("index", [0, 15, 31], ids=lambda i: f"byte{i}")
@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_flipped_key_bit_is_rejected(vector, index):
    _, pk, msg, sig = _bytes(vector)
    assert verify_signature(_flip(pk, index), msg, sig) is False


@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_truncated_inputs_are_rejected(vector):
    _, pk, msg, sig = _bytes(vector)
    assert verify_signature(pk[:31], msg, sig) is False
    assert verify_signature(pk, msg, sig[:63]) is False


@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_key_id_is_sha256_of_public_key(vector):
    sk, pk, _, _ = _bytes(vector)
    assert compute_key_id(pk) == hashlib.sha256(pk).hexdigest()
    assert Ed25519Signer.from_seed(sk).key_id == compute_key_id(pk)


# RFC 8032 section 5.1.7: "If any of the decodings fail (including S being out
# of range), the signature is invalid". L is the order of the base point.
L = 2**252 + 27742317777372353535851937790883648493

# Points of small order (the identity, the point of order 2, all zeros as the
# non-canonical encoding of a point of order 4): whoever "holds" such a key
# forges every message with R = the point, S = 0.
SMALL_ORDER_KEYS = {
    "identity": bytes([1]) + bytes(31),
    "all zeros": bytes(32),
    "order 2": bytes.fromhex(
        "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f"
    ),
}


@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_non_canonical_s_is_rejected(vector):
    """S + L is the same scalar mod L; RFC 8032 requires refusing it, and
    libsodium's crypto_sign_open (the fast path of ADR 0036) does."""
    _, pk, msg, sig = _bytes(vector)
    s = int.from_bytes(sig[32:], "little")
    assert s < L
    malleated = sig[:32] + (s + L).to_bytes(32, "little")
    assert verify_signature(pk, msg, malleated) is False


@pytest.mark.parametrize("vector", VECTORS.values(), ids=VECTORS.keys())
def test_vector_keys_are_valid_public_keys(vector):
    _, pk, _, _ = _bytes(vector)
    assert is_valid_public_key(pk) is True


@pytest.mark.parametrize("key", SMALL_ORDER_KEYS.values(), ids=SMALL_ORDER_KEYS.keys())
def test_small_order_keys_are_invalid_and_verify_nothing(key):
    assert is_valid_public_key(key) is False
    for message in (b"", b"any message"):
        assert verify_signature(key, message, bytes([1]) + bytes(63)) is False
        assert verify_signature(key, message, key + bytes(32)) is False
