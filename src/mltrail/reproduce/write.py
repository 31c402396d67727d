"""Write what a run needs to be run again: its command, configs, packages, data lists.

``write_reproduction`` fills a folder from the ledger alone (the run's records and
blobs): ``command.sh``, the config files as they were, ``requirements.txt``, each
dataset's manifest and a ``sha256sum -c`` list, ``params.json``,
``environment.json``, ``run.json`` and a ``README.md`` that says what to do.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from mltrail.core.manifest import parse_manifest
from mltrail.errors import InputError, MltrailError
from mltrail.reproduce.facts import read_blob
from mltrail.reproduce.script import command_script, readme

if TYPE_CHECKING:
    from mltrail.home import Home
    from mltrail.query import RunView

__all__ = ["ReproPlan", "local_path", "write_reproduction"]

_GENERATED = {
    "command.sh",
    "requirements.txt",
    "params.json",
    "environment.json",
    "run.json",
    "README.md",
}


@dataclass
class ReproPlan:
    """What :func:`write_reproduction` wrote, and what it could not restore."""

    run: str
    dest: Path
    files: list[str] = field(default_factory=list)
    configs: dict[str, str] = field(
        default_factory=dict
    )  # written name -> recorded path
    data: dict[str, str] = field(default_factory=dict)  # role -> sha256 list name
    secrets: list[str] = field(default_factory=list)  # variables to set
    warnings: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        out = dict(self.__dict__)
        out["dest"] = str(self.dest)
        return out


def write_reproduction(
    home: Home, view: RunView, dest: Path, *, force: bool = False
) -> ReproPlan:
    """Write the files that rerun ``view``'s run into ``dest``.

    Raises:
        InputError: ``dest`` is a file, a folder with files in it and not
            ``force``, or cannot be created or written.
    """
    try:
        return _write_all(home, view, dest, force)
    except OSError as e:
        raise InputError(
            f"cannot write the reproduction into {dest}: {e.strerror or e}",
            hint="name a folder that can be created and written (--out DIR)",
        ) from e


def _write_all(home: Home, view: RunView, dest: Path, force: bool) -> ReproPlan:
    _prepare(dest, force)
    plan = ReproPlan(view.id, dest)
    started = view.body("run.started") or {}
    cwd = str(started.get("cwd") or ".")
    _write_configs(home, view, cwd, plan)
    _write_requirements(home, view, plan)
    for body in view.bodies("run.data"):
        _write_data(home, body, cwd, plan)
    _write_json(plan, "params.json", _params(view))
    _write_json(plan, "environment.json", _environment(view))
    _write_json(plan, "run.json", _run_json(home, view))
    script, plan.secrets = command_script(view, plan.configs, plan.data)
    _write(plan, "command.sh", script.encode()).chmod(0o755)
    _write(plan, "README.md", readme(view, plan).encode())
    return plan


def _prepare(dest: Path, force: bool) -> None:
    if dest.exists() and not dest.is_dir():
        raise InputError(f"{dest} is a file", hint="name a folder to write into")
    if dest.is_dir() and any(dest.iterdir()) and not force:
        raise InputError(
            f"{dest} is not empty",
            hint="name a new or empty folder, or pass --force to overwrite its files",
        )
    dest.mkdir(parents=True, exist_ok=True)


def _write(plan: ReproPlan, name: str, data: bytes) -> Path:
    relative = PurePosixPath(name)
    if relative.is_absolute() or ".." in relative.parts or not relative.name:
        raise InputError(
            f"refusing to write {name!r}: it is not a file inside {plan.dest}"
        )
    target = plan.dest / name
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(data)
    plan.files.append(name)
    return target


def _write_json(plan: ReproPlan, name: str, value: Any) -> None:
    text = json.dumps(value, indent=2, ensure_ascii=False, sort_keys=True) + "\n"
    _write(plan, name, text.encode())


def local_path(recorded: str, recorded_cwd: str, cwd: Path | None = None) -> Path:
    """Where a recorded absolute path is now: the same place, or, given ``cwd``,
    the place under ``cwd`` that it had under the recorded working directory."""
    path = Path(recorded)
    relative = _relative(recorded, recorded_cwd)
    if cwd is None or relative is None:
        return path if path.is_absolute() else Path(recorded_cwd) / path
    return cwd / relative


def _relative(recorded: str, recorded_cwd: str) -> str | None:
    """``recorded`` relative to the recorded working directory, if it lies under it."""
    path = PurePosixPath(recorded)
    if not path.is_absolute():
        return None if ".." in path.parts else str(path)
    try:
        return str(path.relative_to(recorded_cwd))
    except ValueError:
        return None


def _config_name(recorded: str, cwd: str) -> str:
    relative = _relative(recorded, cwd)
    if (
        relative is None
        or ".." in PurePosixPath(relative).parts
        or relative in _GENERATED
        or relative.startswith("data-")
    ):
        return f"configs/{PurePosixPath(recorded).name}"
    return relative


def _write_configs(home: Home, view: RunView, cwd: str, plan: ReproPlan) -> None:
    for body in view.bodies("run.params"):
        file = body.get("file")
        if not isinstance(file, dict):
            continue
        recorded = str(file.get("path", ""))
        data = read_blob(home, file.get("content"))
        if data is None:
            plan.warnings.append(f"config {recorded}: its content is not in the ledger")
            continue
        if file.get("content_redacted"):
            plan.warnings.append(
                f"config {recorded}: secrets in it were redacted; put them back by hand"
            )
        name = _config_name(recorded, cwd)
        _write(plan, name, data)
        plan.configs[name] = recorded


def _write_requirements(home: Home, view: RunView, plan: ReproPlan) -> None:
    environment = view.body("run.environment") or {}
    data = read_blob(home, (environment.get("packages") or {}).get("list"))
    if data is None:
        plan.warnings.append("no package list recorded: requirements.txt not written")
        return
    _write(plan, "requirements.txt", data)


def _safe_role(role: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", role) or "data"


def _write_data(home: Home, body: dict[str, Any], cwd: str, plan: ReproPlan) -> None:
    role = _safe_role(str(body.get("role", "data")))
    data = read_blob(home, body.get("manifest"))
    if data is None:
        plan.warnings.append(f"data {role}: its manifest is not in the ledger")
        return
    _write(plan, f"data-{role}.manifest.jsonl", data)
    if body.get("url"):
        plan.warnings.append(f"data {role}: remote ({body['url']}); no sha256sum list")
        return
    try:
        lines = _sum_lines(data, str(body.get("path", "")), cwd)
    except MltrailError as e:
        plan.warnings.append(f"data {role}: manifest unreadable ({e})")
        return
    _write(plan, f"data-{role}.sha256", lines)
    plan.data[role] = f"data-{role}.sha256"


def _sum_lines(manifest: bytes, root: str, cwd: str) -> bytes:
    """``sha256sum`` lines of a dataset's files, named relative to the working
    directory when the dataset lies under it (absolute otherwise)."""
    entries = parse_manifest(manifest).entries
    shown = _relative(root, cwd) or root
    single = len(entries) == 1 and entries[0].path == PurePosixPath(root).name
    out = []
    for entry in entries:
        if entry.sha256 is None:
            continue  # links and empty folders: sha256sum cannot check them
        name = shown if single else f"{shown.rstrip('/')}/{entry.path}"
        out.append(_sum_line(entry.sha256, name))
    return "".join(out).encode("utf-8", "surrogateescape")


def _sum_line(digest: str, name: str) -> str:
    """One line as ``sha256sum`` prints it (a name with ``\\`` or a newline escaped)."""
    if "\\" in name or "\n" in name:
        escaped = name.replace("\\", "\\\\").replace("\n", "\\n")
        return f"\\{digest}  {escaped}\n"
    return f"{digest}  {name}\n"


def _params(view: RunView) -> dict[str, Any]:
    return {k: {"value": v, "source": s} for k, (v, s) in sorted(view.params().items())}


def _environment(view: RunView) -> dict[str, Any]:
    body = view.body("run.environment") or {}
    python = body.get("python") or {}
    return {
        "python": {
            k: python.get(k) for k in ("version", "implementation", "executable")
        },
        "packages": (body.get("packages") or {}).get("count"),
        "cuda": body.get("cuda"),
        "container": body.get("container"),
        "conda": body.get("conda"),
        "os": body.get("os"),
        "hardware": view.body("run.hardware"),
    }


def _run_json(home: Home, view: RunView) -> dict[str, Any]:
    code = view.body("run.code") or {}
    return {
        "run": view.id,
        "name": view.summary.name,
        "origin": home.ledger.origin,
        "status": view.summary.status,
        "started": view.summary.started,
        "ended": view.summary.ended,
        "command": view.summary.command,
        "commit": code.get("commit"),
        "seqs": [r.seq for r in view.records],
        "reproduce": f"mltrail reproduce {view.id} --check",
    }
