"""Sealed segments are read from storage nobody here controls: whatever bytes a
manifest or segment file holds, reading them raises SealError or nothing else."""

from __future__ import annotations

import contextlib
import json

from hypothesis import given, settings
from hypothesis import strategies as st

from mltrail.core.seal import (
    MANIFEST_FILE,
    SealError,
    SealWalk,
    build_manifest,
    parse_manifest,
    parse_retention,
    parse_segment_name,
    segment_name,
)
from mltrail.errors import InputError

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=20,
)


@given(st.binary(max_size=300))
def test_any_bytes_are_a_manifest_or_a_seal_error(data):
    with contextlib.suppress(SealError):
        parse_manifest(data)


@given(
    st.dictionaries(
        st.sampled_from(
            [
                "format",
                "origin",
                "start",
                "end",
                "prev",
                "frontier",
                "files",
                "sealed_at",
                "retain_until",
            ]
        ),
        json_values,
    )
)
def test_any_json_object_is_a_manifest_or_a_seal_error(value):
    value.setdefault("format", "mltrail-seal/1")
    with contextlib.suppress(SealError):
        parse_manifest(json.dumps(value).encode())


@settings(max_examples=50)
@given(
    st.dictionaries(
        st.sampled_from(["records.jsonl", "checkpoint.txt", "evidence.json"]),
        st.binary(max_size=200),
    )
)
def test_a_walk_over_any_files_raises_only_seal_error(files):
    manifest = build_manifest(
        origin="example.org/p",
        start=0,
        end=1,
        prev=bytes(32),
        frontier=[],
        files=files,
        sealed_at="2026-01-01T00:00:00Z",
        retain_until=None,
    )
    with contextlib.suppress(SealError):
        SealWalk("example.org/p").accept(
            segment_name(0, 1), {**files, MANIFEST_FILE: manifest}
        )


@given(st.integers(0, 10**12 - 10**6 - 1), st.integers(1, 10**6))
def test_segment_names_round_trip(start, length):
    assert parse_segment_name(segment_name(start, start + length)) == (
        start,
        start + length,
    )


@given(st.text(max_size=12))
def test_retention_parses_or_says_why(text):
    try:
        retention = parse_retention(text)
    except InputError:
        return
    assert retention.months >= 6 or retention.days >= 183
