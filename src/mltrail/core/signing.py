"""Signatures: the ``Signer`` seam, Ed25519 keys and key ids.

A key id is the hex SHA-256 of the raw 32-byte Ed25519 public key, so a key id
certifies its own public key: anyone holding a public key can check it belongs
to an id without trusting where it came from.

Signing and verification use libsodium (PyNaCl): it verifies about 1.9x and signs
about 1.6x faster than ``cryptography`` on the machines we measured (see
docs/adr/0005). ``cryptography`` reads and writes key files. Both give the same
results on every RFC 8032 vector (tests/vectors).
"""

from __future__ import annotations

import base64
import binascii
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

# libsodium's binding is loaded on the first signature made or checked: a
# reading command (`mltrail runs`, `show`, ...) checks none and starts faster.
_SODIUM: Any = None
_OPEN: Any = None
_NULL: Any = None


def _sodium() -> Any:
    """``nacl.bindings``, imported once."""
    global _SODIUM, _OPEN, _NULL  # noqa: PLW0603 (a lazily loaded module)
    if _SODIUM is None:
        import nacl.bindings
        from nacl._sodium import ffi, lib  # PyNaCl's own cffi binding of libsodium

        _OPEN, _NULL = lib.crypto_sign_open, ffi.NULL
        _SODIUM = nacl.bindings
    return _SODIUM


__all__ = [
    "ALG_ED25519",
    "Ed25519Signer",
    "Signer",
    "compute_key_id",
    "decode_b64",
    "encode_b64",
    "is_valid_public_key",
    "sign_many",
    "verify_signature",
]

ALG_ED25519 = "ed25519"


