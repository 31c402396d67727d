"""RFC 6962 / RFC 9162 Merkle trees: hashes, compact ranges and proofs.

The tree is RFC 9162 section 2.1's: ``MTH(D[0:n]) = SHA-256(0x01 ||
MTH(D[0:k]) || MTH(D[k:n]))`` with ``k`` the largest power of two below ``n``.

Nodes are named ``(level, index)``: the *perfect* subtree of height ``level``
covering leaves ``[index << level, (index + 1) << level)``; level 0 holds the
leaf hashes. Storage keeps every perfect node, so proof generation reads
O(log n) of them through a :data:`NodeReader` and never touches the leaves.

Verification follows transparency-dev/merkle's ``proof`` package exactly,
including its edge cases (a consistency proof from the empty tree is always
rejected, equal sizes need an empty proof and equal roots).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from mltrail.errors import ProofError, SchemaError
from mltrail.values import Frozen

TYPE_CHECKING = False  # not typing's: a cold `data hash` imports no typing
if TYPE_CHECKING:
    from typing import Any

__all__ = [
    "EMPTY_ROOT",
    "HASH_SIZE",
    "CompactRange",
    "ConsistencyProof",
    "InclusionProof",
    "NodeReader",
    "compute_root",
    "consistency_proof",
    "frontier_positions",
    "frontier_root",
    "hash_children",
    "hash_leaf",
    "inclusion_proof",
    "range_root",
    "root_from_inclusion_proof",
    "verify_consistency",
    "verify_inclusion",
]

HASH_SIZE = 32
"""Bytes in every node hash (SHA-256)."""

EMPTY_ROOT = bytes.fromhex(
    "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
)
"""MTH of the empty tree: SHA-256 of no bytes."""

NodeReader = Callable[[int, int], bytes]
"""``node(level, index)``: the hash of the perfect subtree at that position."""

_HEX_HASH = re.compile(r"[0-9a-f]{64}")


def _sha256(data: bytes) -> Any:
    """``hashlib.sha256(data)``. hashlib loads OpenSSL (~3 ms), which a reading
    command that hashes nothing should not pay: the first call imports it and
    rebinds this name to ``hashlib.sha256`` itself, so later calls cost nothing
    extra."""
    global _sha256  # noqa: PLW0603 (a lazily bound function)
    from hashlib import sha256

    _sha256 = sha256
    return sha256(data)


def hash_leaf(data: bytes) -> bytes:
    """Return the RFC 9162 leaf hash ``SHA-256(0x00 || data)``."""
    return _sha256(b"\x00" + data).digest()


def hash_children(left: bytes, right: bytes) -> bytes:
    """Return the RFC 9162 interior hash ``SHA-256(0x01 || left || right)``."""
    return _sha256(b"\x01" + left + right).digest()


def _fold(hashes: Sequence[bytes]) -> bytes:
    """Hash perfect-subtree roots, given left to right, into their RFC 9162 root."""
    root = hashes[-1]
    for left in reversed(hashes[:-1]):
        root = hash_children(left, root)
    return root


def _split(n: int) -> int:
    """Return the largest power of two strictly below ``n`` (``n > 1``)."""
    return 1 << ((n - 1).bit_length() - 1)


def _is_subtree(begin: int, end: int) -> bool:
    """Whether RFC 9162 hashes ``[begin, end)`` as one subtree of some tree."""
    return 0 <= begin < end and begin % (1 << (end - begin - 1).bit_length()) == 0


def _tiling(begin: int, end: int) -> list[tuple[int, int]]:
    """Return the perfect nodes tiling an aligned ``[begin, end)``, largest first."""
    positions = []
    while begin < end:
        level = (end - begin).bit_length() - 1
        positions.append((level, begin >> level))
        begin += 1 << level
    return positions


def frontier_positions(size: int) -> list[tuple[int, int]]:
    """Return ``(level, index)`` of the perfect nodes tiling ``[0, size)``, left first.

    Raises:
        ValueError: ``size`` is negative.
    """
    if size < 0:
        raise ValueError(f"tree size must be >= 0, got {size}")
    return _tiling(0, size)


def _require_hash(value: bytes, what: str) -> bytes:
    """Return ``value`` as bytes, or raise ValueError if it is not 32 bytes."""
    if len(value) != HASH_SIZE:
        raise ValueError(f"{what} must be {HASH_SIZE} bytes, got {len(value)}")
    return bytes(value)


class CompactRange:
    """The frontier of a tree: enough to append leaves and compute roots.

    Args:
        size: number of leaves already in the tree.
        hashes: node hashes at ``frontier_positions(size)``.

    Raises:
        ValueError: negative size, wrong number of hashes, or a hash that is not
            32 bytes.
    """

    __slots__ = ("_hashes", "_size")

    def __init__(self, size: int = 0, hashes: Sequence[bytes] = ()) -> None:
        if size < 0:
            raise ValueError(f"tree size must be >= 0, got {size}")
        want = size.bit_count()
        if len(hashes) != want:
            raise ValueError(
                f"compact range of size {size}: got {len(hashes)} hashes, want {want}"
            )
        self._size = size
        self._hashes = [_require_hash(h, "frontier hash") for h in hashes]

    @property
    def size(self) -> int:
        """Number of leaves covered."""
        return self._size

    @property
    def hashes(self) -> tuple[bytes, ...]:
        """Node hashes at ``frontier_positions(size)``, left to right."""
        return tuple(self._hashes)

    def append(self, leaf_hash: bytes) -> list[tuple[int, int, bytes]]:
        """Append one leaf hash and return every perfect node it completes.

        Returns:
            ``(level, index, hash)`` triples from ``(0, old_size, leaf_hash)``
            upwards.

        Raises:
            ValueError: ``leaf_hash`` is not 32 bytes.
        """
        node = (
            leaf_hash
            if type(leaf_hash) is bytes and len(leaf_hash) == HASH_SIZE
            else _require_hash(leaf_hash, "leaf hash")
        )
        level, index = 0, self._size
        completed = [(level, index, node)]
        while index & 1:
            node = hash_children(self._hashes.pop(), node)
            level, index = level + 1, index >> 1
            completed.append((level, index, node))
        self._hashes.append(node)
        self._size += 1
        return completed

    def root(self) -> bytes:
        """Return the RFC 9162 root of the leaves so far (EMPTY_ROOT when none)."""
        return _fold(self._hashes) if self._hashes else EMPTY_ROOT

    def copy(self) -> CompactRange:
        """Return an independent copy."""
        return CompactRange(self._size, self._hashes)

    def __repr__(self) -> str:
        return f"CompactRange(size={self._size}, root={self.root().hex()})"


def frontier_root(hashes: Sequence[bytes]) -> bytes:
    """The RFC 9162 root of a tree from its frontier (``CompactRange.hashes``)."""
    return _fold(hashes) if hashes else EMPTY_ROOT


def compute_root(leaf_hashes: Sequence[bytes]) -> bytes:
    """Return the RFC 9162 root of a tree given all of its leaf hashes."""
    compact = CompactRange()
    for leaf_hash in leaf_hashes:
        compact.append(leaf_hash)
    return compact.root()


def range_root(begin: int, end: int, node: NodeReader) -> bytes:
    """Return the RFC 9162 hash of leaves ``[begin, end)`` from perfect nodes.

    ``begin`` must be a multiple of the smallest power of two ``>= end - begin``
    (true of every subtree RFC 9162 hashes); ``(0, 0)`` gives EMPTY_ROOT. Reads
    one node per set bit of ``end - begin``.

    Raises:
        ValueError: ``[begin, end)`` is not such a subtree.
    """
    if begin == end == 0:
        return EMPTY_ROOT
    if not _is_subtree(begin, end):
        raise ValueError(f"[{begin}, {end}) is not an RFC 9162 subtree")
    return _fold([node(level, index) for level, index in _tiling(begin, end)])


def inclusion_proof(index: int, size: int, node: NodeReader) -> list[bytes]:
    """Return ``PATH(index, D[0:size])`` (RFC 9162 2.1.3), reading O(log n) nodes.

    Raises:
        ValueError: ``index`` is outside ``[0, size)``.
    """
    if not 0 <= index < size:
        raise ValueError(f"leaf index {index} out of range for tree size {size}")
    proof: list[bytes] = []
    begin, end = 0, size
    while end - begin > 1:
        mid = begin + _split(end - begin)
        if index < mid:
            proof.append(range_root(mid, end, node))
            end = mid
        else:
            proof.append(range_root(begin, mid, node))
            begin = mid
    proof.reverse()
    return proof


def consistency_proof(size1: int, size2: int, node: NodeReader) -> list[bytes]:
    """Return ``PROOF(size1, D[0:size2])`` (RFC 9162 2.1.4), reading O(log n) nodes.

    Raises:
        ValueError: the sizes are not ``0 < size1 <= size2``.
    """
    if not 0 < size1 <= size2:
        raise ValueError(f"need 0 < size1 <= size2, got {size1} and {size2}")
    proof: list[bytes] = []
    begin, end, known = 0, size2, True
    while end != size1:
        mid = begin + _split(end - begin)
        if size1 <= mid:
            proof.append(range_root(mid, end, node))
            end = mid
        else:
            proof.append(range_root(begin, mid, node))
            begin, known = mid, False
    if not known:
        proof.append(range_root(begin, end, node))
    proof.reverse()
    return proof


def _require_uint(value: int, what: str) -> None:
    """Raise ProofError unless ``value`` is a non-negative int."""
    if value < 0:
        raise ProofError(f"{what} must be >= 0, got {value}")


def _check_proof_size(got: int, want: int) -> None:
    """Raise ProofError unless the proof has ``want`` hashes."""
    if got != want:
        raise ProofError(f"wrong proof size {got}, want {want}")


def _verify_match(calculated: bytes, expected: bytes) -> None:
    """Raise ProofError unless the calculated root is the expected one."""
    if calculated != expected:
        raise ProofError(
            f"root mismatch: got calculated root {bytes(calculated).hex()}, "
            f"want expected root {bytes(expected).hex()}"
        )


def _decomp_incl_proof(index: int, size: int) -> tuple[int, int]:
    """Split the proof for ``index`` into inner and border lengths."""
    inner = (index ^ (size - 1)).bit_length()
    return inner, (index >> inner).bit_count()


def _chain_inner(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Hash ``seed`` up with siblings on either side, as ``index`` says."""
    for i, sibling in enumerate(proof):
        pair = (sibling, seed) if (index >> i) & 1 else (seed, sibling)
        seed = hash_children(*pair)
    return seed


