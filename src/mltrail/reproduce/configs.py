"""The config files of a run, as a reproduction folder holds them.

A config is never written over the file it came from. Its recorded copy goes into
the folder (``configs/<path>``); where the run passed it on the command line, the
command is rewritten to read that copy, and otherwise ``command.sh`` puts it where the
program reads it only if no different file is there.

A recorded copy with redacted values (the ledger keeps secrets only as commitments)
is never used as is: it is kept as ``configs/<path>.redacted`` to read and as the
pieces between the redacted values (``configs/<path>.parts/1``, ``2``...), and
``command.sh`` joins the pieces with the values the user supplies, then checks the
result against the SHA-256 the run recorded for the whole file.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from mltrail.capture.run.mask import MASKED_PATTERN
from mltrail.capture.run.params import parse_config
from mltrail.errors import InputError
from mltrail.reproduce.secrets import MARKER, Secret, variable

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "ConfigCopy",
    "argument_index",
    "is_masked",
    "redacted_slots",
    "relative_to",
    "split_masked",
]


def is_masked(data: bytes) -> bool:
    """Whether a stored copy holds masked values (``[MASKED:<name>]``, written by
    :func:`~mltrail.capture.run.mask.masked_marker`, so the two cannot drift apart)."""
    return MASKED_PATTERN.search(data) is not None


def split_masked(data: bytes) -> list[bytes]:
    """The pieces of a stored copy between its masked values."""
    return MASKED_PATTERN.split(data)


@dataclass
class ConfigCopy:
    """One config file of the run and what the reproduction does with it.

    ``name`` is the file the command is to read, inside the folder; with redacted
    values it exists only once ``command.sh`` has filled it in from ``parts`` and the
    ``secrets``. ``argument`` is where the run's command line named the file (that
    argument is rewritten to ``name``); otherwise ``target`` is where the program
    reads it: a path under the repository root when ``in_tree``, else absolute.
    """

    recorded: str
    name: str
    sha256: str | None
    in_ledger: bool = True
    parts: list[str] = field(default_factory=list)
    secrets: list[Secret] = field(default_factory=list)
    argument: int | None = None
    target: str | None = None
    in_tree: bool = False
    keyed: bool = False
    """The original file is recorded only as a keyed commitment (it was masked):
    ``command.sh`` checks the filled-in file with ``mltrail secrets check``."""

    @property
    def redacted(self) -> bool:
        """Whether the recorded copy has redacted values to fill in."""
        return bool(self.parts)

    @property
    def template(self) -> str:
        """The recorded copy, placeholders and all: to read, never to use."""
        return f"{self.name}.redacted"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "file": self.name,
            "recorded": self.recorded,
            "sha256": self.sha256,
            "in_ledger": self.in_ledger,
            "ready": self.in_ledger and not self.redacted,
            "template": self.template if self.redacted else None,
            "redacted": [s.what for s in self.secrets],
            "variables": [s.name for s in self.secrets],
            "argument": self.argument,
            "target": self.target,
            "in_tree": self.in_tree,
        }


def relative_to(path: str, root: str) -> str | None:
    """``path`` relative to ``root`` (both as recorded), if it lies under it; a
    relative ``path`` is taken as relative to ``root`` already. Links are resolved
    when the paths as written do not match (``/tmp`` may be a link)."""
    candidate = PurePosixPath(path)
    if not candidate.is_absolute():
        return None if ".." in candidate.parts else str(candidate)
    for inside in _spellings(path):
        for base in _spellings(root):
            try:
                return str(PurePosixPath(inside).relative_to(base))
            except ValueError:
                continue
    return None


def _spellings(path: str) -> list[str]:
    """``path`` normalised, and with its links resolved when that differs."""
    written, resolved = os.path.normpath(path), os.path.realpath(path)
    return [written] if resolved == written else [written, resolved]


def argument_index(argv: Sequence[str], recorded: str, cwd: str) -> int | None:
    """Which element of ``argv`` names the config file ``recorded`` (the whole
    element, or the value of ``--opt=PATH``), if one does."""
    want = os.path.normpath(recorded)
    for i, arg in enumerate(argv[1:], start=1):
        value = arg.partition("=")[2] if arg.startswith("-") and "=" in arg else arg
        if value and os.path.normpath(os.path.join(cwd, value)) == want:
            return i
    return None


def redacted_slots(
    template: bytes,
    fmt: str,
    params: Mapping[str, Any],
    name: str,
    first: int,
) -> list[Secret]:
    """One :class:`Secret` for each placeholder in ``template``, in order, numbered
    from ``first``: which key it is the value of (read by parsing the template with
    each placeholder made unique), and the commitment ``params`` holds for it."""
    pieces = split_masked(template)
    tokens = [f"<redacted-slot-{i}>" for i in range(len(pieces) - 1)]
    marked = pieces[0] + b"".join(
        t.encode() + p for t, p in zip(tokens, pieces[1:], strict=True)
    )
    try:
        flat = parse_config(marked, fmt, path=Path(name))
    except InputError:
        flat = {}
    found: list[Secret] = []
    seen: dict[str, int] = {}
    line = 1
    for i, token in enumerate(tokens):
        line += pieces[i].count(b"\n")
        key, whole = _key_of(flat, token)
        if key is None:
            what, commitment = f"line {line} of {name}", None
        elif whole:
            what, commitment = f"{key} in {name}", _commitment(params.get(key))
        else:
            nth = seen[key] = seen.get(key, -1) + 1
            what = f"part of {key} in {name}"
            commitment = _nth_marker(params.get(key), nth, flat[key])
        found.append(Secret(variable(first + i), what, commitment))
    return found


def _key_of(flat: Mapping[str, Any], token: str) -> tuple[str | None, bool]:
    for key, value in flat.items():
        if value == token:
            return key, True
        if token in json.dumps(value, ensure_ascii=False):
            return key, False
    return None, False


def _commitment(value: Any) -> Mapping[str, Any] | None:
    if isinstance(value, dict) and "redacted" in value:
        return value
    return None


def _nth_marker(recorded: Any, nth: int, template_value: Any) -> str | None:
    """The ``nth`` marker of a recorded string value, when it has exactly as many
    markers as the template's value has placeholders."""
    if not isinstance(recorded, str):
        return None
    markers = MARKER.findall(recorded)
    slots = json.dumps(template_value, ensure_ascii=False).count("<redacted-slot-")
    return markers[nth] if len(markers) == slots and nth < len(markers) else None