@runtime_checkable
class Signer(Protocol):
    """Something that signs bytes with an Ed25519 key."""

    @property
    def key_id(self) -> str:
        """Hex SHA-256 of the raw public key."""
        ...

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        ...

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte signature of ``message``."""
        ...


def compute_key_id(public_key: bytes) -> str:
    """Return the key id of a raw Ed25519 public key."""
    if len(public_key) != 32:
        raise ValueError(f"Ed25519 public key must be 32 bytes, got {len(public_key)}")
    import hashlib  # (see core.canonical._sha256)

    return hashlib.sha256(public_key).hexdigest()


class Ed25519Signer:
    """A ``Signer`` over an Ed25519 private seed (the RFC 8032 secret key).

    Signing uses libsodium; ``cryptography`` is loaded only when a key file is
    written (``private_key``), which keeps it off the path of a wrapped run.
    """

    def __init__(self, seed: bytes) -> None:
        if len(seed) != 32:
            raise ValueError(f"Ed25519 seed must be 32 bytes, got {len(seed)}")
        self._seed = bytes(seed)
        sodium = _sodium()
        self._public, self._secret = sodium.crypto_sign_seed_keypair(self._seed)
        self._key_id = compute_key_id(self._public)

    @classmethod
    def from_seed(cls, seed: bytes) -> Ed25519Signer:
        """Build a signer from a 32-byte private seed (RFC 8032 secret key)."""
        return cls(seed)

    @classmethod
    def from_private_key(cls, private_key: Ed25519PrivateKey) -> Ed25519Signer:
        """Build a signer from a ``cryptography`` Ed25519 private key."""
        from cryptography.hazmat.primitives import serialization

        return cls(
            private_key.private_bytes(
                serialization.Encoding.Raw,
                serialization.PrivateFormat.Raw,
                serialization.NoEncryption(),
            )
        )

    @property
    def key_id(self) -> str:
        """Hex SHA-256 of the raw public key."""
        return self._key_id

    @property
    def public_key(self) -> bytes:
        """The raw 32-byte public key."""
        return self._public

    @property
    def private_key(self) -> Ed25519PrivateKey:
        """The key as a ``cryptography`` object (to write key files)."""
        from cryptography.hazmat.primitives.asymmetric.ed25519 import (
            Ed25519PrivateKey,
        )

        return Ed25519PrivateKey.from_private_bytes(self._seed)

    def sign(self, message: bytes) -> bytes:
        """Return the 64-byte Ed25519 signature of ``message``.

        Ed25519 is deterministic, so libsodium (faster here) and ``cryptography``
        give identical signatures; the RFC 8032 vectors check both.
        """
        return _raw_sign(message, self._secret)

    def sign_many(self, messages: Sequence[bytes], cores: int = 1) -> list[bytes]:
        """The signatures of ``messages``, in order: what ``sign`` gives for each.

        A batch of at least ``2 * PARALLEL_MIN`` messages is signed by this
        thread and up to ``MAX_SIGNING_THREADS - 1`` others at once (one per
        core of the ``cores`` the caller may use, ``PARALLEL_MIN`` messages per
        thread at least): libsodium
        signs without the GIL, so they run on separate cores. Each thread takes
        the next ``CHUNK`` messages not yet taken until none are left, so a
        thread kept off its core by other work holds the batch back by one
        chunk at most (this thread signs the rest). The threads live for this
        call only; the key never leaves this process's memory. See ADR 0037's
        amendment.
        """
        secret = self._secret
        count = _signing_threads(len(messages), cores)
        if count <= 1:
            return [_raw_sign(m, secret) for m in messages]
        import threading  # the writing path only (a reading command skips it)

        out: list[bytes] = [b""] * len(messages)
        starts = iter(range(0, len(messages), CHUNK))  # shared: each start taken once
        failures: list[BaseException] = []

        def work() -> None:
            # the global each time: the first call binds it (from any thread:
            # each binding is the same function), later calls find it bound
            try:
                for start in starts:
                    chunk = messages[start : start + CHUNK]
                    signed = [_raw_sign(m, secret) for m in chunk]
                    out[start : start + len(chunk)] = signed
            except BaseException as e:  # raised again in the calling thread
                failures.append(e)

        threads = [
            threading.Thread(target=work, name="mltrail-sign", daemon=True)
            for _ in range(count - 1)
        ]
        for thread in threads:
            thread.start()
        try:
            work()
        finally:
            for thread in threads:
                thread.join()
        if failures:
            raise failures[0]
        return out

    def __repr__(self) -> str:
        return f"Ed25519Signer(key_id={self._key_id[:16]}...)"


PARALLEL_MIN = 64
"""Fewest messages a signing thread takes (``Ed25519Signer.sign_many``): below
that, starting and joining a thread costs about what it saves."""
CHUNK = 16
"""Messages a signing thread takes at a time (``Ed25519Signer.sign_many``)."""
MAX_SIGNING_THREADS = 8
"""Most threads one ``sign_many`` call signs on (each holds the GIL ~1 us per
signature of ~20 us: more threads would mostly wait for it)."""


def _signing_threads(count: int, cores: int) -> int:
    """How many threads sign ``count`` messages on a machine of ``cores`` usable
    cores: one per core, each with ``PARALLEL_MIN`` messages at least,
    ``MAX_SIGNING_THREADS`` at most."""
    if count < 2 * PARALLEL_MIN:
        return 1
    return max(1, min(cores, count // PARALLEL_MIN, MAX_SIGNING_THREADS))


def sign_many(signer: Signer, messages: Sequence[bytes], cores: int = 1) -> list[bytes]:
    """The signatures of ``messages`` by ``signer``, in order: an
    :class:`Ed25519Signer` signs a large batch on up to ``cores`` cores (the
    caller says how many it may use: core asks nothing of the operating system),
    any other signer one message at a time."""
    if isinstance(signer, Ed25519Signer):
        return signer.sign_many(messages, cores)
    return [signer.sign(m) for m in messages]


def _raw_sign(message: bytes, secret: bytes) -> bytes:
    """libsodium's ``crypto_sign`` over ``message``, the 64-byte signature only.

    What ``nacl.bindings.crypto_sign(message, secret)[:64]`` returns, calling
    libsodium through PyNaCl's own cffi module: the binding checks its
    arguments (ours are bytes, the secret key 64 of them) and copies the whole
    signed message back, ~4 us of the ~30 us a signature costs; this copies the
    signature. A fresh output buffer per call: libsodium runs without the GIL.
    Falls back to the binding if PyNaCl's module moves.
    """
    global _raw_sign  # noqa: PLW0603 (bound once, on the first signature)
    try:
        from nacl._sodium import ffi, lib
    except ImportError:  # pragma: no cover (a PyNaCl without its cffi module)
        crypto_sign = _sodium().crypto_sign

        def fallback(message: bytes, secret: bytes) -> bytes:
            return crypto_sign(message, secret)[:64]

        _raw_sign = fallback
        return fallback(message, secret)
    new, null, buffer, sign = ffi.new, ffi.NULL, ffi.buffer, lib.crypto_sign

    def direct(message: bytes, secret: bytes) -> bytes:
        if type(message) is not bytes:
            message = bytes(message)
        size = len(message)
        out = new("unsigned char[]", size + 64)
        if sign(out, null, message, size, secret) != 0:
            raise RuntimeError("libsodium failed to sign")
        return buffer(out, 64)[:]

    _raw_sign = direct
    return direct(message, secret)


def verify_signature(public_key: bytes, message: bytes, signature: bytes) -> bool:
    """Return True when ``signature`` is a valid Ed25519 signature of ``message``."""
    if len(public_key) != 32 or len(signature) != 64:
        return False
    if _OPEN is None:
        _sodium()
    # what nacl.signing.VerifyKey(public_key).verify(message, signature) does
    # (libsodium's crypto_sign_open), without a key object per signature and
    # without copying the message out: libsodium takes NULL for the output
    try:
        signed = bytes(signature) + bytes(message)
        return _OPEN(_NULL, _NULL, signed, len(signed), bytes(public_key)) == 0
    except (TypeError, ValueError):
        return False


def is_valid_public_key(public_key: bytes) -> bool:
    """Whether ``public_key`` is 32 bytes encoding an Ed25519 point libsodium
    accepts as a key: canonical, on the curve, in the main subgroup and not of
    small order (the identity ``01 00 .. 00`` and all zeros are refused).

    libsodium refuses every signature under any other key, so such a key signs
    nothing; a ledger must not add one either.
    """
    if len(public_key) != 32:
        return False
    return bool(_sodium().crypto_core_ed25519_is_valid_point(bytes(public_key)))


def encode_b64(data: bytes) -> str:
    """Standard base64 with padding, as used in entries and signed notes."""
    return base64.b64encode(data).decode("ascii")


def decode_b64(text: str) -> bytes:
    """Strict standard base64 decoding.

    Raises:
        ValueError: the text is not canonical standard base64.
    """
    try:
        data = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, AttributeError, TypeError) as e:
        raise ValueError(f"invalid base64: {e}") from e
    if base64.b64encode(data).decode("ascii") != text:
        raise ValueError("base64 is not in canonical form")
    return data
