"""Interop with Go's golang.org/x/mod/sumdb/note and transparency-dev/formats.

Notes and keys written by the Go reference must open here, and ours must be
byte-identical to Go's for the same key and text (Ed25519 is deterministic).

Vector sources (see tests/vectors/signed_note/NOTICE):

* golang/mod sumdb/note/note_test.go and note.go, BSD-3-Clause,
  Copyright 2019 The Go Authors.
* transparency-dev/formats log/note_test.go, Apache-2.0, Copyright 2021
  Google LLC (test key pairs and a real sum.golang.org tree head).
"""

import base64
from pathlib import Path

import pytest

from mltrail.core.checkpoint import (
    Checkpoint,
    add_signature,
    compute_note_key_hash,
    format_verifier_key,
    open_note,
    parse_note,
    parse_signed_checkpoint,
    parse_verifier_key,
    sign_checkpoint,
    sign_note,
    verify_checkpoint,
    verify_note,
)
from mltrail.core.signing import Ed25519Signer
from mltrail.errors import BadSignatureError, IntegrityError, SchemaError

# --- golang.org/x/mod/sumdb/note (BSD-3-Clause, The Go Authors) ---------------

PETER_SKEY = (
    "PRIVATE+KEY+PeterNeumann+c74f20a3+AYEKFALVFGyNhPJEMzD1QIDr+Y7hfZx09iUvxdXHKDFz"
)
PETER_VKEY = "PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
ENOCH_VKEY = "EnochRoot+af0cfe78+ATtqJ7zOtqQtYqOo0CpvDXNlMhV3HeJDpjrASKGLWdop"

TEXT = (
    "If you think cryptography is the answer to your problem,\n"
    "then you don't know what your problem is.\n"
)
PETER_SIG = (
    "\u2014 PeterNeumann x08go/ZJkuBS9UG/SffcvIAQxVBtiFupLLr8pAcElZInNIuGUgYN1FFYC2"
    "pZSNXgKvqfqdngotpRZb6KE6RyyBwJnAM=\n"
)
ENOCH_SIG = (
    "\u2014 EnochRoot rwz+eBzmZa0SO3NbfRGzPCpDckykFXSdeX+MNtCOXm2/5n2tiOHp+vAF1aGrQ"
    "5ovTG01oOTGwnWLox33WWd1RvMc+QQ=\n"
)
PETER_NOTE = TEXT + "\n" + PETER_SIG
DOUBLY_SIGNED = TEXT + "\n" + PETER_SIG + ENOCH_SIG

# TestOpen's "Invalid encoded message syntax" cases.
GO_BAD_MESSAGES = {
    "text only": TEXT,
    "blank line, no signature": TEXT + "\n",
    "no final newline": TEXT + "\n" + PETER_SIG[:-1],
    "control character": "\x01" + TEXT + "\n" + PETER_SIG,
    "invalid UTF-8": b"\xff" + (TEXT + "\n" + PETER_SIG).encode(),
    "name with a space": TEXT + "\n\u2014 Bad Name " + PETER_SIG.split(" ")[2][:-1],
    "line after the signatures": TEXT + "\n" + PETER_SIG + "Unexpected line.\n",
}

# TestNewVerifier's hand-made bad keys: a 40-byte key and an unknown algorithm,
# each with a key hash adjusted to match.
GO_BAD_VKEYS = {
    "wrong length key": (
        "PeterNeumann+cc469956+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TWBADKEY=="
    ),
    "unknown algorithm": (
        "PeterNeumann+173116ae+ZRpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW"
    ),
}

# --- transparency-dev/formats log/note_test.go (Apache-2.0, Google LLC) --------

TD_KEY_PAIRS = {
    "Log": (
        "Log+2271c621+AemuH5ooBpEPcr+W8onrjA1NfuzBVHdezakU81Ekarvs",
        "PRIVATE+KEY+Log+2271c621+AdEIq9FLRQni54Wg68T96VJO+iayOaulswav2DUMKgvQ",
    ),
    "Known": (
        "Known+451c786d+AXAQ0T7lbwuY4ABJ9/MYY9bWV3hmSyOGVt2x42NkmdUH",
        "PRIVATE+KEY+Known+451c786d+AQPRoE2+Z+Ed1HaHBA9F/FfracvcZ2rDU39kCecMEoci",
    ),
    "KnownAgain": (
        "KnownAgain+4893b26c+AQ+LR7BFF/F/dkpIBjBpSvT0crkteizuUkavAoGeaYMj",
        "PRIVATE+KEY+KnownAgain+4893b26c+ARhZda/l25zjGZswYLDZsLNRzNpmv5wYTN9IoTr1OJ2+",
    ),
    "Unknown": (
        "Unknown+fdbb2e08+AWgRIYZ+8x1Vl+1Q+sR8zciNHiYI1SdlBjNw+RV0rots",
        "PRIVATE+KEY+Unknown+fdbb2e08+Aav2knTC6orbhXX8pMWuNiWgO+Wwk2DB+h1eU2Q1W1nU",
    ),
}

