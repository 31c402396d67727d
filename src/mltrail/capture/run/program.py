"""The files a command runs, recorded by content: what git alone would miss.

A run's code is its git commit plus the uncommitted diff, but ``git diff`` leaves
out untracked files, and outside a repository there is no commit at all. So the
program a command runs (``python train.py`` -> ``train.py``; ``python -m pkg.mod``
-> ``pkg/mod.py`` when it is under the working directory; a ``#!`` script) and the
untracked source files named on its command line are recorded by SHA-256, size
and content (a text blob, masked like every other by the recorder's guard).
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.capture.run.blob import Blob
from mltrail.capture.run.git import tracked_paths
from mltrail.capture.run.git_hidden import SOURCE_SUFFIXES
from mltrail.capture.run.params import split_command

if TYPE_CHECKING:
    from collections.abc import Collection, Sequence

__all__ = [
    "MAX_CONTENT",
    "NO_GIT_WARNING",
    "SOURCE_SUFFIXES",
    "capture_code_files",
    "code_file_body",
    "code_paths",
    "command_files",
    "program_files",
]

MAX_CONTENT = 4 * 2**20
"""A file larger than this is recorded by hash and size only, without content."""


def _at(cwd: Path, name: str) -> Path:
    path = Path(name)
    return path if path.is_absolute() else cwd / path


def _module_file(cwd: Path, module: str) -> Path | None:
    """``pkg.mod`` as ``pkg/mod.py`` or ``pkg/mod/__main__.py`` under ``cwd``."""
    base = cwd.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__main__.py"):
        if candidate.is_file():
            return candidate
    return None


def _is_script(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


def program_files(argv: Sequence[str], cwd: Path, program: str | None) -> list[Path]:
    """The script files a command runs: ``python clean.py``, ``python -m pkg.mod``,
    ``bash prep.sh``, or ``program`` itself when it is a ``#!`` script."""
    head, _ = split_command(list(argv))
    found: list[Path] = []
    for i, word in enumerate(head[1:], start=1):
        if head[i - 1] == "-m":
            module = _module_file(cwd, word)
            found += [module] if module is not None else []
        elif word.lower().endswith(SOURCE_SUFFIXES) and _at(cwd, word).is_file():
            found.append(_at(cwd, word))
    if not found and program and _is_script(Path(program)):
        found.append(Path(program))
    return found


def command_files(argv: Sequence[str], cwd: Path) -> list[Path]:
    """Source files (by suffix) named anywhere on the command line, ``--x=f.py`` too."""
    found = []
    for word in argv[1:]:
        name = word.partition("=")[2] if word.startswith("-") else word
        if name.lower().endswith(SOURCE_SUFFIXES) and _at(cwd, name).is_file():
            found.append(_at(cwd, name))
    return found


def code_paths(argv: Sequence[str], cwd: Path, program: str | None) -> list[Path]:
    """Every file ``capture_code_files`` records (resolved): what the command runs
    and the source files it names."""
    return unique([*program_files(argv, cwd, program), *command_files(argv, cwd)])


def code_file_body(
    path: Path, *, tracked: bool | None, shown: str | None = None
) -> dict[str, Any]:
    """Path, SHA-256, size and content (a text blob) of one code file.

    ``tracked`` is whether git tracks it (None outside git). A file that cannot be
    read keeps its ``error``; one over ``MAX_CONTENT`` keeps no content.
    """
    body: dict[str, Any] = {"path": shown or str(path)}
    if tracked is not None:
        body["tracked"] = tracked
    try:
        data = path.read_bytes()
    except OSError as e:
        return body | {"error": e.strerror or str(e)}
    body.update(sha256=hashlib.sha256(data).hexdigest(), size=len(data))
    if len(data) <= MAX_CONTENT:
        body["content"] = Blob(data, "text/plain", text=True, name=path.name)
    return body


def unique(paths: Collection[Path]) -> list[Path]:
    """``paths`` resolved, first occurrence kept."""
    return list(dict.fromkeys(p.resolve() for p in paths))


NO_GIT_WARNING = (
    "the code is not in a git repository: it is recorded only by the files the "
    "command runs (run.code files), not by a commit"
)


def capture_code_files(
    code: dict[str, Any], argv: Sequence[str], cwd: Path, program: str | None
) -> dict[str, Any]:
    """``code`` (a ``run.code`` body) with ``files``: the program the command runs
    and the untracked source files it names, by SHA-256, size and content; with
    ``warning`` when there is no git repository."""
    runs = unique(program_files(argv, cwd, program))
    named = [p for p in unique(command_files(argv, cwd)) if p not in runs]
    root = code.get("root")
    in_git = code.get("vcs") == "git" and root is not None and "commit" in code
    tracked = tracked_paths(Path(root).resolve(), [*runs, *named]) if in_git else set()
    files = [
        code_file_body(p, tracked=(p in tracked) if in_git else None)
        for p in [*runs, *(p for p in named if p not in tracked)]
    ]
    body = dict(code)
    if files:
        body["files"] = files
    if code.get("vcs") is None:
        body["warning"] = NO_GIT_WARNING
    return body
