"""RFC 8785 (JCS) vectors: cyberphone/json-canonicalization testdata and Appendix B.

Each ``input/NAME.json`` parsed with :func:`json.loads` must canonicalise to the
exact bytes of ``output/NAME.json``; see ``rfc8785/NOTICE`` for provenance.
"""

import json
import math
import struct
from pathlib import Path

import pytest

from mltrail.core.canonical import canonical_bytes
from mltrail.errors import SchemaError

VECTORS = Path(__file__).parent / "rfc8785"
INPUTS = sorted((VECTORS / "input").glob("*.json"))
NAMES = [p.stem for p in INPUTS]


def _double(ieee_hex: str) -> float:
    """The IEEE 754 double whose bit pattern is the 16 hex digits ``ieee_hex``."""
    return struct.unpack(">d", bytes.fromhex(ieee_hex))[0]


# RFC 8785, Appendix B, Table 1: "ECMAScript-Compatible JSON Number
# Serialization Samples" (IEEE 754 bit pattern, JSON representation).
APPENDIX_B = [
    ("0000000000000000", "0"),  # Zero
    ("8000000000000000", "0"),  # Minus zero
    ("0000000000000001", "5e-324"),  # Min pos number
    ("8000000000000001", "-5e-324"),  # Min neg number
    ("7fefffffffffffff", "1.7976931348623157e+308"),  # Max pos number
    ("ffefffffffffffff", "-1.7976931348623157e+308"),  # Max neg number
    ("4340000000000000", "9007199254740992"),  # Max pos int (1)
    ("c340000000000000", "-9007199254740992"),  # Max neg int (1)
    ("4430000000000000", "295147905179352830000"),  # ~2**68 (2)
    ("44b52d02c7e14af5", "9.999999999999997e+22"),
    ("44b52d02c7e14af6", "1e+23"),
    ("44b52d02c7e14af7", "1.0000000000000001e+23"),
    ("444b1ae4d6e2ef4e", "999999999999999700000"),
    ("444b1ae4d6e2ef4f", "999999999999999900000"),
    ("444b1ae4d6e2ef50", "1e+21"),
    ("3eb0c6f7a0b5ed8c", "9.999999999999997e-7"),
    ("3eb0c6f7a0b5ed8d", "0.000001"),
    ("41b3de4355555553", "333333333.3333332"),
    ("41b3de4355555554", "333333333.33333325"),
    ("41b3de4355555555", "333333333.3333333"),
    ("41b3de4355555556", "333333333.3333334"),
    ("41b3de4355555557", "333333333.33333343"),
    ("becbf647612f3696", "-0.0000033333333333333333"),
    ("43143ff3c1cb0959", "1424953923781206.2"),  # Round to even (4)
]

# Same table: NaN (3) and Infinity (3) are out of range and have no form.
# The negated patterns are added for completeness.
APPENDIX_B_ERRORS = [
    "7fffffffffffffff",  # NaN
    "7ff0000000000000",  # Infinity
    "fff0000000000000",  # -Infinity
    "fff8000000000000",  # a negative quiet NaN
]

# Sample lines quoted in upstream testdata/README.md (es6testfile format).
EXTRA_NUMBERS = [
    ("4340000000000001", "9007199254740994"),
    ("4340000000000002", "9007199254740996"),
]


def test_every_vector_is_present():
    assert set(NAMES) == {
        "arrays",
        "french",
        "simpleString",
        "structures",
        "unicode",
        "values",
        "weird",
    }
    outputs = {p.stem for p in (VECTORS / "output").glob("*.json")}
    assert outputs == set(NAMES)
    assert (VECTORS / "LICENSE").is_file()
    assert (VECTORS / "NOTICE").is_file()


@pytest.mark.parametrize("name", NAMES)
def test_input_canonicalises_to_output(name: str):
    source = (VECTORS / "input" / f"{name}.json").read_bytes().decode("utf-8")
    expected = (VECTORS / "output" / f"{name}.json").read_bytes()
    assert canonical_bytes(json.loads(source)) == expected


@pytest.mark.parametrize("name", NAMES)
def test_output_is_a_fixed_point(name: str):
    expected = (VECTORS / "output" / f"{name}.json").read_bytes()
    assert canonical_bytes(json.loads(expected.decode("utf-8"))) == expected


@pytest.mark.parametrize("name", NAMES)
def test_output_files_have_no_trailing_newline(name: str):
    assert not (VECTORS / "output" / f"{name}.json").read_bytes().endswith(b"\n")


@pytest.mark.parametrize(
    "path", sorted((VECTORS / "outhex").glob("*.txt")), ids=lambda p: p.stem
)
def test_outhex_matches_output_bytes(path: Path):
    expected = bytes.fromhex(path.read_text(encoding="ascii"))
    assert (VECTORS / "output" / f"{path.stem}.json").read_bytes() == expected


def test_weird_output_carries_raw_controls_and_utf8():
    # U+0080 and U+007F are not escaped by JCS: they must appear as raw bytes.
    data = (VECTORS / "output" / "weird.json").read_bytes()
    assert b'"\xc2\x80":"Control\x7f"' in data
    assert "\U0001f602".encode() in data


@pytest.mark.parametrize(("ieee_hex", "expected"), APPENDIX_B + EXTRA_NUMBERS)
def test_appendix_b_number(ieee_hex: str, expected: str):
    value = _double(ieee_hex)
    assert canonical_bytes(value) == expected.encode("ascii")
    # The serialisation is lossless: it reads back as the same double.
    assert float(expected) == value


@pytest.mark.parametrize("ieee_hex", APPENDIX_B_ERRORS)
def test_appendix_b_out_of_range(ieee_hex: str):
    value = _double(ieee_hex)
    assert math.isnan(value) or math.isinf(value)
    with pytest.raises(SchemaError):
        canonical_bytes(value)
    with pytest.raises(SchemaError):
        canonical_bytes({"n": [value]})


@pytest.mark.parametrize("value", [float("nan"), float("inf"), float("-inf")], ids=repr)
def test_python_nan_and_infinities_raise_schema_error(value: float):
    with pytest.raises(SchemaError):
        canonical_bytes(value)


@pytest.mark.parametrize("text", ["NaN", "Infinity", "-Infinity"])
def test_json_module_nan_literals_raise_schema_error(text: str):
    # json.loads accepts these non-standard literals; canonicalisation must not.
    with pytest.raises(SchemaError):
        canonical_bytes(json.loads(f'{{"x":{text}}}'))
