"""The limit checks agree with naive recursive references on any JSON value or text."""

import contextlib
import json
import re
import string

import pytest
import rfc8785
from hypothesis import given
from hypothesis import strategies as st

from mltrail.core.codec import parse_json
from mltrail.core.limits import (
    MAX_RUN_ID,
    MAX_SAFE_INT,
    canonical_size_bound,
    exceeds_text_depth,
    run_id_problem,
    value_problem,
)
from mltrail.errors import SchemaError

TRICKY_TEXT = st.text(alphabet='[]{}"\\:,ab\n\u00e9\U0001f600', max_size=12)
SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=False, allow_infinity=False)
    | TRICKY_TEXT
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(TRICKY_TEXT, inner, max_size=3)
    ),
    max_leaves=30,
)


def depth(value):
    """Levels of objects and arrays, by the definition (the reference)."""
    if isinstance(value, dict):
        return 1 + max(map(depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(depth, value), default=0)
    return 0


def inexact_ints(value):
    if isinstance(value, dict):
        return any(map(inexact_ints, value.values()))
    if isinstance(value, list):
        return any(map(inexact_ints, value))
    return type(value) is int and abs(value) > MAX_SAFE_INT


@given(JSON, st.integers(0, 8), st.booleans())
def test_text_depth_agrees_with_the_reference(value, limit, ascii_only):
    text = json.dumps(value, ensure_ascii=ascii_only)
    expected = depth(value) > limit
    assert exceeds_text_depth(text, limit) == expected
    assert exceeds_text_depth(text.encode(), limit) == expected


@given(JSON, st.integers(0, 8))
def test_value_problem_agrees_with_the_reference(value, limit):
    problem = value_problem(value, "body", limit)
    if depth(value) > limit:
        assert problem is not None
    elif inexact_ints(value):
        assert problem is not None
        assert "integer" in problem
    else:
        assert problem is None
    assert (value_problem(value, "body", limit, exact_ints=False) is None) == (
        depth(value) <= limit
    )


@given(JSON.filter(lambda v: not inexact_ints(v) and depth(v) <= 6))
def test_parse_json_reads_back_what_canonical_json_writes(value):
    data = rfc8785.dumps(value)
    assert rfc8785.dumps(parse_json(data, max_depth=6)) == data
    # a float of 2**53 or more is written as a whole number: read as user input,
    # it may stand for an integer JSON cannot carry
    whole = re.findall(r"(?<![0-9.eE+-])-?[0-9]+(?![0-9.eE])", data.decode())
    if all(abs(int(n)) <= MAX_SAFE_INT for n in whole):
        assert rfc8785.dumps(parse_json(data, max_depth=6, exact_ints=True)) == data
    else:  # a user's is refused: it may stand for an integer JSON cannot carry
        with pytest.raises(SchemaError, match="cannot be stored exactly"):
            parse_json(data, max_depth=6, exact_ints=True)


@given(st.text(alphabet='[]{}"\\:,0123456789.e-', max_size=40))
def test_parse_json_fails_only_with_schema_error(text):
    with contextlib.suppress(SchemaError):
        parse_json(text, what="--body", max_depth=3, exact_ints=True)


RUN_ID_CHARS = string.ascii_letters + string.digits + "._:-"


@given(st.text(alphabet=RUN_ID_CHARS + "/\\ \x00\u00e9.", max_size=MAX_RUN_ID + 3))
def test_run_id_grammar_agrees_with_the_reference(text):
    valid = (
        1 <= len(text) <= MAX_RUN_ID
        and all(c in RUN_ID_CHARS for c in text)
        and text not in (".", "..")
    )
    assert (run_id_problem(text) is None) == valid


EXACT_SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-MAX_SAFE_INT, MAX_SAFE_INT)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=40)
    | st.text(alphabet='\x00\x01\x1f"\\\u2028\U0001f600', max_size=20)
)
EXACT_JSON = st.recursive(
    EXACT_SCALARS,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=10), inner, max_size=4)
    ),
    max_leaves=40,
)


@given(EXACT_JSON)
def test_canonical_size_bound_is_an_upper_bound(value):
    """validate_entry skips the exact canonical size whenever this bound allows."""
    assert canonical_size_bound(value) >= len(rfc8785.dumps(value))


def text_depth_reference(data: bytes) -> int:
    """Deepest bracket nesting outside strings, one byte at a time (the reference):
    a string runs to its closing quote, a backslash escaping the next byte, or to
    the end of the text when unterminated."""
    depth = deepest = i = 0
    while i < len(data):
        byte = data[i : i + 1]
        if byte == b'"':
            i += 1
            while i < len(data) and data[i : i + 1] != b'"':
                i += 2 if data[i : i + 1] == b"\\" else 1
        elif byte in (b"[", b"{"):
            depth += 1
            deepest = max(deepest, depth)
        elif byte in (b"]", b"}"):
            depth -= 1
        i += 1
    return deepest


@given(st.text(alphabet='[]{}"\\ab,', max_size=40), st.integers(0, 8))
def test_text_depth_of_any_text_agrees_with_the_byte_reference(text, limit):
    """Not only JSON: text with an unterminated string (which the parser refuses
    after this check) is measured as the reference measures it, in one pass."""
    data = text.encode()
    assert exceeds_text_depth(data, limit) == (text_depth_reference(data) > limit)
