"""The spool through which a wrapped command's own log calls reach its run.

``mltrail run`` does not hand the ledger key's password (``MLTRAIL_KEY_PASSWORD``)
to the command it wraps: that command is arbitrary code. So a process that joins
the wrapper's run (``mltrail.start_run()`` inside it) cannot sign. It writes each
batch of entries, unsigned, as one JSON file in the folder ``MLTRAIL_SPOOL``
names (its blobs it stores itself: blobs need no signature). The wrapper appends
the batches, in the order they were written, when the command ends, before the
run's end; a recorder that died leaves them to ``close_stale_runs``.

A batch file is written to a temporary name and renamed, so a reader never sees
half of one::

    {"entries": [{"kind": "run.metrics", "body": {...}}, ...]}
"""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterator, Mapping

__all__ = [
    "SPOOLED_KINDS",
    "SPOOL_ENV",
    "create_spool",
    "read_batches",
    "remove_spool",
    "spool_from_env",
    "write_batch",
]

SPOOL_ENV = "MLTRAIL_SPOOL"
SPOOLED_KINDS = frozenset(
    {
        "run.params",
        "run.metrics",
        "run.data",
        "run.artifact",
        "run.step",
        "run.finetune",
        "run.hardware",
        "note",
    }
)
"""What a joined process may add to a run; never its start, end or keys."""

_counter = itertools.count()
Batch = list[tuple[str, dict[str, Any]]]


def create_spool(path: Path) -> Path:
    """Make the (empty, private) spool folder ``path``."""
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


def spool_from_env(env: Mapping[str, str]) -> Path | None:
    """The spool folder ``MLTRAIL_SPOOL`` names, when it exists."""
    value = env.get(SPOOL_ENV)
    if not value or not Path(value).is_dir():
        return None
    return Path(value)


def write_batch(spool: Path, entries: list[dict[str, Any]]) -> Path:
    """Add one batch (``{"kind", "body"}`` dicts) to the spool, atomically."""
    name = f"{time.time_ns():020d}-{os.getpid()}-{next(_counter):06d}.json"
    data = json.dumps({"entries": entries}, separators=(",", ":")).encode()
    tmp = spool / f".{name}.tmp"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, spool / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return spool / name


def read_batches(spool: Path) -> Iterator[tuple[Path, Batch | str]]:
    """Each batch file in write order, with its entries or why it cannot be used."""
    names = sorted(p for p in spool.glob("*.json") if not p.name.startswith("."))
    for path in names:
        try:
            data = json.loads(path.read_bytes())
        except (OSError, ValueError) as e:
            yield path, f"unreadable batch {path.name}: {e}"
            continue
        yield path, _entries(path, data)


def _entries(path: Path, data: Any) -> Batch | str:
    entries = data.get("entries") if isinstance(data, dict) else None
    if not isinstance(entries, list):
        return f"batch {path.name} holds no entry list"
    batch: Batch = []
    for item in entries:
        kind = item.get("kind") if isinstance(item, dict) else None
        body = item.get("body") if isinstance(item, dict) else None
        if not isinstance(kind, str) or kind not in SPOOLED_KINDS:
            return f"batch {path.name}: a joined process may not add {kind!r} entries"
        if not isinstance(body, dict):
            return f"batch {path.name}: the body of a {kind} entry is not an object"
        batch.append((kind, body))
    return batch


def remove_spool(spool: Path) -> None:
    """Remove the spool folder and any temporary files left in it (when empty)."""
    for leftover in spool.glob(".*.tmp"):
        leftover.unlink(missing_ok=True)
    with contextlib.suppress(OSError):
        spool.rmdir()
