"""Checkpoints in signed notes: formatting, parsing, signing, cosigning, verifying."""

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mltrail.core.checkpoint import (
    MAX_NOTE_SIGNATURES,
    SIGNATURE_PREFIX,
    Checkpoint,
    Note,
    NoteSignature,
    SignedCheckpoint,
    add_signature,
    compute_note_key_hash,
    format_verifier_key,
    is_valid_key_name,
    open_note,
    parse_checkpoint_body,
    parse_note,
    parse_signed_checkpoint,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
    verify_note,
)
from mltrail.core.signing import Ed25519Signer, encode_b64
from mltrail.errors import BadSignatureError, IntegrityError, SchemaError
from mltrail.testing import fixed_signer

ORIGIN = "example.com/log42"
ROOT = hashlib.sha256(b"root").digest()
OTHER_ROOT = hashlib.sha256(b"other root").digest()
WITNESS = "witness.example/w1"

LOG = Ed25519Signer.from_seed(bytes(range(32)))
LOG_NEXT = Ed25519Signer.from_seed(bytes(range(1, 33)))
WITNESS_KEY = Ed25519Signer.from_seed(bytes(range(2, 34)))
STRANGER = Ed25519Signer.from_seed(bytes(32))


def _checkpoint(size=7, root=ROOT, extensions=()):
    return Checkpoint(ORIGIN, size, root, extensions)


def _text(size=7, root=ROOT, extensions=()):
    return sign_checkpoint(_checkpoint(size, root, extensions), LOG).to_text()


def _verify(text, public_keys=(LOG.public_key,), **kwargs):
    kwargs.setdefault("origin", ORIGIN)
    return verify_checkpoint(text, public_keys=list(public_keys), **kwargs)


def _sig_line(text):
    return text.split("\n\n")[-1]


# --- Checkpoint values ---------------------------------------------------------


def test_body_format():
    body = _checkpoint(extensions=("ext one", "ext two")).body()
    expected = f"{ORIGIN}\n7\n{encode_b64(ROOT)}\next one\next two\n"
    assert body == expected.encode()


def test_empty_tree_body():
    assert Checkpoint(ORIGIN, 0, bytes(32)).body().split(b"\n")[1] == b"0"


def test_extensions_are_kept_as_a_tuple():
    assert _checkpoint(extensions=["a", "b"]).extensions == ("a", "b")


BAD_CHECKPOINTS = {
    "empty origin": (("", 1, ROOT, ()), "origin must be a non-empty"),
    "origin with newline": (("a\nb", 1, ROOT, ()), "origin must not contain a newline"),
    "origin with tab": (("a\tb", 1, ROOT, ()), "without control characters"),
    "origin starting with brace": (('{"kind": "x"}', 1, ROOT, ()), "start with '{'"),
    "origin with lone surrogate": (("a\ud800", 1, ROOT, ()), "valid UTF-8"),
    "negative size": ((ORIGIN, -1, ROOT, ()), "between 0 and 2**64 - 1"),
    "size beyond uint64": ((ORIGIN, 2**64, ROOT, ()), "between 0 and 2**64 - 1"),
    "bool size": ((ORIGIN, True, ROOT, ()), "must be an int"),
    "str size": ((ORIGIN, "1", ROOT, ()), "must be an int"),
    "short root": ((ORIGIN, 1, bytes(31), ()), "root hash must be 32 bytes"),
    "long root": ((ORIGIN, 1, bytes(33), ()), "root hash must be 32 bytes"),
    "str root": ((ORIGIN, 1, "0" * 32, ()), "root hash must be 32 bytes"),
    "empty extension": ((ORIGIN, 1, ROOT, ("",)), "extension line 1 must be"),
    "extension with newline": (
        (ORIGIN, 1, ROOT, ("a\nb",)),
        "extension line 1 must not",
    ),
}


