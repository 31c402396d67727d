"""DVC interop: the hashes DVC recorded for a file or folder, and DVC's own md5.

A dataset tracked by DVC is known there by an md5 (``<hex>`` for a file,
``<hex>.dir`` for a folder), written in a ``<name>.dvc`` file beside it or in a
``dvc.lock`` of the pipeline that produced it. ``find_dvc_hashes`` reads those
records (never running DVC) so a run can record both ids, and ``dvc_md5``
recomputes DVC's md5 so a user can check a file or folder against DVC's record.

What DVC hashes (checked against dvc-data 3.x, ``dvc_data/hashfile/hash.py`` and
``tree.py``, and against real ``dvc add`` / ``dvc repro`` output of DVC 3.67):

* DVC 3 outputs (``hash: md5`` in the record): the plain md5 of the file's bytes,
  text or binary; line endings are *not* normalised.
* DVC 2 outputs (no ``hash`` field; DVC 3 calls them ``md5-dos2unix``): the file is
  read in 1 MiB chunks, and a chunk whose first 512 bytes look like text (no NUL,
  at most 30 % non-text bytes) has ``\\r\\n`` replaced by ``\\n`` before hashing.
* A folder: the md5 of ``json.dumps(listing, sort_keys=True)`` where ``listing`` is
  ``[{"md5": ..., "relpath": ...}]`` sorted by ``relpath``, followed by ``.dir``.
  The listing itself is kept in the DVC cache as ``<md5>.dir``
  (``.dvc/cache/files/md5/xx/rest.dir`` in DVC 3, ``.dvc/cache/xx/rest.dir`` in 2).
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from mltrail.capture.data.dvc_md5 import dvc_md5
from mltrail.errors import CaptureError, InputError

__all__ = ["dvc_md5", "find_dvc_hashes"]

_MD5 = re.compile(r"[0-9a-f]{32}(\.dir)?")
_FILE_MD5 = re.compile(r"[0-9a-f]{32}")
_LEGACY = "md5-dos2unix"
_FIX_HINT = "fix the file or regenerate it with dvc (dvc add / dvc repro)"

# (the record returned, the output it came from, the .dvc or dvc.lock file)
_Found = tuple[dict[str, Any], dict[str, Any], Path]


def find_dvc_hashes(path: Path) -> dict[str, Any] | None:
    """The DVC record of ``path`` (a local file or folder), or None if DVC does not track it.

    Looks for a ``<name>.dvc`` file beside ``path``, then for a ``dvc.lock`` in the
    folder holding ``path`` and each parent up to the repository root (the nearest
    folder with a ``.dvc`` folder or ``.git``), whose stage outputs name ``path``
    (relative to the stage's working folder: the ``dvc.lock`` folder joined with the
    stage's ``wdir`` from ``dvc.yaml``). ``path`` need not exist (a tracked file that
    was not pulled is still tracked).

    Returns:
        ``{"source", "stage", "md5", "size", "nfiles", "hash"}``: ``source`` is the
        record file's path relative to the repository root (``/``-separated),
        ``stage`` the ``dvc.lock`` stage (None for a ``.dvc`` file), ``hash`` the
        hash DVC used (``"md5"``, or ``"md5-dos2unix"`` for a DVC 2 record: use
        ``dvc_md5(path, legacy=True)``). A folder whose ``.dir`` listing is in the
        record or in the DVC cache also has ``"files": {relpath: md5}``.

    Raises:
        InputError: a ``.dvc``, ``dvc.lock`` or cached ``.dir`` file is malformed.
        CaptureError: one of them cannot be read.
    """
    target = _anchor(Path(os.path.abspath(path)))
    root = _repo_root(target.parent)
    base = root or target.parent
    found = _from_dvc_file(target, base) or _from_lock_files(target, root, base)
    if found is None:
        return None
    record, out, file = found
    files = _dir_listing(record, out, root, file)
    if files is not None:
        record["files"] = files
    return record


# --- locating records ----------------------------------------------------------------


def _anchor(path: Path) -> Path:
    """``path`` with its parent folders resolved but not itself (it may be a cache link)."""
    return path.parent.resolve() / path.name


def _repo_root(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        if (folder / ".dvc").is_dir() or (folder / ".git").exists():
            return folder
    return None


def _source(file: Path, base: Path) -> str:
    try:
        return file.relative_to(base).as_posix()
    except ValueError:
        return file.as_posix()


def _from_dvc_file(target: Path, base: Path) -> _Found | None:
    dvc_file = target.with_name(target.name + ".dvc")
    if not dvc_file.is_file():
        return None
    data = _load_yaml(dvc_file)
    if not isinstance(data, dict):
        raise _malformed(dvc_file, "the top level is not a mapping")
    for out in _outs(data, dvc_file):
        if _anchor(Path(os.path.normpath(dvc_file.parent / out["path"]))) == target:
            return _record(out, dvc_file, _source(dvc_file, base), None), out, dvc_file
    return None


def _from_lock_files(target: Path, root: Path | None, base: Path) -> _Found | None:
    for folder in _lock_folders(target.parent, root):
        lock = folder / "dvc.lock"
        if lock.is_file():
            found = _match_lock(lock, target, base)
            if found is not None:
                return found
    return None


def _lock_folders(start: Path, root: Path | None) -> list[Path]:
    """``start`` and its parents up to ``root`` (only ``start`` outside a repository)."""
    folders = [start]
    for folder in start.parents if root is not None and root != start else ():
        folders.append(folder)
        if folder == root:
            break
    return folders


def _match_lock(lock: Path, target: Path, base: Path) -> _Found | None:
    stages = _lock_stages(lock)
    wdirs = _stage_wdirs(lock.with_name("dvc.yaml"))
    for name, stage in stages.items():
        wdir = lock.parent / wdirs.get(name.partition("@")[0], ".")
        for out in _outs(stage, lock, name):
            if "://" in out["path"]:
                continue  # an external output (s3://...), not a local path
            if _anchor(Path(os.path.normpath(wdir / out["path"]))) == target:
                return _record(out, lock, _source(lock, base), name), out, lock
    return None


# --- parsing -----------------------------------------------------------------------


def _load_yaml(file: Path) -> Any:
    import yaml

    try:
        text = file.read_text(encoding="utf-8")
    except OSError as e:
        raise CaptureError(f"cannot read {file}: {e.strerror or e}") from e
    except UnicodeDecodeError as e:
        raise _malformed(file, "not UTF-8 text") from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise _malformed(file, f"not valid YAML ({_one_line(e)})") from e


def _one_line(error: Exception) -> str:
    return " ".join(str(error).split())


def _malformed(file: Path, why: str) -> InputError:
    return InputError(f"malformed DVC file {file}: {why}", hint=_FIX_HINT)


def _lock_stages(lock: Path) -> dict[str, Any]:
    data = _load_yaml(lock)
    if not isinstance(data, dict):
        raise _malformed(lock, "the top level is not a mapping")
    # dvc.lock schema 2.0 keeps stages under "stages"; the 1.0 format (DVC 1.x)
    # has them at the top level and no "schema" key.
    stages = data.get("stages", {}) if "schema" in data else data
    if not isinstance(stages, dict) or not all(
        isinstance(s, dict) for s in stages.values()
    ):
        raise _malformed(lock, "stages must be a mapping of mappings")
    return stages


def _stage_wdirs(dvc_yaml: Path) -> dict[str, str]:
    """Each stage's ``wdir`` from ``dvc.yaml``; unreadable or templated ones are left out."""
    if not dvc_yaml.is_file():
        return {}
    data = _load_yaml(dvc_yaml)
    stages = data.get("stages") if isinstance(data, dict) else None
    if not isinstance(stages, dict):
        return {}
    wdirs = {}
    for name, stage in stages.items():
        body = stage.get("do", stage) if isinstance(stage, dict) else None
        wdir = body.get("wdir") if isinstance(body, dict) else None
        if isinstance(wdir, str) and "${" not in wdir:
            wdirs[str(name)] = wdir
    return wdirs


