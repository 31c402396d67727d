"""The published schemas in docs/schema/ are exact copies of the shipped ones.

The source of truth is src/mltrail/core/schema/*.json; docs/schema/ holds
byte-identical copies for readers, listed in docs/schema/README.md. Any drift fails.
"""

import json
from pathlib import Path

import jsonschema
import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE_DIR = ROOT / "src" / "mltrail" / "core" / "schema"
DOCS_DIR = ROOT / "docs" / "schema"
KINDS = sorted(SOURCE_DIR.glob("*.json"))
# Formats that are not entry kinds (the proof bundle): published beside them.
SOURCES = KINDS + sorted((SOURCE_DIR / "formats").glob("*.json"))


def test_there_are_schemas():
    assert (SOURCE_DIR / "entry.json") in SOURCES
    assert len(SOURCES) >= 2


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_docs_copy_is_identical(source):
    copy = DOCS_DIR / source.name
    source_name = source.relative_to(SOURCE_DIR)
    assert copy.is_file(), (
        f"docs/schema/{source.name} is missing: copy it from {source_name}"
    )
    assert copy.read_bytes() == source.read_bytes(), (
        f"docs/schema/{source.name} differs from {source}: copy it again"
    )


def test_docs_has_no_extra_schemas():
    extra = {p.name for p in DOCS_DIR.glob("*.json")} - {p.name for p in SOURCES}
    assert not extra, f"docs/schema/ holds schemas mltrail does not ship: {extra}"


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_docs_readme_lists_schema(source):
    readme = (DOCS_DIR / "README.md").read_text("utf-8")
    assert f"`{source.name}`" in readme


@pytest.mark.parametrize("source", SOURCES, ids=lambda p: p.name)
def test_schema_is_valid_draft_2020_12(source):
    schema = json.loads(source.read_text("utf-8"))
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


def test_format_lists_every_kind_once_with_its_schema():
    text = (ROOT / "docs" / "format.md").read_text("utf-8")
    kinds = [p.stem for p in KINDS if p.name != "entry.json"]
    rows = [line for line in text.splitlines() if line.startswith("| `")]
    listed = [r.split("`")[1] for r in rows if "](schema/" in r]
    assert sorted(listed) == sorted(kinds)
    for kind in kinds:
        row = next(r for r in rows if r.startswith(f"| `{kind}` |"))
        assert f"(schema/{kind}.json)" in row, row


def test_format_does_not_say_the_genesis_origin_is_unchecked():
    text = " ".join((ROOT / "docs" / "format.md").read_text("utf-8").split())
    assert "does not compare the genesis body's `origin`" not in text
    assert "compares the genesis body's `origin`" in text
