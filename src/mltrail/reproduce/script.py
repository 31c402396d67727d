"""The text of ``command.sh`` and ``README.md`` for a reproduction folder.

Redacted values (the ledger keeps secrets only as commitments) become shell variables
``MLTRAIL_SECRET_<n>`` that the script refuses to run without. The script checks the
code out into a copy (``src/``, a git worktree) unless told ``--in-place``, never
writes a config over a different file unless told ``--force-config`` (and then after a
backup), and passes the command its config files from the folder.
"""

from __future__ import annotations

import re
import shlex
from typing import TYPE_CHECKING

from mltrail.reproduce.secrets import MARKER, Secret, variable
from mltrail.reproduce.shell import OPTIONS, helpers
from mltrail.shown import terminal_text

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mltrail.audit.query import RunView
    from mltrail.reproduce.configs import ConfigCopy
    from mltrail.reproduce.write import ReproPlan

__all__ = ["argv_secrets", "command_script", "quote_command", "readme"]

_HERE = '"$here"/'
_TREE = '"$tree"/'


def quote_command(
    argv: list[str], rewrites: Mapping[int, str] | None = None
) -> tuple[str, list[tuple[str, str]]]:
    """``argv`` as a shell command line, each redaction marker replaced by a
    variable, and each element ``i`` of ``rewrites`` by that file of the folder
    (``--config=x.yaml`` keeps its ``--config=``); returns the line and
    ``(variable, marker)`` pairs."""
    secrets: list[tuple[str, str]] = []
    words = []
    for i, arg in enumerate(argv):
        if rewrites and i in rewrites:
            words.append(_rewritten(arg, rewrites[i]))
            continue
        parts, last = [], 0
        for m in MARKER.finditer(arg):
            if m.start() > last:
                parts.append(shlex.quote(arg[last : m.start()]))
            name = variable(len(secrets) + 1)
            secrets.append((name, m[0]))
            parts.append(f'"${{{name}}}"')
            last = m.end()
        if last < len(arg) or not parts:
            parts.append(shlex.quote(arg[last:]))
        words.append("".join(parts))
    return " ".join(words), secrets


def _rewritten(arg: str, name: str) -> str:
    """``arg`` naming the folder's file ``name`` instead (``--config=`` kept)."""
    option, eq, _ = arg.partition("=")
    prefix = shlex.quote(option + eq) if arg.startswith("-") and eq else ""
    return prefix + _HERE + shlex.quote(name)


def argv_secrets(argv: list[str]) -> list[Secret]:
    """One :class:`Secret` per redacted value of the command line, in order."""
    found = []
    n = 0
    for i, arg in enumerate(argv):
        for m in MARKER.finditer(arg):
            n += 1
            what = f"argument {i} of the command"
            option = arg[: m.start()].rstrip("=") if arg.startswith("-") else ""
            if not option and i > 1 and argv[i - 1].startswith("-"):
                option = argv[i - 1]
            found.append(
                Secret(variable(n), f"{what} ({option})" if option else what, m[0])
            )
    return found


def command_script(view: RunView, plan: ReproPlan) -> str:
    """``command.sh``."""
    started = view.body("run.started") or {}
    code = plan.code
    head = [
        "#!/bin/sh",
        _comment(f"Rerun mltrail run {view.id} ({view.summary.name or 'unnamed'}),"),
        _comment(f"recorded {view.summary.started} by {view.summary.who()}."),
        "# See README.md. Stops at the first step that does not match the record, and",
        "# writes nothing over your files or your checkout unless told to.",
        "#",
        OPTIONS,
        "set -eu",
        'here=$(cd "$(dirname "$0")" && pwd)',
        f"run={shlex.quote(view.id)}",
        f"ledger_home={shlex.quote(str(plan.home or ''))}",
    ]
    if code is not None:
        head += [
            f"commit={shlex.quote(code['commit'])}",
            f"repo={shlex.quote(code['repo'])}",
            f"diff_file={shlex.quote(code['diff'] or '')}",
        ]
    sections = [
        _secret_steps(plan.secrets),
        _fill_steps(plan.configs),
        _code_steps(plan, str(started.get("cwd", "."))),
        _config_steps(plan.configs),
        _data_steps(plan.data),
        _command_steps(view, plan.configs),
    ]
    out = [*head, helpers()]
    number = 0
    for title, lines in sections:
        if lines:
            number += 1
            out += ["", _comment(f"{number}. {title}"), *lines]
    return "\n".join(out) + "\n"


def _comment(text: str) -> str:
    """``text`` as one shell comment line. Recorded values (run id and name, user,
    host, branch) go in as escapes where they hold a newline, a carriage return
    or any other control or invisible character: a name cannot end the comment
    and put a command of its own in the script, nor hide one from a reader."""
    return f"# {terminal_text(text)}"


def _secret_steps(secrets: list[Secret]) -> tuple[str, list[str]]:
    lines = [f"need {s.name} {shlex.quote(s.what)}" for s in secrets]
    return "the values redacted when the run was recorded", lines + [
        "check_needed"
    ] * bool(lines)


def _fill_steps(configs: list[ConfigCopy]) -> tuple[str, list[str]]:
    lines = [
        " ".join(
            [
                "fill_config",
                shlex.quote(c.name),
                "keyed" if c.keyed else shlex.quote(c.sha256 or ""),
                *(s.name for s in c.secrets),
            ]
        )
        for c in configs
        if c.redacted
    ]
    return "config files with redacted values, filled in with them", lines


