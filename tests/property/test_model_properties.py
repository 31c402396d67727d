"""Properties of the safetensors header parser and of model fingerprints."""

import contextlib
import json
import struct

from hypothesis import given, settings
from hypothesis import strategies as st

from mltrail.capture.model.safetensors_io import parse_header
from mltrail.core.model import (
    DTYPE_SIZES,
    TensorEntry,
    compute_fingerprint,
    parse_fingerprint,
)
from mltrail.errors import InputError


@settings(max_examples=300)
@given(st.binary(max_size=300), st.integers(min_value=0, max_value=1000), st.booleans())
def test_arbitrary_bytes_parse_or_raise_input_error(data, extra, framed):
    if framed:  # a right length in front of arbitrary bytes: reach the JSON checks
        data = struct.pack("<Q", len(data)) + data
    with contextlib.suppress(InputError):
        parse_header(data, len(data) + extra)


names = st.text(min_size=1, max_size=12).filter(
    lambda s: not any(0xD800 <= ord(c) <= 0xDFFF for c in s)
)
dtypes = st.sampled_from(sorted(DTYPE_SIZES))
shapes = st.lists(st.integers(min_value=0, max_value=4), max_size=3)


@st.composite
def headers(draw):
    """A valid header, then possibly one field broken."""
    tensors = draw(st.dictionaries(names, st.tuples(dtypes, shapes), max_size=5))
    header, offset = {}, 0
    for name, (dtype, shape) in tensors.items():
        size = DTYPE_SIZES[dtype]
        for dim in shape:
            size *= dim
        header[name] = {
            "dtype": dtype,
            "shape": shape,
            "data_offsets": [offset, offset + size],
        }
        offset += size
    return header, offset


@settings(max_examples=200)
@given(headers(), st.integers(min_value=-3, max_value=3), st.data())
def test_valid_headers_parse_and_broken_ones_raise_input_error(made, slack, data):
    header, size = made
    text = json.dumps(header).encode()
    if header and data.draw(st.booleans()):
        name = data.draw(st.sampled_from(sorted(header)))
        field = data.draw(st.sampled_from(["dtype", "shape", "data_offsets"]))
        header[name][field] = data.draw(
            st.one_of(
                st.none(),
                st.integers(-2, 2),
                st.text(max_size=3),
                st.lists(st.integers(-1, 9)),
            )
        )
        text = json.dumps(header).encode()
    prefix = struct.pack("<Q", len(text)) + text
    try:
        spans, _ = parse_header(prefix, len(prefix) + size + slack)
    except InputError:
        return
    assert slack == 0
    assert sum(s.size for s in spans) == size
    assert {s.name for s in spans} == set(header)


entries = st.builds(
    lambda name, dtype, shape, digest: TensorEntry(
        name, dtype, tuple(shape), digest.hex(), _size(dtype, shape)
    ),
    names,
    dtypes,
    shapes,
    st.binary(min_size=32, max_size=32),
)


def _size(dtype, shape):
    size = DTYPE_SIZES[dtype]
    for dim in shape:
        size *= dim
    return size


@given(st.lists(entries, max_size=8, unique_by=lambda e: e.name), st.randoms())
def test_fingerprints_roundtrip_and_ignore_order(tensors, rnd):
    fp = compute_fingerprint(tensors)
    assert parse_fingerprint(fp.data) == fp
    shuffled = list(tensors)
    rnd.shuffle(shuffled)
    assert compute_fingerprint(shuffled).model_id == fp.model_id
