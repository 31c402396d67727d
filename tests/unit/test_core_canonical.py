"""Unit tests for mltrail.core.canonical."""

import hashlib
import json
from collections import OrderedDict

import pytest
import rfc8785

from mltrail.core.canonical import (
    ZERO_HASH,
    canonical_bytes,
    canonical_object,
    compute_blob_digest,
    compute_leaf_hash,
    compute_record_hash,
)
from mltrail.errors import InputError, MltrailError, SchemaError

SHA256_EMPTY = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
SHA256_ABC = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
# RFC 6962 / RFC 9162: the leaf hash of an empty entry, SHA-256(0x00).
LEAF_HASH_EMPTY = "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d"

# RFC 8785 section 3.2.3: the sorting example. U+1F600 is the surrogate pair
# D83D DE00 in UTF-16, so it sorts before U+FB33 by code unit, although it
# sorts after it by code point (Python's plain sorted()).
RFC_SORTING_INPUT = {
    "\u20ac": "Euro Sign",
    "\r": "Carriage Return",
    "\ufb33": "Hebrew Letter Dalet With Dagesh",
    "1": "One",
    "\U0001f600": "Emoji: Grinning Face",
    "\u0080": "Control",
    "\u00f6": "Latin Small Letter O With Diaeresis",
}
RFC_SORTING_ORDER = ["\r", "1", "\u0080", "\u00f6", "\u20ac", "\U0001f600", "\ufb33"]


def _stable_id(value: object) -> str:
    """A test id that is the same in every process (no object addresses)."""
    return "object()" if type(value) is object else repr(value)


def _members(keys):
    return {k: canonical_bytes(v) for k, v in keys.items()}


def _key_order(data: bytes) -> list[str]:
    return list(json.loads(data))


# --- canonical_bytes ------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, b"null"),
        (True, b"true"),
        (False, b"false"),
        (0, b"0"),
        (-1, b"-1"),
        (2**53 - 1, b"9007199254740991"),
        (-(2**53 - 1), b"-9007199254740991"),
        (0.0, b"0"),
        (-0.0, b"0"),
        (56.0, b"56"),
        (4.5, b"4.5"),
        (1e30, b"1e+30"),
        (1e-7, b"1e-7"),
        (1e-6, b"0.000001"),
        (1e20, b"100000000000000000000"),
        (1e21, b"1e+21"),
        ("", b'""'),
        ('a"b\\c', b'"a\\"b\\\\c"'),
        ("\b\f\n\r\t", b'"\\b\\f\\n\\r\\t"'),
        ("\x00\x1f", b'"\\u0000\\u001f"'),
        ("\x7f\u0080", b'"\x7f\xc2\x80"'),
        ("/", b'"/"'),
        ("\u20ac", '"\u20ac"'.encode()),
        ("\U0001f600", '"\U0001f600"'.encode()),
        ("</script>", b'"</script>"'),
        ([], b"[]"),
        ({}, b"{}"),
        ([3, 1, 2], b"[3,1,2]"),
        ((1, "a"), b'[1,"a"]'),
        (
            {"b": 1, "a": [None, {"d": True, "c": False}]},
            b'{"a":[null,{"c":false,"d":true}],"b":1}',
        ),
    ],
    ids=repr,
)
def test_canonical_bytes_values(value, expected):
    assert canonical_bytes(value) == expected


def test_canonical_bytes_is_utf8_not_ascii_escaped():
    assert canonical_bytes("p\u00e9ch\u00e9") == b'"p\xc3\xa9ch\xc3\xa9"'


def test_canonical_bytes_sorts_nested_keys_by_utf16():
    value = {"outer": RFC_SORTING_INPUT}
    assert _key_order(canonical_bytes(value))[0] == "outer"
    assert list(json.loads(canonical_bytes(value))["outer"]) == RFC_SORTING_ORDER


def test_canonical_bytes_rfc_sorting_example_exact():
    expected = (
        '{"\\r":"Carriage Return","1":"One","\u0080":"Control",'
        '"\u00f6":"Latin Small Letter O With Diaeresis","\u20ac":"Euro Sign",'
        '"\U0001f600":"Emoji: Grinning Face",'
        '"\ufb33":"Hebrew Letter Dalet With Dagesh"}'
    ).encode()
    assert canonical_bytes(RFC_SORTING_INPUT) == expected


