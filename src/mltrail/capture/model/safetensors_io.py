"""Read safetensors files without torch: the header, checked strictly, and byte spans.

A safetensors file is an 8-byte little-endian header length N, N bytes of JSON
(``{"name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [begin, end]}, ...,
"__metadata__": {str: str}}``), then the tensors' raw bytes, offsets counted from
the end of the header. Only the header is parsed here; tensor bytes are read later
in chunks (``read_span``), so memory stays bounded whatever the model's size.

A sharded checkpoint has ``model.safetensors.index.json`` whose ``weight_map``
names the shard of every tensor; :func:`read_sharded` checks that the map and the
shards agree.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.core.model import DTYPE_SIZES
from mltrail.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Iterator

__all__ = [
    "MAX_HEADER",
    "TensorSpan",
    "parse_header",
    "read_safetensors",
    "read_sharded",
    "read_span",
]

MAX_HEADER = 100 * 2**20
"""The largest header accepted (the safetensors library's own limit)."""
_HINT = "the file is truncated or not a safetensors file; nothing was recorded"


@dataclass(frozen=True, slots=True)
class TensorSpan:
    """Where one tensor's bytes lie: file, absolute offset, length; and its type."""

    name: str
    dtype: str
    shape: tuple[int, ...]
    file: Path
    offset: int
    size: int


def _bad(path: Path | str, problem: str) -> InputError:
    return InputError(f"{path}: not a valid safetensors file: {problem}", hint=_HINT)


def parse_header(
    prefix: bytes, file_size: int, path: Path | str = "<bytes>"
) -> tuple[list[TensorSpan], dict[str, str]]:
    """Parse and check the header at the start of a safetensors file.

    ``prefix`` holds at least the first ``8 + N`` bytes of a file of ``file_size``
    bytes. Returns the tensors in file order and the ``__metadata__`` strings.

    Raises:
        InputError: the header is malformed, a tensor's length does not match its
            dtype and shape, the data spans overlap, leave gaps, or do not end
            exactly at the end of the file.
    """
    if len(prefix) < 8 or file_size < 8:
        raise _bad(path, "shorter than its 8-byte header length")
    n = int.from_bytes(prefix[:8], "little")
    if n > MAX_HEADER or n < 2:
        raise _bad(path, f"header length {n} out of range")
    if 8 + n > file_size or len(prefix) < 8 + n:
        raise _bad(path, f"header of {n} bytes runs past the end of the file")
    try:
        header = json.loads(
            prefix[8 : 8 + n].decode("utf-8"), object_pairs_hook=_unique
        )
    except (ValueError, UnicodeDecodeError, RecursionError) as e:
        raise _bad(path, f"header is not JSON: {e}") from e
    if not isinstance(header, dict):
        raise _bad(path, "header is not a JSON object")
    metadata = _metadata(path, header.pop("__metadata__", None))
    base = 8 + n
    spans = [_span(path, name, info, base) for name, info in header.items()]
    spans.sort(key=lambda s: (s.offset, s.size))
    end = base
    for span in spans:
        if span.offset != end:
            raise _bad(
                path, f"tensor {span.name!r} does not start where the last ended"
            )
        end = span.offset + span.size
    if end != file_size:
        raise _bad(path, f"data ends at byte {end}, the file has {file_size}")
    return spans, metadata


def _unique(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out = dict(pairs)
    if len(out) != len(pairs):
        raise ValueError("duplicate key")
    return out


def _metadata(path: Path | str, value: object) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise _bad(path, "__metadata__ must map strings to strings")
    return value


def _span(path: Path | str, name: str, info: object, base: int) -> TensorSpan:
    try:
        name.encode()
    except UnicodeEncodeError:
        raise _bad(path, f"tensor name {name!r} is not UTF-8") from None
    if not isinstance(info, dict) or set(info) != {"dtype", "shape", "data_offsets"}:
        raise _bad(path, f"tensor {name!r} is not {{dtype, shape, data_offsets}}")
    dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
    if not isinstance(dtype, str) or dtype not in DTYPE_SIZES:
        raise _bad(path, f"tensor {name!r} has unknown dtype {dtype!r}")
    if not isinstance(shape, list) or not all(_uint(d) for d in shape):
        raise _bad(path, f"tensor {name!r} has a bad shape {shape!r}")
    if not (
        isinstance(offsets, list) and len(offsets) == 2 and all(map(_uint, offsets))
    ):
        raise _bad(path, f"tensor {name!r} has bad data_offsets {offsets!r}")
    begin, end = offsets
    size = math.prod(shape) * DTYPE_SIZES[dtype]
    if end < begin or end - begin != size:
        raise _bad(path, f"tensor {name!r}: {end - begin} bytes for {dtype} {shape}")
    return TensorSpan(name, dtype, tuple(shape), Path(path), base + begin, size)


def _uint(value: object) -> bool:
    return type(value) is int and 0 <= value < 2**53


def read_safetensors(path: Path) -> tuple[list[TensorSpan], dict[str, str]]:
    """The tensor spans and metadata of the safetensors file at ``path``.

    Raises:
        InputError: the file cannot be read or is not a valid safetensors file.
    """
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            head = f.read(8)
            n = int.from_bytes(head, "little") if len(head) == 8 else 0
            prefix = head + (f.read(n) if 2 <= n <= MAX_HEADER else b"")
    except OSError as e:
        raise InputError(f"cannot read {path}: {e.strerror or e}") from e
    return parse_header(prefix, size, path)


def read_sharded(index: Path) -> tuple[list[TensorSpan], dict[str, str]]:
    """The tensors of a sharded checkpoint, from its index and every shard.

    Raises:
        InputError: the index is malformed, names a shard that is missing or
            outside its folder, or disagrees with the shards' headers.
    """
    weight_map = _weight_map(index)
    spans: list[TensorSpan] = []
    metadata: dict[str, str] = {}
    for shard in sorted(set(weight_map.values())):
        found, meta = read_safetensors(index.parent / shard)
        metadata.update(meta)
        for span in found:
            if weight_map.get(span.name) != shard:
                raise InputError(
                    f"{index}: tensor {span.name!r} is in {shard} but the index says "
                    f"{weight_map.get(span.name)}",
                    hint="the index and its shards disagree; nothing was recorded",
                )
        spans += found
    if len(spans) != len(weight_map):
        missing = sorted(set(weight_map) - {s.name for s in spans})
        raise InputError(
            f"{index}: {len(missing)} tensors of the index are in no shard, "
            f"e.g. {missing[:3]}",
            hint="a shard is incomplete; nothing was recorded",
        )
    return spans, metadata


def _weight_map(index: Path) -> dict[str, str]:
    try:
        value = json.loads(index.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise InputError(f"cannot read the shard index {index}: {e}") from e
    weight_map = value.get("weight_map") if isinstance(value, dict) else None
    if not isinstance(weight_map, dict) or not all(
        isinstance(v, str) for v in weight_map.values()
    ):
        raise InputError(f"{index}: no weight_map of tensor names to shard files")
    if not weight_map:
        raise InputError(f"{index}: the weight_map names no tensor")
    for shard in set(weight_map.values()):
        if "/" in shard or "\\" in shard or shard in ("", ".", ".."):
            raise InputError(f"{index}: shard {shard!r} is not a file beside the index")
        if not (index.parent / shard).is_file():
            raise InputError(
                f"{index}: shard {shard} is missing",
                hint="copy every shard the index names; nothing was recorded",
            )
    return weight_map


def read_span(
    fd: int, offset: int, size: int, buffer: bytearray
) -> Iterator[memoryview]:
    """The bytes ``[offset, offset + size)`` of open file ``fd``, in chunks read into
    ``buffer`` (each chunk is valid until the next one is read).

    Raises:
        InputError: the file ends early (it changed while being read).
    """
    view = memoryview(buffer)
    done = 0
    while done < size:
        want = min(len(buffer), size - done)
        got = os.preadv(fd, [view[:want]], offset + done)
        if got <= 0:
            raise InputError(
                f"file ended {size - done} bytes early while reading a tensor",
                hint="the file changed while it was read; try again",
            )
        yield view[:got]
        done += got
