"""Properties of mltrail.core.merkle against a naive RFC 9162 reference."""

import hashlib

from hypothesis import given, settings
from hypothesis import strategies as st

from mltrail.core.merkle import (
    CompactRange,
    compute_root,
    consistency_proof,
    inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from mltrail.errors import ProofError

# --- RFC 9162 section 2.1, written as the RFC states it, over leaf hashes.


def _node(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def _split(n):
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def ref_mth(d):
    if len(d) <= 1:
        return d[0] if d else hashlib.sha256(b"").digest()
    k = _split(len(d))
    return _node(ref_mth(d[:k]), ref_mth(d[k:]))


def ref_path(m, d):
    if len(d) == 1:
        return []
    k = _split(len(d))
    if m < k:
        return [*ref_path(m, d[:k]), ref_mth(d[k:])]
    return [*ref_path(m - k, d[k:]), ref_mth(d[:k])]


def ref_subproof(m, d, b):
    if m == len(d):
        return [] if b else [ref_mth(d)]
    k = _split(len(d))
    if m <= k:
        return [*ref_subproof(m, d[:k], b), ref_mth(d[k:])]
    return [*ref_subproof(m - k, d[k:], False), ref_mth(d[:k])]


# --- a tree whose every perfect node is stored, as the storage layer does.

MAX = 2048
LEAVES = [hashlib.sha256(b"\x00" + i.to_bytes(4, "big")).digest() for i in range(MAX)]


def _store():
    compact, nodes = CompactRange(), {}
    for leaf in LEAVES:
        nodes.update(((lv, ix), h) for lv, ix, h in compact.append(leaf))
    return nodes


NODES = _store()


def reader(size):
    """A node reader that only hands out perfect nodes inside ``[0, size)``."""

    def node(level, index):
        assert (index + 1) << level <= size, f"node ({level}, {index}) beyond {size}"
        return NODES[level, index]

    return node


def root(size):
    return compute_root(LEAVES[:size])


def test_roots_match_reference_for_every_size_up_to_64():
    compact = CompactRange()
    assert compact.root() == ref_mth([])
    for size in range(1, 65):
        compact.append(LEAVES[size - 1])
        want = ref_mth(LEAVES[:size])
        assert compute_root(LEAVES[:size]) == want
        assert compact.root() == want


@given(st.lists(st.binary(min_size=32, max_size=32), max_size=300))
@settings(max_examples=60, deadline=None)
def test_roots_match_reference_for_any_leaves(leaves):
    compact = CompactRange()
    for leaf in leaves:
        compact.append(leaf)
    assert compute_root(leaves) == compact.root() == ref_mth(leaves)


def test_inclusion_proofs_match_reference_exhaustively():
    for size in range(1, 65):
        want_root = ref_mth(LEAVES[:size])
        for index in range(size):
            proof = inclusion_proof(index, size, reader(size))
            assert proof == ref_path(index, LEAVES[:size])
            verify_inclusion(index, size, LEAVES[index], proof, want_root)


def test_consistency_proofs_match_reference_exhaustively():
    for size2 in range(1, 65):
        root2 = ref_mth(LEAVES[:size2])
        for size1 in range(1, size2 + 1):
            proof = consistency_proof(size1, size2, reader(size2))
            assert proof == ref_subproof(size1, LEAVES[:size2], True)
            verify_consistency(size1, size2, ref_mth(LEAVES[:size1]), root2, proof)


@st.composite
def index_and_size(draw):
    size = draw(st.integers(1, MAX))
    return draw(st.integers(0, size - 1)), size


@st.composite
def two_sizes(draw):
    size2 = draw(st.integers(1, MAX))
    return draw(st.integers(1, size2)), size2


@given(index_and_size())
@settings(max_examples=300, deadline=None)
def test_large_inclusion_proofs_match_reference(args):
    index, size = args
    proof = inclusion_proof(index, size, reader(size))
    assert proof == ref_path(index, LEAVES[:size])
    verify_inclusion(index, size, LEAVES[index], proof, root(size))


@given(two_sizes())
@settings(max_examples=300, deadline=None)
def test_large_consistency_proofs_match_reference(args):
    size1, size2 = args
    proof = consistency_proof(size1, size2, reader(size2))
    assert proof == ref_subproof(size1, LEAVES[:size2], True)
    verify_consistency(size1, size2, root(size1), root(size2), proof)


# --- any alteration of a valid proof must fail.


@st.composite
def altered_hashes(draw, proof):
    """A proof list that differs from ``proof`` (bit flip, drop, add, insert)."""
    kinds = ["append", "insert"] + (["flip", "drop"] if proof else [])
    kind = draw(st.sampled_from(kinds))
    altered = list(proof)
    extra = draw(st.binary(min_size=32, max_size=32))
    at = draw(st.integers(0, max(len(proof) - 1, 0)))
    if kind == "flip":
        bit = draw(st.integers(0, 255))
        flipped = bytearray(altered[at])
        flipped[bit // 8] ^= 1 << (bit % 8)
        altered[at] = bytes(flipped)
    elif kind == "drop":
        del altered[at]
    elif kind == "append":
        altered.append(extra)
    else:
        altered.insert(at, extra)
    return altered


def _other_than(value, low=None, high=None):
    """Something other than ``value``: an int in [low, high], or 32 bytes.

    Gives ``value`` itself only when the range holds nothing else.
    """
    if isinstance(value, bytes):
        return st.binary(min_size=32, max_size=32).filter(lambda b: b != value)
    if low == high:
        return st.just(value)
    return st.integers(low, high - 1).map(lambda i: i + (i >= value))


def _fails(check, *args):
    try:
        check(*args)
    except ProofError:
        return True
    return False


@given(st.data(), index_and_size())
@settings(max_examples=300, deadline=None)
def test_altered_inclusion_proofs_fail(data, args):
    index, size = args
    proof = inclusion_proof(index, size, reader(size))
    leaf, good_root = LEAVES[index], root(size)
    bad_proof = data.draw(altered_hashes(proof))
    assert _fails(verify_inclusion, index, size, leaf, bad_proof, good_root)
    other = data.draw(_other_than(index, 0, MAX))
    assert _fails(verify_inclusion, other, size, leaf, proof, good_root)
    other_leaf = LEAVES[other] if other < MAX else hashlib.sha256(leaf).digest()
    assert _fails(verify_inclusion, index, size, other_leaf, proof, good_root)
    new_size = data.draw(_other_than(size, index + 1, MAX))
    if new_size != size:
        # The proof alone does not bind the size (see the unit tests), so
        # check against the real root of the other size.
        assert _fails(verify_inclusion, index, new_size, leaf, proof, root(new_size))
    bad_root = data.draw(_other_than(good_root))
    assert _fails(verify_inclusion, index, size, leaf, proof, bad_root)


@given(st.data(), two_sizes())
@settings(max_examples=300, deadline=None)
def test_altered_consistency_proofs_fail(data, args):
    size1, size2 = args
    proof = consistency_proof(size1, size2, reader(size2))
    root1, root2 = root(size1), root(size2)
    bad_proof = data.draw(altered_hashes(proof))
    assert _fails(verify_consistency, size1, size2, root1, root2, bad_proof)
    new1 = data.draw(_other_than(size1, 1, size2))
    if new1 != size1:
        assert _fails(verify_consistency, new1, size2, root(new1), root2, proof)
    new2 = data.draw(_other_than(size2, size1, MAX))
    if new2 != size2:
        assert _fails(verify_consistency, size1, new2, root1, root(new2), proof)
    bad_root1 = data.draw(_other_than(root1))
    assert _fails(verify_consistency, size1, size2, bad_root1, root2, proof)
    bad_root2 = data.draw(_other_than(root2))
    assert _fails(verify_consistency, size1, size2, root1, bad_root2, proof)


# --- the standalone example's consistency check agrees with this one.


def _example():
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[2] / "examples" / "verify_bundle.py"
    spec = importlib.util.spec_from_file_location("verify_bundle_example", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


EXAMPLE = _example()


def test_the_examples_consistency_check_accepts_every_valid_proof():
    for size2 in range(1, 65):
        root2 = root(size2)
        for size1 in range(1, size2 + 1):
            proof = consistency_proof(size1, size2, reader(size2))
            assert EXAMPLE.consistent(size1, size2, root(size1), root2, proof)


@given(st.data(), two_sizes())
@settings(max_examples=300, deadline=None)
def test_the_examples_consistency_check_agrees_on_any_proof(data, args):
    """Valid, altered, or a valid proof with other sizes or roots: the example
    (examples/verify_bundle.py, ``--trust-checkpoint``) accepts exactly what
    :func:`verify_consistency` accepts."""
    size1, size2 = args
    proof = consistency_proof(size1, size2, reader(size2))
    root1, root2 = root(size1), root(size2)
    candidates = [
        (size1, size2, root1, root2, proof),
        (size1, size2, root1, root2, data.draw(altered_hashes(proof))),
        (size1, size2, data.draw(_other_than(root1)), root2, proof),
        (size1, size2, root1, data.draw(_other_than(root2)), proof),
    ]
    new1 = data.draw(_other_than(size1, 1, size2))
    candidates.append((new1, size2, root(new1), root2, proof))
    new2 = data.draw(_other_than(size2, size1, MAX))
    candidates.append((size1, new2, root1, root(new2), proof))
    for args_ in candidates:
        assert EXAMPLE.consistent(*args_) == (not _fails(verify_consistency, *args_))
