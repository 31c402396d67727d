"""Bundles are untrusted input: verify-bundle never crashes, any edit of what is
proven fails, and the standalone example's RFC 8785 agrees with rfc8785."""

import base64
import importlib.util
import json
import math
from pathlib import Path

import rfc8785
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mltrail.core.bundle import BundlePolicy, BundleReport, verify_bundle_bytes
from mltrail.core.canonical import canonical_bytes

ROOT = Path(__file__).resolve().parents[2]
DATA = (ROOT / "examples" / "data" / "bundle.json").read_bytes()
BUNDLE = json.loads(DATA)


def _example():
    spec = importlib.util.spec_from_file_location(
        "verify_bundle_example", ROOT / "examples" / "verify_bundle.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = _example()

text = st.text(st.characters(blacklist_categories=("Cs",)))
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**53) + 1, 2**53 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | text,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(text, inner, max_size=4)
    ),
    max_leaves=20,
)


@given(json_values)
def test_the_examples_canonical_json_is_rfc8785(value):
    assert EXAMPLE.canonical(value).encode("utf-8") == rfc8785.dumps(value)


@given(st.floats(allow_nan=False, allow_infinity=False))
def test_the_examples_numbers_are_es6(value):
    assert math.isfinite(value)
    assert EXAMPLE.es6_number(value) == rfc8785.dumps(value).decode()


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_byte_edits_never_crash_and_never_pass(data):
    raw = bytearray(DATA)
    for _ in range(data.draw(st.integers(1, 4))):
        at = data.draw(st.integers(0, len(raw) - 1))
        op = data.draw(st.sampled_from(["flip", "delete", "insert"]))
        if op == "flip":
            raw[at] ^= 1 << data.draw(st.integers(0, 7))
        elif op == "delete":
            del raw[at]
        else:
            raw.insert(at, data.draw(st.integers(0, 255)))
    report = verify_bundle_bytes(bytes(raw), BundlePolicy())
    assert isinstance(report, BundleReport)
    if bytes(raw) != DATA and _same_json(bytes(raw)) is False:
        assert not report.ok or _only_unproven_parts_differ(bytes(raw))


def _same_json(raw):
    try:
        return json.loads(raw) == BUNDLE
    except ValueError:
        return False


def _only_unproven_parts_differ(raw):
    """Evidence of a checkpoint is checked only against the CAs and witnesses given."""
    try:
        other = json.loads(raw)
        return {k: v for k, v in other.items() if k != "evidence"} == {
            k: v for k, v in BUNDLE.items() if k != "evidence"
        }
    except (ValueError, AttributeError):
        return False


def _paths(value, prefix=()):
    yield prefix
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _paths(item, (*prefix, i))


PATHS = [p for p in _paths(BUNDLE) if p and p[0] != "evidence"]
replacement = st.one_of(
    st.none(), st.booleans(), st.integers(-3, 2**53 - 1), text, st.just([]), st.just({}),
    st.binary(max_size=40).map(lambda b: base64.b64encode(b).decode()),
)  # fmt: skip


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(PATHS), replacement)
def test_replacing_any_proven_value_fails_cleanly(path, value):
    bundle = json.loads(DATA)
    parent = bundle
    for key in path[:-1]:
        parent = parent[key]
    if parent[path[-1]] == value:
        return
    parent[path[-1]] = value
    report = verify_bundle_bytes(canonical_bytes(bundle), BundlePolicy())
    assert not report.ok, (path, value)
    assert report.errors


@settings(
    max_examples=60,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(path=st.sampled_from(PATHS), value=replacement)
def test_the_standalone_example_never_crashes(tmp_path, path, value):
    bundle = json.loads(DATA)
    parent = bundle
    for key in path[:-1]:
        parent = parent[key]
    if parent[path[-1]] == value:
        return
    parent[path[-1]] = value
    target = tmp_path / "bundle.json"
    target.write_bytes(canonical_bytes(bundle))
    code = EXAMPLE.main(["verify_bundle.py", str(target)])
    assert code == 1 or path[0] not in ("records", "checkpoint", "origin", "format")


ALL_PATHS = [p for p in _paths(BUNDLE) if p]
raw_json = st.one_of(
    st.text().map(json.dumps),  # unpaired surrogates too, as \ud800 escapes
    st.sampled_from(["1e400", "-1e400", "1e-400", "-0.0", "12345678901234567890123"]),
    replacement.map(json.dumps),
)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(ALL_PATHS), raw_json)
def test_any_json_text_anywhere_is_a_report_never_an_exception(path, text):
    """Text a JSON parser accepts but no canonical bundle holds (an unpaired
    surrogate, a number beyond a double) is a problem of the report."""
    bundle = json.loads(DATA)
    parent = bundle
    for key in path[:-1]:
        parent = parent[key]
    parent[path[-1]] = "\x00placeholder\x00"
    data = json.dumps(bundle).replace('"\\u0000placeholder\\u0000"', text).encode()
    report = verify_bundle_bytes(data, BundlePolicy())
    assert isinstance(report, BundleReport)
    if path[0] != "evidence" and json.loads(data) != BUNDLE:
        assert not report.ok, (path, text)