def _code_steps(plan: ReproPlan, cwd: str) -> tuple[str, list[str]]:
    code = plan.code
    if code is None:
        return "the recorded working directory (no git commit recorded)", [
            f"cd {shlex.quote(cwd)}"
        ]
    title = f"the code: commit {code['commit']} (recorded on branch {code['branch'] or '(none)'})"
    lines = ['if [ "$in_place" = 1 ]; then check_out_in_place; else check_out_copy; fi']
    lines += [f"link_data {shlex.quote(path)}" for path in plan.links]
    workdir = code["workdir"]
    lines.append(
        f'cd "$tree"/{shlex.quote(workdir)}' if workdir != "." else 'cd "$tree"'
    )
    return title, lines


def _target(config: ConfigCopy) -> str:
    target = str(config.target)
    return _TREE + shlex.quote(target) if config.in_tree else shlex.quote(target)


def _config_steps(configs: list[ConfigCopy]) -> tuple[str, list[str]]:
    lines = []
    for c in configs:
        if not c.in_ledger:
            lines.append(f"check_config {_target(c)} {shlex.quote(c.sha256 or '')}")
        elif c.argument is None:
            lines.append(
                f"place_config {shlex.quote(c.name)} {_target(c)} {int(c.in_tree)}"
            )
    return "config files the program reads from a fixed path", lines


def _data_steps(data: Mapping[str, str]) -> tuple[str, list[str]]:
    lines = [
        f"sha256sum --quiet -c {_HERE}{shlex.quote(name)}  # {role}"
        for role, name in sorted(data.items())
    ]
    return "the data: every file's SHA-256 as recorded", lines


def _command_steps(view: RunView, configs: list[ConfigCopy]) -> tuple[str, list[str]]:
    rewrites = {
        c.argument: c.name for c in configs if c.in_ledger and c.argument is not None
    }
    line, _ = quote_command(list(view.summary.command), rewrites)
    title = "the command, as recorded"
    if rewrites:
        title += " (reading its config files from this folder)"
    return title, [line]


def readme(view: RunView, plan: ReproPlan) -> str:
    """``README.md``: what the folder holds and the steps to rerun the run."""
    python = ((view.body("run.environment") or {}).get("python") or {}).get("version")
    lines = [
        f"# Reproduce run {_md(view.id)}",
        "",
        f"Run {_md(view.summary.name or 'unnamed')}, {view.summary.status}, started "
        f"{view.summary.started} by {_md(view.summary.who())}.",
        "Everything here was read from the signed ledger (see `run.json`).",
        "",
        "## Steps",
        "",
        f"1. Python {_md(python or '(unknown)')}: `python -m pip install -r requirements.txt`"
        " (versions as recorded; CUDA and container image in `environment.json`).",
        "2. `sh command.sh` (`--help` lists its options): checks that every redacted value"
        " is supplied, fills the config files in, checks the recorded commit out into"
        " `src/` (a git worktree: your checkout is not touched), checks every data file"
        " with `sha256sum -c` and runs the recorded command in the copy, its config"
        " files read from `configs/`.",
        "3. Check the result against the record: `mltrail reproduce RUN --check"
        f" --cwd src` (the copy) or without `--cwd` (your checkout); RUN is {_md(view.id)}.",
        "",
        "Nothing is written over your files: a config file the program reads from a fixed"
        " path is put there only if missing or the same; `--force-config` replaces a"
        " different one after saving a backup (its path is printed). `--in-place` checks"
        " the commit out in your repository instead (refused with uncommitted changes) and"
        " prints the command that gets you back.",
        "",
        "## Files",
        "",
        "- `command.sh`: the steps above; `params.json`: every parameter and its source",
        "- `data-<role>.manifest.jsonl`: dataset manifests; `data-<role>.sha256`: "
        "`sha256sum -c` lists",
    ]
    if plan.code is not None and plan.code["diff"]:
        lines.append(
            "- `code.diff`: the run's uncommitted changes (`sh command.sh --apply-diff`"
            " applies them to the copy)"
        )
    lines += [_config_line(c) for c in plan.configs]
    if plan.secrets:
        lines += [
            "",
            "## Values to supply",
            "",
            "Redacted when recorded (the ledger holds only commitments); set each"
            " before running `command.sh`, or put them in a file (`NAME='value'`"
            " lines) and pass `--secrets FILE`:",
            "",
        ]
        lines += [f"- `{s.name}`: {_md(s.what)}" for s in plan.secrets]
    if plan.warnings:
        lines += ["", "## Not restored", ""] + [f"- {_md(w)}" for w in plan.warnings]
    return "\n".join(lines) + "\n"


def _config_line(c: ConfigCopy) -> str:
    if not c.in_ledger:
        return f"- config {_md(c.recorded)}: not in the ledger"
    if c.redacted:
        return (
            f"- {_md(c.template)}: config file recorded at {_md(c.recorded)}, with"
            f" {len(c.secrets)} redacted value(s); `command.sh` writes {_md(c.name)}"
        )
    return f"- {_md(c.name)}: config file, recorded at {_md(c.recorded)}"


_MARKDOWN = re.compile(r"([\\`*_{}\[\]<>()#+!|~])")  # as the report's Markdown


def _md(value: object) -> str:
    """A recorded value as inert Markdown text on one line: controls, newlines and
    invisible characters as escapes, Markdown's characters backslash-escaped (a
    name cannot add a heading, a step, a link or HTML to the README)."""
    return _MARKDOWN.sub(r"\\\1", terminal_text(value).replace("&", "&amp;"))
