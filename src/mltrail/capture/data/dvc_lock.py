"""A DVC pipeline's stages as ``dvc.lock`` records them, and whether a command runs one.

Pure functions over text and argument lists (no files, no DVC): the service that
reads ``dvc.lock`` after ``mltrail run -- dvc repro`` and hashes the files is
``mltrail.record.dvc_steps``. ``dvc.lock`` is untrusted input: anything that is not the
shape below raises ``InputError`` naming the stage and field, never another error.

    schema: '2.0'
    stages:
      train:
        cmd: python train.py          # a string or a list of strings
        deps: [{path: data.csv, md5: <hex>, size: 12, hash: md5}]
        params: {params.yaml: {lr: 0.1}}
        outs: [{path: model.pkl, md5: <hex>, size: 34, hash: md5}]

    >>> stages = parse_dvc_lock("schema: '2.0'\\nstages: {s: {cmd: echo}}")
    >>> stages[0].name, stages[0].command
    ('s', ['echo'])
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

from mltrail.errors import InputError

__all__ = [
    "DvcFile",
    "DvcStage",
    "is_dvc_pipeline",
    "parse_dvc_lock",
    "stage_commands",
    "stage_wdirs",
]

_MD5 = re.compile(r"[0-9a-f]{32}(\.dir)?")
_HINT = "regenerate it with dvc (dvc repro / dvc commit)"
_MAX_TEXT = 64 * 2**20


@dataclass(frozen=True)
class DvcFile:
    """A dependency or output of a stage: its path and what DVC recorded of it."""

    path: str
    md5: str | None = None
    hash: str | None = None
    size: int | None = None
    nfiles: int | None = None

    def to_dict(self) -> dict[str, Any]:
        """DVC's fields that are set (``path`` left out: the link has it)."""
        fields = ("md5", "hash", "size", "nfiles")
        return {k: getattr(self, k) for k in fields if getattr(self, k) is not None}


@dataclass(frozen=True)
class DvcStage:
    """One stage of ``dvc.lock``: name, command, deps, outs and params."""

    name: str
    command: list[str]
    deps: list[DvcFile] = field(default_factory=list)
    outs: list[DvcFile] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)


def is_dvc_pipeline(argv: list[str]) -> bool:
    """Whether ``argv`` runs a DVC pipeline: ``dvc repro ...`` or ``dvc exp run ...``
    (``dvc`` by any path, ``python -m dvc`` too; global options like ``-q`` skipped)."""
    words = list(argv)
    python = len(words) >= 3 and PurePosixPath(words[0]).name.startswith("python")
    if python and words[1:3] == ["-m", "dvc"]:
        words = ["dvc", *words[3:]]
    if not words or PurePosixPath(words[0]).name not in ("dvc", "dvc.exe"):
        return False
    rest = [w for w in words[1:] if not w.startswith("-")]
    return rest[:1] == ["repro"] or rest[:2] == ["exp", "run"]


def parse_dvc_lock(text: str) -> list[DvcStage]:
    """The stages of a ``dvc.lock`` (schema 2.0, or 1.0 with stages at the top).

    Raises:
        InputError: the text is not YAML or not the shape of a ``dvc.lock``.
    """
    data = _load(text, "dvc.lock")
    if data is None:
        return []
    if not isinstance(data, dict):
        raise _bad("the top level is not a mapping")
    stages = data.get("stages", {}) if "schema" in data else data
    if not isinstance(stages, dict):
        raise _bad("stages must be a mapping")
    return [_stage(str(name), body) for name, body in stages.items()]


def stage_wdirs(text: str) -> dict[str, str]:
    """Each stage's ``wdir`` from a ``dvc.yaml`` (templated or malformed ones left out).

    Raises:
        InputError: the text is not YAML.
    """
    data = _load(text, "dvc.yaml")
    stages = data.get("stages") if isinstance(data, dict) else None
    wdirs: dict[str, str] = {}
    for name, stage in stages.items() if isinstance(stages, dict) else ():
        body = stage.get("do", stage) if isinstance(stage, dict) else None
        wdir = body.get("wdir") if isinstance(body, dict) else None
        if isinstance(wdir, str) and "${" not in wdir:
            wdirs[str(name)] = wdir
    return wdirs


