"""Write what a run needs to be run again: its command, configs, packages, data lists.

``write_reproduction`` fills a folder from the ledger alone (the run's records and
blobs): ``command.sh``, the config files as they were (under ``configs/``; see
:mod:`mltrail.reproduce.configs`), the run's uncommitted changes (``code.diff``),
``requirements.txt``, each dataset's manifest and a ``sha256sum -c`` list,
``params.json``, ``environment.json``, ``run.json`` and a ``README.md`` that says what
to do. Nothing is written outside the folder: ``command.sh`` checks the code out into
a copy (``src/``, a git worktree), never over the user's checkout.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any

from mltrail.errors import ConfigError, InputError, MltrailError
from mltrail.ledger.keystore import load_commitment_key
from mltrail.reproduce.configs import (
    ConfigCopy,
    argument_index,
    is_masked,
    redacted_slots,
    relative_to,
    split_masked,
)
from mltrail.reproduce.contents import (
    environment_json,
    params_json,
    run_json,
    sum_lines,
)
from mltrail.reproduce.facts import read_blob
from mltrail.reproduce.script import argv_secrets, command_script, readme
from mltrail.reproduce.secrets import Secret, check_supplied

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mltrail.audit.query import RunView
    from mltrail.capture.run.commitment import CommitmentKey
    from mltrail.ledger.home import Home

__all__ = ["ReproPlan", "local_path", "write_reproduction"]

COPY = "src"
"""The folder, inside the reproduction, that ``command.sh`` checks the code out into."""


@dataclass
class ReproPlan:
    """What :func:`write_reproduction` wrote, and what ``command.sh`` will do.

    ``code`` is None when the run was not in a git repository with a commit; else it
    holds ``commit``, ``repo`` (the recorded root), ``branch``, ``workdir`` (the
    recorded working directory under the root), ``copy`` (where ``command.sh``
    checks the commit out) and ``diff`` (``code.diff`` when the run's uncommitted
    changes are at hand). ``links`` are datasets under the root, linked into the
    copy when the commit does not hold them.
    """

    run: str
    dest: Path
    home: Path | None = None
    """The ledger home the run was read from (``command.sh`` checks keyed
    commitments against it)."""
    files: list[str] = field(default_factory=list)
    code: dict[str, Any] | None = None
    configs: list[ConfigCopy] = field(default_factory=list)
    data: dict[str, str] = field(default_factory=dict)  # role -> sha256 list name
    links: list[str] = field(default_factory=list)
    secrets: list[Secret] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def undo(self) -> list[str]:
        """The commands that take away what the reproduction made, in order."""
        found = []
        folder = shlex.quote(os.path.abspath(self.dest))
        if self.code is not None:
            found.append(
                f"git -C {shlex.quote(self.code['repo'])} worktree remove --force "
                f"{shlex.quote(self.code['copy'])}"
            )
        return [*found, f"rm -rf {folder}"]

    def next_step(self) -> str:
        """How to run ``command.sh``, with the variables it needs."""
        needed = " ".join(f"{s.name}=..." for s in self.secrets)
        script = shlex.quote(str(self.dest / "command.sh"))
        return f"{needed} sh {script}" if needed else f"sh {script}"

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "run": self.run,
            "dest": str(self.dest),
            "files": self.files,
            "code": self.code,
            "configs": [c.to_dict() for c in self.configs],
            "data": self.data,
            "links": self.links,
            "secrets": [s.to_dict() for s in self.secrets],
            "warnings": self.warnings,
            "undo": self.undo(),
            "next": self.next_step(),
        }


def write_reproduction(
    home: Home,
    view: RunView,
    dest: Path,
    *,
    force: bool = False,
    env: Mapping[str, str] | None = None,
) -> ReproPlan:
    """Write the files that rerun ``view``'s run into ``dest``.

    ``env`` holds the values the user supplies for redacted ones
    (``MLTRAIL_SECRET_<n>``): each is checked against the recorded commitment and
    the outcome noted in the plan; none is written anywhere.

    Raises:
        InputError: ``dest`` is a file, a folder with files in it and not
            ``force``, or cannot be created or written.
    """
    try:
        return _write_all(home, view, dest, force, env or {})
    except OSError as e:
        raise InputError(
            f"cannot write the reproduction into {dest}: {e.strerror or e}",
            hint="name a folder that can be created and written (--out DIR)",
        ) from e


def _write_all(
    home: Home, view: RunView, dest: Path, force: bool, env: Mapping[str, str]
) -> ReproPlan:
    _prepare(dest, force)
    plan = ReproPlan(view.id, dest, home.path.resolve())
    started = view.body("run.started") or {}
    cwd = str(started.get("cwd") or ".")
    plan.code = _write_code(home, view, cwd, plan)
    plan.secrets = argv_secrets(list(view.summary.command))
    _write_configs(home, view, cwd, plan)
    _write_requirements(home, view, plan)
    for body in view.bodies("run.data"):
        _write_data(home, body, cwd, plan)
    _write_json(plan, "params.json", params_json(view))
    _write_json(plan, "environment.json", environment_json(view))
    _write_json(plan, "run.json", run_json(home, view))
    check_supplied(plan.secrets, env, _commitment_key(home))
    _write(plan, "command.sh", command_script(view, plan).encode()).chmod(0o755)
    _write(plan, "README.md", readme(view, plan).encode())
    return plan


def _commitment_key(home: Home) -> CommitmentKey | None:
    """The home's commitment key, to check supplied values (None: not there)."""
    try:
        return load_commitment_key(home.path, create=False)
    except ConfigError:
        return None


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
    relative = relative_to(recorded, recorded_cwd)
    if cwd is None or relative is None:
        return path if path.is_absolute() else Path(recorded_cwd) / path
    return cwd / relative