def _chain_inner_right(seed: bytes, proof: Sequence[bytes], index: int) -> bytes:
    """Like _chain_inner, but only with left siblings (the older tree)."""
    for i, sibling in enumerate(proof):
        if (index >> i) & 1:
            seed = hash_children(sibling, seed)
    return seed


def _chain_border_right(seed: bytes, proof: Sequence[bytes]) -> bytes:
    """Hash ``seed`` up the right border, every sibling on its left."""
    for sibling in proof:
        seed = hash_children(sibling, seed)
    return seed


def root_from_inclusion_proof(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes]
) -> bytes:
    """Return the root that an inclusion proof of leaf ``index`` leads to.

    Raises:
        ProofError: bad index or size, a leaf hash that is not 32 bytes, or a
            proof of the wrong length.
    """
    _require_uint(index, "leaf index")
    if index >= size:
        raise ProofError(f"index is beyond size: {index} >= {size}")
    if len(leaf_hash) != HASH_SIZE:
        raise ProofError(f"leaf hash has size {len(leaf_hash)}, want {HASH_SIZE}")
    proof = list(proof)
    inner, border = _decomp_incl_proof(index, size)
    _check_proof_size(len(proof), inner + border)
    root = _chain_inner(leaf_hash, proof[:inner], index)
    return _chain_border_right(root, proof[inner:])


