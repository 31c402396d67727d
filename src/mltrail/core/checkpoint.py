"""Signed tree heads: C2SP ``tlog-checkpoint`` bodies carried in C2SP ``signed-note``.

A checkpoint commits to a log's Merkle tree at one size (c2sp.org/tlog-checkpoint)::

    example.com/log42
    20852163
    CsUYapGGPo4dkMgIAUqom/Xajj7h2fB2MPA3j2jxq2I=

    — example.com/log42 Az3grlgtzPICa5OS8npVmf1Myq/5IZniMp+ZJurmRDeOoRDe4URYN7u5...

and travels as a signed note (c2sp.org/signed-note): the body, a blank line, then
one line per signature, ``— <key name> base64(key hash || signature)``. The 4-byte
key hash of an Ed25519 key is ``SHA-256(name || 0x0A || 0x01 || public key)[:4]``,
and a verifier key is written ``<name>+<hex key hash>+base64(0x01 || public key)``,
exactly as Go's ``golang.org/x/mod/sumdb/note`` reads and writes them, so notes
and keys made here interoperate with the Go module database, transparency-dev
witnesses and every other implementation of those specifications.

Two layers live here:

* notes: :func:`parse_note`, :func:`sign_note`, :func:`verify_note`,
  :func:`open_note` work on any note body;
* checkpoints: :func:`sign_checkpoint`, :func:`add_signature` (cosigning),
  :func:`parse_signed_checkpoint` and :func:`verify_checkpoint`.

Parsing follows the signed-note grammar strictly and raises
:class:`~mltrail.errors.SchemaError`; verification raises
:class:`~mltrail.errors.BadSignatureError` unless a trusted key signed the note,
and a plain :class:`~mltrail.errors.IntegrityError` when the checkpoint is for
another log. Constructing values from bad arguments raises ``ValueError``.

Where Go is more lenient than the specifications this module follows the
specifications: tree sizes with leading zeros, base64 with non-zero padding bits
or embedded newlines are refused, and every signature line made by a trusted key
is verified (Go skips repeated lines from one key).
"""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING

from mltrail.core.signing import Signer, decode_b64, encode_b64, verify_signature
from mltrail.errors import BadSignatureError, IntegrityError, SchemaError
from mltrail.values import Frozen

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "KEY_HASH_SIZE",
    "MAX_NOTE_SIGNATURES",
    "MAX_TREE_SIZE",
    "ROOT_HASH_SIZE",
    "SIGNATURE_PREFIX",
    "SIG_TYPE_ED25519",
    "Checkpoint",
    "CheckpointSigner",
    "Note",
    "NoteSignature",
    "SignedCheckpoint",
    "add_signature",
    "check_note_signatures",
    "compute_note_key_hash",
    "format_verifier_key",
    "is_valid_key_name",
    "open_note",
    "parse_checkpoint_body",
    "parse_note",
    "parse_signed_checkpoint",
    "parse_typed_verifier_key",
    "parse_verifier_key",
    "sign_checkpoint",
    "sign_note",
    "verify_checkpoint",
    "verify_note",
]

MAX_NOTE_SIGNATURES = 100
"""Most signature lines a note may carry (Go's limit; the spec asks for >= 16)."""

MAX_TREE_SIZE = 2**64 - 1
"""Largest tree size accepted, as Go's ``strconv.ParseUint(s, 10, 64)``."""

KEY_HASH_SIZE = 4
ROOT_HASH_SIZE = 32
SIG_TYPE_ED25519 = 0x01
SIGNATURE_PREFIX = "\u2014 "
"""Em dash (U+2014) and a space: how every signature line starts."""

_ED25519_KEY_SIZE = 32

