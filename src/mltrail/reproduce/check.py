"""Does this machine hold what a run used? Data, code, config files and packages.

``check_reproduction`` re-hashes every recorded local dataset, reads the git commit
and the config files, captures the installed packages, and lists every difference
from the record. Remote datasets are not re-read.

Every file of a dataset is read: the hash cache of the home is not trusted for a
verdict, since whoever can write the home (or, with root, put a file's ctime back)
can make it answer a changed file with its old hash (ADR 0035, amendment "verdicts
read every file"). The hashes found are stored in it for the captures after the
check. ``trust_cache=True`` takes unchanged files' hashes from it instead.
"""

from __future__ import annotations

import hashlib
import os
import stat
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.capture.data.files import capture_file_entries
from mltrail.capture.data.hashcache import HashCache, default_cache_path
from mltrail.capture.machine.environment import capture_environment, is_this_python
from mltrail.capture.run.blob import Blob
from mltrail.capture.run.commitment import CommitmentKey, check_commitment
from mltrail.capture.run.git import capture_code
from mltrail.capture.run.userfiles import read_user_file
from mltrail.core.diff_data import diff_manifests, parse_packages
from mltrail.core.manifest import compute_manifest
from mltrail.errors import InputError, MltrailError
from mltrail.ledger.keystore import load_commitment_key
from mltrail.reproduce.facts import read_blob
from mltrail.reproduce.write import local_path
from mltrail.storage.readonly import can_write

if TYPE_CHECKING:
    from mltrail.audit.query import RunView
    from mltrail.ledger.home import Home

__all__ = ["Mismatch", "check_reproduction"]

MISSING = "missing"


@dataclass(frozen=True, slots=True)
class Mismatch:
    """One thing that is not as the run recorded it.

    ``kind`` is ``data``, ``code``, ``config`` or ``environment``; ``what`` names it
    (a dataset role and file, ``commit``, a config path, ``package numpy``).
    """

    kind: str
    what: str
    recorded: Any
    current: Any

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "kind": self.kind,
            "what": self.what,
            "recorded": self.recorded,
            "current": self.current,
        }


def check_reproduction(
    home: Home,
    view: RunView,
    cwd: Path | None = None,
    *,
    environment: bool = True,
    trust_cache: bool = False,
) -> list[Mismatch]:
    """Every difference between the record of ``view``'s run and this machine.

    Paths recorded under the run's working directory are looked for under ``cwd``
    (default: that same recorded directory), so a fresh clone elsewhere can be
    checked. Every data file is read unless ``trust_cache`` (see the module
    docstring).
    """
    started = view.body("run.started") or {}
    recorded_cwd = str(started.get("cwd") or Path.cwd())
    here = Path(recorded_cwd) if cwd is None else cwd
    found = _check_code(home, view, here, _code_files(view, recorded_cwd, cwd))
    found += _check_code_files(home, view, recorded_cwd, cwd)
    found += _check_configs(view, recorded_cwd, cwd)
    found += _check_data(home, view, recorded_cwd, cwd, trust_cache=trust_cache)
    if environment:
        found += _check_environment(home, view)
    return found


def _code_files(view: RunView, recorded_cwd: str, cwd: Path | None) -> list[Path]:
    """Where the run's ``run.code`` files are here (checked by ``_check_code_files``,
    so left out of the untracked and ignored lists, as when the run was recorded)."""
    files = (view.body("run.code") or {}).get("files") or []
    return [
        local_path(str(f["path"]), recorded_cwd, cwd).resolve()
        for f in files
        if isinstance(f, dict) and isinstance(f.get("path"), str)
    ]


def _check_code(
    home: Home, view: RunView, here: Path, watch: list[Path]
) -> list[Mismatch]:
    code = view.body("run.code")
    if not code or not code.get("commit"):
        return []
    try:
        now = capture_code(here, watch=watch)
    except MltrailError as e:
        return [Mismatch("code", "commit", code["commit"], f"unreadable: {e}")]
    if not now.get("commit"):
        reason = now.get("reason") or "no commit"
        return [Mismatch("code", "commit", code["commit"], f"none ({reason})")]
    found = []
    if now["commit"] != code["commit"]:
        found.append(Mismatch("code", "commit", code["commit"], now["commit"]))
    was, is_now = _uncommitted(code), _uncommitted(now)
    if was != is_now:
        found.append(Mismatch("code", "uncommitted changes (diff sha256)", was, is_now))
    for field, what, absent in _UNSEEN_BY_GIT:
        found += _unseen_mismatches(home, code.get(field), now.get(field), what, absent)
    return found


