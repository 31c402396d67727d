"""``mltrail reproduce RUN``: write what reruns a run, or check this machine against it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click
from rich.text import Text

from mltrail.cli.output import console, emit_json, json_option, open_from, open_index
from mltrail.errors import InputError
from mltrail.query import load_run, resolve_run
from mltrail.reproduce import check_reproduction, write_reproduction

if TYPE_CHECKING:
    from mltrail.reproduce import Mismatch, ReproPlan

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
    force: bool,
    as_json: bool,
) -> None:
    """Rerun a recorded run, or check that this machine still matches it.

    Without --check, writes into a folder: command.sh (cd, git checkout of the
    recorded commit, config files put back, `sha256sum -c` of every data file, the
    recorded command; secrets redacted at record time become variables to set),
    the config files as they were, requirements.txt, data-<role>.manifest.jsonl
    and data-<role>.sha256, params.json, environment.json, run.json and README.md.

    With --check, re-hashes the recorded data (the hash cache skips unchanged
    files), reads the git commit, the config files and the installed packages,
    and lists every mismatch; exits 1 if there is any, 0 if none.

    \b
    Examples:
      mltrail reproduce baseline --out repro && sh repro/command.sh
      mltrail reproduce baseline --check
      mltrail reproduce 0193a0c4 --check --cwd ~/src/fresh-clone --no-env
      mltrail reproduce baseline --check --json
    """
    if not check and (cwd is not None or no_env):
        raise InputError("--cwd and --no-env go with --check")
    if check and (out is not None or force):
        raise InputError("--out and --force write files; --check only reads")
    home = open_from(ctx)
    try:
        index = open_index(home)
        view = load_run(home, index, resolve_run(index, run_ref))
        if check:
            found = check_reproduction(home, view, cwd, environment=not no_env)
        else:
            plan = write_reproduction(
                home, view, out or Path(f"repro-{view.id[:8]}"), force=force
            )
    finally:
        home.close()
    if check:
        _report_check(view.id, found, as_json)
        ctx.exit(1 if found else 0)
    _report_plan(plan, as_json)


def _report_check(run_id: str, found: list[Mismatch], as_json: bool) -> None:
    if as_json:
        emit_json(
            {"run": run_id, "ok": not found, "mismatches": [m.to_dict() for m in found]}
        )
        return
    if not found:
        console.print(f"OK: data, code, config files and packages match run {run_id}")
        return
    console.print(f"MISMATCH: {len(found)} difference(s) from run {run_id}")
    for m in found:
        console.print(
            Text(
                f"  {m.kind} {m.what}: recorded {_show(m.recorded)}, now {_show(m.current)}"
            )
        )


def _show(value: object) -> str:
    if isinstance(value, str) and len(value) == 64:
        return value[:12]
    return str(value)


def _report_plan(plan: ReproPlan, as_json: bool) -> None:
    if as_json:
        emit_json(plan.to_dict())
        return
    console.print(f"wrote {len(plan.files)} files to {plan.dest}:", markup=False)
    for name in plan.files:
        console.print(f"  {name}", markup=False)
    for warning in plan.warnings:
        console.print(Text(f"warning: {warning}", style="yellow"))
    for name in plan.secrets:
        console.print(
            Text(f"set {name} before running (redacted when recorded)", style="yellow")
        )
    console.print(f"next: sh {plan.dest}/command.sh", markup=False)