SUMDB_VKEY = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"
SUMDB_ORIGIN = "go.sum database tree"
SUMDB_NOTE = (
    "go.sum database tree\n"
    "6476701\n"
    "mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk=\n"
    "\n"
    "\u2014 sum.golang.org Az3grsLX85Gz+s1SiTbgkuqxgItqFq7gsMUEyVnrsa9LM7Us9S+1xbFIGu"
    "95949rj4nPRYfvimWEPWL+o3GeoWwOoAw=\n"
)

# -------------------------------------------------------------------------------


def _signer_from_skey(skey):
    """Parse Go's PRIVATE+KEY+<name>+<hash>+base64(0x01 || seed)."""
    private, key, name, key_hash, data = skey.split("+", 4)
    assert (private, key) == ("PRIVATE", "KEY")
    raw = base64.b64decode(data, validate=True)
    assert raw[0] == 0x01
    return name, bytes.fromhex(key_hash), Ed25519Signer.from_seed(raw[1:])


def test_notice_file_is_present():
    assert (Path(__file__).parent / "signed_note" / "NOTICE").is_file()


def test_peter_keys_agree():
    name, key_hash, signer = _signer_from_skey(PETER_SKEY)
    assert parse_verifier_key(PETER_VKEY) == (name, signer.public_key)
    assert compute_note_key_hash(name, signer.public_key) == key_hash
    assert key_hash.hex() == "c74f20a3"
    assert format_verifier_key(name, signer.public_key) == PETER_VKEY


def test_sign_matches_go_byte_for_byte():
    name, _, signer = _signer_from_skey(PETER_SKEY)
    assert sign_note(TEXT.encode(), signer, name) == PETER_NOTE


def test_go_signature_opens():
    _, public_key = parse_verifier_key(PETER_VKEY)
    assert open_note(PETER_NOTE, "PeterNeumann", public_key) == TEXT.encode()
    assert open_note(PETER_NOTE.encode(), "PeterNeumann", public_key) == TEXT.encode()


@pytest.mark.parametrize("vkey", [PETER_VKEY, ENOCH_VKEY], ids=["peter", "enoch"])
def test_doubly_signed_note_opens_with_either_key(vkey):
    name, public_key = parse_verifier_key(vkey)
    assert open_note(DOUBLY_SIGNED, name, public_key) == TEXT.encode()


def test_doubly_signed_note_verifies_each_signature():
    note = parse_note(DOUBLY_SIGNED)
    assert [s.name for s in note.signatures] == ["PeterNeumann", "EnochRoot"]
    assert [s.key_hash.hex() for s in note.signatures] == ["c74f20a3", "af0cfe78"]
    assert note.to_text() == DOUBLY_SIGNED
    for vkey in (PETER_VKEY, ENOCH_VKEY):
        name, public_key = parse_verifier_key(vkey)
        (verified,) = verify_note(note, name=name, public_keys=[public_key])
        assert verified.name == name


def test_note_signed_only_by_unknown_keys_is_refused():
    # Go: Open with an empty VerifierList gives UnverifiedNoteError.
    _, _, stranger = _signer_from_skey(TD_KEY_PAIRS["Unknown"][1])
    with pytest.raises(BadSignatureError, match="no signature by a trusted key"):
        open_note(DOUBLY_SIGNED, "Unknown", stranger.public_key)


def test_101_signatures_are_refused():
    _, public_key = parse_verifier_key(PETER_VKEY)
    with pytest.raises(SchemaError, match="at most 100"):
        open_note(TEXT + "\n" + PETER_SIG * 101, "PeterNeumann", public_key)


def test_100_signatures_are_accepted():
    _, public_key = parse_verifier_key(PETER_VKEY)
    assert open_note(TEXT + "\n" + PETER_SIG * 100, "PeterNeumann", public_key)


def test_corrupted_trusted_signature_is_refused():
    _, public_key = parse_verifier_key(PETER_VKEY)
    corrupt = TEXT + "\n" + PETER_SIG[:60] + "ABCD" + PETER_SIG[60:]
    with pytest.raises(BadSignatureError, match=r"PeterNeumann\+c74f20a3"):
        open_note(corrupt, "PeterNeumann", public_key)


def test_untrusted_duplicates_and_corruptions_are_ignored():
    # Go's "Duplicated verified and unverified signatures" case.
    enoch_abcd = ENOCH_SIG[:60] + "ABCD" + ENOCH_SIG[60:]
    msg = TEXT + "\n" + PETER_SIG + PETER_SIG + ENOCH_SIG + ENOCH_SIG + enoch_abcd
    _, public_key = parse_verifier_key(PETER_VKEY)
    note = parse_note(msg)
    assert len(note.signatures) == 5
    assert len(verify_note(note, name="PeterNeumann", public_keys=[public_key])) == 2


