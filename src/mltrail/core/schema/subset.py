"""A validator for the subset of JSON Schema 2020-12 that mltrail's schemas use.

Importing ``jsonschema`` costs about 100 ms, more than everything else a
``mltrail run`` does, and validating with it costs tens of microseconds per entry.
The published schemas use a small vocabulary, so they are checked here with the
same meaning (tests compare this validator with ``jsonschema`` on generated
bodies, and fail if a schema uses a keyword outside the subset).

Supported: ``type``, ``enum``, ``const``, ``minimum``, ``minLength``,
``maxLength``, ``pattern``, ``required``, ``properties``, ``additionalProperties``,
``items``, ``oneOf``, ``$ref`` to ``#/$defs/...``; ``$schema``, ``$id``, ``$defs``,
``title`` and ``description`` are annotations.
"""

from __future__ import annotations

import re
from functools import cache
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable

    _Check = Callable[[dict[str, Any], Any, str], str | None]

__all__ = ["SUPPORTED_KEYWORDS", "SubsetValidator"]

_ANNOTATIONS = frozenset({"$schema", "$id", "$defs", "title", "description"})
SUPPORTED_KEYWORDS = _ANNOTATIONS | {
    "type",
    "enum",
    "const",
    "minimum",
    "minLength",
    "maxLength",
    "pattern",
    "required",
    "properties",
    "additionalProperties",
    "items",
    "oneOf",
    "$ref",
}


def _is_integer(value: Any) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, int) or (isinstance(value, float) and value.is_integer())


_TYPES = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "integer": _is_integer,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
}