def verify_inclusion(
    index: int, size: int, leaf_hash: bytes, proof: Sequence[bytes], root: bytes
) -> None:
    """Check that ``leaf_hash`` is leaf ``index`` of the tree ``(size, root)``.

    Raises:
        ProofError: the proof is malformed or does not lead to ``root``.
    """
    _verify_match(root_from_inclusion_proof(index, size, leaf_hash, proof), root)


def _check_consistency_args(size1: int, size2: int, proof: Sequence[bytes]) -> None:
    """Raise ProofError for the cases transparency-dev rejects up front."""
    _require_uint(size1, "size1")
    if size2 < size1:
        raise ProofError(f"size2 ({size2}) < size1 ({size1})")
    if size1 == 0:
        raise ProofError("consistency proof from empty tree is meaningless")
    if size1 == size2 and proof:
        raise ProofError(f"size1 == size2: got {len(proof)} proof hashes, want 0")
    if size1 < size2 and not proof:
        raise ProofError("empty proof for size1 < size2")


def verify_consistency(
    size1: int, size2: int, root1: bytes, root2: bytes, proof: Sequence[bytes]
) -> None:
    """Check that the tree ``(size2, root2)`` extends ``(size1, root1)``.

    Raises:
        ProofError: bad sizes, a malformed proof, or a root that does not match.
    """
    proof = list(proof)
    _check_consistency_args(size1, size2, proof)
    if size1 == size2:
        _verify_match(root1, root2)
        return
    inner, border = _decomp_incl_proof(size1 - 1, size2)
    shift = (size1 & -size1).bit_length() - 1
    inner -= shift
    seed, start = (root1, 0) if size1 == 1 << shift else (proof[0], 1)
    _check_proof_size(len(proof), start + inner + border)
    proof = proof[start:]
    mask = (size1 - 1) >> shift
    hash1 = _chain_inner_right(seed, proof[:inner], mask)
    _verify_match(_chain_border_right(hash1, proof[inner:]), root1)
    hash2 = _chain_inner(seed, proof[:inner], mask)
    _verify_match(_chain_border_right(hash2, proof[inner:]), root2)


