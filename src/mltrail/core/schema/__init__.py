"""Published JSON Schemas: ``entry.json`` (the envelope) and one ``<kind>.json`` per kind."""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

from mltrail.core.schema.subset import SubsetValidator

__all__ = ["KNOWN_KINDS", "envelope_validator", "kind_validator", "load_schema"]

# The schemas ship as package data beside this file (read with pathlib rather
# than importlib.resources, which costs ~10 ms to import on every run).
_HERE = Path(__file__).parent

KNOWN_KINDS: frozenset[str] = frozenset(
    p.name.removesuffix(".json")
    for p in _HERE.iterdir()
    if p.name.endswith(".json") and p.name != "entry.json"
)


@cache
def load_schema(name: str) -> dict[str, Any]:
    """Return the parsed schema ``<name>.json`` shipped with mltrail."""
    text = (_HERE / f"{name}.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)
    return schema


@cache
def envelope_validator() -> SubsetValidator:
    """Validator of the entry envelope."""
    return SubsetValidator(load_schema("entry"))


@cache
def kind_validator(kind: str) -> SubsetValidator | None:
    """Validator of one kind's body, or None for a kind this mltrail does not know."""
    if kind not in KNOWN_KINDS:
        return None
    return SubsetValidator(load_schema(kind))
