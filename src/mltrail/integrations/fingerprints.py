"""Fingerprints of in-memory datasets handed to a trainer.

A dataset a trainer reads is often not a file mltrail can hash (``run.data``):
it was built in memory, tokenized, or filtered. What is recorded instead, as
params under ``dataset.<role>.`` (``type``, ``rows``, ``method``, ``fingerprint``):

- a Hugging Face ``datasets.Dataset``: its ``_fingerprint`` (``method``
  ``datasets-fingerprint``). ``datasets`` derives it from the data files (or the
  table) and the chain of transforms applied, so the same data through the same
  ``map``/``filter`` calls gives the same value, at any size and without reading it.
- any other map-style dataset (``__len__`` and ``__getitem__``, e.g. a torch
  ``Dataset`` or a list) of at most ``max_items`` items and ``max_bytes`` bytes:
  the SHA-256 of every item in order (``method`` ``content-sha256``). Items may be
  tensors and arrays (dtype, shape and bytes), mappings (sorted by key), sequences,
  text, bytes, numbers, booleans and None.
- anything else (an iterable dataset, one too large, items of another type):
  ``method`` ``none`` and a ``reason``; only the type and length are recorded.
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MAX_BYTES", "MAX_ITEMS", "dataset_facts"]

MAX_ITEMS = 100_000
MAX_BYTES = 256 * 2**20
_VERSION = b"mltrail-items/1\n"


class _UnhashableError(Exception):
    """An item that has no stable bytes, or the dataset outgrew the limit."""


class _Hasher:
    def __init__(self, max_bytes: int) -> None:
        self.digest = hashlib.sha256(_VERSION)
        self.left = max_bytes

    def put(self, tag: bytes, data: bytes | memoryview = b"") -> None:
        self.left -= len(data)
        if self.left < 0:
            raise _UnhashableError("more bytes than the limit")
        self.digest.update(tag + struct.pack(">Q", len(data)))
        self.digest.update(data)

    def feed(self, value: Any) -> None:  # noqa: PLR0911 - one case per type
        if value is None or isinstance(value, bool):
            return self.put(b"c", repr(value).encode())
        if isinstance(value, int | float):
            return self.put(b"n", repr(value).encode())
        if isinstance(value, str):
            return self.put(b"s", value.encode("utf-8", "surrogatepass"))
        if isinstance(value, bytes | bytearray):
            return self.put(b"b", bytes(value))
        if isinstance(value, Mapping):
            self.put(b"m", str(len(value)).encode())
            for key in sorted(value, key=str):
                self.feed(str(key))
                self.feed(value[key])
            return None
        if _is_array(value):
            return self._array(value)
        if isinstance(value, Sequence):
            self.put(b"l", str(len(value)).encode())
            for item in value:
                self.feed(item)
            return None
        raise _UnhashableError(f"items holding a {type(value).__qualname__}")

    def _array(self, value: Any) -> None:
        if hasattr(value, "detach"):  # torch, installed since it made the tensor
            import torch

            value = value.detach().cpu().contiguous()
            dtype, shape = str(value.dtype), tuple(value.shape)
            if value.dtype == torch.bool:
                value = value.to(torch.uint8)
            raw = value.reshape(-1).view(torch.uint8).numpy()
        else:  # NumPy
            dtype, shape = str(value.dtype), tuple(value.shape)
            if value.dtype.hasobject:
                raise _UnhashableError("arrays of Python objects")
            raw = value.tobytes(order="C")
        self.put(b"t", f"{dtype}{list(shape)}".encode())
        self.put(b"d", memoryview(raw).cast("B"))


def _is_array(value: Any) -> bool:
    kind = type(value).__module__.split(".")[0]
    return kind in ("torch", "numpy") and hasattr(value, "shape")


def dataset_facts(
    dataset: Any, *, max_items: int = MAX_ITEMS, max_bytes: int = MAX_BYTES
) -> dict[str, Any]:
    """What identifies ``dataset``: type, rows, method and fingerprint (see above)."""
    facts: dict[str, Any] = {"type": _type_name(dataset)}
    try:
        rows = len(dataset)
    except TypeError:
        rows = None
    if rows is not None:
        facts["rows"] = rows
    own = getattr(dataset, "_fingerprint", None)
    if isinstance(own, str) and own:
        return facts | {"method": "datasets-fingerprint", "fingerprint": own}
    if rows is None or not hasattr(dataset, "__getitem__"):
        return facts | _none("not a map-style dataset (no length or indexing)")
    if rows > max_items:
        return facts | _none(f"{rows} items, more than the limit of {max_items}")
    hasher = _Hasher(max_bytes)
    try:
        for index in range(rows):
            hasher.feed(dataset[index])
    except _UnhashableError as e:
        return facts | _none(str(e))
    return facts | {
        "method": "content-sha256",
        "fingerprint": hasher.digest.hexdigest(),
    }


def _none(reason: str) -> dict[str, Any]:
    return {"method": "none", "reason": reason}


def _type_name(value: Any) -> str:
    kind = type(value)
    return f"{kind.__module__}.{kind.__qualname__}"
