"""Unit tests for mltrail.core.merkle (RFC 6962 / RFC 9162 Merkle trees)."""

import dataclasses
import hashlib

import pytest

from mltrail.core.merkle import (
    EMPTY_ROOT,
    CompactRange,
    ConsistencyProof,
    InclusionProof,
    compute_root,
    consistency_proof,
    frontier_positions,
    hash_children,
    hash_leaf,
    inclusion_proof,
    range_root,
    root_from_inclusion_proof,
    verify_consistency,
    verify_inclusion,
)
from mltrail.errors import ProofError, SchemaError

# The eight leaves of the RFC 6962 reference tests (certificate-transparency-go,
# transparency-dev/merkle testonly) and their published roots for sizes 1..8.
LEAVES = [
    b"",
    b"\x00",
    b"\x10",
    b"\x20\x21",
    b"\x30\x31",
    b"\x40\x41\x42\x43",
    b"\x50\x51\x52\x53\x54\x55\x56\x57",
    b"\x60\x61\x62\x63\x64\x65\x66\x67\x68\x69\x6a\x6b\x6c\x6d\x6e\x6f",
]
ROOTS = [
    "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
    "fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125",
    "aeb6bcfe274b70a14fb067a5e5578264db0fa9b51af5e0ba159158f329e06e77",
    "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
    "4e3bbb1f7b478dcfe71fb631631519a3bca12c9aefca1612bfce4c13a86264d4",
    "76e67dadbcdf1e10e1b74ddc608abd2f98dfb16fbce75277b5232a127f2087ef",
    "ddb89be403809e325750d3d263cd78929c2942b7942a34b77e122c9594a74c8c",
    "5dc9da79a70659a9ad559cb701ded9a2ab9d823aad2f4960cfe370eff4604328",
]
# Published reference proofs over the same leaves: (index, size, proof).
INCLUSION_PROOFS = [
    (0, 1, []),
    (
        0,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        5,
        8,
        [
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (2, 3, ["fac54203e7cc696cf0dfcb42c92a1d9dbaf70ad9e621f4bd8d98662f00e3c125"]),
    (
        1,
        5,
        [
            "6e340b9cffb37a989ca544e6bb780a2c78901d3fb33738768511a30617afa01d",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
]
# (size1, size2, proof)
CONSISTENCY_PROOFS = [
    (1, 1, []),
    (
        1,
        8,
        [
            "96a296d224f285c67bee93c30f8a309157f0daa35dc5b87e410b78630a09cfc7",
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "6b47aaf29ee3c2af9af889bc1fb9254dabd31177f16232dd6aab035ca39bf6e4",
        ],
    ),
    (
        6,
        8,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "ca854ea128ed050b41b35ffc1b87b8eb2bde461e9e3b5596ece6b9d5975a0ae0",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
    (
        2,
        5,
        [
            "5f083f0a1a33ca076a95279832580db3e0ef4584bdff1f54c8a360f50de3031e",
            "bc1a0643b12e4d2d7c77918f44e0f4f79a838b6cf9ec5b5c283e1f4d88599e6b",
        ],
    ),
    (
        6,
        7,
        [
            "0ebc5d3437fbe2db158b9f126a1d118e308181031d0a949f8dededebc558ef6a",
            "b08693ec2e721597130641e8211e7eedccb4c26413963eee6c1e2ed16ffb1a5f",
            "d37ee418976dd95753c1c73862b9398fa2a2cf9b4ff0fdfe8b30cd95209614b7",
        ],
    ),
]

LEAF_HASHES = [hash_leaf(leaf) for leaf in LEAVES]


def _store(leaf_hashes):
    """All perfect nodes of a tree, as CompactRange.append reports them."""
    compact, nodes = CompactRange(), {}
    for leaf_hash in leaf_hashes:
        for level, index, node in compact.append(leaf_hash):
            nodes[level, index] = node
    return nodes


NODES = _store(LEAF_HASHES)


def _reader(nodes, size):
    """A node reader that refuses nodes outside the tree of ``size`` leaves."""

    def node(level, index):
        assert (index + 1) << level <= size, f"node ({level}, {index}) beyond {size}"
        return nodes[level, index]

    return node


def _h(hexes):
    return [bytes.fromhex(h) for h in hexes]


# ------------------------------------------------------------------- hashes


def test_empty_root_is_sha256_of_nothing():
    assert EMPTY_ROOT.hex() == (
        "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
    )
    assert compute_root([]) == EMPTY_ROOT
    assert CompactRange().root() == EMPTY_ROOT


def test_hash_leaf_and_children_are_domain_separated():
    assert hash_leaf(b"ab") == hashlib.sha256(b"\x00ab").digest()
    assert hash_children(b"a", b"b") == hashlib.sha256(b"\x01ab").digest()
    assert hash_leaf(b"\x01ab") != hash_children(b"a", b"b")


@pytest.mark.parametrize("size", range(1, 9))
def test_compute_root_matches_published_roots(size):
    assert compute_root(LEAF_HASHES[:size]).hex() == ROOTS[size - 1]


def test_compact_range_root_after_each_append():
    compact = CompactRange()
    for size, leaf_hash in enumerate(LEAF_HASHES, start=1):
        compact.append(leaf_hash)
        assert compact.size == size
        assert compact.root().hex() == ROOTS[size - 1]


# --------------------------------------------------------- frontier geometry


@pytest.mark.parametrize(
    ("size", "want"),
    [
        (0, []),
        (1, [(0, 0)]),
        (2, [(1, 0)]),
        (3, [(1, 0), (0, 2)]),
        (7, [(2, 0), (1, 2), (0, 6)]),
        (8, [(3, 0)]),
        (13, [(3, 0), (2, 2), (0, 12)]),
        (1 << 40, [(40, 0)]),
    ],
)
def test_frontier_positions(size, want):
    assert frontier_positions(size) == want


def test_frontier_positions_rejects_negative_size():
    with pytest.raises(ValueError, match="got -1"):
        frontier_positions(-1)


# ------------------------------------------------------------- CompactRange


def test_append_returns_every_completed_node():
    h = LEAF_HASHES
    h01, h23 = hash_children(h[0], h[1]), hash_children(h[2], h[3])
    compact = CompactRange()
    assert compact.append(h[0]) == [(0, 0, h[0])]
    assert compact.append(h[1]) == [(0, 1, h[1]), (1, 0, h01)]
    assert compact.append(h[2]) == [(0, 2, h[2])]
    assert compact.append(h[3]) == [
        (0, 3, h[3]),
        (1, 1, h23),
        (2, 0, hash_children(h01, h23)),
    ]
    assert compact.append(h[4]) == [(0, 4, h[4])]


def test_hashes_are_the_nodes_at_frontier_positions():
    compact = CompactRange()
    for size, leaf_hash in enumerate(LEAF_HASHES, start=1):
        compact.append(leaf_hash)
        want = tuple(NODES[pos] for pos in frontier_positions(size))
        assert compact.hashes == want


def test_restored_compact_range_continues_the_tree():
    positions = frontier_positions(5)
    compact = CompactRange(5, [NODES[pos] for pos in positions])
    assert compact.root().hex() == ROOTS[4]
    compact.append(LEAF_HASHES[5])
    assert compact.root().hex() == ROOTS[5]


def test_copy_is_independent():
    compact = CompactRange()
    compact.append(LEAF_HASHES[0])
    twin = compact.copy()
    twin.append(LEAF_HASHES[1])
    assert (compact.size, twin.size) == (1, 2)
    assert compact.root().hex() == ROOTS[0]
    assert twin.root().hex() == ROOTS[1]
    assert "size=1" in repr(compact)


@pytest.mark.parametrize(
    ("size", "count", "match"),
    [(3, 1, "got 1 hashes, want 2"), (4, 2, "got 2 hashes, want 1"), (0, 1, "want 0")],
)
def test_compact_range_rejects_wrong_hash_count(size, count, match):
    with pytest.raises(ValueError, match=match):
        CompactRange(size, [LEAF_HASHES[0]] * count)


def test_compact_range_rejects_bad_sizes_and_hashes():
    with pytest.raises(ValueError, match="got -1"):
        CompactRange(-1)
    with pytest.raises(ValueError, match="32 bytes, got 3"):
        CompactRange(1, [b"abc"])
    with pytest.raises(ValueError, match="32 bytes, got 0"):
        CompactRange().append(b"")


# --------------------------------------------------------------- range_root


@pytest.mark.parametrize(
    ("begin", "end"), [(0, 8), (0, 5), (4, 7), (4, 6), (6, 8), (7, 8), (0, 1)]
)
def test_range_root_equals_root_of_the_slice(begin, end):
    want = compute_root(LEAF_HASHES[begin:end])
    assert range_root(begin, end, _reader(NODES, 8)) == want


def test_range_root_of_nothing_is_empty_root():
    assert range_root(0, 0, _reader(NODES, 0)) == EMPTY_ROOT


@pytest.mark.parametrize(
    ("begin", "end"), [(1, 3), (3, 5), (2, 5), (5, 5), (5, 4), (-1, 0)]
)
def test_range_root_rejects_ranges_rfc9162_never_hashes(begin, end):
    with pytest.raises(ValueError, match="not an RFC 9162 subtree"):
        range_root(begin, end, _reader(NODES, 8))


# ------------------------------------------------------------ proof generation


@pytest.mark.parametrize(("index", "size", "want"), INCLUSION_PROOFS)
def test_inclusion_proof_matches_published_proofs(index, size, want):
    proof = inclusion_proof(index, size, _reader(NODES, size))
    assert proof == _h(want)
    verify_inclusion(
        index, size, LEAF_HASHES[index], proof, bytes.fromhex(ROOTS[size - 1])
    )


@pytest.mark.parametrize(("size1", "size2", "want"), CONSISTENCY_PROOFS)
def test_consistency_proof_matches_published_proofs(size1, size2, want):
    proof = consistency_proof(size1, size2, _reader(NODES, size2))
    assert proof == _h(want)
    roots = bytes.fromhex(ROOTS[size1 - 1]), bytes.fromhex(ROOTS[size2 - 1])
    verify_consistency(size1, size2, *roots, proof)


@pytest.mark.parametrize(("index", "size"), [(-1, 5), (5, 5), (6, 5), (0, 0)])
def test_inclusion_proof_rejects_bad_arguments(index, size):
    with pytest.raises(ValueError, match="out of range"):
        inclusion_proof(index, size, _reader(NODES, 8))


@pytest.mark.parametrize(("size1", "size2"), [(0, 5), (0, 0), (-1, 5), (6, 5)])
def test_consistency_proof_rejects_bad_arguments(size1, size2):
    with pytest.raises(ValueError, match="0 < size1 <= size2"):
        consistency_proof(size1, size2, _reader(NODES, 8))


# ------------------------------------------------------- big tree, few reads


@pytest.fixture(scope="module")
def big_tree():
    """Every level of a 2**20-leaf tree, as one bytes object per level."""
    level = b"".join(hash_leaf(i.to_bytes(8, "big")) for i in range(1 << 20))
    levels = [level]
    while len(level) > 32:
        level = b"".join(
            hash_children(level[j : j + 32], level[j + 32 : j + 64])
            for j in range(0, len(level), 64)
        )
        levels.append(level)
    return levels


def _counting_reader(levels, size):
    reads = []

    def node(level, index):
        assert (index + 1) << level <= size, f"node ({level}, {index}) beyond {size}"
        reads.append((level, index))
        return levels[level][index * 32 : index * 32 + 32]

    return node, reads


@pytest.mark.parametrize("size", [1_000_000, 1 << 20, (1 << 20) - 1])
def test_inclusion_proof_reads_few_nodes(big_tree, size):
    node, reads = _counting_reader(big_tree, size)
    root = range_root(0, size, node)
    if size == 1 << 20:
        assert root == big_tree[20]
    for index in (0, 1, 123_456, size // 2, size - 2, size - 1):
        reads.clear()
        proof = inclusion_proof(index, size, node)
        assert len(reads) <= 40
        leaf_hash = big_tree[0][index * 32 : index * 32 + 32]
        verify_inclusion(index, size, leaf_hash, proof, root)


@pytest.mark.parametrize(
    ("size1", "size2"),
    [(1, 1_000_000), (999_999, 1_000_000), (123_457, 1_000_000), (1 << 19, 1 << 20)],
)
def test_consistency_proof_reads_few_nodes(big_tree, size1, size2):
    node, reads = _counting_reader(big_tree, size2)
    root1, root2 = range_root(0, size1, node), range_root(0, size2, node)
    reads.clear()
    proof = consistency_proof(size1, size2, node)
    assert len(reads) <= 42
    verify_consistency(size1, size2, root1, root2, proof)


# -------------------------------------------------------------- verification


def _proof_5_of_8():
    return _h(INCLUSION_PROOFS[2][2])


def test_root_from_inclusion_proof():
    got = root_from_inclusion_proof(5, 8, LEAF_HASHES[5], _proof_5_of_8())
    assert got.hex() == ROOTS[7]


def test_verify_inclusion_wrong_proof_size_says_got_and_want():
    with pytest.raises(ProofError, match=r"^wrong proof size 2, want 3$"):
        verify_inclusion(5, 8, LEAF_HASHES[5], _proof_5_of_8()[:2], EMPTY_ROOT)


def test_verify_inclusion_root_mismatch_names_both_roots():
    with pytest.raises(ProofError) as info:
        verify_inclusion(5, 8, LEAF_HASHES[5], _proof_5_of_8(), EMPTY_ROOT)
    message = str(info.value)
    assert f"got calculated root {ROOTS[7]}" in message
    assert f"want expected root {EMPTY_ROOT.hex()}" in message


@pytest.mark.parametrize(
    ("index", "size", "leaf_hash", "match"),
    [
        (8, 8, LEAF_HASHES[0], "index is beyond size: 8 >= 8"),
        (0, 0, LEAF_HASHES[0], "index is beyond size: 0 >= 0"),
        (-1, 8, LEAF_HASHES[0], "leaf index must be >= 0"),
        (5, 8, b"short", "leaf hash has size 5, want 32"),
    ],
)
def test_verify_inclusion_rejects_bad_arguments(index, size, leaf_hash, match):
    with pytest.raises(ProofError, match=match):
        verify_inclusion(index, size, leaf_hash, _proof_5_of_8(), EMPTY_ROOT)


def test_inclusion_does_not_bind_the_size_without_the_root():
    # RFC 9162 behaviour, same as transparency-dev: the proof for leaf 0 of 3
    # also "verifies" as leaf 0 of 4 against the size-3 root. Only the signed
    # (size, root) pair binds a size to a root.
    proof = inclusion_proof(0, 3, _reader(NODES, 3))
    root3 = bytes.fromhex(ROOTS[2])
    verify_inclusion(0, 4, LEAF_HASHES[0], proof, root3)
    with pytest.raises(ProofError, match="root mismatch"):
        verify_inclusion(0, 4, LEAF_HASHES[0], proof, bytes.fromhex(ROOTS[3]))


def _roots(size1, size2):
    return bytes.fromhex(ROOTS[size1 - 1]), bytes.fromhex(ROOTS[size2 - 1])


@pytest.mark.parametrize(
    ("size1", "size2", "proof", "match"),
    [
        (3, 2, [], r"size2 \(2\) < size1 \(3\)"),
        (0, 3, [EMPTY_ROOT], "from empty tree"),
        (0, 0, [], "from empty tree"),
        (-1, 3, [], "size1 must be >= 0"),
        (2, 2, [EMPTY_ROOT], "got 1 proof hashes, want 0"),
        (2, 5, [], "empty proof"),
        (2, 5, [EMPTY_ROOT] * 3, "^wrong proof size 3, want 2$"),
        (6, 8, [EMPTY_ROOT] * 3, "root mismatch"),
    ],
)
def test_verify_consistency_rejects(size1, size2, proof, match):
    root1, root2 = _roots(max(size1, 1), max(size2, 1))
    with pytest.raises(ProofError, match=match):
        verify_consistency(size1, size2, root1, root2, proof)


def test_verify_consistency_equal_sizes():
    root = bytes.fromhex(ROOTS[4])
    verify_consistency(5, 5, root, root, [])
    with pytest.raises(ProofError, match="root mismatch"):
        verify_consistency(5, 5, root, EMPTY_ROOT, [])


def test_verify_consistency_checks_both_roots():
    proof = _h(CONSISTENCY_PROOFS[2][2])
    root6, root8 = _roots(6, 8)
    with pytest.raises(ProofError, match=f"want expected root {ROOTS[6]}"):
        verify_consistency(6, 8, root6, bytes.fromhex(ROOTS[6]), proof)
    with pytest.raises(ProofError, match=f"want expected root {EMPTY_ROOT.hex()}"):
        verify_consistency(6, 8, EMPTY_ROOT, root8, proof)


# -------------------------------------------------------------- wire formats


def test_inclusion_proof_round_trip():
    proof = InclusionProof(5, 8, tuple(_proof_5_of_8()))
    data = proof.to_dict()
    assert data == {"index": 5, "size": 8, "hashes": INCLUSION_PROOFS[2][2]}
    assert InclusionProof.from_dict(data) == proof


def test_consistency_proof_round_trip():
    proof = ConsistencyProof(6, 8, tuple(_h(CONSISTENCY_PROOFS[2][2])))
    data = proof.to_dict()
    assert data == {"size1": 6, "size2": 8, "hashes": CONSISTENCY_PROOFS[2][2]}
    assert ConsistencyProof.from_dict(data) == proof
    empty = ConsistencyProof(3, 3, ())
    assert ConsistencyProof.from_dict(empty.to_dict()) == empty


def test_proofs_are_frozen_and_hold_tuples():
    proof = InclusionProof(0, 2, [bytearray(LEAF_HASHES[1])])
    assert proof.hashes == (LEAF_HASHES[1],)
    assert type(proof.hashes[0]) is bytes
    with pytest.raises(dataclasses.FrozenInstanceError):
        proof.index = 1  # type: ignore[misc]


GOOD_HEX = LEAF_HASHES[0].hex()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ([], "must be an object, got list"),
        ({"index": 0, "size": 1}, "has keys"),
        ({"index": 0, "size": 1, "hashes": [], "extra": 1}, "has keys"),
        ({"index": True, "size": 1, "hashes": []}, "index must be a non-negative"),
        ({"index": -1, "size": 1, "hashes": []}, "index must be a non-negative"),
        ({"index": 0, "size": "1", "hashes": []}, "size must be a non-negative"),
        ({"index": 0, "size": 1.0, "hashes": []}, "size must be a non-negative"),
        ({"index": 0, "size": 1, "hashes": GOOD_HEX}, "hashes must be a list"),
        ({"index": 0, "size": 1, "hashes": [GOOD_HEX.upper()]}, r"hashes\[0\]"),
        ({"index": 0, "size": 1, "hashes": [GOOD_HEX[:-2]]}, r"hashes\[0\]"),
        ({"index": 0, "size": 1, "hashes": [GOOD_HEX, 7]}, r"hashes\[1\]"),
        ({"index": 0, "size": 1, "hashes": [" " + GOOD_HEX[1:]]}, r"hashes\[0\]"),
    ],
)
def test_inclusion_proof_from_dict_rejects_malformed(data, match):
    with pytest.raises(SchemaError, match=match):
        InclusionProof.from_dict(data)


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (None, "must be an object, got NoneType"),
        ({"size1": 1, "size2": 2}, "has keys"),
        ({"index": 0, "size": 1, "hashes": []}, "has keys"),
        ({"size1": False, "size2": 2, "hashes": []}, "size1 must be a non-negative"),
        ({"size1": 1, "size2": -2, "hashes": []}, "size2 must be a non-negative"),
        ({"size1": 1, "size2": 2, "hashes": None}, "hashes must be a list"),
        ({"size1": 1, "size2": 2, "hashes": ["zz" * 32]}, r"hashes\[0\]"),
    ],
)
def test_consistency_proof_from_dict_rejects_malformed(data, match):
    with pytest.raises(SchemaError, match=match):
        ConsistencyProof.from_dict(data)
