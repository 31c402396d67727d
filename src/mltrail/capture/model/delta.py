"""Per-tensor weight deltas with NumPy, streamed in chunks of 128 Ki elements.

Tensors whose bytes are equal (same SHA-256 in both fingerprints) are unchanged
and not read again. The others are read side by side, a chunk at a time, converted
to floats (bf16 by shifting its 16 bits into the top of a float32, fp8 through a
256-entry table), and reduced to the sums the row needs: ||dW||^2, ||W||^2 and
max |dW| (accumulated in float64). Memory is a few chunks per thread whatever the
tensor's size; threads work on different tensors (NumPy releases the GIL).
"""

from __future__ import annotations

import math
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

from mltrail.capture.model.fingerprint import default_workers
from mltrail.capture.model.model_files import iter_tensor_bytes
from mltrail.core.model_delta import TensorDelta, pair_tensors
from mltrail.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from mltrail.capture.model.model_files import ModelSource, TensorRef
    from mltrail.core.model import ModelFingerprint

__all__ = ["MODELS_EXTRA", "capture_delta", "load_array", "numpy", "tensor_norm"]

MODELS_EXTRA = "pip install 'mltrail[models]'"
CHUNK_ELEMENTS = 2**17  # 128 Ki: the arrays of a chunk stay in the CPU cache


def numpy() -> Any:
    """The ``numpy`` module, or an error naming the extra to install."""
    try:
        import numpy as np
    except ImportError:
        raise InputError(
            "weight deltas need NumPy", hint=f"{MODELS_EXTRA} (numpy, safetensors)"
        ) from None
    return np


_F8: dict[str, Any] = {}


def _fp8_table(dtype: str) -> Any:
    """The float32 value of each of the 256 codes of an 8-bit float."""
    if dtype not in _F8:
        np = numpy()
        exp_bits, bias = (4, 7) if dtype == "F8_E4M3" else (5, 15)
        man_bits = 7 - exp_bits
        values = []
        for code in range(256):
            sign = -1.0 if code & 0x80 else 1.0
            e, m = (
                (code >> man_bits) & ((1 << exp_bits) - 1),
                code & ((1 << man_bits) - 1),
            )
            if dtype == "F8_E4M3" and e == 15 and m == 7:
                values.append(math.nan)
            elif dtype == "F8_E5M2" and e == 31:
                values.append(math.inf * sign if m == 0 else math.nan)
            elif e == 0:
                values.append(sign * m * 2.0 ** (1 - bias - man_bits))
            else:
                values.append(sign * (1 + m / (1 << man_bits)) * 2.0 ** (e - bias))
        _F8[dtype] = np.array(values, dtype=np.float32)
    return _F8[dtype]


_VIEWS = {"F32": "<f4", "F64": "<f8"}
_CASTS = {
    "F16": ("<f2", "f4"), "I8": ("i1", "f4"), "U8": ("u1", "f4"), "BOOL": ("u1", "f4"),
    "I16": ("<i2", "f4"), "U16": ("<u2", "f4"), "I32": ("<i4", "f8"),
    "U32": ("<u4", "f8"), "I64": ("<i8", "f8"), "U64": ("<u8", "f8"),
    "BF16": ("<u2", "f4"), "F8_E4M3": ("u1", "f4"), "F8_E5M2": ("u1", "f4"),
}  # fmt: skip


def to_float(raw: Any, dtype: str, out: Any = None) -> Any:
    """The values of raw little-endian bytes ``raw`` (a uint8 array) as floats,
    written into ``out`` (float32, or float64 for 32/64-bit integers) when given.

    Raises:
        InputError: the dtype has no real values (complex, sub-byte).
    """
    np = numpy()
    if dtype in _VIEWS:
        return raw.view(_VIEWS[dtype])
    if dtype not in _CASTS:
        raise InputError(f"weight deltas of {dtype} tensors are not supported")
    view, cast = _CASTS[dtype]
    values = raw.view(view)
    if out is None:
        out = np.empty(values.size, dtype=cast)
    out = out[: values.size]
    if dtype == "BF16":  # the top 16 bits of a float32
        bits = out.view(np.uint32)
        np.copyto(bits, values)
        np.left_shift(bits, 16, out=bits)
    elif dtype.startswith("F8_"):
        np.take(_fp8_table(dtype), values, out=out)
    else:
        np.copyto(out, values, casting="unsafe")
    return out


def _float_buffer(dtype: str, size: int) -> Any:
    np = numpy()
    cast = _CASTS.get(dtype, ("", "f4"))[1]
    return np.empty(size, dtype=cast)


