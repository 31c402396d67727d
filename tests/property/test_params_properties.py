"""Property tests for argv parsing, flatten and json_safe (mltrail.capture.run.params)."""

import json
import string
from datetime import UTC

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mltrail.capture.run.params import coerce_value, flatten, json_safe, parse_argv
from mltrail.core.canonical import canonical_bytes

MAX_SAFE_INT = 2**53 - 1
SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

# --- (a) typed values survive --key=value -----------------------------------------

KEYS = st.from_regex(r"[a-z][a-z0-9_.\-]{0,12}", fullmatch=True)
# A string starts with a letter (so it never reads as a number, a negative number or
# a flow list/dict) and is not one of the words coerced to bool/None; its tail may be
# any printable text, unicode included.
_TAIL = st.text(
    st.characters(codec="utf-8", categories=("L", "N", "P", "S", "Zs")), max_size=12
)
_WORDS = {"true", "True", "false", "False", "null", "None"}
SAFE_STRINGS = st.builds(
    lambda head, tail: head + tail, st.sampled_from(string.ascii_letters), _TAIL
).filter(lambda s: s not in _WORDS)
TYPED = st.one_of(
    st.integers(min_value=-MAX_SAFE_INT, max_value=MAX_SAFE_INT),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(),
    SAFE_STRINGS,
)
FLAT = st.dictionaries(KEYS, TYPED, max_size=8)


def _render(value) -> str:
    return repr(value) if isinstance(value, float) else str(value)


def _same_typed(got: dict, want: dict) -> bool:
    return got == want and all(type(got[k]) is type(want[k]) for k in want)


@SETTINGS
@given(FLAT)
def test_equals_form_round_trips_typed_values(tmp_path_factory, params):
    args = [f"--{key}={_render(value)}" for key, value in params.items()]
    parsed = parse_argv(args, cwd=tmp_path_factory.getbasetemp())
    assert _same_typed(parsed.params, params)
    assert parsed.positional == []


@SETTINGS
@given(st.dictionaries(KEYS, TYPED.filter(lambda v: "=" not in str(v)), max_size=8))
def test_space_form_round_trips_typed_values(tmp_path_factory, params):
    args = [
        tok for key, value in params.items() for tok in (f"--{key}", _render(value))
    ]
    parsed = parse_argv(args, cwd=tmp_path_factory.getbasetemp())
    assert _same_typed(parsed.params, params)


@SETTINGS
@given(st.text(st.characters(codec="utf-8"), max_size=20))
def test_coerce_never_fails_and_is_json_safe(text):
    json.dumps(json_safe(coerce_value(text)), allow_nan=False)


# --- (b) flatten keeps every leaf exactly once ---------------------------------------

NAMES = st.text(string.ascii_letters + string.digits + "_-", min_size=1, max_size=4)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=False),
    st.text(max_size=5),
)
NESTED = st.recursive(
    SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(NAMES, children, max_size=4)
    ),
    max_leaves=25,
)
TREES = st.dictionaries(NAMES, NESTED, max_size=6)


def _holds_dict(value) -> bool:
    if isinstance(value, dict):
        return True
    return isinstance(value, list) and any(_holds_dict(v) for v in value)


def _leaf_count(value) -> int:
    """Leaves by the documented rule: scalars, empty dicts, lists holding no dict."""
    if isinstance(value, dict):
        return sum(_leaf_count(v) for v in value.values()) if value else 1
    if isinstance(value, list) and _holds_dict(value):
        return sum(_leaf_count(v) for v in value)
    return 1


def _follow(tree, key: str):
    node = tree
    for part in key.split("."):
        node = node[int(part)] if isinstance(node, list) else node[part]
    return node


@SETTINGS
@given(TREES)
def test_flatten_keeps_every_leaf_once_and_no_nested_dicts(tree):
    flat = flatten(tree)
    assert len(flat) == sum(_leaf_count(v) for v in tree.values())
    for key, value in flat.items():
        if value == {}:  # an empty mapping is kept as a fresh {}
            assert _follow(tree, key) == {}
        else:
            assert not _holds_dict(value)
            assert _follow(tree, key) is value


# --- (c) json_safe output is always strict JSON -------------------------------------

_ANY_CHARS = st.one_of(st.characters(), st.characters(categories=("Cs",)))
ANY_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(),
    st.text(_ANY_CHARS, max_size=8),
    st.binary(max_size=8),
    st.dates(),
    st.datetimes(timezones=st.sampled_from([None, UTC])),
    st.times(),
    st.complex_numbers(),
    st.frozensets(st.integers(), max_size=3),
)
ANY_KEYS = st.one_of(
    st.text(_ANY_CHARS, max_size=4),
    st.integers(),
    st.none(),
    st.floats(),
    st.booleans(),
)
ANY_VALUES = st.recursive(
    ANY_SCALARS,
    lambda children: st.one_of(
        st.lists(children, max_size=4),
        st.tuples(children, children),
        st.sets(st.one_of(st.integers(), st.text(max_size=3)), max_size=4),
        st.dictionaries(ANY_KEYS, children, max_size=4),
    ),
    max_leaves=20,
)


@SETTINGS
@given(ANY_VALUES)
def test_json_safe_output_is_strict_canonical_json(value):
    safe = json_safe(value)
    json.dumps(safe, allow_nan=False).encode("utf-8")
    canonical_bytes({"v": safe})
    assert json_safe(safe) == safe
