"""``Ed25519Signer`` calls libsodium directly: the same signatures as PyNaCl's
binding and ``cryptography`` give, for any message length and bytes-like type."""

import os

import nacl.bindings
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from mltrail.core.signing import Ed25519Signer, verify_signature

SEED = bytes(range(32))


@pytest.mark.parametrize("size", [0, 1, 63, 64, 424, 4096, 70_000])
def test_signature_is_the_bindings_and_cryptographys(size):
    signer = Ed25519Signer(SEED)
    message = os.urandom(size)
    signature = signer.sign(message)
    assert len(signature) == 64
    assert signature == nacl.bindings.crypto_sign(message, signer._secret)[:64]
    assert signature == Ed25519PrivateKey.from_private_bytes(SEED).sign(message)
    assert verify_signature(signer.public_key, message, signature)
    assert signer.sign(bytearray(message)) == signature
    assert signer.sign(memoryview(message)) == signature


def test_the_direct_path_is_taken():
    """PyNaCl still ships the cffi module the signer calls (else it falls back
    to the binding, correct but slower: this test says so)."""
    from nacl._sodium import ffi, lib  # noqa: F401 (the module itself is the test)

    Ed25519Signer(SEED).sign(b"x")
    from mltrail.core import signing

    assert signing._raw_sign.__name__ == "direct"