# Go's unicode.IsSpace: the Unicode White_Space property.
_UNICODE_SPACES = frozenset(
    "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006"
    "\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_CONTROL = re.compile(r"[\x00-\x09\x0b-\x1f]")
_TREE_SIZE = re.compile(r"0|[1-9][0-9]*")
_KEY_HASH_HEX = re.compile(r"[0-9a-fA-F]{8}")


# --- values -------------------------------------------------------------------


class Checkpoint(Frozen):
    """A log's signed tree head: origin, tree size, root hash, extension lines.

    Args:
        origin: the log's identity, e.g. ``example.com/log42``. Non-empty, one
            line, no control characters, and never starting with ``{`` so that a
            note can not be mistaken for a JSON entry signed by the same key.
        size: the number of leaves in the tree, ``0 <= size < 2**64``.
        root: the 32-byte RFC 6962 Merkle tree hash at ``size``.
        extensions: optional opaque lines (non-empty, one line each).

    Raises:
        ValueError: an argument breaks the rules above.
    """

    __slots__ = __match_args__ = ("origin", "size", "root", "extensions")
    origin: str
    size: int
    root: bytes
    extensions: tuple[str, ...]

    def __init__(
        self, origin: str, size: int, root: bytes, extensions: Sequence[str] = ()
    ) -> None:
        object.__setattr__(self, "origin", origin)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "root", root)
        object.__setattr__(self, "extensions", extensions)
        self.__post_init__()

    def __post_init__(self) -> None:
        object.__setattr__(self, "extensions", tuple(self.extensions))
        _check_line(self.origin, "origin")
        if self.origin.startswith("{"):
            raise ValueError("origin must not start with '{'")
        _check_size(self.size)
        _check_root(self.root)
        for i, line in enumerate(self.extensions, 1):
            _check_line(line, f"extension line {i}")

    def body(self) -> bytes:
        """Return the note text: ``origin\\nsize\\nbase64(root)\\n`` then extensions."""
        lines = [self.origin, str(self.size), encode_b64(self.root), *self.extensions]
        return "".join(f"{line}\n" for line in lines).encode("utf-8")


class NoteSignature(Frozen):
    """One signature line of a note, verified or not.

    Args:
        name: the key name, non-empty, without Unicode spaces or ``+``.
        key_hash: the 4-byte key hash (key ID) naming the key and algorithm.
        signature: the signature bytes (64 for Ed25519; other algorithms differ).

    Raises:
        ValueError: an argument breaks the rules above.
    """

    __slots__ = __match_args__ = ("name", "key_hash", "signature")
    name: str
    key_hash: bytes
    signature: bytes

    def __init__(self, name: str, key_hash: bytes, signature: bytes) -> None:
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "key_hash", key_hash)
        object.__setattr__(self, "signature", signature)
        self.__post_init__()

    def __post_init__(self) -> None:
        _require_key_name(self.name)
        if not isinstance(self.key_hash, bytes) or len(self.key_hash) != KEY_HASH_SIZE:
            raise ValueError(f"key hash must be {KEY_HASH_SIZE} bytes")
        if not isinstance(self.signature, bytes) or not self.signature:
            raise ValueError("signature must be non-empty bytes")

    def to_line(self) -> str:
        """Return the signature line, ``— name base64(key_hash || signature)\\n``."""
        encoded = encode_b64(self.key_hash + self.signature)
        return f"{SIGNATURE_PREFIX}{self.name} {encoded}\n"


class Note(Frozen):
    """A note body and its signature lines, as parsed (nothing verified yet).

    Args:
        body: the note text, UTF-8, ending in a newline, no control characters
            other than newline.
        signatures: 1 to :data:`MAX_NOTE_SIGNATURES` signature lines, in order.

    Raises:
        ValueError: an argument breaks the rules above.
    """

    __slots__ = __match_args__ = ("body", "signatures")
    body: bytes
    signatures: tuple[NoteSignature, ...]

    def __init__(self, body: bytes, signatures: Sequence[NoteSignature]) -> None:
        object.__setattr__(self, "body", body)
        object.__setattr__(self, "signatures", signatures)
        self.__post_init__()

    def __post_init__(self) -> None:
        object.__setattr__(self, "signatures", tuple(self.signatures))
        _check_note_body(self.body)
        _check_signature_count(len(self.signatures))

    def to_text(self) -> str:
        """Return the signed note: body, a blank line, one line per signature."""
        lines = "".join(sig.to_line() for sig in self.signatures)
        return f"{self.body.decode('utf-8')}\n{lines}"


