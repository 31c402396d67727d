"""``mltrail reproduce RUN``: write what reruns a run, or check this machine against it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.text import Text

from mltrail.audit.query import load_run, resolve_run
from mltrail.cli.output import console, emit_json, json_option, open_from, open_index
from mltrail.errors import InputError
from mltrail.reproduce import check_reproduction, write_reproduction

if TYPE_CHECKING:
    from mltrail.reproduce import Mismatch, ReproPlan
    from mltrail.reproduce.secrets import Secret

__all__ = ["reproduce"]


@click.command()
@click.argument("run_ref", metavar="RUN")
@click.option(
    "--out",
    "out",
    type=click.Path(path_type=Path, file_okay=False),
    help="Write the reproduction files into this folder (default: repro-<id>).",
)
@click.option(
    "--check",
    is_flag=True,
    help="Compare this machine with the record instead; exit 1 on any mismatch.",
)
@click.option(
    "--cwd",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    help="With --check: look for the run's files here (a fresh clone, say) instead "
    "of the recorded working directory.",
)
@click.option("--no-env", is_flag=True, help="With --check: skip the package check.")
@click.option(
    "--trust-cache",
    is_flag=True,
    help="With --check: take unchanged files' hashes from the home's hash cache "
    "instead of reading every file (faster; whoever can write the home can forge "
    "them).",
)
@click.option("--force", is_flag=True, help="Write into a folder that is not empty.")
@json_option
@click.pass_context
def reproduce(
    ctx: click.Context,
    run_ref: str,
    out: Path | None,
    check: bool,
    cwd: Path | None,
    no_env: bool,
    trust_cache: bool,
    force: bool,
    as_json: bool,
) -> None:
    """Rerun a recorded run, or check that this machine still matches it.

    Without --check, writes into a folder, and nowhere else: command.sh, the
    config files as they were (configs/), the run's uncommitted changes
    (code.diff), requirements.txt, data-<role>.manifest.jsonl and
    data-<role>.sha256, params.json, environment.json, run.json and README.md.
    command.sh checks the recorded commit out into a copy (src/, a git worktree;
    your checkout is not touched), passes the command its config files from
    configs/, checks every data file with `sha256sum -c` and runs the recorded
    command. Values redacted when recorded become variables MLTRAIL_SECRET_<n>
    that it refuses to run without; set them when running reproduce too and each
    is checked against the recorded commitment. It never writes over a config
    file that differs (--force-config: after a backup); --in-place checks the
    commit out in your repository and says how to get back. Prints where
    everything went, what you must supply and how to undo it.

    With --check, re-hashes the recorded data (every file is read: the home's
    hash cache is not trusted for a verdict unless --trust-cache), reads the git
    commit, the config files and the installed packages, and lists every
    mismatch; exits 1 if there is any, 0 if none.

    \b
    Examples:
      mltrail reproduce baseline --out repro && sh repro/command.sh
      mltrail reproduce baseline --check
      mltrail reproduce 0193a0c4 --check --cwd ~/src/fresh-clone --no-env
      mltrail reproduce baseline --check --json
    """
    if not check and (cwd is not None or no_env or trust_cache):
        raise InputError("--cwd, --no-env and --trust-cache go with --check")
    if check and (out is not None or force):
        raise InputError("--out and --force write files; --check only reads")
    home = open_from(ctx)
    try:
        index = open_index(home)
        view = load_run(home, index, resolve_run(index, run_ref))
        if check:
            found = check_reproduction(
                home, view, cwd, environment=not no_env, trust_cache=trust_cache
            )
        else:
            plan = write_reproduction(
                home,
                view,
                out or Path(f"repro-{view.id[:8]}"),
                force=force,
                env=os.environ,
            )
    finally:
        home.close()
    if check:
        _report_check(
            view.id, found, as_json, trust_cache=trust_cache, purged=view.purged
        )
        ctx.exit(1 if found else 0)
    _report_plan(plan, as_json)


DATA_READ = "every file read"
DATA_CACHED = "unchanged files' hashes taken from the hash cache (--trust-cache)"


def _report_check(
    run_id: str,
    found: list[Mismatch],
    as_json: bool,
    *,
    trust_cache: bool,
    purged: list[dict[str, Any]],
) -> None:
    """Print the mismatches, and the run's purged blobs: what they held (a file
    list, a package list) could only be compared by its hash."""
    hashed = "cache" if trust_cache else "content"
    if as_json:
        emit_json(
            {
                "run": run_id,
                "ok": not found,
                "data_hashed": hashed,
                "mismatches": [m.to_dict() for m in found],
                "purged": purged,
            }
        )
        return
    how = f"  (data: {DATA_CACHED if trust_cache else DATA_READ})"
    _print_purged(purged)
    if not found:
        console.print(f"OK: data, code, config files and packages match run {run_id}")
        console.print(how, markup=False)
        return
    console.print(f"MISMATCH: {len(found)} difference(s) from run {run_id}")
    for m in found:
        console.print(
            Text(
                f"  {m.kind} {m.what}: recorded {_show(m.recorded)}, now {_show(m.current)}"
            )
        )
    console.print(how, markup=False)


def _print_purged(purged: list[dict[str, Any]]) -> None:
    from mltrail.ledger.purged import describe_purged
    from mltrail.shown import terminal_text

    for item in purged:
        line = terminal_text(describe_purged(item), names=True)
        console.print(Text(f"erased: {line}", style="yellow"))
    if purged:
        console.print(
            "  (what an erased blob held is compared by its recorded hash only)",
            markup=False,
        )


def _show(value: object) -> str:
    if isinstance(value, str) and len(value) == 64:
        return value[:12]
    return str(value)


def _report_plan(plan: ReproPlan, as_json: bool) -> None:
    if as_json:
        emit_json(plan.to_dict())
        return
    say = console.print
    say(f"run {plan.run}: {len(plan.files)} files written to {plan.dest}", markup=False)
    for line in _code_lines(plan) + _config_lines(plan) + _data_lines(plan):
        say(line, markup=False)
    for warning in plan.warnings:
        say(Text(f"warning: {warning}", style="yellow"))
    if plan.secrets:
        say(
            "values to supply, redacted when recorded (set them, or put them in a file"
            " for command.sh --secrets FILE; it refuses to run without them):",
            markup=False,
        )
    for secret in plan.secrets:
        say(Text(f"  {secret.name}: {secret.what} ({_state(secret)})", style="yellow"))
    for n, command in enumerate(plan.undo()):
        say(("undo: " if n == 0 else "      ") + command, markup=False)
    say(f"next: {plan.next_step()}", markup=False)


def _code_lines(plan: ReproPlan) -> list[str]:
    code = plan.code
    if code is None:
        return [
            "code: no git commit recorded; command.sh runs in the recorded directory"
        ]
    lines = [
        f"code: commit {code['commit']} of {code['repo']} (recorded on branch "
        f"{code['branch'] or '(none)'}): command.sh checks it out into {code['copy']} "
        "(a git worktree; your checkout is not touched; --in-place checks it out there)"
    ]
    if code["diff"]:
        lines.append(
            "code: the run's uncommitted changes are in code.diff "
            "(command.sh --apply-diff applies them to the copy)"
        )
    return lines


def _config_lines(plan: ReproPlan) -> list[str]:
    lines = []
    for c in plan.configs:
        if not c.in_ledger:
            continue  # a warning says so
        if c.redacted:
            what = (
                f"{c.template}, {len(c.secrets)} value(s) redacted "
                f"({', '.join(s.name for s in c.secrets)}); command.sh writes {c.name}"
            )
        else:
            what = c.name
        if c.argument is not None:
            use = "the command reads it there (its command line is rewritten)"
        else:
            use = f"command.sh puts it at {c.target} unless a different file is there"
        lines.append(f"config {c.recorded}: {what}; {use}")
    return lines


def _data_lines(plan: ReproPlan) -> list[str]:
    return [
        f"data {role}: {name} (command.sh checks every file)"
        for role, name in sorted(plan.data.items())
    ]


def _state(secret: Secret) -> str:
    if not secret.set:
        return "not set"
    if secret.matches is None:
        return "set; checked by command.sh with the whole file"
    return (
        "set, matches the record"
        if secret.matches
        else "set, does NOT match the record"
    )
