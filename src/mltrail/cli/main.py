"""The ``mltrail`` command: one group, one module per command group.

Errors become one line on stderr (``error: ...`` and ``hint: ...``) and the exit
code of their branch of the error tree (2 input, 3 tampering, 4 storage, 5 auth);
``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from mltrail.cli import demo, keys_cmd, ledger_cmds, verify_cmd
from mltrail.cli.output import AppState
from mltrail.errors import MltrailError

__all__ = ["cli", "main"]


@click.group(
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100}
)
@click.option(
    "--home",
    type=click.Path(path_type=Path),
    envvar="MLTRAIL_HOME",
    help="Ledger home (default: $MLTRAIL_HOME, else ~/.mltrail).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(package_name="mltrail")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, debug: bool) -> None:
    """mltrail: a tamper-evident, signed audit log of the ML model lifecycle.

    \b
    Start here:
      mltrail init                         create a ledger and its signing key
      mltrail append --kind note --body '{"text": "dataset v2 approved"}'
      mltrail log                          list records
      mltrail checkpoint                   sign the current tree head
      mltrail verify                       check every signature, hash and proof
      mltrail demo                         see it all on a throwaway ledger
    """
    ctx.obj = AppState(home=home, debug=debug)


for command in (*ledger_cmds.COMMANDS, verify_cmd.verify, keys_cmd.keys, demo.demo):
    cli.add_command(command)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map errors to exit codes."""
    debug = "--debug" in (argv if argv is not None else sys.argv)
    try:
        code = cli.main(args=argv, prog_name="mltrail", standalone_mode=False)
    except MltrailError as e:
        if debug:
            raise
        click.echo(f"error: {e}", err=True)
        if e.hint:
            click.echo(f"hint: {e.hint}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    if isinstance(code, int):
        sys.exit(code)