def stage_commands(text: str) -> list[str]:
    """Every stage's ``cmd`` as written in a ``dvc.yaml`` (a ``foreach`` stage's
    ``do.cmd`` too, templates left as written; a malformed one left out).

    Raises:
        InputError: the text is not YAML.
    """
    data = _load(text, "dvc.yaml")
    stages = data.get("stages") if isinstance(data, dict) else None
    found: list[str] = []
    for stage in stages.values() if isinstance(stages, dict) else ():
        body = stage.get("do", stage) if isinstance(stage, dict) else None
        cmd = body.get("cmd") if isinstance(body, dict) else None
        commands = [cmd] if isinstance(cmd, str) else cmd
        if isinstance(commands, list):
            found += [c for c in commands if isinstance(c, str)]
    return found


def _load(text: str, what: str) -> Any:
    import yaml

    if len(text) > _MAX_TEXT:
        raise InputError(f"{what} is larger than {_MAX_TEXT} characters")
    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, ValueError, RecursionError) as e:
        why = " ".join(str(e).split())[:300]
        raise InputError(f"malformed {what}: not valid YAML ({why})", hint=_HINT) from e


def _bad(why: str) -> InputError:
    return InputError(f"malformed dvc.lock: {why}", hint=_HINT)


def _stage(name: str, body: Any) -> DvcStage:
    if not isinstance(body, dict):
        raise _bad(f"stage {name!r} is not a mapping")
    return DvcStage(
        name=name,
        command=_command(name, body.get("cmd")),
        deps=_files(name, "deps", body.get("deps")),
        outs=_files(name, "outs", body.get("outs")),
        params=_params(name, body.get("params")),
    )


def _command(name: str, cmd: Any) -> list[str]:
    if cmd is None:
        return []
    if isinstance(cmd, str):
        return [cmd]
    if isinstance(cmd, list) and all(isinstance(c, str) for c in cmd):
        return list(cmd)
    raise _bad(f"stage {name!r}: cmd must be a string or a list of strings")


def _files(name: str, key: str, items: Any) -> list[DvcFile]:
    if items is None:
        return []
    if not isinstance(items, list):
        raise _bad(f"stage {name!r}: {key} must be a list")
    return [_file(f"stage {name!r}: {key}", item) for item in items]


def _file(where: str, item: Any) -> DvcFile:
    if not isinstance(item, dict) or not isinstance(item.get("path"), str):
        raise _bad(f"{where}: each entry needs a path")
    path = item["path"]
    md5 = item.get("md5")
    if md5 is not None and not (isinstance(md5, str) and _MD5.fullmatch(md5)):
        raise _bad(f"{where}: {path!r}: md5 is not an md5 hex digest")
    hash_name = item.get("hash", "md5-dos2unix" if md5 else None)
    if hash_name is not None and not isinstance(hash_name, str):
        raise _bad(f"{where}: {path!r}: hash is not a name")
    return DvcFile(
        path=path,
        md5=md5,
        hash=hash_name,
        size=_count(where, path, "size", item.get("size")),
        nfiles=_count(where, path, "nfiles", item.get("nfiles")),
    )


def _count(where: str, path: str, key: str, value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise _bad(f"{where}: {path!r}: {key} is not a count")
    return value


def _params(name: str, params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if not isinstance(params, dict) or not all(
        isinstance(v, dict) for v in params.values()
    ):
        raise _bad(f"stage {name!r}: params must map files to mappings")
    return {str(file): _plain(name, values, 0) for file, values in params.items()}


_MAX_DEPTH = 32
_MAX_INT = 2**53


def _plain(name: str, value: Any, depth: int) -> Any:
    """``value`` as JSON values (YAML dates, odd keys and huge numbers as strings)."""
    if depth > _MAX_DEPTH:
        raise _bad(f"stage {name!r}: params nested deeper than {_MAX_DEPTH}")
    if isinstance(value, dict):
        return {str(k): _plain(name, v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_plain(name, v, depth + 1) for v in value]
    if isinstance(value, int) and not isinstance(value, bool):
        return value if abs(value) < _MAX_INT else str(value)
    if value is None or isinstance(value, (str, bool)):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    return str(value)