def test_canonical_bytes_ignores_insertion_order():
    a = OrderedDict([("x", 1), ("y", 2)])
    b = OrderedDict([("y", 2), ("x", 1)])
    assert canonical_bytes(a) == canonical_bytes(b) == b'{"x":1,"y":2}'


@pytest.mark.parametrize(
    ("value", "cause"),
    [
        (float("nan"), rfc8785.FloatDomainError),
        (float("inf"), rfc8785.FloatDomainError),
        (float("-inf"), rfc8785.FloatDomainError),
        ([1.0, {"x": float("nan")}], rfc8785.FloatDomainError),
        (2**53, rfc8785.IntegerDomainError),
        (-(2**53), rfc8785.IntegerDomainError),
        (2**64, rfc8785.IntegerDomainError),
        ({1: "int key"}, rfc8785.CanonicalizationError),
        ({("t",): "tuple key"}, rfc8785.CanonicalizationError),
        ({1, 2}, rfc8785.CanonicalizationError),
        (b"bytes", rfc8785.CanonicalizationError),
        (object(), rfc8785.CanonicalizationError),
        ("\ud800", rfc8785.CanonicalizationError),
        (["ok", "\udfff"], rfc8785.CanonicalizationError),
        ({"\ud83d": 1}, ValueError),
    ],
    ids=_stable_id,
)
def test_canonical_bytes_errors_are_schema_errors_and_chained(value, cause):
    with pytest.raises(SchemaError) as info:
        canonical_bytes(value)
    error = info.value
    assert isinstance(error, InputError)
    assert isinstance(error, MltrailError)
    assert error.exit_code == 2
    assert isinstance(error.__cause__, cause)
    assert str(error).startswith("value cannot be written as canonical JSON")


def test_integer_limit_is_two_to_the_53_minus_one_but_floats_go_further():
    # rfc8785 refuses Python ints outside +-(2**53 - 1) even when they are
    # exactly representable as doubles, but accepts the float of the same value.
    with pytest.raises(SchemaError):
        canonical_bytes(2**53)
    assert canonical_bytes(float(2**53)) == b"9007199254740992"
    assert canonical_bytes(float(2**68)) == b"295147905179352830000"


def test_whole_floats_from_2_to_the_53_to_1e21_do_not_survive_json_loads():
    # Such a float is written without exponent or fraction, so json.loads reads
    # it back as an int beyond 2**53 - 1, which canonical_bytes then refuses.
    data = canonical_bytes(1e16)
    assert data == b"10000000000000000"
    assert isinstance(json.loads(data), int)
    with pytest.raises(SchemaError):
        canonical_bytes(json.loads(data))
    # Reading numbers as floats restores the round trip.
    assert canonical_bytes(json.loads(data, parse_int=float)) == data


# --- canonical_object -----------------------------------------------------


def test_canonical_object_empty():
    assert canonical_object({}) == b"{}"


def test_canonical_object_rfc_sorting_example():
    data = canonical_object(_members(RFC_SORTING_INPUT))
    assert data == canonical_bytes(RFC_SORTING_INPUT)
    assert _key_order(data) == RFC_SORTING_ORDER
    # Code point order would put U+FB33 before U+1F600.
    assert sorted(RFC_SORTING_INPUT) != RFC_SORTING_ORDER


@pytest.mark.parametrize(
    ("keys", "expected_order"),
    [
        # Astral (surrogate D800-DBFF) sorts before BMP private use U+E000.
        (["\ue000", "\U00010000"], ["\U00010000", "\ue000"]),
        # ... and before U+FFFF, the last BMP code point.
        (["\uffff", "\U0010ffff"], ["\U0010ffff", "\uffff"]),
        (["\ufb33", "\U0001f602", "\u20ac"], ["\u20ac", "\U0001f602", "\ufb33"]),
        # Below the surrogates, UTF-16 order and code point order agree.
        (["\ud7ff", "\u0080", "\u007f", "\r"], ["\r", "\u007f", "\u0080", "\ud7ff"]),
        # Prefixes first; no locale folding; upper case before lower case.
        (["ab", "a", "B", "b", ""], ["", "B", "a", "ab", "b"]),
        # Numeric-looking keys sort as strings.
        (["10", "1", "111", "2"], ["1", "10", "111", "2"]),
        (
            ["p\u00eache", "p\u00e9ch\u00e9", "peach", "sin"],
            ["peach", "p\u00e9ch\u00e9", "p\u00eache", "sin"],
        ),
    ],
    ids=repr,
)
def test_canonical_object_orders_by_utf16_code_units(keys, expected_order):
    members = {k: canonical_bytes(i) for i, k in enumerate(keys)}
    data = canonical_object(members)
    assert _key_order(data) == expected_order
    assert data == canonical_bytes({k: i for i, k in enumerate(keys)})