def _write_code(
    home: Home, view: RunView, cwd: str, plan: ReproPlan
) -> dict[str, Any] | None:
    """Where the code comes from, and ``code.diff`` when the run's uncommitted
    changes are at hand whole and unmasked."""
    code = view.body("run.code") or {}
    commit = code.get("commit")
    if not commit:
        return None
    root = str(code.get("root") or cwd)
    workdir = relative_to(cwd, root)
    if workdir is None:
        plan.warnings.append(
            f"the working directory {cwd} is not under the repository {root}: "
            "command.sh runs the command at the top of the copy"
        )
    info = {
        "commit": commit,
        "repo": root,
        "branch": code.get("branch"),
        "workdir": workdir or ".",
        "copy": os.path.join(os.path.abspath(plan.dest), COPY),
        "diff": None,
    }
    if code.get("diff_size"):
        info["diff"] = _write_diff(home, code, plan)
    if code.get("untracked_count"):
        plan.warnings.append(
            f"the run's tree had {code['untracked_count']} untracked file(s): their "
            "content is not recorded (see `mltrail show RUN`)"
        )
    return info


def _write_diff(home: Home, code: dict[str, Any], plan: ReproPlan) -> str | None:
    data = read_blob(home, code.get("diff"))
    problem = None
    if data is None:
        problem = "is not in the ledger"
    elif hashlib.sha256(data).hexdigest() != code.get("diff_sha256"):
        problem = "was cut short when stored"
    elif is_masked(data) or code.get("diff_sha256_original"):
        problem = "holds masked values"
    if problem is not None:
        plan.warnings.append(
            f"the run's uncommitted changes ({code.get('diff_size')} bytes): the diff "
            f"{problem}; code.diff not written, the copy has the commit only"
        )
        return None
    _write(plan, "code.diff", data or b"")
    return "code.diff"


def _config_name(recorded: str, cwd: str, taken: set[str]) -> str:
    """``configs/<path under the working directory>``, or ``configs/<file name>``
    (numbered when taken) for a file outside it."""
    relative = relative_to(recorded, cwd)
    if relative is None or ".." in PurePosixPath(relative).parts:
        relative = PurePosixPath(recorded).name or "config"
    name, n = f"configs/{relative}", 1
    while name in taken:
        n += 1
        name = f"configs/{n}/{relative}"
    taken.add(name)
    return name


