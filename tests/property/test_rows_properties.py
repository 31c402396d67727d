"""Row-digest blobs: any bytes decode or raise SchemaError; encode/decode round-trips;
a diff of a blob with itself is empty, and added/removed mirror when swapped."""

import contextlib
import zlib

from hypothesis import given
from hypothesis import strategies as st

from mltrail.core.rows import (
    ROWS_MAGIC,
    RowFile,
    decode_row_digests,
    diff_rows,
    encode_row_digests,
)
from mltrail.errors import SchemaError

digests = st.integers(1, 2**64 - 1)
rows = st.lists(st.tuples(st.integers(1, 2**32 - 1), st.sampled_from([1, 2, 3, 2**63])))
files = st.dictionaries(
    st.text(min_size=1, max_size=20),
    st.tuples(st.sampled_from(["line", "row"]), rows),
    max_size=4,
)


def _blob(found):
    return encode_row_digests([RowFile(p, u, r) for p, (u, r) in found.items()])


@given(st.binary(max_size=300))
def test_any_bytes_decode_or_raise_schema_error(data):
    for candidate in (data, zlib.compress(data), zlib.compress(ROWS_MAGIC + data)):
        with contextlib.suppress(SchemaError):
            decode_row_digests(candidate)


@given(files)
def test_round_trip(found):
    decoded = decode_row_digests(_blob(found))
    assert {f.path: (f.unit, f.rows) for f in decoded} == found


@given(files, files)
def test_diff_is_empty_with_itself_and_mirrors(a, b):
    assert diff_rows(_blob(a), _blob(a)).changes == ()
    forward, back = diff_rows(_blob(a), _blob(b)), diff_rows(_blob(b), _blob(a))
    assert forward.count("added") == back.count("removed")
    assert forward.count("changed") == back.count("changed")
    assert forward.unchanged == back.unchanged
    total_a = sum(len(r) for _, r in a.values())
    assert (
        forward.unchanged + forward.count("removed") + forward.count("changed")
        == total_a
    )