class SignedCheckpoint(Frozen):
    """A checkpoint and the signature lines of its note.

    Args:
        checkpoint: the signed tree head.
        signatures: 1 to :data:`MAX_NOTE_SIGNATURES` signature lines, in order.

    Raises:
        ValueError: no signatures, or too many.
    """

    __slots__ = __match_args__ = ("checkpoint", "signatures")
    checkpoint: Checkpoint
    signatures: tuple[NoteSignature, ...]

    def __init__(
        self, checkpoint: Checkpoint, signatures: Sequence[NoteSignature]
    ) -> None:
        object.__setattr__(self, "checkpoint", checkpoint)
        object.__setattr__(self, "signatures", signatures)
        self.__post_init__()

    def __post_init__(self) -> None:
        object.__setattr__(self, "signatures", tuple(self.signatures))
        _check_signature_count(len(self.signatures))

    def note(self) -> Note:
        """Return the checkpoint as a generic :class:`Note`."""
        return Note(self.checkpoint.body(), self.signatures)

    def to_text(self) -> str:
        """Return the signed note text (body, blank line, signature lines)."""
        return self.note().to_text()


# --- keys ---------------------------------------------------------------------


def is_valid_key_name(name: str) -> bool:
    """Return True for a valid key name: non-empty, no Unicode space, no ``+``.

    Control characters are refused too, since no signed note may hold them.
    """
    return (
        isinstance(name, str)
        and name != ""
        and "+" not in name
        and _is_utf8(name)
        and _UNICODE_SPACES.isdisjoint(name)
        and _CONTROL.search(name) is None
    )


def compute_note_key_hash(
    name: str, public_key: bytes, sig_type: int = SIG_TYPE_ED25519
) -> bytes:
    """Return the 4-byte key hash of an Ed25519 key under ``name``.

    ``SHA-256(name || 0x0A || sig_type || public_key)[:4]``, per c2sp.org/signed-note;
    ``sig_type`` is 0x01 for note signatures, 0x04 for c2sp.org/tlog-cosignature
    (cosignature/v1) keys.

    Raises:
        ValueError: the name is not a valid key name or the key is not 32 bytes.
    """
    _require_key_name(name)
    _require_ed25519_key(public_key)
    return _key_hash(name, bytes([sig_type]) + public_key)


def format_verifier_key(
    name: str, public_key: bytes, sig_type: int = SIG_TYPE_ED25519
) -> str:
    """Return the verifier key ``name+hexkeyhash+base64(sig_type || public_key)``.

    This is the string Go's ``note.NewVerifier`` reads and ``note.GenerateKey``
    writes (``sig_type`` 0x01); witnesses publish theirs with 0x04.

    Raises:
        ValueError: the name is not a valid key name or the key is not 32 bytes.
    """
    key_hash = compute_note_key_hash(name, public_key, sig_type)
    encoded = encode_b64(bytes([sig_type]) + public_key)
    return f"{name}+{key_hash.hex()}+{encoded}"


def parse_verifier_key(vkey: str) -> tuple[str, bytes]:
    """Parse an Ed25519 verifier key into ``(name, raw 32-byte public key)``.

    Raises:
        SchemaError: the string is malformed, its key hash does not match its
            name and key, or the key is not an Ed25519 key.
    """
    return parse_typed_verifier_key(vkey, SIG_TYPE_ED25519)


def parse_typed_verifier_key(vkey: str, sig_type: int) -> tuple[str, bytes]:
    """Parse a verifier key of signature type ``sig_type`` over an Ed25519 key.

    Raises:
        SchemaError: the string is malformed, its key hash does not match its
            name and key, or its type is not ``sig_type``.
    """
    name, _, rest = vkey.partition("+")
    hash_hex, _, key_b64 = rest.partition("+")
    if not is_valid_key_name(name):
        raise SchemaError(f"verifier key has an invalid key name {name!r}")
    if not _KEY_HASH_HEX.fullmatch(hash_hex):
        raise SchemaError("verifier key hash must be 8 hexadecimal digits")
    encoded = _decode_verifier_key_data(key_b64)
    if bytes.fromhex(hash_hex) != _key_hash(name, encoded):
        raise SchemaError("verifier key hash does not match its name and key")
    if encoded[0] != sig_type:
        raise SchemaError(
            f"verifier key has signature type 0x{encoded[0]:02x}; "
            f"0x{sig_type:02x} is expected here"
        )
    if len(encoded) != 1 + _ED25519_KEY_SIZE:
        raise SchemaError(f"Ed25519 verifier key must be {_ED25519_KEY_SIZE} bytes")
    return name, encoded[1:]


