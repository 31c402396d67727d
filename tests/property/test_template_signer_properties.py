"""Property tests: ``TemplateSigner`` writes exactly the bytes ``sign_entry`` does."""

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mltrail.core.canonical import canonical_bytes, canonical_object
from mltrail.core.entry import (
    Entry,
    TemplateSigner,
    compose_record_bytes,
    sign_entry,
)
from mltrail.testing import fixed_signer

SIGNER = fixed_signer()
# astral and special characters stress escaping and the UTF-16 key order
TEXT = st.text(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", '"', "\\", "\x7f", "\ue000", "\U0001f600"]),
    ),
    max_size=8,
)
# kind, time and run take a shortcut for printable ASCII: odd text checks it
KINDS = st.one_of(
    st.sampled_from(["note", "run.params", "run.metrics", "a.b_c9"]), TEXT
)
TIMES = st.one_of(
    st.sampled_from(["2026-01-01T00:00:00.000000Z", "2026-12-06T21:34:31.5Z"]), TEXT
)
RUNS = st.one_of(st.none(), st.text("abc.:_-019", min_size=1, max_size=12), TEXT)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(TEXT, inner, max_size=4)
    ),
    max_leaves=12,
)
OBJECTS = st.dictionaries(TEXT, VALUES, max_size=5)


@settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
@given(actor=OBJECTS, kind=KINDS, time=TIMES, body=OBJECTS, run=RUNS)
def test_template_bytes_are_sign_entry_bytes(actor, kind, time, body, run):
    made = TemplateSigner(SIGNER, actor).sign(kind, time, body, run)
    expected = sign_entry(Entry(kind, time, actor, body, run), SIGNER)
    assert made == expected
    assert made.signed_bytes == expected.signed_bytes


@given(
    seq=st.integers(min_value=0, max_value=2**53 - 1),
    prev=st.one_of(st.text("0123456789abcdef", min_size=64, max_size=64), TEXT),
    entry=OBJECTS,
)
def test_record_bytes_are_the_canonical_object(seq, prev, entry):
    entry_bytes = canonical_bytes(entry)
    members = {
        "entry": entry_bytes,
        "prev": canonical_bytes(prev),
        "seq": canonical_bytes(seq),
    }
    assert compose_record_bytes(seq, prev, entry_bytes) == canonical_object(members)
