"""Model fingerprints: every tensor's name, dtype, shape and SHA-256, and the model id.

A fingerprint is one line per tensor, sorted by name (the order of the names'
UTF-8 bytes), each line the RFC 8785 canonical JSON object
``{"dtype": "BF16", "name": "lm_head.weight", "sha256": "<hex>", "shape": [32, 100],
"size": 6400}`` followed by ``\\n``. ``dtype`` uses the safetensors names (``F32``,
``BF16``, ``I8``, ...), ``sha256`` is the digest of the tensor's raw bytes (row-major,
little-endian, as safetensors stores them) and ``size`` their length.

The model id is the RFC 9162 Merkle root over those lines (leaf i hashes line i
without its newline): it depends on the weights only, not on the files that hold
them, so one checkpoint saved as a single file, as shards, or as a PyTorch state
dict gets the same id. The dtype is in each leaf: the same numbers in ``F32`` and
``BF16`` are different models::

    >>> a = TensorEntry("b", "F32", (2,), "ab" * 32, 8)
    >>> b = TensorEntry("a", "I8", (3,), "cd" * 32, 3)
    >>> fingerprint = compute_fingerprint([a, b])
    >>> [t.name for t in fingerprint.tensors], fingerprint.parameters
    (['a', 'b'], 5)
    >>> compute_fingerprint([b, a]).model_id == fingerprint.model_id
    True
    >>> parse_fingerprint(fingerprint.data) == fingerprint
    True
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from itertools import pairwise
from operator import attrgetter
from typing import TYPE_CHECKING, Any

from mltrail.core.canonical import canonical_bytes
from mltrail.core.merkle import compute_root, hash_leaf
from mltrail.errors import SchemaError

if TYPE_CHECKING:
    from collections.abc import Iterable

__all__ = [
    "DTYPE_SIZES",
    "FINGERPRINT_MEDIA_TYPE",
    "ModelFingerprint",
    "TensorEntry",
    "compute_fingerprint",
    "parse_fingerprint",
]

FINGERPRINT_MEDIA_TYPE = "application/x-mltrail-tensors+jsonl"

DTYPE_SIZES: dict[str, int] = {
    "BOOL": 1,
    "U8": 1,
    "I8": 1,
    "F8_E4M3": 1,
    "F8_E5M2": 1,
    "F8_E8M0": 1,
    "I16": 2,
    "U16": 2,
    "F16": 2,
    "BF16": 2,
    "I32": 4,
    "U32": 4,
    "F32": 4,
    "I64": 8,
    "U64": 8,
    "F64": 8,
    "C64": 8,
}
"""Bytes per element of the safetensors dtypes whose element size is known.

A dtype not listed here (a sub-byte type, say) can still be fingerprinted: its
byte length is then not checked against its shape."""

_DTYPE = re.compile(r"[A-Z][A-Z0-9_]{0,15}")
_HEX64 = re.compile(r"[0-9a-f]{64}")
_MAX_SIZE = 2**53 - 1
_LINE_KEYS = {"dtype", "name", "sha256", "shape", "size"}


@dataclass(frozen=True, slots=True)
class TensorEntry:
    """One tensor of a checkpoint: name, dtype, shape, SHA-256 and byte length.

    Raises:
        SchemaError: a field is malformed, or the byte length does not match the
            shape for a dtype of known element size.
    """

    name: str
    dtype: str
    shape: tuple[int, ...]
    sha256: str
    size: int

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name:
            raise SchemaError(f"tensor name must be a non-empty string: {self.name!r}")
        if not isinstance(self.dtype, str) or not _DTYPE.fullmatch(self.dtype):
            raise SchemaError(f"{self.name}: bad dtype {self.dtype!r}")
        if not isinstance(self.shape, tuple) or not all(
            _is_uint(d) for d in self.shape
        ):
            raise SchemaError(f"{self.name}: bad shape {self.shape!r}")
        if not isinstance(self.sha256, str) or not _HEX64.fullmatch(self.sha256):
            raise SchemaError(f"{self.name}: bad sha256 {self.sha256!r}")
        if not _is_uint(self.size):
            raise SchemaError(f"{self.name}: bad size {self.size!r}")
        itemsize = DTYPE_SIZES.get(self.dtype)
        if itemsize is not None and self.size != self.numel * itemsize:
            raise SchemaError(
                f"{self.name}: {self.size} bytes for {self.dtype} {list(self.shape)}"
            )

    @property
    def numel(self) -> int:
        """How many elements (parameters) the tensor holds."""
        return math.prod(self.shape)

    def to_dict(self) -> dict[str, Any]:
        """The JSON object of this tensor's fingerprint line."""
        return {
            "dtype": self.dtype,
            "name": self.name,
            "sha256": self.sha256,
            "shape": list(self.shape),
            "size": self.size,
        }

    def to_line(self) -> bytes:
        """The canonical JSON line (without newline) hashed as this tensor's leaf."""
        return canonical_bytes(self.to_dict())


