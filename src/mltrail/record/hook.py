"""``mltrail hook``: record ``python script.py`` in chosen folders without a wrapper.

``install_hook`` writes two files into a site-packages folder (by default the
active virtual environment's): ``zz-mltrail-hook.pth``, whose one line
``import _mltrail_hook`` Python runs at every start-up, and ``_mltrail_hook.py``,
the source of ``mltrail.hook_boot`` followed by the chosen project folders, the
ledger home and the folder mltrail is imported from. ``remove_hook`` deletes
both; ``hook_status`` reads them back. See ``mltrail.hook_boot`` for what runs
at start-up and ``mltrail.hook_run`` for what a hooked script records.
"""

from __future__ import annotations

import ast
import py_compile
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

from mltrail import hook_boot
from mltrail.config import write_atomic
from mltrail.errors import InputError

__all__ = ["PTH_NAME", "HookStatus", "hook_status", "install_hook", "remove_hook"]

# .pth files run in name order: this one sorts last, after those that put
# mltrail and its dependencies on sys.path (editable installs, path files).
PTH_NAME = "zz-mltrail-hook.pth"
MODULE_NAME = "_mltrail_hook.py"
_PTH_LINE = "import _mltrail_hook\n"
_SETTINGS = "# settings written by `mltrail hook install`\n"


@dataclass(frozen=True)
class HookStatus:
    """Where the hook is and what it records."""

    site_dir: Path
    installed: bool
    projects: tuple[str, ...] = ()
    home: str | None = None
    current: bool = True  # the installed module is this mltrail's hook_boot

    def to_json(self) -> dict[str, object]:
        """The status as ``--json`` prints it."""
        return {
            "site_dir": str(self.site_dir),
            "installed": self.installed,
            "projects": list(self.projects),
            "home": self.home,
            "current": self.current,
        }


def default_site_dir() -> Path:
    """The active virtual environment's site-packages.

    Raises:
        InputError: this Python does not run in a virtual environment.
    """
    if sys.prefix == sys.base_prefix:
        raise InputError(
            "no active virtual environment: the hook installs into a venv's "
            "site-packages",
            hint="activate one (. .venv/bin/activate) or give --site-dir DIR",
        )
    return Path(sysconfig.get_paths()["purelib"])


def install_hook(
    projects: list[Path], *, site_dir: Path | None = None, home: Path | None = None
) -> HookStatus:
    """Install (or replace) the hook recording scripts under ``projects``.

    Raises:
        InputError: no project folder, one that is not a folder, or no venv.
    """
    if not projects:
        raise InputError("give at least one --project DIR")
    for p in projects:
        if not p.is_dir():
            raise InputError(f"not a folder: {p}")
    chosen = tuple(sorted({str(p.resolve()) for p in projects}))
    where = site_dir or default_site_dir()
    where.mkdir(parents=True, exist_ok=True)
    home_text = str(home.expanduser().resolve()) if home is not None else None
    mltrail_path = str(Path(hook_boot.__file__).resolve().parent.parent)
    settings = (
        f"{_SETTINGS}PROJECTS = {chosen!r}\nHOME = {home_text!r}\n"
        f"MLTRAIL_PATH = {mltrail_path!r}\nboot()\n"
    )
    module = where / MODULE_NAME
    # Replaced, never rewritten in place: every start-up of the venv reads it,
    # and one reading it meanwhile would get half a module.
    write_atomic(module, _boot_source() + "\n" + settings)
    # Compiled now: Python then reads the .pyc at every start-up, even where
    # PYTHONDONTWRITEBYTECODE keeps it from writing one (~1 ms instead of ~3).
    py_compile.compile(str(module), doraise=True)
    write_atomic(where / PTH_NAME, _PTH_LINE)
    return hook_status(where)


def remove_hook(site_dir: Path | None = None) -> HookStatus:
    """Delete the hook's files; removing an absent hook is not an error."""
    where = site_dir or default_site_dir()
    (where / PTH_NAME).unlink(missing_ok=True)
    (where / MODULE_NAME).unlink(missing_ok=True)
    cached = where / "__pycache__"
    for pyc in cached.glob("_mltrail_hook.*.pyc") if cached.is_dir() else []:
        pyc.unlink(missing_ok=True)
    return hook_status(where)


def hook_status(site_dir: Path | None = None) -> HookStatus:
    """Whether the hook is installed in ``site_dir`` and with which settings."""
    where = site_dir or default_site_dir()
    module = where / MODULE_NAME
    if not (where / PTH_NAME).is_file() or not module.is_file():
        return HookStatus(where, installed=False)
    text = module.read_text("utf-8")
    source, _, settings = text.partition(_SETTINGS)
    values = _settings(settings)
    projects = values.get("PROJECTS") or ()
    return HookStatus(
        where,
        installed=True,
        projects=tuple(projects),
        home=values.get("HOME"),
        current=source.rstrip("\n") == _boot_source().rstrip("\n"),
    )


def _settings(text: str) -> dict[str, object]:
    values: dict[str, object] = {}
    for line in text.splitlines():
        name, sep, value = line.partition(" = ")
        if sep:
            try:
                values[name] = ast.literal_eval(value)
            except (ValueError, SyntaxError):
                continue
    return values


def _boot_source() -> str:
    return Path(hook_boot.__file__).read_text("utf-8")
