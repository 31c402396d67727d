"""Hash every tensor of a checkpoint in parallel: the fingerprint and model id.

Tensors are hashed by a pool of threads (``hashlib`` releases the GIL while it
hashes, so they run on all cores), the largest first so that one big embedding
does not finish last alone. Each thread reads its tensor in 8 MiB chunks into a
buffer of its own with ``preadv``: memory stays a few buffers per thread, however
large the model.
"""

from __future__ import annotations

import hashlib
import os
import threading
import time
from concurrent.futures import FIRST_COMPLETED, ThreadPoolExecutor, wait
from typing import TYPE_CHECKING

from mltrail.capture.data.progress import HashProgress, Reporter
from mltrail.capture.model.model_files import (
    is_model_path,
    iter_tensor_bytes,
    locate_model,
)
from mltrail.core.model import TensorEntry, compute_fingerprint
from mltrail.errors import InputError

if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from mltrail.capture.data.progress import ProgressCallback
    from mltrail.capture.model.model_files import ModelSource, TensorRef
    from mltrail.core.model import ModelFingerprint

__all__ = ["CHUNK", "capture_fingerprint", "capture_model_fields", "default_workers"]

CHUNK = 8 * 2**20


def default_workers() -> int:
    """One thread per core this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


class _Meter:
    """Bytes hashed so far, added to by every worker."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.bytes = 0
        self.tensors = 0

    def add(self, n: int, tensors: int = 0) -> None:
        with self.lock:
            self.bytes += n
            self.tensors += tensors


def _hash_ref(
    ref: TensorRef, meter: _Meter, buffer: bytearray, fds: dict[Path, int]
) -> TensorEntry:
    digest = hashlib.sha256()
    for chunk in iter_tensor_bytes(ref, buffer, fds):
        digest.update(chunk)
        meter.add(len(chunk))
    meter.add(0, tensors=1)
    return TensorEntry(ref.name, ref.dtype, ref.shape, digest.hexdigest(), ref.size)


def _close_all(fds: list[dict[Path, int]]) -> None:
    for table in fds:
        for fd in table.values():
            os.close(fd)
        table.clear()


def capture_fingerprint(
    source: ModelSource,
    *,
    workers: int | None = None,
    progress: ProgressCallback | None = None,
) -> ModelFingerprint:
    """The fingerprint of every tensor of ``source``.

    ``progress`` is called from this thread (after a second, then at most 10 times
    a second) with tensors and bytes done.

    A safetensors checkpoint whose files are unchanged since this process last
    fingerprinted it (same device, inode, size and mtime) is not read again: a
    wrapped run's output is fingerprinted for its ``run.artifact`` and its
    ``run.finetune``.

    Raises:
        InputError: a file ended early or a tensor is malformed.
    """
    key = _memo_key(source)
    if key is not None and key in _MEMO:
        return _MEMO[key]
    fingerprint = _hash_all(source, workers, progress)
    if key is not None:
        _MEMO[key] = fingerprint
        while len(_MEMO) > _MEMO_SIZE:
            del _MEMO[next(iter(_MEMO))]
    return fingerprint


_MEMO: dict[tuple[object, ...], ModelFingerprint] = {}
_MEMO_SIZE = 8


def _memo_key(source: ModelSource) -> tuple[object, ...] | None:
    """What identifies the files of a safetensors checkpoint as last read."""
    if any(ref.span is None for ref in source.tensors):
        return None
    files = sorted({str(ref.span.file) for ref in source.tensors if ref.span})
    try:
        stats = [os.stat(f) for f in files]
    except OSError:
        return None
    return tuple(
        (f, st.st_dev, st.st_ino, st.st_size, st.st_mtime_ns, st.st_ctime_ns)
        for f, st in zip(files, stats, strict=True)
    )


def _hash_all(
    source: ModelSource, workers: int | None, progress: ProgressCallback | None
) -> ModelFingerprint:
    refs = sorted(source.tensors, key=lambda r: -r.size)
    meter, reporter = _Meter(), Reporter(progress)
    total = sum(r.size for r in refs)
    opened: list[dict[Path, int]] = []

    local = threading.local()

    def run(ref: TensorRef) -> TensorEntry:
        if not hasattr(local, "fds"):
            local.buffer, local.fds = bytearray(CHUNK), {}
            with meter.lock:
                opened.append(local.fds)
        return _hash_ref(ref, meter, local.buffer, local.fds)

    pool = ThreadPoolExecutor(workers or default_workers())
    try:
        futures = [pool.submit(run, r) for r in refs]
        pending = set(futures)
        while pending:
            _, pending = wait(pending, timeout=0.1, return_when=FIRST_COMPLETED)
            _report(reporter, meter, len(refs), total, final=not pending)
        entries = [f.result() for f in futures]
    finally:
        pool.shutdown(wait=True, cancel_futures=True)
        _close_all(opened)
    return compute_fingerprint(entries)


def _report(
    reporter: Reporter, meter: _Meter, count: int, total: int, *, final: bool
) -> None:
    if reporter.due() or final:
        elapsed = time.monotonic() - reporter.start
        snapshot = HashProgress(
            meter.tensors, meter.bytes, count, total, count, elapsed
        )
        reporter.report(snapshot, final=final)


def capture_model_fields(path: Path) -> dict[str, Any]:
    """``model`` (the model id) and ``model_format`` of an output that is a
    checkpoint (safetensors file or folder, shards, PEFT adapter); else nothing.
    A checkpoint that cannot be read gives ``model_error`` instead."""
    if not is_model_path(path):
        return {}
    try:
        source = locate_model(path)
        fingerprint = capture_fingerprint(source)
    except InputError as e:
        return {"model_error": str(e)}
    return {"model": fingerprint.model_id, "model_format": source.format}