@pytest.mark.parametrize(
    ("args", "message"), BAD_CHECKPOINTS.values(), ids=BAD_CHECKPOINTS.keys()
)
def test_invalid_checkpoints_are_refused(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        Checkpoint(*args)


def test_largest_size_is_accepted():
    assert Checkpoint(ORIGIN, 2**64 - 1, ROOT).size == 2**64 - 1


def test_a_size_of_thousands_of_digits_is_refused_not_raised():
    """int() refuses more than 4,300 digits with a ValueError, which went out of
    every checkpoint reader (verify-bundle crashed with a traceback on a bundle
    whose checkpoint said so); it is a SchemaError like any size past 2**64 - 1."""
    root = encode_b64(ROOT)
    for digits in (21, 4301, 100_000):
        body = f"{ORIGIN}\n{'1' * digits}\n{root}\n".encode()
        with pytest.raises(SchemaError, match=r"larger than 2\*\*64 - 1") as caught:
            parse_checkpoint_body(body)
        assert len(str(caught.value)) < 100


def test_origin_may_hold_spaces():
    assert Checkpoint("go.sum database tree", 1, ROOT).origin == "go.sum database tree"


# --- keys ----------------------------------------------------------------------


def test_key_hash_definition():
    expected = hashlib.sha256(ORIGIN.encode() + b"\n\x01" + LOG.public_key).digest()
    assert compute_note_key_hash(ORIGIN, LOG.public_key) == expected[:4]


def test_verifier_key_round_trip():
    vkey = format_verifier_key(ORIGIN, LOG.public_key)
    key_hash = compute_note_key_hash(ORIGIN, LOG.public_key)
    encoded = encode_b64(bytes([1]) + LOG.public_key)
    assert vkey == f"{ORIGIN}+{key_hash.hex()}+{encoded}"
    assert parse_verifier_key(vkey) == (ORIGIN, LOG.public_key)


def test_verifier_key_accepts_upper_case_hash_like_go():
    name, hash_hex, data = format_verifier_key(ORIGIN, LOG.public_key).split("+", 2)
    assert parse_verifier_key(f"{name}+{hash_hex.upper()}+{data}")[1] == LOG.public_key


def _vkey_with(name=ORIGIN, encoded=b"\x01" + LOG.public_key, hash_hex=None):
    if hash_hex is None:
        digest = hashlib.sha256(name.encode() + b"\n" + encoded).digest()
        hash_hex = digest[:4].hex()
    return f"{name}+{hash_hex}+{encode_b64(encoded)}"


BAD_VKEYS = {
    "empty": "",
    "name only": ORIGIN,
    "no key data": f"{ORIGIN}+{'0' * 8}+",
    "empty name": _vkey_with(name=""),
    "name with space": _vkey_with(name="a b"),
    "short hash": _vkey_with(hash_hex="abcdef"),
    "0x hash": _vkey_with(hash_hex="0x123456"),
    "signed hash": _vkey_with(hash_hex="+1234567"),
    "non-hex hash": _vkey_with(hash_hex="ghijklmn"),
    "wrong hash": _vkey_with(hash_hex="00000000"),
    "bad base64": f"{ORIGIN}+00000000+!!!!",
    "non-canonical base64": _vkey_with()[:-1] + "=",
    "trailing newline": _vkey_with() + "\n",
    "unknown algorithm": _vkey_with(encoded=b"\x02" + LOG.public_key),
    "short key": _vkey_with(encoded=b"\x01" + LOG.public_key[:31]),
    "long key": _vkey_with(encoded=b"\x01" + LOG.public_key + b"\x00"),
}


@pytest.mark.parametrize("vkey", BAD_VKEYS.values(), ids=BAD_VKEYS.keys())
def test_malformed_verifier_keys_are_refused(vkey):
    with pytest.raises(SchemaError):
        parse_verifier_key(vkey)


@pytest.mark.parametrize(
    ("name", "valid"),
    [
        ("example.com/log", True),
        ("héllo", True),
        ("", False),
        ("a+b", False),
        ("a b", False),
        ("a\u00a0b", False),
        ("a\u3000b", False),
        ("a\nb", False),
        ("a\x01b", False),
        ("a\ud800", False),
    ],
)
def test_key_names(name, valid):
    assert is_valid_key_name(name) is valid


def test_key_hash_refuses_bad_arguments():
    with pytest.raises(ValueError, match="invalid key name"):
        compute_note_key_hash("a b", LOG.public_key)
    with pytest.raises(ValueError, match="must be 32 bytes"):
        compute_note_key_hash(ORIGIN, LOG.public_key[:31])


# --- signing and round trips ---------------------------------------------------


def test_signed_text_format():
    text = _text()
    body, sig_line = text.split("\n\n")
    assert body + "\n" == _checkpoint().body().decode()
    key_hash = compute_note_key_hash(ORIGIN, LOG.public_key)
    signature = LOG.sign(_checkpoint().body())
    assert sig_line == f"\u2014 {ORIGIN} {encode_b64(key_hash + signature)}\n"


def test_round_trip():
    signed = sign_checkpoint(_checkpoint(extensions=("x",)), LOG)
    parsed = parse_signed_checkpoint(signed.to_text())
    assert parsed == signed
    assert parsed.to_text() == signed.to_text()
    assert _verify(signed.to_text()) == signed.checkpoint


def test_verify_accepts_bytes_and_parsed_values():
    signed = sign_checkpoint(_checkpoint(), LOG)
    assert _verify(signed.to_text().encode()) == signed.checkpoint
    assert _verify(signed) == signed.checkpoint


def test_sign_with_explicit_name():
    checkpoint = Checkpoint("go.sum database tree", 3, ROOT)
    signed = sign_checkpoint(checkpoint, LOG, name="sum.example")
    assert signed.signatures[0].name == "sum.example"
    got = verify_checkpoint(
        signed.to_text(),
        origin="go.sum database tree",
        public_keys=[LOG.public_key],
        name="sum.example",
    )
    assert got == checkpoint


def test_origin_that_is_no_key_name_needs_explicit_name():
    with pytest.raises(ValueError, match="pass name="):
        sign_checkpoint(Checkpoint("go.sum database tree", 3, ROOT), LOG)


def test_any_trusted_key_suffices():
    text = _text()
    assert _verify(text, public_keys=[LOG_NEXT.public_key, LOG.public_key])


def test_signing_is_deterministic():
    assert _text() == _text()


def test_note_with_empty_lines_in_body_round_trips():
    body = b"first paragraph\n\nsecond paragraph\n"
    text = sign_note(body, LOG, "poet")
    assert open_note(text, "poet", LOG.public_key) == body
    assert parse_note(text).to_text() == text


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (b"", "ending in a newline"),
        (b"no newline", "ending in a newline"),
        (b"tab\there\n", "control characters"),
        (b"\xff\n", "not valid UTF-8"),
        ("text\n", "must be bytes"),
    ],
    ids=repr,
)
def test_sign_note_refuses_bad_bodies(body, message):
    with pytest.raises(ValueError, match=message):
        sign_note(body, LOG, "poet")