def _decode_verifier_key_data(key_b64: str) -> bytes:
    try:
        encoded = decode_b64(key_b64)
    except ValueError as e:
        raise SchemaError(f"verifier key data is not valid base64: {e}") from e
    if not encoded:
        raise SchemaError("verifier key has no key data")
    return encoded


def _key_hash(name: str, encoded_key: bytes) -> bytes:
    digest = hashlib.sha256(name.encode("utf-8") + b"\n" + encoded_key).digest()
    return digest[:KEY_HASH_SIZE]


# --- notes --------------------------------------------------------------------


def parse_note(text: str | bytes) -> Note:
    """Parse a signed note's grammar; no signature is verified.

    Args:
        text: the whole signed note, as text or UTF-8 bytes.

    Raises:
        SchemaError: the text is not a well-formed signed note.
    """
    text = _decode_note_text(text)
    split = text.rfind("\n\n")
    if split < 0:
        raise SchemaError("signed note has no blank line before its signatures")
    body, block = text[: split + 1], text[split + 2 :]
    if not block:
        raise SchemaError("signed note has no signature lines")
    if not block.endswith("\n"):
        raise SchemaError("signed note does not end with a newline")
    lines = block[:-1].split("\n")
    if len(lines) > MAX_NOTE_SIGNATURES:
        raise SchemaError(
            f"signed note has {len(lines)} signature lines, at most "
            f"{MAX_NOTE_SIGNATURES} are accepted"
        )
    signatures = tuple(_parse_signature_line(s, i) for i, s in enumerate(lines, 1))
    return Note(body.encode("utf-8"), signatures)


def sign_note(body: bytes, signer: Signer, name: str) -> str:
    """Sign a note body with an Ed25519 key and return the signed note text.

    Args:
        body: the note text, UTF-8, ending in a newline.
        signer: the Ed25519 key.
        name: the key name to write on the signature line.

    Raises:
        ValueError: the body or the name is invalid.
    """
    _check_note_body(body)
    return Note(body, (_make_signature(body, signer, name),)).to_text()


def verify_note(
    note: Note, *, name: str, public_keys: Sequence[bytes]
) -> tuple[NoteSignature, ...]:
    """Check that a trusted key signed ``note``; return the verified signatures.

    A signature line is by a trusted key when its name is ``name`` and its key
    hash is that of one of ``public_keys`` under ``name``. Every such line must
    verify; lines from other keys are ignored, as the spec requires.

    Raises:
        BadSignatureError: a line from a trusted key does not verify, or no line
            is from a trusted key.
        ValueError: ``name`` is not a valid key name, or ``public_keys`` is
            empty or holds a key that is not 32 bytes.
    """
    trusted = _trusted_keys(name, public_keys)
    verified = tuple(s for s in note.signatures if _is_trusted(s, name, trusted))
    for sig in verified:
        if not _verifies(note.body, sig, trusted[sig.key_hash]):
            raise BadSignatureError(
                f"invalid signature for key {name}+{sig.key_hash.hex()}",
                hint="the note was altered after signing, or the signature is forged",
            )
    if not verified:
        raise BadSignatureError(
            f"note has no signature by a trusted key named {name!r}",
            hint="check the verifier key and the key name the note is signed under",
        )
    return verified