def _json_equal(a: Any, b: Any) -> bool:
    """Equality as JSON Schema means it: 1 == 1.0, but true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return type(a) is type(b) and a == b
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_json_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(map(_json_equal, a, b))
    if isinstance(a, int | float) and isinstance(b, int | float):
        return a == b
    return type(a) is type(b) and a == b


@cache
def _regex(pattern: str) -> re.Pattern[str]:
    return re.compile(pattern)


class SubsetValidator:
    """Validate instances against one schema of the supported subset.

    Raises:
        ValueError: at construction, when the schema uses an unsupported keyword.
    """

    def __init__(self, schema: dict[str, Any]) -> None:
        self.schema = schema
        self._check_vocabulary(schema)
        self._plans: dict[int, tuple[dict[str, Any], tuple[_Check, ...]]] = {}
        """id of a schema node -> (the node, the checks its keywords call for)."""

    def _check_vocabulary(self, node: Any) -> None:
        if not isinstance(node, dict):
            return
        unknown = set(node) - SUPPORTED_KEYWORDS
        if unknown:
            raise ValueError(f"schema keywords outside the subset: {sorted(unknown)}")
        for key in ("properties", "$defs"):
            for sub in node.get(key, {}).values():
                self._check_vocabulary(sub)
        for key in ("items", "additionalProperties"):
            self._check_vocabulary(node.get(key))
        for sub in node.get("oneOf", []):
            self._check_vocabulary(sub)

    def is_valid(self, instance: Any) -> bool:
        """Whether ``instance`` matches the schema."""
        return self.first_error(instance) is None

    def first_error(self, instance: Any) -> str | None:
        """A message for the first mismatch found (``path: problem``), or None."""
        return self._check(self.schema, instance, "")

    def _resolve(self, ref: str) -> dict[str, Any]:
        prefix = "#/$defs/"
        if not ref.startswith(prefix):
            raise ValueError(f"only local #/$defs/ references are supported: {ref}")
        found: dict[str, Any] = self.schema["$defs"][ref[len(prefix) :]]
        return found

    def _check(self, schema: Any, value: Any, path: str) -> str | None:
        if schema is True:
            return None
        if schema is False:
            return f"{path or '(top level)'}: no value is allowed here"
        plan = self._plans.get(id(schema))
        checks = (
            plan[1] if plan is not None and plan[0] is schema else self._plan(schema)
        )
        for check in checks:
            problem = check(schema, value, path)
            if problem is not None:
                return problem
        return None

    def _plan(self, schema: dict[str, Any]) -> tuple[_Check, ...]:
        """The checks whose keywords ``schema`` holds, in the order they run (a
        check whose keywords are all absent finds nothing: it is left out)."""
        checks = tuple(
            check
            for check, keywords in (
                (self._check_ref, ("$ref",)),
                (_check_type, ("type",)),
                (_check_values, ("const", "enum", "minimum")),
                (_check_string, ("minLength", "maxLength", "pattern")),
                (
                    self._check_object,
                    ("required", "properties", "additionalProperties"),
                ),
                (self._check_array, ("items",)),
                (self._check_one_of, ("oneOf",)),
            )
            if any(k in schema for k in keywords)
        )
        self._plans[id(schema)] = (schema, checks)
        return checks

    def _check_ref(self, schema: dict[str, Any], value: Any, path: str) -> str | None:
        ref = schema.get("$ref")
        return None if ref is None else self._check(self._resolve(ref), value, path)

    def _check_object(
        self, schema: dict[str, Any], value: Any, path: str
    ) -> str | None:
        if not isinstance(value, dict):
            return None
        for name in schema.get("required", ()):
            if name not in value:
                return f"{path or '(top level)'}: {name!r} is a required property"
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            sub = properties.get(key, extra)
            problem = self._check(sub, item, f"{path}/{key}" if path else key)
            if problem is not None:
                return problem
        return None

    def _check_array(self, schema: dict[str, Any], value: Any, path: str) -> str | None:
        items = schema.get("items")
        if items is None or not isinstance(value, list):
            return None
        for index, item in enumerate(value):
            problem = self._check(
                items, item, f"{path}/{index}" if path else str(index)
            )
            if problem is not None:
                return problem
        return None

    def _check_one_of(
        self, schema: dict[str, Any], value: Any, path: str
    ) -> str | None:
        options = schema.get("oneOf")
        if options is None:
            return None
        matches = sum(self._check(o, value, path) is None for o in options)
        if matches == 1:
            return None
        return (
            f"{path or '(top level)'}: must match exactly one of {len(options)} forms"
        )


def _check_type(schema: dict[str, Any], value: Any, path: str) -> str | None:
    wanted = schema.get("type")
    if wanted is None:
        return None
    if isinstance(wanted, str):
        if _TYPES[wanted](value):  # one type, the common case: no list made
            return None
        names = [wanted]
    else:
        names = wanted
        if any(_TYPES[name](value) for name in names):
            return None
    kinds = ", ".join(repr(name) for name in names)
    return f"{path or '(top level)'}: {value!r:.60} is not of type {kinds}"


def _check_values(schema: dict[str, Any], value: Any, path: str) -> str | None:
    where = path or "(top level)"
    if "const" in schema and not _json_equal(schema["const"], value):
        return f"{where}: {schema['const']!r} was expected"
    if "enum" in schema and not any(_json_equal(e, value) for e in schema["enum"]):
        return f"{where}: {value!r:.60} is not one of {schema['enum']!r}"
    minimum = schema.get("minimum")
    number = isinstance(value, int | float) and not isinstance(value, bool)
    if minimum is not None and number and value < minimum:
        return f"{where}: {value!r} is less than the minimum of {minimum}"
    return None


def _check_string(schema: dict[str, Any], value: Any, path: str) -> str | None:
    if not isinstance(value, str):
        return None
    where = path or "(top level)"
    if "minLength" in schema and len(value) < schema["minLength"]:
        return f"{where}: {value!r:.60} is too short"
    if "maxLength" in schema and len(value) > schema["maxLength"]:
        return f"{where}: {value!r:.60} is too long"
    pattern = schema.get("pattern")
    if pattern is not None and _regex(pattern).search(value) is None:
        return f"{where}: {value!r:.60} does not match {pattern!r}"
    return None
