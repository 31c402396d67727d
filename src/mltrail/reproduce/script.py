"""The text of ``command.sh`` and ``README.md`` for a reproduction folder.

Redacted values of the command (secrets are stored only as salted commitments) become
shell variables ``MLTRAIL_SECRET_<n>`` that the script refuses to run without.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mltrail.query import RunView
    from mltrail.reproduce.write import ReproPlan

__all__ = ["command_script", "quote_command", "readme"]

_MARKER = re.compile(
    r"<redacted (?:hmac-)?sha256:[0-9a-f]{64} salt:[0-9a-f]*(?: key:[0-9a-f]{16})?>"
)


def quote_command(argv: list[str]) -> tuple[str, list[tuple[str, str]]]:
    """``argv`` as a shell command line, each redaction marker replaced by a
    variable; returns the line and ``(variable, marker)`` pairs."""
    secrets: list[tuple[str, str]] = []
    words = []
    for arg in argv:
        parts, last = [], 0
        for m in _MARKER.finditer(arg):
            if m.start() > last:
                parts.append(shlex.quote(arg[last : m.start()]))
            name = f"MLTRAIL_SECRET_{len(secrets) + 1}"
            secrets.append((name, m[0]))
            parts.append(f'"${{{name}}}"')
            last = m.end()
        if last < len(arg) or not parts:
            parts.append(shlex.quote(arg[last:]))
        words.append("".join(parts))
    return " ".join(words), secrets


def command_script(
    view: RunView, configs: Mapping[str, str], data: Mapping[str, str]
) -> tuple[str, list[str]]:
    """``command.sh``, and the names of the variables it needs set."""
    started = view.body("run.started") or {}
    code = view.body("run.code") or {}
    line, secrets = quote_command(list(view.summary.command))
    out = [
        "#!/bin/sh",
        f"# Rerun mltrail run {view.id} ({view.summary.name or 'unnamed'}),",
        f"# recorded {view.summary.started} by {view.summary.who()}.",
        "# See README.md. Stops at the first step that does not match the record.",
        "set -eu",
        'here=$(cd "$(dirname "$0")" && pwd)',
        "",
    ]
    for name, marker in secrets:
        out.append(f': "${{{name}:?set {name}: the value recorded as {marker}}}"')
    if secrets:
        out.append("")
    cwd = shlex.quote(str(started.get("cwd", ".")))
    out += ["# 1. the recorded working directory", f"cd {cwd}"]
    out += _code_steps(code)
    out += _config_steps(configs)
    out += _data_steps(data)
    out += ["", "# 5. the command, as recorded", line, ""]
    return "\n".join(out), [name for name, _ in secrets]


def _code_steps(code: Mapping[str, Any]) -> list[str]:
    commit = code.get("commit")
    if not commit:
        return [
            "",
            f"# 2. code: not a git repository when recorded ({code.get('reason', '')})",
        ]
    steps = [
        "",
        f"# 2. the code: commit {commit} (branch {code.get('branch') or 'detached'})",
        'if [ -n "$(git status --porcelain --untracked-files=no)" ]; then',
        '  echo "uncommitted changes here: commit or stash them first" >&2',
        "  exit 1",
        "fi",
        f"git checkout --quiet {commit}",
    ]
    if code.get("dirty"):
        steps.append(
            f"# the run had uncommitted changes (diff sha256 {code.get('diff_sha256')}, "
            f"{code.get('diff_size', 0)} bytes): `mltrail show RUN --json` names the "
            "blob that holds them; apply it with `git apply`"
        )
    return steps


def _config_steps(configs: Mapping[str, str]) -> list[str]:
    steps = ["", "# 3. the config files, as they were"]
    for name, recorded in sorted(configs.items()):
        steps.append(f'cp "$here"/{shlex.quote(name)} {shlex.quote(recorded)}')
    return steps


def _data_steps(data: Mapping[str, str]) -> list[str]:
    steps = ["", "# 4. the data: every file's SHA-256 as recorded"]
    for role, name in sorted(data.items()):
        steps.append(f'sha256sum --quiet -c "$here"/{shlex.quote(name)}  # {role}')
    return steps


def readme(view: RunView, plan: ReproPlan) -> str:
    """``README.md``: what the folder holds and the steps to rerun the run."""
    python = ((view.body("run.environment") or {}).get("python") or {}).get("version")
    lines = [
        f"# Reproduce run {view.id}",
        "",
        f"Run `{view.summary.name or 'unnamed'}`, {view.summary.status}, started "
        f"{view.summary.started} by {view.summary.who()}.",
        "Everything here was read from the signed ledger (see `run.json`).",
        "",
        "## Steps",
        "",
        f"1. Python {python or '(unknown)'}: `python -m pip install -r requirements.txt`"
        " (versions as recorded; CUDA and container image in `environment.json`).",
        "2. `sh command.sh`: checks out the recorded commit, puts the config files back,",
        "   checks every data file with `sha256sum -c` and runs the recorded command.",
        f"3. Check the result against the record: `mltrail reproduce {view.id} --check`.",
        "",
        "## Files",
        "",
        "- `command.sh`: the steps above; `params.json`: every parameter and its source",
        "- `data-<role>.manifest.jsonl`: dataset manifests; `data-<role>.sha256`: "
        "`sha256sum -c` lists",
    ]
    lines += [
        f"- `{name}`: config file, recorded at `{rec}`"
        for name, rec in plan.configs.items()
    ]
    if plan.secrets:
        lines += ["", "## Secrets", "", "Redacted when recorded; set before running:"]
        lines += [f"- `{name}`" for name in plan.secrets]
    if plan.warnings:
        lines += ["", "## Not restored", ""] + [f"- {w}" for w in plan.warnings]
    return "\n".join(lines) + "\n"