def check_note_signatures(
    note: Note, *, name: str, public_keys: Sequence[bytes]
) -> tuple[frozenset[bytes], frozenset[bytes]]:
    """Which of ``public_keys`` signed ``note``: (good, bad).

    A key is good when it has at least one signature line (named ``name``, with
    its key hash) and every such line verifies; bad when one of its lines does
    not. Keys with no line are in neither. ``verify_note`` over a set of keys
    passes exactly when none of them is bad and at least one is good.
    """
    good: set[bytes] = set()
    bad: set[bytes] = set()
    for key in set(public_keys):
        key_hash = compute_note_key_hash(name, key)
        lines = [s for s in note.signatures if (s.name, s.key_hash) == (name, key_hash)]
        if not lines:
            continue
        if all(verify_signature(key, note.body, s.signature) for s in lines):
            good.add(key)
        else:
            bad.add(key)
    return frozenset(good), frozenset(bad)


def open_note(text: str | bytes, name: str, public_key: bytes) -> bytes:
    """Parse a signed note, verify it against one key, and return its body.

    Raises:
        SchemaError: the text is not a well-formed signed note.
        BadSignatureError: the key did not sign the note (see :func:`verify_note`).
        ValueError: the name or the key is invalid.
    """
    note = parse_note(text)
    verify_note(note, name=name, public_keys=(public_key,))
    return note.body


def _parse_signature_line(line: str, index: int) -> NoteSignature:
    if not line.startswith(SIGNATURE_PREFIX):
        raise SchemaError(
            f"signature line {index} does not start with an em dash and a space"
        )
    name, _, b64 = line[len(SIGNATURE_PREFIX) :].partition(" ")
    if not is_valid_key_name(name):
        raise SchemaError(f"signature line {index} has an invalid key name {name!r}")
    try:
        raw = decode_b64(b64)
    except ValueError as e:
        raise SchemaError(f"signature line {index} is not valid base64: {e}") from e
    if len(raw) <= KEY_HASH_SIZE:
        raise SchemaError(
            f"signature line {index} is too short for a key hash and a signature"
        )
    return NoteSignature(name, raw[:KEY_HASH_SIZE], raw[KEY_HASH_SIZE:])


def _decode_note_text(text: str | bytes) -> str:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as e:
            raise SchemaError(f"signed note is not valid UTF-8: {e}") from e
    elif not _is_utf8(text):
        raise SchemaError("signed note is not valid UTF-8 (lone surrogate)")
    bad = _CONTROL.search(text)
    if bad is not None:
        raise SchemaError(
            f"signed note contains control character U+{ord(bad.group()):04X} "
            f"at offset {bad.start()}"
        )
    return text


def _make_signature(body: bytes, signer: Signer, name: str) -> NoteSignature:
    key_hash = compute_note_key_hash(name, signer.public_key)
    return NoteSignature(name, key_hash, signer.sign(body))


def _trusted_keys(name: str, public_keys: Sequence[bytes]) -> dict[bytes, list[bytes]]:
    if isinstance(public_keys, bytes | bytearray | str) or not public_keys:
        raise ValueError("public_keys must be a non-empty sequence of 32-byte keys")
    trusted: dict[bytes, list[bytes]] = {}
    for key in public_keys:
        candidates = trusted.setdefault(compute_note_key_hash(name, key), [])
        if key not in candidates:
            candidates.append(key)
    return trusted


def _is_trusted(
    sig: NoteSignature, name: str, trusted: dict[bytes, list[bytes]]
) -> bool:
    return sig.name == name and sig.key_hash in trusted


def _verifies(body: bytes, sig: NoteSignature, keys: list[bytes]) -> bool:
    return any(verify_signature(key, body, sig.signature) for key in keys)


# --- checkpoints --------------------------------------------------------------


def parse_checkpoint_body(body: bytes) -> Checkpoint:
    """Parse a checkpoint note body (``origin\\nsize\\nroot\\n`` + extensions).

    Raises:
        SchemaError: the body is not a well-formed tlog-checkpoint.
    """
    try:
        _check_note_body(body)
    except ValueError as e:
        raise SchemaError(f"invalid checkpoint body: {e}") from e
    lines = body.decode("utf-8")[:-1].split("\n")
    if len(lines) < 3:
        raise SchemaError(
            f"checkpoint has {len(lines)} line(s); "
            "it needs an origin, a tree size and a root hash"
        )
    origin, size_text, root_text, *extensions = lines
    size, root = _parse_tree_size(size_text), _parse_root_hash(root_text)
    try:
        return Checkpoint(origin, size, root, tuple(extensions))
    except ValueError as e:
        raise SchemaError(f"invalid checkpoint: {e}") from e