_UNSEEN_BY_GIT = (
    ("hidden", "file git was told not to look at", "as in the index"),
    ("ignored_sources", "ignored source file", MISSING),
    ("untracked_sources", "untracked source file", MISSING),
)
"""``run.code`` fields of files a commit and diff leave out (``git_hidden``), and
what a path not in the field means."""


def _unseen_mismatches(
    home: Home, recorded: Any, current: Any, what: str, absent: str
) -> list[Mismatch]:
    """The files of one such field that differ; a recorded digest of masked
    content matches the current bytes through the keyed commitment beside it."""
    was, is_now = _by_path(recorded), _by_path(current)
    found = []
    for path in sorted(was.keys() | is_now.keys()):
        old, new = was.get(path), is_now.get(path)
        if _state(old) == _state(new) or _same_original(home, old, new):
            continue
        found.append(
            Mismatch(
                "code",
                f"{what} {path}",
                _state(old) if old else absent,
                _state(new) if new else absent,
            )
        )
    return found


def _by_path(files: Any) -> dict[str, dict[str, Any]]:
    """Path -> its item, of a list of such files."""
    items = files if isinstance(files, list) else []
    return {
        f["path"]: f
        for f in items
        if isinstance(f, dict) and isinstance(f.get("path"), str)
    }


def _state(file: dict[str, Any] | None) -> str | None:
    """A file item's SHA-256, or ``deleted``, or its error."""
    if file is None:
        return None
    state = file.get("sha256") or ("deleted" if file.get("deleted") else None)
    return str(state or file.get("error") or "unreadable")


def _same_original(
    home: Home, old: dict[str, Any] | None, new: dict[str, Any] | None
) -> bool:
    original = (old or {}).get("sha256_original")
    content = (new or {}).get("content")
    if not isinstance(original, dict) or not isinstance(content, Blob):
        return False
    return check_commitment(content.data, original, _commitment_key(home))


def _check_code_files(
    home: Home, view: RunView, recorded_cwd: str, cwd: Path | None
) -> list[Mismatch]:
    """The untracked program and files the run recorded (``run.code`` files),
    hashed again; a file whose recorded digest is of masked content matches
    through the keyed commitment of its original bytes."""
    code = view.body("run.code") or {}
    found = []
    key = None
    for file in code.get("files") or []:
        if not isinstance(file, dict) or "sha256" not in file or file.get("tracked"):
            continue  # a tracked file is checked by the commit and the diff
        path = local_path(str(file.get("path", "")), recorded_cwd, cwd)
        try:
            data = read_user_file(path, what="code file", limit=None)
        except InputError:
            found.append(Mismatch("code", f"file {path}", file["sha256"], MISSING))
            continue
        current = hashlib.sha256(data).hexdigest()
        original = file.get("sha256_original")
        if current == file["sha256"]:
            continue
        if isinstance(original, dict):
            key = key or _commitment_key(home)
            if check_commitment(data, original, key):
                continue
        found.append(Mismatch("code", f"file {path}", file["sha256"], current))
    return found


def _commitment_key(home: Home) -> CommitmentKey | None:
    try:
        return load_commitment_key(home.path, create=False)
    except MltrailError:
        return None


def _uncommitted(code: dict[str, Any]) -> str:
    """The digest of the uncommitted diff of tracked files, or ``none``."""
    return str(code.get("diff_sha256")) if code.get("diff_size") else "none"


def _check_configs(
    view: RunView, recorded_cwd: str, cwd: Path | None
) -> list[Mismatch]:
    found = []
    for body in view.bodies("run.params"):
        file = body.get("file")
        if not isinstance(file, dict):
            continue
        path = local_path(str(file.get("path", "")), recorded_cwd, cwd)
        try:
            data = read_user_file(path, what="config file", limit=None)
            current = hashlib.sha256(data).hexdigest()
        except InputError:  # missing, unreadable, or a pipe or device now
            current = MISSING
        if current != file.get("sha256"):
            found.append(Mismatch("config", str(path), file.get("sha256"), current))
    return found


def _open_cache(home: Home, *, trust: bool) -> HashCache | None:
    """The home's hash cache: read only if ``trust``, else only written to."""
    path = default_cache_path(home.path)
    if home.ledger.store.read_only or not can_write(path):
        return None  # nothing is written into a read-only home
    try:
        return HashCache(path, read=trust)
    except (MltrailError, OSError):
        return None