def test_canonical_object_escapes_keys():
    data = canonical_object({'"\\\n\x01': b"1"})
    assert data == b'{"\\"\\\\\\n\\u0001":1}'


def test_canonical_object_inserts_member_bytes_verbatim():
    # The member bytes are trusted to be canonical already: not re-parsed.
    members = {"b": b"[1,2]", "a": b'{"y":0,"x":1}'}
    assert canonical_object(members) == b'{"a":{"y":0,"x":1},"b":[1,2]}'


def test_canonical_object_nested_matches_canonical_bytes():
    entry = {
        "kind": "model.register",
        "payload": {"\U0001f600": 1, "\ufb33": [1.5, None]},
    }
    record = {"seq": 7, "prev": ZERO_HASH, "entry": entry}
    members = {
        "seq": canonical_bytes(7),
        "prev": canonical_bytes(ZERO_HASH),
        "entry": canonical_bytes(entry),
    }
    assert canonical_object(members) == canonical_bytes(record)


def test_canonical_object_does_not_mutate_members():
    members = {"b": b"1", "a": b"2"}
    canonical_object(members)
    assert list(members) == ["b", "a"]


@pytest.mark.parametrize("key", [chr(0xD800), chr(0xDFFF), "a" + chr(0xD83D)], ids=repr)
def test_canonical_object_lone_surrogate_key_is_schema_error(key):
    with pytest.raises(SchemaError) as info:
        canonical_object({key: b"1"})
    assert isinstance(info.value.__cause__, UnicodeEncodeError)


@pytest.mark.parametrize("key", [1, b"k", ("t",)], ids=repr)
def test_canonical_object_non_string_key_is_schema_error(key):
    with pytest.raises(SchemaError) as info:
        canonical_object({key: b"1"})
    assert info.value.__cause__ is not None


# --- hashes ---------------------------------------------------------------


def test_zero_hash():
    assert ZERO_HASH == "0" * 64


def test_compute_record_hash_is_plain_sha256():
    assert compute_record_hash(b"").hex() == SHA256_EMPTY
    assert compute_record_hash(b"abc").hex() == SHA256_ABC
    data = canonical_bytes({"a": 1})
    assert compute_record_hash(data) == hashlib.sha256(data).digest()
    assert isinstance(compute_record_hash(data), bytes)
    assert len(compute_record_hash(data)) == 32


def test_compute_leaf_hash_prefixes_0x00():
    assert compute_leaf_hash(b"").hex() == LEAF_HASH_EMPTY
    data = canonical_bytes({"a": 1})
    assert compute_leaf_hash(data) == hashlib.sha256(b"\x00" + data).digest()
    assert len(compute_leaf_hash(data)) == 32


def test_leaf_hash_and_record_hash_are_domain_separated():
    for data in (b"", b"abc", canonical_bytes({"a": 1})):
        assert compute_leaf_hash(data) != compute_record_hash(data)
    # ... and a leaf hash is not an interior node hash (0x01 prefix).
    assert compute_leaf_hash(b"ab") != hashlib.sha256(b"\x01" + b"ab").digest()


def test_compute_blob_digest_format():
    assert compute_blob_digest(b"") == "sha256:" + SHA256_EMPTY
    assert compute_blob_digest(b"abc") == "sha256:" + SHA256_ABC
    digest = compute_blob_digest(b"\x00" * 1000)
    prefix, _, hexpart = digest.partition(":")
    assert prefix == "sha256"
    assert len(hexpart) == 64
    assert hexpart == hexpart.lower()
    assert all(c in "0123456789abcdef" for c in hexpart)
    assert bytes.fromhex(hexpart) == hashlib.sha256(b"\x00" * 1000).digest()