def parse_signed_checkpoint(text: str | bytes) -> SignedCheckpoint:
    """Parse a signed checkpoint note; no signature is verified.

    Raises:
        SchemaError: the text is not a well-formed signed note, or its body is
            not a well-formed tlog-checkpoint.
    """
    note = parse_note(text)
    return SignedCheckpoint(parse_checkpoint_body(note.body), note.signatures)


def sign_checkpoint(
    checkpoint: Checkpoint, signer: Signer, name: str | None = None
) -> SignedCheckpoint:
    """Sign a checkpoint with an Ed25519 key.

    Args:
        checkpoint: the tree head to sign.
        signer: the log's key.
        name: the key name; defaults to the origin, as tlog-checkpoint advises.

    Raises:
        ValueError: the key name (or the origin used as one) is not a valid key
            name; pass ``name`` when the origin holds spaces or ``+``.
    """
    key_name = _default_name(checkpoint, name)
    signature = _make_signature(checkpoint.body(), signer, key_name)
    return SignedCheckpoint(checkpoint, (signature,))


class CheckpointSigner:
    """Signs checkpoints of one log with one key, as :func:`sign_checkpoint` does.

    The origin is checked and the key hash computed once, so that signing the
    checkpoint of every append costs little more than the signature itself. The
    text is byte for byte that of ``sign_checkpoint(...).to_text()``.

    Raises:
        ValueError: the origin is not a valid origin and key name.
    """

    __slots__ = ("_line_start", "origin", "signer")

    def __init__(self, origin: str, signer: Signer) -> None:
        name = _default_name(Checkpoint(origin, 0, bytes(ROOT_HASH_SIZE)), None)
        self.origin = origin
        self.signer = signer
        self._line_start = (
            f"{SIGNATURE_PREFIX}{name} ",
            compute_note_key_hash(name, signer.public_key),
        )

    def sign(self, size: int, root: bytes) -> str:
        """The signed checkpoint text of the tree of ``size`` leaves with ``root``."""
        _check_size(size)
        _check_root(root)
        body = f"{self.origin}\n{size}\n{encode_b64(root)}\n"
        start, key_hash = self._line_start
        signature = self.signer.sign(body.encode("utf-8"))
        return f"{body}\n{start}{encode_b64(key_hash + signature)}\n"


def add_signature(
    signed: SignedCheckpoint, signer: Signer, name: str | None = None
) -> SignedCheckpoint:
    """Cosign: append a signature by another key, as a witness does.

    A line already present for the same key (name and key hash) is replaced, as
    Go's ``note.Sign`` does. Existing signatures are not checked here: verify
    the checkpoint with :func:`verify_checkpoint` before cosigning it.

    Raises:
        ValueError: the key name is invalid, or the note would carry more than
            :data:`MAX_NOTE_SIGNATURES` signatures.
    """
    key_name = _default_name(signed.checkpoint, name)
    new = _make_signature(signed.checkpoint.body(), signer, key_name)
    kept = tuple(
        s for s in signed.signatures if (s.name, s.key_hash) != (new.name, new.key_hash)
    )
    return SignedCheckpoint(signed.checkpoint, (*kept, new))


