"""Model fingerprints and delta summaries: canonical lines, ids, strict parsing."""

import hashlib

import pytest

from mltrail.core.merkle import compute_root, hash_leaf
from mltrail.core.model import (
    TensorEntry,
    compute_fingerprint,
    parse_fingerprint,
)
from mltrail.core.model_delta import (
    TensorDelta,
    compute_delta_summary,
    compute_delta_table,
    pair_tensors,
)
from mltrail.errors import InputError, SchemaError


def h(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


A = TensorEntry("layer.1.weight", "F32", (2, 3), h(b"a"), 24)
B = TensorEntry("layer.0.weight", "BF16", (4,), h(b"b"), 8)
C = TensorEntry("embed", "I8", (5,), h(b"c"), 5)


def test_lines_are_canonical_sorted_and_the_id_is_their_merkle_root():
    fp = compute_fingerprint([A, B, C])
    lines = fp.data.decode().splitlines()
    assert [t.name for t in fp.tensors] == ["embed", "layer.0.weight", "layer.1.weight"]
    assert lines[0] == (
        f'{{"dtype":"I8","name":"embed","sha256":"{h(b"c")}","shape":[5],"size":5}}'
    )
    leaves = [hash_leaf(line.encode()) for line in lines]
    assert fp.model_id == compute_root(leaves).hex()
    assert fp.parameters == 6 + 4 + 5
    assert fp.total_bytes == 24 + 8 + 5
    assert fp.dtypes() == {"F32": 6, "I8": 5, "BF16": 4}


def test_the_id_does_not_depend_on_order_but_on_every_field():
    base = compute_fingerprint([A, B, C]).model_id
    assert compute_fingerprint([C, A, B]).model_id == base
    changed = [
        TensorEntry("layer.1.weight", "I32", (2, 3), h(b"a"), 24),  # dtype
        TensorEntry("layer.1.weight", "F32", (3, 2), h(b"a"), 24),  # shape
        TensorEntry("layer.1.weight", "F32", (2, 3), h(b"x"), 24),  # bytes
        TensorEntry("layer.1.wEight", "F32", (2, 3), h(b"a"), 24),  # name
    ]
    for other in changed:
        assert compute_fingerprint([other, B, C]).model_id != base


def test_an_empty_checkpoint_has_the_empty_root():
    assert compute_fingerprint([]).model_id == h(b"")


@pytest.mark.parametrize(
    "args",
    [
        ("", "F32", (1,), "a" * 64, 4),
        ("w", "f32", (1,), "a" * 64, 4),
        ("w", "F32", (-1,), "a" * 64, 4),
        ("w", "F32", [1], "a" * 64, 4),
        ("w", "F32", (1,), "A" * 64, 4),
        ("w", "F32", (1,), "a" * 64, True),
        ("w", "F32", (2,), "a" * 64, 4),  # 2 floats are 8 bytes
        ("w", "BF16", (3,), "a" * 64, 3),
    ],
)
def test_malformed_tensor_entries_are_refused(args):
    with pytest.raises(SchemaError):
        TensorEntry(*args)


def test_an_unknown_dtype_is_fingerprinted_without_a_size_check():
    entry = TensorEntry("w", "F4_E2M1", (3,), "a" * 64, 2)
    assert parse_fingerprint(compute_fingerprint([entry]).data).tensors == (entry,)


def test_duplicate_names_are_refused():
    with pytest.raises(SchemaError, match="twice"):
        compute_fingerprint([A, A])


def test_parse_roundtrips_and_is_strict():
    fp = compute_fingerprint([A, B, C])
    assert parse_fingerprint(fp.data) == fp
    lines = fp.data.split(b"\n")
    for bad in (
        fp.data[:-1],  # no final newline
        lines[1] + b"\n" + lines[0] + b"\n" + lines[2] + b"\n",  # unsorted
        fp.data.replace(b'"size":5', b'"size": 5'),  # not canonical
        fp.data.replace(b'"size":5}', b'"size":5,"x":1}'),  # extra member
        b"[]\n",
        b"{nope\n",
    ):
        with pytest.raises(SchemaError):
            parse_fingerprint(bad)


def _fp(*entries):
    return compute_fingerprint(entries)


def test_pairing_sorts_tensors_into_same_differ_added_removed_reshaped():
    base = _fp(A, B, C)
    tuned = _fp(
        TensorEntry("layer.1.weight", "F32", (2, 3), h(b"z"), 24),
        B,
        TensorEntry("embed", "I8", (6,), h(b"c"), 6),
        TensorEntry("head", "F32", (1,), h(b"h"), 4),
    )
    pairing = pair_tensors(base, tuned)
    assert pairing.same == ("layer.0.weight",)
    assert pairing.differ == ("layer.1.weight",)
    assert pairing.reshaped == ("embed",)
    assert pairing.added == ("head",)
    assert pairing.removed == ()


def test_pairing_refuses_different_architectures():
    other = _fp(TensorEntry("x", "F32", (1,), h(b"x"), 4))
    with pytest.raises(InputError, match="architecture"):
        pair_tensors(_fp(A, B, C), other)
    with pytest.raises(InputError):
        pair_tensors(_fp(), other)


def test_summary_counts_shares_and_ranks_by_relative_change():
    rows = [
        TensorDelta("a", "changed", 10, l2=1.0, relative=0.1, max_abs=0.5),
        TensorDelta("b", "changed", 30, l2=0.5, relative=0.9, max_abs=0.2),
        TensorDelta("c", "unchanged", 60, 0.0, 0.0, 0.0),
        TensorDelta("d", "added", 7),
        TensorDelta("e", "reshaped", 3),
    ]
    summary = compute_delta_summary(rows, top=1)
    assert summary["tensors_changed"] == 2
    assert summary["tensors_unchanged"] == 1
    assert summary["parameters_changed"] == 40
    assert summary["share_changed"] == pytest.approx(0.4)
    assert summary["added"] == ["d"]
    assert summary["reshaped"] == ["e"]
    assert summary["removed"] == []
    assert summary["top"] == [{"name": "b", "l2": 0.5, "relative": 0.9, "max_abs": 0.2}]
    table = compute_delta_table(reversed(rows)).decode().splitlines()
    assert [line.split('"name":"')[1][0] for line in table] == list("abcde")
    assert table[3] == '{"name":"d","parameters":7,"status":"added"}'
