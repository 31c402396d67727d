"""The subset validator means what jsonschema means, on every shipped schema.

Instances are drawn from the schema itself (each property either from its own
subschema or from arbitrary JSON), so both valid and nearly-valid bodies are
common, and the two validators must agree on each.
"""

import jsonschema
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mltrail.core.schema import KNOWN_KINDS, load_schema
from mltrail.core.schema.subset import SubsetValidator

SCALARS = (
    st.none()
    | st.booleans()
    | st.integers(-(2**53), 2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.sampled_from(["", "a", "sha256:" + "ab" * 32, "ab" * 32, "git", "train"])
    | st.text(max_size=8)
)
JSON = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)


def _from_schema(schema, root, depth=0):
    """A strategy of values shaped by ``schema``, often but not always valid."""
    if depth > 4 or not isinstance(schema, dict):
        return JSON
    if "$ref" in schema:
        return _from_schema(
            root["$defs"][schema["$ref"].split("/")[-1]], root, depth + 1
        )
    options = [JSON]
    if "const" in schema:
        options.append(st.just(schema["const"]))
    if "enum" in schema:
        options.append(st.sampled_from(schema["enum"]))
    if "oneOf" in schema:
        options += [_from_schema(s, root, depth + 1) for s in schema["oneOf"]]
    if "pattern" in schema:
        options.append(st.from_regex(schema["pattern"], fullmatch=True))
    if "properties" in schema or "required" in schema:
        props = schema.get("properties", {})
        names = sorted(set(props) | set(schema.get("required", [])))
        options.append(
            st.fixed_dictionaries(
                {},
                optional={
                    n: _from_schema(props.get(n, True), root, depth + 1) for n in names
                },
            )
        )
    if "items" in schema:
        options.append(
            st.lists(_from_schema(schema["items"], root, depth + 1), max_size=3)
        )
    return st.one_of(options)


SCHEMAS = [*sorted(KNOWN_KINDS), "entry"]


@pytest.mark.parametrize("name", SCHEMAS)
def test_every_shipped_schema_is_in_the_subset(name):
    SubsetValidator(load_schema(name))


@pytest.mark.parametrize("name", SCHEMAS)
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_subset_validator_agrees_with_jsonschema(name, data):
    schema = load_schema(name)
    instance = data.draw(_from_schema(schema, schema))
    expected = jsonschema.Draft202012Validator(schema).is_valid(instance)
    got = SubsetValidator(schema).first_error(instance)
    assert (got is None) == expected, (instance, got)


@pytest.mark.parametrize(
    ("schema", "instance", "ok"),
    [
        ({"const": 1}, 1.0, True),
        ({"const": 1}, True, False),
        ({"enum": [False]}, 0, False),
        ({"type": "integer"}, 3.0, True),
        ({"type": "integer"}, True, False),
        ({"type": "number"}, False, False),
        ({"minimum": 0}, "x", True),
        ({"pattern": "^a"}, 5, True),
        ({"maxLength": 2}, "\U0001f600\U0001f600", True),
        ({"additionalProperties": False, "properties": {"a": True}}, {"b": 1}, False),
        ({"oneOf": [{"type": "integer"}, {"type": "number"}]}, 1, False),
    ],
)
def test_edge_cases_match_jsonschema(schema, instance, ok):
    assert jsonschema.Draft202012Validator(schema).is_valid(instance) is ok
    assert SubsetValidator(schema).is_valid(instance) is ok


def test_unsupported_keywords_are_refused():
    with pytest.raises(ValueError, match="patternProperties"):
        SubsetValidator({"properties": {"a": {"patternProperties": {}}}})