def test_sign_note_refuses_bad_names():
    with pytest.raises(ValueError, match="invalid key name"):
        sign_note(b"x\n", LOG, "two words")


# --- cosigning -----------------------------------------------------------------


def test_cosign_then_verify_with_each_key():
    signed = add_signature(sign_checkpoint(_checkpoint(), LOG), WITNESS_KEY, WITNESS)
    text = signed.to_text()
    assert [s.name for s in parse_signed_checkpoint(text).signatures] == [
        ORIGIN,
        WITNESS,
    ]
    assert _verify(text) == _checkpoint()
    witness = {"public_keys": [WITNESS_KEY.public_key], "name": WITNESS}
    assert _verify(text, **witness) == _checkpoint()


def test_cosign_by_same_key_replaces_its_line():
    signed = sign_checkpoint(_checkpoint(), LOG)
    again = add_signature(add_signature(signed, WITNESS_KEY, WITNESS), LOG)
    assert [s.name for s in again.signatures] == [WITNESS, ORIGIN]
    assert len(again.signatures) == 2


def test_cosign_keeps_foreign_lines():
    text = _text() + _sig_line(
        sign_note(_checkpoint().body(), STRANGER, "stranger.example")
    )
    signed = add_signature(parse_signed_checkpoint(text), WITNESS_KEY, WITNESS)
    names = [s.name for s in signed.signatures]
    assert names == [ORIGIN, "stranger.example", WITNESS]


def test_cosign_beyond_the_limit_is_refused():
    signatures = sign_checkpoint(_checkpoint(), LOG).signatures * MAX_NOTE_SIGNATURES
    signed = SignedCheckpoint(_checkpoint(), signatures)
    with pytest.raises(ValueError, match="1 to 100"):
        add_signature(signed, WITNESS_KEY, WITNESS)