def _is_uint(value: object) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and 0 <= value <= _MAX_SIZE
    )


@dataclass(frozen=True, slots=True)
class ModelFingerprint:
    """A sorted tensor list, its bytes (stored as a blob) and the model id."""

    tensors: tuple[TensorEntry, ...]
    data: bytes
    model_id: str

    @property
    def parameters(self) -> int:
        """How many elements all tensors hold together."""
        return sum(t.numel for t in self.tensors)

    @property
    def total_bytes(self) -> int:
        """The sum of the tensors' byte lengths."""
        return sum(t.size for t in self.tensors)

    def dtypes(self) -> dict[str, int]:
        """Parameters per dtype, largest first."""
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.dtype] = counts.get(t.dtype, 0) + t.numel
        return dict(sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])))

    def by_name(self) -> dict[str, TensorEntry]:
        """The tensors keyed by name."""
        return {t.name: t for t in self.tensors}


def compute_fingerprint(entries: Iterable[TensorEntry]) -> ModelFingerprint:
    """Sort ``entries`` by name and compute the fingerprint bytes and model id.

    Raises:
        SchemaError: two tensors share a name.
    """
    ordered = tuple(sorted(entries, key=_name_key))
    for entry, after in pairwise(ordered):
        if entry.name == after.name:
            raise SchemaError(f"checkpoint holds tensor {entry.name!r} twice")
    lines = [t.to_line() for t in ordered]
    data = b"".join(line + b"\n" for line in lines)
    root = compute_root([hash_leaf(line) for line in lines])
    return ModelFingerprint(ordered, data, root.hex())


_name_attr = attrgetter("name")


def _name_key(entry: TensorEntry) -> bytes:
    return _name_attr(entry).encode("utf-8", "surrogatepass")


def parse_fingerprint(data: bytes) -> ModelFingerprint:
    """Parse fingerprint bytes strictly: canonical, sorted, unique lines.

    Raises:
        SchemaError: the bytes are not a fingerprint this module would have written.
    """
    if data and not data.endswith(b"\n"):
        raise SchemaError("fingerprint does not end with a newline")
    entries = [_parse_line(n, line) for n, line in enumerate(data.split(b"\n")[:-1])]
    fingerprint = compute_fingerprint(entries)
    if fingerprint.data != data:
        raise SchemaError("fingerprint is not sorted and canonical")
    return fingerprint


def _parse_line(n: int, line: bytes) -> TensorEntry:
    from mltrail.core.codec import parse_json  # not at import: it loads much

    value = parse_json(line)
    if not isinstance(value, dict) or set(value) != _LINE_KEYS:
        raise SchemaError(f"fingerprint line {n + 1}: not a tensor line")
    shape = value["shape"]
    if not isinstance(shape, list):
        raise SchemaError(f"fingerprint line {n + 1}: shape is not a list")
    return TensorEntry(
        value["name"], value["dtype"], tuple(shape), value["sha256"], value["size"]
    )
