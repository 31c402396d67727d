"""``mltrail hook``: record ``python script.py`` in chosen folders, no wrapper."""

from __future__ import annotations

from pathlib import Path

import click

from mltrail.cli.output import console, emit_json, json_option

__all__ = ["hook"]

_SITE_DIR = click.option(
    "--site-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="The site-packages folder (default: the active virtual environment's).",
)


@click.group()
def hook() -> None:
    """Record every `python script.py` under chosen folders, as if wrapped.

    \b
    `mltrail hook install` puts a start-up hook into the active virtual
    environment (a .pth file in its site-packages). From then on, a script run
    by that environment's python whose file lies under a chosen project folder
    is recorded as `python -m mltrail.auto script.py` records it: a run starts
    when python starts and ends at exit with the script's status. Anything
    else (python -c, python -m, pip, the mltrail command, scripts elsewhere)
    costs about a millisecond and records nothing. A child python of a hooked
    run joins it. Set MLTRAIL_HOOK=0 to switch it off for one command.

    \b
    Examples:
      mltrail hook install --project .
      mltrail hook install --project ~/src/churn --project ~/src/vision --home ~/audit
      mltrail hook status --json
      mltrail hook remove
    """


@hook.command()
@click.option("--project", "projects", multiple=True, required=True,
              type=click.Path(exists=True, file_okay=False, path_type=Path),
              help="A folder whose scripts are recorded. Repeatable.")  # fmt: skip
@click.option("--home", type=click.Path(file_okay=False, path_type=Path),
              help="The ledger home for hooked runs (default: $MLTRAIL_HOME, "
              "else ~/.mltrail).")  # fmt: skip
@_SITE_DIR
@json_option
def install(
    projects: tuple[Path, ...], home: Path | None, site_dir: Path | None, as_json: bool
) -> None:
    """Install the hook (replacing any earlier one) for the given folders.

    \b
    Examples:
      mltrail hook install --project .
      mltrail hook install --project src --project experiments --home ~/audit
    """
    from mltrail.record.hook import install_hook

    status = install_hook(list(projects), site_dir=site_dir, home=home)
    if as_json:
        emit_json(status.to_json())
        return
    console.print(f"hook installed in {status.site_dir}", markup=False)
    for p in status.projects:
        console.print(f"  records python scripts under {p}", markup=False)


@hook.command()
@_SITE_DIR
@json_option
def remove(site_dir: Path | None, as_json: bool) -> None:
    """Remove the hook; scripts are no longer recorded.

    \b
    Examples:
      mltrail hook remove
      mltrail hook remove --site-dir .venv/lib/python3.11/site-packages
    """
    from mltrail.record.hook import remove_hook

    status = remove_hook(site_dir)
    if as_json:
        emit_json(status.to_json())
        return
    console.print(f"no hook in {status.site_dir}", markup=False)


@hook.command()
@_SITE_DIR
@json_option
def status(site_dir: Path | None, as_json: bool) -> None:
    """Show whether the hook is installed and which folders it records.

    \b
    Examples:
      mltrail hook status
      mltrail hook status --json
    """
    from mltrail.record.hook import hook_status

    found = hook_status(site_dir)
    if as_json:
        emit_json(found.to_json())
        return
    if not found.installed:
        console.print(f"no hook in {found.site_dir}", markup=False)
        return
    console.print(f"hook installed in {found.site_dir}", markup=False)
    for p in found.projects:
        console.print(f"  records python scripts under {p}", markup=False)
    console.print(f"  ledger home: {found.home or '$MLTRAIL_HOME, else ~/.mltrail'}",
                  markup=False)  # fmt: skip
    if not found.current:
        console.print("  installed by another mltrail version: run "
                      "`mltrail hook install` again", style="yellow")  # fmt: skip