# --- verification failures -----------------------------------------------------


def test_origin_mismatch_is_an_integrity_error():
    with pytest.raises(IntegrityError, match="checkpoint is for origin") as info:
        _verify(_text(), origin="example.com/other")
    assert type(info.value) is IntegrityError


def test_forged_signature_is_refused():
    text = _text()
    swap = "A" if text[-10] != "A" else "B"
    forged = text[:-10] + swap + text[-9:]
    with pytest.raises(BadSignatureError, match="invalid signature"):
        _verify(forged)


def test_flipped_signature_bit_is_refused():
    signed = sign_checkpoint(_checkpoint(), LOG)
    sig = signed.signatures[0]
    flipped = bytes([sig.signature[0] ^ 1]) + sig.signature[1:]
    bad = SignedCheckpoint(
        signed.checkpoint, (NoteSignature(sig.name, sig.key_hash, flipped),)
    )
    with pytest.raises(BadSignatureError):
        _verify(bad.to_text())


def test_tampered_size_is_refused():
    text = _text(size=7).replace("\n7\n", "\n8\n", 1)
    with pytest.raises(BadSignatureError):
        _verify(text)


def test_tampered_root_is_refused():
    text = _text().replace(encode_b64(ROOT), encode_b64(OTHER_ROOT))
    with pytest.raises(BadSignatureError):
        _verify(text)


def test_tampered_extension_is_refused():
    text = _text(extensions=("note a",)).replace("note a", "note b")
    with pytest.raises(BadSignatureError):
        _verify(text)


def test_signature_by_wrong_key_is_refused():
    text = sign_checkpoint(_checkpoint(), STRANGER).to_text()
    with pytest.raises(BadSignatureError, match="no signature by a trusted key"):
        _verify(text)


def test_unknown_signer_is_ignored_but_not_sufficient():
    stranger = sign_checkpoint(_checkpoint(), STRANGER, "stranger")
    stranger_line = _sig_line(stranger.to_text())
    with_both = _text() + stranger_line
    assert _verify(with_both) == _checkpoint()
    stranger_only = sign_checkpoint(_checkpoint(), STRANGER, "stranger").to_text()
    with pytest.raises(BadSignatureError):
        _verify(stranger_only)


def test_same_name_other_key_hash_is_ignored():
    # A rotated-out or foreign key under the log's own name is an unknown key.
    text = _text() + _sig_line(sign_checkpoint(_checkpoint(), STRANGER).to_text())
    assert _verify(text) == _checkpoint()


def test_trusted_name_and_hash_with_bad_signature_rejects_whole_note():
    # Spoof the trusted key hash on a signature made by another key.
    good = sign_checkpoint(_checkpoint(), LOG)
    spoof = NoteSignature(
        ORIGIN, good.signatures[0].key_hash, STRANGER.sign(_checkpoint().body())
    )
    text = SignedCheckpoint(_checkpoint(), (*good.signatures, spoof)).to_text()
    with pytest.raises(BadSignatureError, match="invalid signature"):
        _verify(text)


def test_cosignature_does_not_stand_in_for_the_log():
    signed = add_signature(
        sign_checkpoint(_checkpoint(), STRANGER, "stranger"), WITNESS_KEY, WITNESS
    )
    with pytest.raises(BadSignatureError):
        _verify(signed.to_text())


@pytest.mark.parametrize(
    ("keys", "message"),
    [
        ([], "non-empty sequence"),
        (LOG.public_key, "non-empty sequence"),
        ([LOG.public_key[:31]], "must be 32 bytes"),
    ],
    ids=repr,
)
def test_verify_refuses_bad_key_lists(keys, message):
    with pytest.raises(ValueError, match=message):
        verify_checkpoint(_text(), origin=ORIGIN, public_keys=keys)


def test_open_note_with_wrong_name():
    text = sign_note(b"hello\n", LOG, "alice")
    with pytest.raises(BadSignatureError):
        open_note(text, "bob", LOG.public_key)


def test_verify_note_returns_verified_lines():
    text = _text() + _sig_line(sign_note(_checkpoint().body(), WITNESS_KEY, WITNESS))
    note = parse_note(text)
    (verified,) = verify_note(note, name=WITNESS, public_keys=[WITNESS_KEY.public_key])
    assert verified.name == WITNESS