def _outs(
    data: dict[str, Any], file: Path, stage: str | None = None
) -> list[dict[str, Any]]:
    where = f"stage {stage!r}: " if stage is not None else ""
    outs = data.get("outs", [])
    if not isinstance(outs, list):
        raise _malformed(file, f"{where}outs must be a list")
    for out in outs:
        if not isinstance(out, dict) or not isinstance(out.get("path"), str):
            raise _malformed(file, f"{where}each output needs a path")
    return outs


def _record(
    out: dict[str, Any], file: Path, source: str, stage: str | None
) -> dict[str, Any]:
    what = f"output {out['path']!r}"
    md5 = out.get("md5")
    if md5 is not None and not (isinstance(md5, str) and _MD5.fullmatch(md5)):
        raise _malformed(file, f"{what}: md5 is not an md5 hex digest: {md5!r}")
    hash_name = out.get("hash", _LEGACY)
    if not isinstance(hash_name, str):
        raise _malformed(file, f"{what}: hash is not a name: {hash_name!r}")
    return {
        "source": source,
        "stage": stage,
        "md5": md5,
        "size": _count(out, "size", file, what),
        "nfiles": _count(out, "nfiles", file, what),
        "hash": hash_name,
    }


def _count(out: dict[str, Any], key: str, file: Path, what: str) -> int | None:
    value = out.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _malformed(file, f"{what}: {key} is not a count: {value!r}")
    return value


