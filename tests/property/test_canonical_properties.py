"""Property tests for RFC 8785 canonical bytes (mltrail.core.canonical)."""

import json
import math

import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mltrail.core.canonical import canonical_bytes, canonical_object

MAX_SAFE_INT = 2**53 - 1  # rfc8785 refuses ints beyond +-(2**53 - 1)

# Characters that stress escaping and UTF-16 ordering, mixed into arbitrary text.
_SPECIAL_CHARS = st.sampled_from(
    [
        "\x00",
        "\x1f",
        "\x7f",
        "\u0080",
        '"',
        "\\",
        "/",
        "\n",
        "\u2028",
        "\ud7ff",
        "\ue000",
        "\ufb33",
        "\uffff",
        "\U00010000",
        "\U0001f600",
        "\U0010ffff",
    ]
)
_ASTRAL_CHARS = st.characters(min_codepoint=0x10000, max_codepoint=0x10FFFF)
# codec="utf-8" keeps lone surrogates out: bare st.characters() can draw them.
_CHARS = st.one_of(st.characters(codec="utf-8"), _ASTRAL_CHARS, _SPECIAL_CHARS)
TEXT = st.text(_CHARS, max_size=12)

INTS = st.integers(min_value=-MAX_SAFE_INT, max_value=MAX_SAFE_INT)
FLOATS = st.floats(allow_nan=False, allow_infinity=False)


def _reparses_as_safe(f: float) -> bool:
    """False for whole floats that json.loads would read back as an unsafe int.

    JCS writes whole floats below 1e21 without exponent or fraction (1e16 is
    ``10000000000000000``); json.loads makes those ints, and rfc8785 refuses ints
    beyond 2**53 - 1. See test_core_canonical for the pinned behaviour.
    """
    return not (f.is_integer() and MAX_SAFE_INT < abs(f) < 1e21)


def json_values(floats: st.SearchStrategy[float]) -> st.SearchStrategy:
    scalars = st.one_of(st.none(), st.booleans(), INTS, floats, TEXT)
    return st.recursive(
        scalars,
        lambda children: st.one_of(
            st.lists(children, max_size=5),
            st.dictionaries(TEXT, children, max_size=5),
        ),
        max_leaves=20,
    )


VALUES = json_values(FLOATS)
REPARSABLE_VALUES = json_values(FLOATS.filter(_reparses_as_safe))
DICTS = st.dictionaries(TEXT, VALUES, max_size=8)

SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def json_equal(a, b) -> bool:
    """Equality of JSON values where numbers compare by value (1 == 1.0, -0.0 == 0).

    Floats compare exactly: JCS writes the shortest round-trip form, so a float
    read back (or an int read back from a whole float) is the same double.
    """
    if isinstance(a, bool) or isinstance(b, bool):
        return a is b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        if isinstance(a, float) or isinstance(b, float):
            return float(a) == float(b)
        return a == b
    if isinstance(a, (list, tuple)) and isinstance(b, (list, tuple)):
        return len(a) == len(b) and all(
            json_equal(x, y) for x, y in zip(a, b, strict=True)
        )
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@SETTINGS
@given(REPARSABLE_VALUES)
def test_canonical_is_idempotent_through_json_loads(value):
    once = canonical_bytes(value)
    assert canonical_bytes(json.loads(once)) == once


@SETTINGS
@given(DICTS)
def test_canonical_object_of_member_bytes_equals_canonical_bytes(d):
    members = {k: canonical_bytes(v) for k, v in d.items()}
    assert canonical_object(members) == canonical_bytes(d)


@SETTINGS
@given(VALUES)
def test_output_is_utf8_json_equal_to_the_input(value):
    data = canonical_bytes(value)
    text = data.decode("utf-8")  # strict: raises on invalid UTF-8
    # Standard JSON only: no NaN/Infinity literals anywhere.
    parsed = json.loads(text, parse_constant=_reject_constant)
    assert json_equal(parsed, value)
    # Controls are escaped inside strings and no whitespace separates tokens,
    # so no byte below 0x20 (tab, CR, LF included) ever appears.
    assert not any(byte < 0x20 for byte in data)


@SETTINGS
@given(FLOATS)
def test_floats_round_trip_exactly(f):
    data = canonical_bytes(f)
    back = float(data)
    assert back == f
    assert not math.isnan(back)
    if f == 0:
        assert data == b"0"


def _reject_constant(name: str):
    raise AssertionError(f"non-standard JSON constant {name} in canonical output")


NO_FLOATS = st.recursive(
    st.none() | st.booleans() | INTS | TEXT,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4)
    ),
    max_leaves=30,
)
ANY_JSON = st.recursive(
    st.none() | st.booleans() | INTS | FLOATS | TEXT,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(TEXT, inner, max_size=4)
    ),
    max_leaves=30,
)


@settings(max_examples=500, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(NO_FLOATS, ANY_JSON))
def test_the_fast_path_writes_exactly_what_rfc8785_writes(value):
    """canonical_bytes takes the C json encoder for float-free values whose keys
    sort alike by code point and UTF-16 code unit: the bytes must be RFC 8785's,
    keys beyond the BMP, U+E000..U+FFFF, escapes and U+2028 included."""
    assert canonical_bytes(value) == rfc8785.dumps(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_a_parameter_float_is_stored_as_rfc8785_writes_it(value):
    """`param_value` writes a plain float with repr (no rfc8785 import): the same
    text RFC 8785 gives, whatever the float."""
    from mltrail.index.tables import param_value

    assert param_value(value) == rfc8785.dumps(value).decode()