# --- parse errors --------------------------------------------------------------


def _good():
    return _text()


def _with_body(body):
    """A note whose signature line is valid for LOG over ``body``."""
    return sign_note(body.encode(), LOG, ORIGIN)


def _with_sig_block(block):
    return _good().split("\n\n")[0] + "\n\n" + block


def _b64_sig(raw_len):
    return encode_b64(bytes(raw_len))


VALID_SIG = _sig_line(_text())
R = encode_b64(ROOT)

PARSE_ERRORS = {
    # note grammar
    "empty text": ("", "no blank line"),
    "invalid UTF-8": (b"\xff" + _good().encode(), "UTF-8"),
    "lone surrogate": ("\ud800" + _good(), "UTF-8"),
    "NUL in body": (_good().replace("\n7\n", "\n7\x00\n"), "control character"),
    "tab in body": (_good().replace(ORIGIN, ORIGIN + "\t"), "control character"),
    "CRLF line endings": (_good().replace("\n", "\r\n"), "control character"),
    "body only": (_checkpoint().body().decode(), "no blank line"),
    "blank line, no signatures": (_checkpoint().body().decode() + "\n", "no signature"),
    "no final newline": (_good()[:-1], "does not end with a newline"),
    "hyphen instead of em dash": (
        _with_sig_block(VALID_SIG.replace("\u2014", "-")),
        "em dash",
    ),
    "en dash instead of em dash": (
        _with_sig_block(VALID_SIG.replace("\u2014", "\u2013")),
        "em dash",
    ),
    "em dash without space": (
        _with_sig_block(VALID_SIG.replace("\u2014 ", "\u2014")),
        "em dash",
    ),
    # The last blank line separates: the first signature line joins the body.
    "blank line between signatures": (_good() + "\n" + VALID_SIG, "extension line 1"),
    "text after signatures": (_good() + "trailer\n", "em dash"),
    "empty key name": (_with_sig_block(f"{SIGNATURE_PREFIX} {_b64_sig(68)}\n"), "name"),
    "key name with plus": (
        _with_sig_block(f"{SIGNATURE_PREFIX}a+b {_b64_sig(68)}\n"),
        "name",
    ),
    "key name with no-break space": (
        _with_sig_block(f"{SIGNATURE_PREFIX}a\u00a0b {_b64_sig(68)}\n"),
        "name",
    ),
    "no signature after name": (_with_sig_block(f"{SIGNATURE_PREFIX}name\n"), "short"),
    "two spaces after name": (
        _with_sig_block(f"{SIGNATURE_PREFIX}name  {_b64_sig(68)}\n"),
        "base64",
    ),
    "signature not base64": (_with_sig_block(f"{SIGNATURE_PREFIX}n *-*-\n"), "base64"),
    "signature base64 without padding": (
        _with_sig_block(VALID_SIG.replace("=\n", "\n")),
        "base64",
    ),
    "signature base64 non-canonical": (
        _with_sig_block(f"{SIGNATURE_PREFIX}n AAAAAB==\n"),
        "base64",
    ),
    "signature of 4 bytes": (
        _with_sig_block(f"{SIGNATURE_PREFIX}n {_b64_sig(4)}\n"),
        "short",
    ),
    "101 signatures": (_with_sig_block(VALID_SIG * 101), "at most 100"),
    # checkpoint body
    "two-line body": (_with_body(f"{ORIGIN}\n7\n"), "line(s)"),
    "empty origin": (_with_body(f"\n7\n{R}\n"), "origin"),
    "origin starting with brace": (_with_body(f'{{"a":1}}\n7\n{R}\n'), "'{'"),
    "size with leading zero": (_with_body(f"{ORIGIN}\n07\n{R}\n"), "leading zeros"),
    "negative size": (_with_body(f"{ORIGIN}\n-7\n{R}\n"), "tree size"),
    "size with plus sign": (_with_body(f"{ORIGIN}\n+7\n{R}\n"), "tree size"),
    "size with underscore": (_with_body(f"{ORIGIN}\n1_000\n{R}\n"), "tree size"),
    "size with space": (_with_body(f"{ORIGIN}\n 7\n{R}\n"), "tree size"),
    "size in Arabic digits": (_with_body(f"{ORIGIN}\n\u0667\n{R}\n"), "tree size"),
    "size in hex": (_with_body(f"{ORIGIN}\n0x7\n{R}\n"), "tree size"),
    "empty size": (_with_body(f"{ORIGIN}\n\n{R}\n"), "tree size"),
    "size beyond uint64": (_with_body(f"{ORIGIN}\n{2**64}\n{R}\n"), "2**64"),
    "root not base64": (_with_body(f"{ORIGIN}\n7\nnot base64!\n"), "base64"),
    "root of 31 bytes": (
        _with_body(f"{ORIGIN}\n7\n{encode_b64(bytes(31))}\n"),
        "31 bytes",
    ),
    "root of 33 bytes": (
        _with_body(f"{ORIGIN}\n7\n{encode_b64(bytes(33))}\n"),
        "33 bytes",
    ),
    "root base64 non-canonical": (_with_body(f"{ORIGIN}\n7\n{R[:-2]}B=\n"), "base64"),
    "root base64 url alphabet": (
        _with_body(
            f"{ORIGIN}\n7\n{encode_b64(bytes([0xFB] * 32)).replace('+', '-')}\n"
        ),
        "base64",
    ),
    "empty extension line": (_with_body(f"{ORIGIN}\n7\n{R}\n\next\n"), "extension"),
    "trailing empty line in body": (_with_body(f"{ORIGIN}\n7\n{R}\n\n"), "extension"),
}


