"""Bodies that describe data: datasets a run reads, its outputs, preprocessing steps.

A dataset is a local file or folder (hashed in parallel with the hash cache of the
ledger home, so an unchanged dataset is not read again) or an fsspec URL (the store's
own SHA-256 when it has one, streamed bytes otherwise). Its ``run.data`` body carries
the manifest and dataset id, the DVC hashes when DVC tracks the same data, and, when
asked, split statistics of tabular data and the rows shared between splits.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import stat
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.capture.data.dvc import find_dvc_hashes
from mltrail.capture.data.files import capture_file_entries, hash_dataset
from mltrail.capture.data.progress import count_progress
from mltrail.capture.data.remote import hash_remote, is_remote
from mltrail.capture.data.splits import describe_table_rows, find_overlaps
from mltrail.capture.data.tables import detect_format, table_files
from mltrail.capture.model.fingerprint import capture_model_fields
from mltrail.capture.run.blob import Blob
from mltrail.core.manifest import MANIFEST_MEDIA_TYPE, compute_manifest
from mltrail.core.rows import ROWS_MEDIA_TYPE
from mltrail.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping, Sequence
    from contextlib import AbstractContextManager

    from mltrail.capture.data.hashcache import HashCache
    from mltrail.capture.data.progress import ProgressCallback, ProgressFactory

__all__ = [
    "DataSpec",
    "add_overlaps",
    "artifact_body",
    "check_data",
    "dataset_body",
    "require_path",
    "script_body",
    "special_file_type",
    "step_body",
]

DataSpec = tuple[str, "str | Path"]


def check_data(location: str | Path, what: str, cwd: Path | None = None) -> str | Path:
    """A local path (made absolute against ``cwd``) that exists, or a remote URL.

    Raises:
        InputError: a local path does not exist.
    """
    if isinstance(location, str) and is_remote(location):
        return location
    path = Path(location)
    if cwd is not None and not path.is_absolute():
        path = cwd / path
    if not path.exists() and not path.is_symlink():
        raise InputError(
            f"{what} {location} does not exist",
            hint="check the path; nothing was recorded",
        )
    return path


def require_path(path: Path, what: str) -> Path:
    """``path`` when it exists.

    Raises:
        InputError: it does not.
    """
    if not path.exists():
        raise InputError(
            f"{what} {path} does not exist", hint="check the path; nothing was recorded"
        )
    return path


def _is_table(path: Path) -> bool:
    if path.is_file():
        return detect_format(path) is not None
    try:
        table_files(path)
    except InputError:
        return False
    return True


def dataset_body(
    role: str,
    location: str | Path,
    *,
    cache: HashCache | None = None,
    describe: bool = False,
    label: str | None = None,
    progress: ProgressFactory | None = None,
) -> dict[str, Any]:
    """The ``run.data`` body of a local file or folder, or of a remote URL.

    ``progress`` (a progress bar, say) is told how the hashing goes.

    Raises:
        InputError: a path or URL is missing, or a table cannot be described.
        CaptureError: something under it cannot be read.
    """
    if isinstance(location, str) and is_remote(location):
        with _hashing(progress, f"hashing {role} {location}") as callback:
            return _remote_body(role, location, callback)
    path = Path(location)
    with _hashing(progress, f"hashing {role} {path}") as callback:
        hashed = hash_dataset(path, cache=cache, progress=callback)
    body: dict[str, Any] = {
        "role": role,
        "path": str(path),
        **link_field(path),
        "dataset": hashed.dataset_id,
        "files": hashed.files,
        "bytes": hashed.bytes,
        "manifest": Blob(hashed.data, MANIFEST_MEDIA_TYPE),
    }
    dvc = find_dvc_hashes(path)
    if dvc is not None:
        body["dvc"] = dvc
    if (describe or label) and _is_table(path):
        body["table"], rows = describe_table_rows(path, label=label)
        if rows is not None:
            body["row_digests"] = Blob(rows, ROWS_MEDIA_TYPE)
    return body


def _hashing(
    progress: ProgressFactory | None, label: str
) -> AbstractContextManager[ProgressCallback | None]:
    return progress(label) if progress is not None else contextlib.nullcontext()


def _remote_body(
    role: str, url: str, progress: ProgressCallback | None
) -> dict[str, Any]:
    listing = hash_remote(url, progress=count_progress(progress))
    manifest = compute_manifest(listing.entries)
    sources = list(listing.checksum_source.values())
    return {
        "role": role,
        "path": listing.url,
        "url": listing.url,
        "dataset": manifest.dataset_id,
        "files": manifest.file_count,
        "bytes": manifest.total_bytes,
        "manifest": Blob(manifest.data, MANIFEST_MEDIA_TYPE),
        "checksums": {
            "store": sources.count("store"),
            "streamed": sources.count("streamed"),
        },
    }


def add_overlaps(bodies: Sequence[dict[str, Any]]) -> list[str]:
    """Add ``overlaps`` (rows shared with other described tables) to each body.

    Returns the leakage warnings, one per pair of datasets that share rows.
    """
    described = [b for b in bodies if "table" in b]
    tables = {b["role"]: Path(b["path"]) for b in described}
    if len(tables) < 2 or len(tables) < len(described):
        return []
    report = find_overlaps(tables)
    warnings = []
    for pair in report["pairs"]:
        a, b = pair["splits"]
        for body in bodies:
            other = b if body["role"] == a else a if body["role"] == b else None
            if other is not None:
                body.setdefault("overlaps", []).append(
                    {"role": other, "rows": pair["rows"]}
                )
        rows = pair["rows"]
        shared = (
            f"1 row of {b} also appears"
            if rows == 1
            else (f"{rows} rows of {b} also appear")
        )
        warnings.append(f"{shared} in {a}: possible leakage")
    return warnings


def artifact_body(
    path: Path,
    name: str | None = None,
    *,
    cache: HashCache | None = None,
    progress: ProgressFactory | None = None,
) -> dict[str, Any]:
    """The ``run.artifact`` body of an output: a file, a folder, or missing.

    A FIFO, socket or device is recorded by its type and never opened (reading
    a FIFO would block, a device may never end).

    Raises:
        CaptureError: something under it cannot be read.
    """
    body: dict[str, Any] = {"path": str(path), "exists": path.exists()}
    body |= link_field(path)
    if name:
        body["name"] = name
    if not body["exists"]:
        return body
    special = special_file_type(path)
    if special is not None:
        return body | {"type": special}
    if path.is_file():
        with _hashing(progress, f"hashing output {path}") as callback:
            entries = capture_file_entries(path, cache=cache, progress=callback)
        body.update(type="file", size=entries[0].size, sha256=entries[0].sha256)
        return body | capture_model_fields(path)
    with _hashing(progress, f"hashing output {path}") as callback:
        hashed = hash_dataset(path, cache=cache, progress=callback)
    body.update(
        type="directory",
        dataset=hashed.dataset_id,
        files=hashed.files,
        bytes=hashed.bytes,
        manifest=Blob(hashed.data, MANIFEST_MEDIA_TYPE),
    )
    return body | capture_model_fields(path)


def link_field(path: Path) -> dict[str, str]:
    """``{"link": target}`` when ``path`` itself is a symbolic link (its bytes,
    or files, are the target's, which lives elsewhere), else nothing."""
    try:
        target = os.readlink(path)
    except OSError:  # not a link, or gone
        return {}
    return {"link": os.fsencode(target).decode("utf-8", "backslashreplace")}


_SPECIAL_TYPES = {
    stat.S_IFIFO: "fifo",
    stat.S_IFSOCK: "socket",
    stat.S_IFCHR: "char-device",
    stat.S_IFBLK: "block-device",
}


def special_file_type(path: Path) -> str | None:
    """``fifo``, ``socket``, ``char-device``, ``block-device`` or ``other`` for a path
    (links followed) that is neither a regular file nor a folder, else None."""
    try:
        mode = path.stat().st_mode
    except OSError:
        return None
    if stat.S_ISREG(mode) or stat.S_ISDIR(mode):
        return None
    return _SPECIAL_TYPES.get(stat.S_IFMT(mode), "other")


_LINK_KEYS = ("path", "type", "dataset", "files", "bytes", "manifest", "sha256", "size")


def _dataset_link(body: Mapping[str, Any]) -> dict[str, Any]:
    """What a step records of an input or output: path and content identity."""
    return {k: body[k] for k in _LINK_KEYS if k in body} | {
        "exists": body.get("exists", True)
    }


def script_body(path: Path) -> dict[str, Any]:
    """A script a step ran: path, SHA-256, size, and its content as a blob.

    Raises:
        InputError: the script cannot be read.
    """
    try:
        data = path.read_bytes()
    except OSError as e:
        raise InputError(f"cannot read script {path}: {e.strerror or e}") from e
    return {
        "path": str(path),
        "sha256": hashlib.sha256(data).hexdigest(),
        "size": len(data),
        "content": Blob(data, "text/plain", text=True, name=path.name),
    }


def step_body(
    name: str,
    *,
    command: Sequence[str] | None,
    scripts: Iterable[Path],
    inputs: Iterable[Mapping[str, Any]],
    outputs: Iterable[Mapping[str, Any]],
) -> dict[str, Any]:
    """The ``run.step`` body linking a step's inputs, scripts and outputs."""
    unique = list(dict.fromkeys(p.resolve() for p in scripts))
    body: dict[str, Any] = {
        "name": name,
        "scripts": [script_body(p) for p in unique],
        "inputs": [_dataset_link(b) for b in inputs],
        "outputs": [_dataset_link(b) for b in outputs],
    }
    if command is not None:
        body["command"] = list(command)
    return body