class _Reader:
    """Reads tensors in chunks, with open files cached per thread.

    Each chunk is converted into a buffer allocated once per tensor (fresh
    buffers for every chunk would cost a page fault per page, more than the math).
    """

    def __init__(self) -> None:
        self.local = threading.local()
        self.lock = threading.Lock()
        self.tables: list[dict[Path, int]] = []

    def _fd(self, file: Path) -> int:
        if not hasattr(self.local, "fds"):
            self.local.fds = {}
            with self.lock:
                self.tables.append(self.local.fds)
        fds = self.local.fds
        if file not in fds:
            fds[file] = os.open(file, os.O_RDONLY)
        return fds[file]

    def chunks(self, ref: TensorRef) -> Iterator[Any]:
        """The tensor's values as float arrays of at most CHUNK_ELEMENTS (each valid
        until the next is asked for)."""
        np = numpy()
        itemsize = ref.size // max(math.prod(ref.shape), 1) or 1
        step = CHUNK_ELEMENTS * itemsize
        out = _float_buffer(ref.dtype, min(CHUNK_ELEMENTS, ref.size // itemsize))
        if ref.span is None:
            raw = np.asarray(next(iter_tensor_bytes(ref, bytearray(), {})))
            for at in range(0, ref.size, step):
                yield to_float(raw[at : at + step], ref.dtype, out)
            return
        fd, offset = self._fd(ref.span.file), ref.span.offset
        buf = np.empty(min(step, ref.size), dtype=np.uint8)
        for at in range(0, ref.size, step):
            part = buf[: min(step, ref.size - at)]
            _read_exact(fd, offset + at, part)
            yield to_float(part, ref.dtype, out)

    def close(self) -> None:
        for table in self.tables:
            for fd in table.values():
                os.close(fd)
            table.clear()


def _read_exact(fd: int, offset: int, buf: Any) -> None:
    view, done = memoryview(buf), 0
    while done < len(view):
        got = os.preadv(fd, [view[done:]], offset + done)
        if got <= 0:
            raise InputError(
                "file ended early while reading a tensor",
                hint="the file changed while it was read; try again",
            )
        done += got


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


class _Sums:
    """||b - a||^2, ||a||^2 and max |b - a| of a tensor, chunk by chunk, in float64."""

    def __init__(self, size: int) -> None:
        np = numpy()
        self.d = np.empty(size, dtype=np.float64)
        self.a = np.empty(size, dtype=np.float64)
        self.dd = self.aa = self.top = 0.0

    def add(self, a: Any, b: Any) -> None:
        np = numpy()
        d, a64 = self.d[: a.size], self.a[: a.size]
        np.subtract(b, a, out=d, dtype=np.float64)
        np.copyto(a64, a)
        if d.size:
            # np.max keeps a NaN (Python's max drops it by where it stands), so a
            # NaN in the weights leaves max |dW| unknown like the norms
            self.top = float(np.max((self.top, d.max(), -d.min())))
        # squares summed in place (pairwise): np.dot would go through a threaded
        # BLAS, whose spinning threads are many times slower on a busy machine
        self.dd += float(np.multiply(d, d, out=d).sum())
        self.aa += float(np.multiply(a64, a64, out=a64).sum())


def _row(reader: _Reader, base: TensorRef, tuned: TensorRef) -> TensorDelta:
    params = math.prod(base.shape)
    sums = _Sums(min(CHUNK_ELEMENTS, params))
    for a, b in zip(reader.chunks(base), reader.chunks(tuned), strict=True):
        sums.add(a, b)
    l2 = math.sqrt(sums.dd)
    relative = _finite(l2 / math.sqrt(sums.aa)) if sums.aa > 0 else None
    return TensorDelta(
        base.name, "changed", params, _finite(l2), relative, _finite(sums.top)
    )


def capture_delta(
    base: ModelSource,
    tuned: ModelSource,
    base_print: ModelFingerprint,
    tuned_print: ModelFingerprint,
    *,
    workers: int | None = None,
) -> list[TensorDelta]:
    """One row per tensor of either checkpoint: unchanged, changed (with norms),
    added, removed or reshaped.

    Raises:
        InputError: the checkpoints are different architectures, NumPy is
            missing, or a dtype has no float values.
    """
    pairing = pair_tensors(base_print, tuned_print)
    old = {r.name: r for r in base.tensors}
    new = {r.name: r for r in tuned.tensors}
    sizes = base_print.by_name()
    rows = [
        TensorDelta(n, "unchanged", sizes[n].numel, 0.0, 0.0, 0.0) for n in pairing.same
    ]
    for status, names, where in (
        ("added", pairing.added, tuned_print.by_name()),
        ("removed", pairing.removed, sizes),
        ("reshaped", pairing.reshaped, sizes),
    ):
        rows += [TensorDelta(n, status, where[n].numel) for n in names]
    if pairing.differ:
        numpy()
    reader = _Reader()
    order = sorted(pairing.differ, key=lambda n: -old[n].size)
    try:
        with ThreadPoolExecutor(workers or default_workers()) as pool:
            rows += list(pool.map(lambda n: _row(reader, old[n], new[n]), order))
    finally:
        reader.close()
    return rows


def load_array(ref: TensorRef) -> Any:
    """A whole tensor as a float64 array of its shape (for small tensors: LoRA A, B)."""
    np = numpy()
    reader = _Reader()
    try:
        parts = [c.astype(np.float64) for c in reader.chunks(ref)]
    finally:
        reader.close()
    flat = np.concatenate(parts) if parts else np.zeros(0)
    return flat.reshape(ref.shape)


def tensor_norm(ref: TensorRef) -> float:
    """The Frobenius norm of a tensor, streamed in chunks."""
    np = numpy()
    reader = _Reader()
    total = 0.0
    try:
        for chunk in reader.chunks(ref):
            c = chunk.astype(np.float64)
            total += float(np.multiply(c, c, out=c).sum())
    finally:
        reader.close()
    return math.sqrt(total)