def _check_data(
    home: Home,
    view: RunView,
    recorded_cwd: str,
    cwd: Path | None,
    *,
    trust_cache: bool,
) -> list[Mismatch]:
    found: list[Mismatch] = []
    cache = _open_cache(home, trust=trust_cache)
    try:
        for body in view.bodies("run.data"):
            if not body.get("url"):
                found += _check_dataset(home, body, recorded_cwd, cwd, cache)
    finally:
        if cache is not None:
            cache.close()
    return found


def _check_dataset(
    home: Home,
    body: dict[str, Any],
    recorded_cwd: str,
    cwd: Path | None,
    cache: HashCache | None,
) -> list[Mismatch]:
    role = str(body.get("role", "?"))
    path = local_path(str(body.get("path", "")), recorded_cwd, cwd)
    try:
        present = path.exists() or path.is_symlink()
    except OSError as e:  # a folder above it is closed to this account
        present, missing = False, f"unreadable: {e.strerror}"
    else:
        missing = MISSING
    if not present:
        return [Mismatch("data", f"{role} {path}", body.get("dataset"), missing)]
    try:
        manifest = compute_manifest(capture_file_entries(path, cache=cache))
    except MltrailError as e:
        return [
            Mismatch("data", f"{role} {path}", body.get("dataset"), f"unreadable: {e}")
        ]
    if manifest.dataset_id == body.get("dataset"):
        return []
    found = [
        Mismatch("data", f"{role} dataset id", body.get("dataset"), manifest.dataset_id)
    ]
    recorded = read_blob(home, body.get("manifest"))
    if recorded is not None:
        for change in diff_manifests(recorded, manifest.data).changes:
            found.append(
                Mismatch(
                    "data",
                    f"{role} {change.path}",
                    _file_state(change.old),
                    _file_state(change.new),
                )
            )
    return found


def _file_state(facts: dict[str, Any] | None) -> Any:
    if facts is None:
        return MISSING
    return facts.get("sha256") or facts


def _check_environment(home: Home, view: RunView) -> list[Mismatch]:
    recorded = view.body("run.environment")
    if not recorded:
        return []
    python = (recorded.get("python") or {}).get("executable")
    # os.access, not Path.exists: an interpreter this account may not run (in
    # another user's home) raises PermissionError there
    runnable = isinstance(python, str) and os.access(python, os.X_OK)
    found = []
    if runnable and not _safe_to_run(str(python)):
        runnable = False
        found.append(
            Mismatch(
                "environment",
                "python executable",
                python,
                "not run: it, its folder or its environment belongs to another "
                "account or others can write it (packages compared with this "
                "interpreter's instead)",
            )
        )
    now = capture_environment(python=python if runnable else None)
    old_version = (recorded.get("python") or {}).get("version")
    new_version = (now.get("python") or {}).get("version")
    if old_version != new_version:
        found.append(Mismatch("environment", "python", old_version, new_version))
    old = read_blob(home, (recorded.get("packages") or {}).get("list"))
    if old is not None:
        found += _package_mismatches(old, now["packages"]["list"].data)
    return found


def _safe_to_run(python: str) -> bool:
    """Whether the recorded interpreter may be run to list its packages: the path
    is a writer's word, and running it runs whatever is there (a script, or a
    real Python whose environment's ``.pth`` files run code at start-up). It, the
    file it links to, its folder and the environment above it must belong to
    this account or root, and none but a link be writable by group or others."""
    getuid = getattr(os, "getuid", None)
    if getuid is None or is_this_python(python):
        return True  # no owners to compare (Windows), or nothing is run
    path = Path(python)
    if not path.is_absolute():
        return False
    places = (
        (path, False),
        (path, True),
        (path.parent, True),
        (path.parent.parent, True),
    )
    for place, follow in places:
        try:
            info = os.stat(place, follow_symlinks=follow)
        except OSError:
            return False
        if info.st_uid not in (getuid(), 0):
            return False
        if not stat.S_ISLNK(info.st_mode) and info.st_mode & 0o022:
            return False
    return True


def _package_mismatches(old: bytes, new: bytes) -> list[Mismatch]:
    a, b = parse_packages(old), parse_packages(new)
    found = []
    for key in sorted(a.keys() | b.keys()):
        was = a[key][1] if key in a else MISSING
        now = b[key][1] if key in b else MISSING
        if was != now:
            name = (a.get(key) or b[key])[0]
            found.append(Mismatch("environment", f"package {name}", was, now))
    return found