# --- folder listings -------------------------------------------------------------------


def _dir_listing(
    record: dict[str, Any], out: dict[str, Any], root: Path | None, file: Path
) -> dict[str, str] | None:
    md5 = record["md5"]
    if md5 is None or not md5.endswith(".dir"):
        return None
    if "files" in out:  # granular listing kept in the record (cloud versioning)
        return _listing(out["files"], file)
    if root is None:
        return None
    for cache in _cache_dirs(root):
        for candidate in (
            cache / "files" / "md5" / md5[:2] / md5[2:],
            cache / md5[:2] / md5[2:],
        ):
            if candidate.is_file():
                return _listing(_load_json(candidate), candidate)
    return None


def _load_json(file: Path) -> Any:
    try:
        return json.loads(file.read_bytes())
    except OSError as e:
        raise CaptureError(f"cannot read {file}: {e.strerror or e}") from e
    except ValueError as e:
        raise InputError(
            f"malformed DVC cache listing {file}: not JSON ({e})",
            hint="the DVC cache is damaged: remove the file and run dvc fetch",
        ) from e


def _listing(items: Any, file: Path) -> dict[str, str]:
    bad = InputError(
        f"malformed DVC folder listing {file}: "
        "expected a list of {'md5': <hex>, 'relpath': <path>}",
        hint="regenerate it with dvc (dvc add / dvc commit)",
    )
    if not isinstance(items, list):
        raise bad
    files = {}
    for item in items:
        if not isinstance(item, dict):
            raise bad
        md5, rel = item.get("md5"), item.get("relpath")
        if not (isinstance(rel, str) and isinstance(md5, str)):
            raise bad
        if not _FILE_MD5.fullmatch(md5):
            raise bad
        files[rel] = md5
    return files


def _cache_dirs(root: Path) -> list[Path]:
    """The cache folder set in ``.dvc/config.local`` or ``.dvc/config``, then the default."""
    dvc_dir = root / ".dvc"
    found = [dvc_dir / "cache"]
    for name in ("config", "config.local"):  # later files override earlier ones
        configured = _config_cache_dir(dvc_dir / name)
        if configured is not None:
            found.insert(0, dvc_dir / configured)
    return found


def _config_cache_dir(config: Path) -> str | None:
    try:
        lines = config.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    section = None
    for line in lines:
        text = line.strip()
        if text.startswith("["):
            section = text.strip("[]").strip().strip("'\"")
        elif section == "cache" and "=" in text:
            key, _, value = text.partition("=")
            if key.strip() == "dir":
                return value.strip()
    return None