@pytest.mark.parametrize("msg", GO_BAD_MESSAGES.values(), ids=GO_BAD_MESSAGES.keys())
def test_go_malformed_notes_are_refused(msg):
    _, public_key = parse_verifier_key(PETER_VKEY)
    with pytest.raises(SchemaError):
        open_note(msg, "PeterNeumann", public_key)


def _vkey_manglings(vkey):
    """Every proper substring and every one-byte increment, as TestNewVerifier."""
    data = vkey.encode()
    for i in range(len(data) + 1):
        for j in range(i + 1, len(data) + 1):
            if (i, j) != (0, len(data)):
                yield data[i:j]
    for i in range(len(data)):
        yield data[:i] + bytes([data[i] + 1]) + data[i + 1 :]


def test_every_mangled_verifier_key_is_refused():
    accepted = []
    for mangled in _vkey_manglings(PETER_VKEY):
        try:
            parse_verifier_key(mangled.decode())
        except SchemaError:
            continue
        accepted.append(mangled)
    assert accepted == []


@pytest.mark.parametrize("vkey", GO_BAD_VKEYS.values(), ids=GO_BAD_VKEYS.keys())
def test_go_bad_verifier_keys_are_refused(vkey):
    with pytest.raises(SchemaError):
        parse_verifier_key(vkey)


@pytest.mark.parametrize("label", TD_KEY_PAIRS)
def test_transparency_dev_key_pairs(label):
    vkey, skey = TD_KEY_PAIRS[label]
    name, key_hash, signer = _signer_from_skey(skey)
    assert name == label
    assert parse_verifier_key(vkey) == (name, signer.public_key)
    assert compute_note_key_hash(name, signer.public_key) == key_hash
    assert format_verifier_key(name, signer.public_key) == vkey


def test_sumdb_tree_head_verifies():
    name, public_key = parse_verifier_key(SUMDB_VKEY)
    checkpoint = verify_checkpoint(
        SUMDB_NOTE, origin=SUMDB_ORIGIN, public_keys=[public_key], name=name
    )
    assert checkpoint.origin == SUMDB_ORIGIN
    assert checkpoint.size == 6476701
    assert checkpoint.root == base64.b64decode(
        "mb8QLQIs0Z0yP5Cstq6guj87oXWeC9gEM8oVikmm9Wk="
    )
    assert checkpoint.extensions == ()


def test_sumdb_tree_head_round_trips():
    assert parse_signed_checkpoint(SUMDB_NOTE).to_text() == SUMDB_NOTE


def test_sumdb_tree_head_wrong_origin():
    # transparency-dev's "wrong logID" case.
    name, public_key = parse_verifier_key(SUMDB_VKEY)
    with pytest.raises(IntegrityError, match="expected") as info:
        verify_checkpoint(
            SUMDB_NOTE,
            origin="Go rocks but I might have the wrong ID",
            public_keys=[public_key],
            name=name,
        )
    assert not isinstance(info.value, BadSignatureError)


def test_sumdb_tree_head_tampered_size_is_refused():
    name, public_key = parse_verifier_key(SUMDB_VKEY)
    tampered = SUMDB_NOTE.replace("\n6476701\n", "\n6476702\n")
    with pytest.raises(BadSignatureError):
        verify_checkpoint(
            tampered, origin=SUMDB_ORIGIN, public_keys=[public_key], name=name
        )


def test_transparency_dev_cosigned_checkpoint():
    """Log signs, Known cosigns, Unknown adds noise; as TestParseCheckpoint."""
    signers = {k: _signer_from_skey(sk)[2] for k, (_, sk) in TD_KEY_PAIRS.items()}
    checkpoint = Checkpoint("TestParseCheckpoint", 42, bytes(range(32)))
    signed = sign_checkpoint(checkpoint, signers["Log"], name="Log")
    signed = add_signature(signed, signers["Known"], name="Known")
    signed = add_signature(signed, signers["Unknown"], name="Unknown")
    text = signed.to_text()
    for label in ("Log", "Known"):
        name, public_key = parse_verifier_key(TD_KEY_PAIRS[label][0])
        assert (
            verify_checkpoint(
                text, origin=checkpoint.origin, public_keys=[public_key], name=name
            )
            == checkpoint
        )
    name, public_key = parse_verifier_key(TD_KEY_PAIRS["KnownAgain"][0])
    with pytest.raises(BadSignatureError):
        verify_checkpoint(
            text, origin=checkpoint.origin, public_keys=[public_key], name=name
        )