def _parse_proof(
    data: Any, names: tuple[str, str], what: str
) -> tuple[int, int, tuple[bytes, ...]]:
    """Read ``{names[0]: int, names[1]: int, "hashes": [hex]}``, else SchemaError."""
    if not isinstance(data, dict):
        raise SchemaError(f"{what} must be an object, got {type(data).__name__}")
    if set(data) != {*names, "hashes"}:
        got, want = sorted(map(str, data)), sorted([*names, "hashes"])
        raise SchemaError(f"{what} has keys {got}, want {want}")
    first, second = (_read_uint(data[name], f"{what}.{name}") for name in names)
    return first, second, _read_hashes(data["hashes"], f"{what}.hashes")


def _read_uint(value: Any, what: str) -> int:
    """Return ``value`` if it is a non-negative int, else raise SchemaError."""
    if type(value) is not int or value < 0:
        raise SchemaError(f"{what} must be a non-negative integer, got {value!r}")
    return value


def _read_hashes(value: Any, what: str) -> tuple[bytes, ...]:
    """Decode a list of lowercase hex hashes, else raise SchemaError."""
    if not isinstance(value, list):
        raise SchemaError(f"{what} must be a list, got {type(value).__name__}")
    for i, item in enumerate(value):
        if not isinstance(item, str) or not _HEX_HASH.fullmatch(item):
            raise SchemaError(f"{what}[{i}] must be 64 lowercase hex digits")
    return tuple(bytes.fromhex(item) for item in value)


class InclusionProof(Frozen):
    """Inclusion proof of leaf ``index`` in a tree of ``size`` leaves (bottom up)."""

    __match_args__ = ("index", "size", "hashes")
    index: int
    size: int
    hashes: tuple[bytes, ...]

    def __init__(self, index: int, size: int, hashes: Sequence[bytes]) -> None:
        object.__setattr__(self, "index", index)
        object.__setattr__(self, "size", size)
        object.__setattr__(self, "hashes", tuple(bytes(h) for h in hashes))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form: ``{"index", "size", "hashes": [hex, ...]}``."""
        hashes = [h.hex() for h in self.hashes]
        return {"index": self.index, "size": self.size, "hashes": hashes}

    @classmethod
    def from_dict(cls, data: Any) -> InclusionProof:
        """Parse the JSON form written by :meth:`to_dict`.

        Raises:
            SchemaError: ``data`` does not have exactly that shape.
        """
        return cls(*_parse_proof(data, ("index", "size"), "inclusion proof"))


class ConsistencyProof(Frozen):
    """Consistency proof from the tree of ``size1`` leaves to that of ``size2``."""

    __match_args__ = ("size1", "size2", "hashes")
    size1: int
    size2: int
    hashes: tuple[bytes, ...]

    def __init__(self, size1: int, size2: int, hashes: Sequence[bytes]) -> None:
        object.__setattr__(self, "size1", size1)
        object.__setattr__(self, "size2", size2)
        object.__setattr__(self, "hashes", tuple(bytes(h) for h in hashes))

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON form: ``{"size1", "size2", "hashes": [hex, ...]}``."""
        hashes = [h.hex() for h in self.hashes]
        return {"size1": self.size1, "size2": self.size2, "hashes": hashes}

    @classmethod
    def from_dict(cls, data: Any) -> ConsistencyProof:
        """Parse the JSON form written by :meth:`to_dict`.

        Raises:
            SchemaError: ``data`` does not have exactly that shape.
        """
        return cls(*_parse_proof(data, ("size1", "size2"), "consistency proof"))