@pytest.mark.parametrize(
    ("text", "message"), PARSE_ERRORS.values(), ids=PARSE_ERRORS.keys()
)
def test_parse_errors(text, message):
    with pytest.raises(SchemaError, match=re.escape(message)):
        parse_signed_checkpoint(text)


@pytest.mark.parametrize(
    ("text", "message"), PARSE_ERRORS.values(), ids=PARSE_ERRORS.keys()
)
def test_verify_reports_parse_errors_as_schema_errors(text, message):
    with pytest.raises(SchemaError, match=re.escape(message)):
        _verify(text)


def test_100_signatures_parse():
    assert (
        len(parse_signed_checkpoint(_with_sig_block(VALID_SIG * 100)).signatures) == 100
    )


def test_signatures_of_other_lengths_parse():
    # Other algorithms (e.g. timestamped cosignatures) have other lengths.
    text = _good() + f"{SIGNATURE_PREFIX}cosigner {_b64_sig(4 + 72)}\n"
    assert len(parse_signed_checkpoint(text).signatures[1].signature) == 72
    assert _verify(text) == _checkpoint()


def test_parse_checkpoint_body_directly():
    assert parse_checkpoint_body(_checkpoint(extensions=("e",)).body()) == _checkpoint(
        extensions=("e",)
    )
    with pytest.raises(SchemaError):
        parse_checkpoint_body(b"no newline")


BAD_NOTE_VALUES = {
    "name with space": (lambda: NoteSignature("a b", b"1234", b"s"), "key name"),
    "short key hash": (lambda: NoteSignature("n", b"123", b"s"), "4 bytes"),
    "empty signature": (lambda: NoteSignature("n", b"1234", b""), "non-empty"),
    "note without signatures": (lambda: Note(b"body\n", ()), "got 0"),
    "checkpoint without signatures": (
        lambda: SignedCheckpoint(_checkpoint(), ()),
        "got 0",
    ),
}


@pytest.mark.parametrize(
    ("make", "message"), BAD_NOTE_VALUES.values(), ids=BAD_NOTE_VALUES.keys()
)
def test_note_values_refuse_bad_arguments(make, message):
    with pytest.raises(ValueError, match=message):
        make()


@given(
    st.integers(min_value=0, max_value=2**64 - 1),
    st.binary(min_size=32, max_size=32),
    st.sampled_from(["example.org/log", "a", "x.test/with-dash_and.dots"]),
)
def test_checkpoint_signer_writes_the_text_sign_checkpoint_writes(size, root, origin):
    """Appends sign through CheckpointSigner: it must not drift from the spec path."""
    from mltrail.core.checkpoint import CheckpointSigner

    signer = fixed_signer("checkpoint-signer")
    expected = sign_checkpoint(Checkpoint(origin, size, root), signer).to_text()
    assert CheckpointSigner(origin, signer).sign(size, root) == expected
