"""Properties of the run diff: a run equals itself, A->B mirrors B->A, and the
manifest diff is the set computation over (path, sha256, size)."""

from __future__ import annotations

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from mltrail.core.diff import (
    RunFacts,
    diff_params,
    diff_runs,
    diff_values,
    same_value,
)
from mltrail.core.diff_data import diff_manifests
from mltrail.core.manifest import FileEntry, compute_manifest

KEYS = st.text(alphabet="abcdefgh.", min_size=1, max_size=6)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-1000, 1000),
    st.floats(allow_nan=False, allow_infinity=False, width=32),
    st.text(max_size=5),
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(KEYS, inner, max_size=3)
    ),
    max_leaves=6,
)
BODIES = st.dictionaries(KEYS, VALUES, max_size=6)
PARAMS = st.dictionaries(KEYS, st.tuples(VALUES, st.sampled_from(["argv", "cfg.yaml"])))
NAMES = st.text(alphabet="abc/xyz_.-", min_size=1, max_size=8).filter(
    lambda p: (
        not p.startswith("/")
        and all(part not in ("", ".", "..") for part in p.split("/"))
    )
)
FILES = st.dictionaries(
    NAMES, st.tuples(st.integers(0, 3), st.integers(0, 50)), max_size=12
)


def entries(files: dict[str, tuple[int, int]]) -> list[FileEntry]:
    return [
        FileEntry(path, size, hashlib.sha256(bytes([content])).hexdigest())
        for path, (content, size) in files.items()
    ]


def mirrored(kind: str) -> str:
    return {"added": "removed", "removed": "added"}.get(kind, kind)


@settings(max_examples=200)
@given(BODIES)
def test_a_body_against_itself_has_no_differences(body):
    assert diff_values(body, body) == ()
    facts = RunFacts(
        "a", run=body, code=body, environment=body, hardware=body, finetune=body
    )
    assert diff_runs(facts, facts).is_empty


@settings(max_examples=200)
@given(BODIES, BODIES)
def test_diff_values_mirrors(a, b):
    forward = {c.key: c for c in diff_values(a, b)}
    backward = {c.key: c for c in diff_values(b, a)}
    assert forward.keys() == backward.keys()
    for key, change in forward.items():
        assert backward[key].kind == mirrored(change.kind)
        assert (backward[key].old, backward[key].new) == (change.new, change.old)


@settings(max_examples=200)
@given(PARAMS, PARAMS)
def test_params_added_and_removed_mirror(a, b):
    forward = {c.key: c.kind for c in diff_params(a, b)}
    backward = {c.key: c.kind for c in diff_params(b, a)}
    assert {k: mirrored(v) for k, v in forward.items()} == backward
    assert {k for k, v in forward.items() if v == "added"} == b.keys() - a.keys()
    assert {k for k, v in forward.items() if v == "removed"} == a.keys() - b.keys()


@settings(max_examples=200)
@given(FILES, FILES)
def test_manifest_diff_is_the_set_computation(a, b):
    old, new = compute_manifest(entries(a)), compute_manifest(entries(b))
    result = diff_manifests(old.data, new.data)
    state_a = {e.path: (e.sha256, e.size) for e in old.entries}
    state_b = {e.path: (e.sha256, e.size) for e in new.entries}
    by_kind = {
        kind: {c.path for c in result.changes if c.kind == kind}
        for kind in ("added", "removed", "changed")
    }
    assert by_kind["added"] == state_b.keys() - state_a.keys()
    assert by_kind["removed"] == state_a.keys() - state_b.keys()
    assert by_kind["changed"] == {
        p for p in state_a.keys() & state_b.keys() if state_a[p] != state_b[p]
    }
    assert result.unchanged == sum(state_a[p] == state_b.get(p) for p in state_a)
    back = diff_manifests(new.data, old.data)
    assert [(c.path, mirrored(c.kind)) for c in result.changes] == [
        (c.path, c.kind) for c in back.changes
    ]
    assert diff_manifests(old.data, old.data).changes == ()


MARKERS = st.builds(
    lambda commit, salt: f"<redacted hmac-sha256:{commit} salt:{salt} key:{'c' * 16}>",
    st.text(alphabet="0123456789abcdef", min_size=64, max_size=64),
    st.text(alphabet="0123456789abcdef", min_size=32, max_size=32),
)
AROUND = st.lists(
    st.text(alphabet="ab:@/<>redact ", max_size=6), min_size=1, max_size=4
)


def _with_markers(pieces: list[str], markers: list[str]) -> str:
    out = pieces[0]
    for piece, marker in zip(pieces[1:], markers, strict=False):
        out += marker + piece
    return out


@settings(max_examples=300)
@given(AROUND, AROUND, st.lists(MARKERS, min_size=4, max_size=4),
       st.lists(MARKERS, min_size=4, max_size=4))  # fmt: skip
def test_text_with_secrets_is_the_same_exactly_when_the_text_around_them_is(
    a, b, marks_a, marks_b
):
    """Two texts holding redacted secrets compare by what lies around them
    (any two secrets compare equal, as whole values do)."""
    old, new = _with_markers(a, marks_a), _with_markers(b, marks_b)
    assert same_value(old, new) is (a == b)