def verify_checkpoint(
    text_or_signed: str | bytes | SignedCheckpoint,
    *,
    origin: str,
    public_keys: Sequence[bytes],
    name: str | None = None,
) -> Checkpoint:
    """Parse and verify a signed checkpoint from the log ``origin``.

    Args:
        text_or_signed: the signed note text (or bytes), or a parsed checkpoint.
        origin: the origin the checkpoint must carry.
        public_keys: the log's trusted Ed25519 keys (any one of them suffices).
        name: the key name the log signs under; defaults to ``origin``.

    Returns:
        The verified checkpoint.

    Raises:
        SchemaError: the text is not a well-formed signed checkpoint.
        IntegrityError: the checkpoint is for another origin.
        BadSignatureError: no trusted key signed it, or a trusted key's line
            does not verify.
        ValueError: the key name or a key is invalid (a caller error).
    """
    signed = (
        text_or_signed
        if isinstance(text_or_signed, SignedCheckpoint)
        else parse_signed_checkpoint(text_or_signed)
    )
    checkpoint = signed.checkpoint
    if checkpoint.origin != origin:
        raise IntegrityError(
            f"checkpoint is for origin {checkpoint.origin!r}, expected {origin!r}",
            hint="the checkpoint comes from another log",
        )
    key_name = _default_name(checkpoint, name)
    verify_note(signed.note(), name=key_name, public_keys=public_keys)
    return checkpoint


def _default_name(checkpoint: Checkpoint, name: str | None) -> str:
    if name is not None:
        return name
    if not is_valid_key_name(checkpoint.origin):
        raise ValueError(
            f"origin {checkpoint.origin!r} is not a valid key name; "
            "pass name= explicitly"
        )
    return checkpoint.origin


def _parse_tree_size(text: str) -> int:
    if not _TREE_SIZE.fullmatch(text):
        raise SchemaError(
            f"checkpoint tree size {text!r} is not a decimal number "
            "without leading zeros"
        )
    # length first: int() refuses more than 4,300 digits with a ValueError
    if len(text) > len(str(MAX_TREE_SIZE)) or (size := int(text)) > MAX_TREE_SIZE:
        shown = text if len(text) <= 24 else f"of {len(text):,} digits"
        raise SchemaError(f"checkpoint tree size {shown} is larger than 2**64 - 1")
    return size


def _parse_root_hash(text: str) -> bytes:
    try:
        root = decode_b64(text)
    except ValueError as e:
        raise SchemaError(f"checkpoint root hash is not valid base64: {e}") from e
    if len(root) != ROOT_HASH_SIZE:
        raise SchemaError(
            f"checkpoint root hash is {len(root)} bytes, expected {ROOT_HASH_SIZE}"
        )
    return root


# --- shared checks ------------------------------------------------------------


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _require_key_name(name: str) -> None:
    if not is_valid_key_name(name):
        raise ValueError(
            f"invalid key name {name!r}: it must be non-empty, without spaces or '+'"
        )


def _require_ed25519_key(public_key: bytes) -> None:
    if not isinstance(public_key, bytes) or len(public_key) != _ED25519_KEY_SIZE:
        raise ValueError(f"Ed25519 public key must be {_ED25519_KEY_SIZE} bytes")


def _check_line(value: str, what: str) -> None:
    if not isinstance(value, str) or not value:
        raise ValueError(f"{what} must be a non-empty string")
    if "\n" in value:
        raise ValueError(f"{what} must not contain a newline")
    if _CONTROL.search(value) or not _is_utf8(value):
        raise ValueError(f"{what} must be valid UTF-8 without control characters")


def _check_size(size: int) -> None:
    if isinstance(size, bool) or not isinstance(size, int):
        raise ValueError("tree size must be an int")
    if not 0 <= size <= MAX_TREE_SIZE:
        raise ValueError(f"tree size must be between 0 and 2**64 - 1, got {size}")


def _check_root(root: bytes) -> None:
    if not isinstance(root, bytes) or len(root) != ROOT_HASH_SIZE:
        raise ValueError(f"root hash must be {ROOT_HASH_SIZE} bytes")


def _check_note_body(body: bytes) -> None:
    if not isinstance(body, bytes) or not body.endswith(b"\n"):
        raise ValueError("note body must be bytes ending in a newline")
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"note body is not valid UTF-8: {e}") from e
    if _CONTROL.search(text):
        raise ValueError("note body must not contain control characters but newline")


def _check_signature_count(count: int) -> None:
    if not 1 <= count <= MAX_NOTE_SIGNATURES:
        raise ValueError(
            f"a signed note carries 1 to {MAX_NOTE_SIGNATURES} signatures, got {count}"
        )
