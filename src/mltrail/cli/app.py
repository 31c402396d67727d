"""The ``mltrail`` command: one group, one module per command group.

Errors become one line on stderr (``error: ...`` and ``hint: ...``) and the exit
code of their branch of the error tree (2 input, 3 tampering, 4 storage, 5 auth);
``--debug`` shows the traceback instead. :mod:`mltrail.cli.main` (the entry
point) imports this module for every command but the plain ``data hash``.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, NoReturn

import click

from mltrail import __version__
from mltrail.cli.error_text import masked
from mltrail.cli.lazy_group import LazyGroup
from mltrail.cli.main import check_arguments
from mltrail.cli.state import AppState
from mltrail.errors import MltrailError, StoreError

if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

__all__ = ["aborted", "cli", "fail", "main"]

# Each command's module is imported only when that command runs (or --help lists
# them), so `mltrail run` does not pay for rich tables or the demo.
_COMMANDS = {
    "run": "mltrail.cli.run_cmd:run",
    "runs": "mltrail.cli.runs_cmd:runs",
    "step": "mltrail.cli.run_cmd:step",
    "data": "mltrail.cli.data_cmd:data",
    "model": "mltrail.cli.model_group:model",
    "init": "mltrail.cli.ledger_cmds:init",
    "append": "mltrail.cli.ledger_cmds:append",
    "log": "mltrail.cli.ledger_cmds:log_cmd",
    "show": "mltrail.cli.ledger_cmds:show",
    "logs": "mltrail.cli.logs_cmd:logs",
    "reindex": "mltrail.cli.index_cmd:reindex",
    "trace": "mltrail.cli.lineage_cmd:trace",
    "lineage": "mltrail.cli.lineage_cmd:lineage",
    "sources": "mltrail.cli.sources_cmd:sources",
    "flags": "mltrail.cli.sources_cmd:flags",
    "checkpoint": "mltrail.cli.ledger_cmds:checkpoint",
    "prove": "mltrail.cli.ledger_cmds:prove",
    "purge": "mltrail.cli.purge_cmd:purge",
    "seal": "mltrail.cli.seal_cmd:seal",
    "hold": "mltrail.cli.hold_cmd:hold",
    "verify": "mltrail.cli.verify_cmd:verify",
    "export": "mltrail.cli.export_cmd:export",
    "verify-bundle": "mltrail.cli.bundle_cmd:verify_bundle",
    "import": "mltrail.cli.import_cmd:import_group",
    "keys": "mltrail.cli.keys_cmd:keys",
    "secrets": "mltrail.cli.secrets_cmd:secrets",
    "clock": "mltrail.cli.clock_cmd:clock",
    "demo": "mltrail.cli.demo:demo",
    "diff": "mltrail.cli.diff_cmd:diff",
    "reproduce": "mltrail.cli.reproduce_cmd:reproduce",
    "report": "mltrail.cli.report_cmd:report",
    "timestamp": "mltrail.cli.evidence_cmds:timestamp",
    "witness": "mltrail.cli.evidence_cmds:witness",
    "db": "mltrail.cli.db_cmd:db",
    "server": "mltrail.cli.server_cmd:server",
    "tokens": "mltrail.cli.tokens_cmd:tokens",
    "push": "mltrail.cli.push_cmd:push",
    "hook": "mltrail.cli.hook_cmd:hook",
}


class _MltrailGroup(LazyGroup):
    """The top-level group: a command that opened its home to read it and met a
    store error says what ``mltrail verify`` says of that home when it fails
    verification (a Merkle node deleted: TAMPERED, exit 3, not "the store is
    corrupt", exit 4). Verified only then: the common path pays nothing."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except StoreError as e:
            from mltrail.cli.printing import verdict_of_store_error
            from mltrail.ledger.home import open_home

            state = ctx.find_object(AppState)
            if state is not None:
                path = state.home
                verdict_of_store_error(
                    state.read_home, lambda: open_home(path, writable=False), e
                )
            raise


@click.group(
    cls=_MltrailGroup,
    lazy_commands=_COMMANDS,
    context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100},
)
@click.option(
    "--home",
    type=click.Path(path_type=Path),
    envvar="MLTRAIL_HOME",
    help="Ledger home (default: $MLTRAIL_HOME, else ~/.mltrail).",
)
@click.option("--debug", is_flag=True, help="Show tracebacks on errors.")
@click.version_option(version=__version__, prog_name="mltrail")
@click.pass_context
def cli(ctx: click.Context, home: Path | None, debug: bool) -> None:
    """mltrail: a tamper-evident, signed audit log of the ML model lifecycle.

    \b
    Record:
      mltrail run -- python train.py       record a training run, no log calls needed
      mltrail step --in raw --out clean -- python clean.py   record a data step
      mltrail data hash data/              dataset manifest and id (sha256sum-compatible)
    \b
    Ask:
      mltrail runs --week 2026-W42         runs, filtered by time, user, param, dataset
      mltrail show RUN                     one run in full
      mltrail logs RUN                     what it printed (stdout, stderr)
      mltrail diff RUN_A RUN_B             what changed: params, data files, code, packages
      mltrail reproduce RUN --check        does this machine still match the run?
      mltrail trace model.safetensors      what exactly made this model
      mltrail report MODEL -o report.pdf   its documentation (Annex IV, SR 11-7)
      mltrail lineage data/raw --down      what was made from this
      mltrail model history --at DATE      which model was in production then
      mltrail sources check                which models an upstream change affects
    \b
    Trust:
      mltrail verify --trust-key KEY       check every signature, hash and proof
      mltrail keys export                  the key an auditor pins (--trust-key)
      mltrail prove SEQ                    an inclusion proof for one record
      mltrail export MODEL -o b.json       a proof bundle anyone can check offline
      mltrail verify-bundle b.json         check one, with no ledger
      mltrail purge BLOB --reason TEXT     erase a blob's bytes, recorded and signed
      mltrail seal --to s3://B/P --retain 7y   copy the ledger to write-once storage
      mltrail demo                         see it all on a throwaway ledger
    """
    ctx.obj = AppState(home=home, debug=debug)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map errors to exit codes."""
    args = sys.argv[1:] if argv is None else argv
    debug = "--debug" in args
    try:
        check_arguments(args)
        code = cli.main(args=args, prog_name="mltrail", standalone_mode=False)
    except MltrailError as e:
        if debug:
            traceback_exit(e, args)
        fail(e, args)
    except click.exceptions.Abort:
        aborted()
    except click.ClickException as e:
        e.message = masked(e.message, args)
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except Exception as e:  # a bug, or a library's error mltrail did not wrap
        traceback_exit(e, args)
    if isinstance(code, int):
        sys.exit(code)


def traceback_exit(error: BaseException, args: Sequence[str]) -> NoReturn:
    """Print ``error``'s traceback, as Python would, with the secrets of the
    command line ``args``, the environment and the text itself masked; exit 1.

    The whole text is masked, not only ``error``'s message: a chained cause
    (a library's ``FileNotFoundError: http://user:PASSWORD@host/…``), a note,
    or a message an exception builds from its attributes would carry the
    secret otherwise.
    """
    import traceback

    text = "".join(traceback.format_exception(error))
    try:
        text = masked(text, args)
    except Exception:  # never print what could not be masked
        text = f"{type(error).__name__} (its traceback could not be masked)\n"
    sys.stderr.write(text)
    sys.stderr.flush()
    sys.exit(1)


def fail(error: MltrailError, args: Sequence[str] | None = None) -> NoReturn:
    """Print ``error`` (and its hint) on stderr, with the secrets of the command
    line ``args`` (default: ``sys.argv``), the environment and the message itself
    masked (:mod:`mltrail.cli.error_text`); exit with its code."""
    from mltrail.shown import terminal_text

    args = sys.argv[1:] if args is None else args
    # a message may quote recorded values: shown, not acted on (ADR 0040); it
    # quotes them with repr, whose backslashes are not to be escaped again
    text = terminal_text(masked(str(error), args), multiline=True, backslashes=False)
    click.echo(f"error: {text}", err=True)
    if error.hint:
        hint = terminal_text(
            masked(error.hint, args), multiline=True, backslashes=False
        )
        click.echo(f"hint: {hint}", err=True)
    sys.exit(error.exit_code)


def aborted() -> NoReturn:
    """Ctrl-C: say so on stderr; exit 130."""
    click.echo("aborted", err=True)
    sys.exit(130)
