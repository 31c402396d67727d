"""The plain files of a reproduction folder: ``sha256sum`` lists, ``params.json``,
``environment.json`` and ``run.json``, made from a run's records."""

from __future__ import annotations

from pathlib import PurePosixPath
from typing import TYPE_CHECKING, Any

from mltrail.core.manifest import parse_manifest
from mltrail.reproduce.configs import relative_to

if TYPE_CHECKING:
    from mltrail.audit.query import RunView
    from mltrail.ledger.home import Home

__all__ = ["environment_json", "params_json", "run_json", "sum_lines"]


def sum_lines(manifest: bytes, root: str, cwd: str) -> bytes:
    """``sha256sum`` lines of a dataset's files, named relative to the working
    directory when the dataset lies under it (absolute otherwise)."""
    entries = parse_manifest(manifest).entries
    shown = relative_to(root, cwd) or root
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


def params_json(view: RunView) -> dict[str, Any]:
    return {k: {"value": v, "source": s} for k, (v, s) in sorted(view.params().items())}


def environment_json(view: RunView) -> dict[str, Any]:
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


def run_json(home: Home, view: RunView) -> dict[str, Any]:
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