def _write_configs(home: Home, view: RunView, cwd: str, plan: ReproPlan) -> None:
    argv = list(view.summary.command)
    taken: set[str] = set()
    for body in view.bodies("run.params"):
        file = body.get("file")
        if not isinstance(file, dict):
            continue
        recorded = str(file.get("path", ""))
        absolute = os.path.join(cwd, recorded)
        copy = ConfigCopy(
            recorded, _config_name(recorded, cwd, taken), file.get("sha256")
        )
        copy.argument = argument_index(argv, absolute, cwd)
        root = plan.code["repo"] if plan.code else None
        under_root = relative_to(absolute, root) if root else None
        copy.in_tree = under_root is not None
        copy.target = under_root if under_root is not None else absolute
        _write_config(home, file, body.get("params") or {}, copy, plan)
        plan.configs.append(copy)


def _write_config(
    home: Home,
    file: dict[str, Any],
    params: dict[str, Any],
    copy: ConfigCopy,
    plan: ReproPlan,
) -> None:
    data = read_blob(home, file.get("content"))
    if data is None:
        copy.in_ledger = False
        plan.warnings.append(
            f"config {copy.recorded}: its content is not in the ledger; command.sh "
            "checks that the file there is the one the run used"
        )
        return
    if not (file.get("content_redacted") and is_masked(data)):
        _write(plan, copy.name, data)
        return
    # the recorded sha256 is of the masked copy; the original's is a keyed
    # commitment, which only the ledger's commitment key can check
    copy.sha256 = None
    copy.keyed = bool(file.get("sha256_original"))
    _write(plan, copy.template, data)
    for n, piece in enumerate(split_masked(data), start=1):
        _write(plan, f"{copy.name}.parts/{n}", piece)
        copy.parts.append(f"{copy.name}.parts/{n}")
    fmt = str(file.get("format") or "")
    first = len(plan.secrets) + 1
    copy.secrets = redacted_slots(data, fmt, params, copy.name, first)
    plan.secrets += copy.secrets


def _write_requirements(home: Home, view: RunView, plan: ReproPlan) -> None:
    environment = view.body("run.environment") or {}
    data = read_blob(home, (environment.get("packages") or {}).get("list"))
    if data is None:
        plan.warnings.append("no package list recorded: requirements.txt not written")
        return
    kept, left = _pinned_lines(data)
    if left:
        plan.warnings.append(
            f"requirements.txt: {len(left)} line(s) of the recorded package list left "
            "out, not a `name==version` pin as mltrail records them (an option such "
            "as --index-url or a URL would tell pip where to install from): "
            + ", ".join(repr(line) for line in left[:5])
            + (" ..." if len(left) > 5 else "")
        )
    _write(plan, "requirements.txt", kept)


_PIN = re.compile(rb"[A-Za-z0-9][A-Za-z0-9._-]*==[A-Za-z0-9][A-Za-z0-9.!+_-]*")
"""A ``name==version`` line as the capture writes it (PEP 508 name, PEP 440
version): nothing pip would read as an option, a URL, a file or an index."""


def _pinned_lines(data: bytes) -> tuple[bytes, list[str]]:
    """The package list's ``name==version`` lines, and the others (decoded)."""
    kept, left = [], []
    for line in data.splitlines():
        if _PIN.fullmatch(line):
            kept.append(line + b"\n")
        elif line.strip():
            left.append(line.decode("utf-8", "backslashreplace"))
    return b"".join(kept), left


def _safe_role(role: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", role) or "data"


def _write_data(home: Home, body: dict[str, Any], cwd: str, plan: ReproPlan) -> None:
    role = _safe_role(str(body.get("role", "data")))
    if plan.code is not None and not body.get("url"):
        linked = relative_to(
            os.path.join(cwd, str(body.get("path", ""))), plan.code["repo"]
        )
        if linked is not None and linked not in (".", *plan.links):
            plan.links.append(linked)
    data = read_blob(home, body.get("manifest"))
    if data is None:
        plan.warnings.append(f"data {role}: its manifest is not in the ledger")
        return
    _write(plan, f"data-{role}.manifest.jsonl", data)
    if body.get("url"):
        plan.warnings.append(f"data {role}: remote ({body['url']}); no sha256sum list")
        return
    try:
        lines = sum_lines(data, str(body.get("path", "")), cwd)
    except MltrailError as e:
        plan.warnings.append(f"data {role}: manifest unreadable ({e})")
        return
    _write(plan, f"data-{role}.sha256", lines)
    plan.data[role] = f"data-{role}.sha256"
