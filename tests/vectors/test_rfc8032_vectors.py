"""RFC 8032 section 7.1 Ed25519 vectors (tests/vectors/rfc8032).

Signing goes through ``cryptography`` (OpenSSL) and verification through
PyNaCl (libsodium); both must agree with the RFC on every vector.
"""

import hashlib
import json
from pathlib import Path

import pytest

from mltrail.core.signing import Ed25519Signer, compute_key_id, verify_signature

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
