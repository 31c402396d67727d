"""The ``mltrail`` entry point (the console script and ``python -m mltrail``).

Every command runs through the click group of :mod:`mltrail.cli.app`, except the
plain form of ``mltrail data hash PATH...`` (paths, ``--no-cache``,
``--follow-links``: see :func:`mltrail.cli.data_hash.run_plain`), which does not
import click at all: re-hashing an unchanged dataset takes tens of
milliseconds, and click and its imports cost about as much again (ADR 0035).
Its output, errors and exit codes are those of the click command. Nor do the
plain ``--json`` forms of ``show``, ``trace``, ``runs``, ``model history`` and
``prove`` (:func:`mltrail.cli.reads.run_plain`, ADR 0021), nor the plain text
forms of the first four (ADR 0041).
"""

from __future__ import annotations

import sys

from mltrail.errors import InputError

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Sequence
    from typing import Any

    from mltrail.cli.app import cli

__all__ = ["check_arguments", "cli", "main"]


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the CLI and map errors to exit codes."""
    args = sys.argv[1:] if argv is None else argv
    if args[:2] == ["data", "hash"]:
        from mltrail.cli.data_hash import run_plain

        if run_plain(args[2:]):
            return
    elif _read_command(args):
        from mltrail.cli.reads import run_plain as run_read

        if run_read(args):
            return
    from mltrail.cli.app import main as run

    run(args)


def _read_command(args: list[str]) -> bool:
    """Whether ``args`` name a command :func:`mltrail.cli.reads.run_plain` may run."""
    command = args[2:3] if args[:1] == ["--home"] else args[:1]
    return command in (["show"], ["trace"], ["runs"], ["model"], ["prove"])


def check_arguments(args: Sequence[str]) -> None:
    """Refuse arguments that are not UTF-8 (Python keeps such bytes as surrogates).

    Everything mltrail records is UTF-8 JSON, so such text could not be written,
    and a name to look up could match nothing.
    """
    for arg in args:
        try:
            arg.encode("utf-8")
        except UnicodeEncodeError:
            shown = arg.encode("utf-8", "surrogateescape").decode(
                "utf-8", "backslashreplace"
            )
            raise InputError(
                f"argument '{shown[:200]}' is not valid UTF-8 text",
                hint="re-encode it as UTF-8 (e.g. with iconv), or rename the file",
            ) from None


def __getattr__(name: str) -> Any:
    """``cli`` (the click group), imported when asked for."""
    if name == "cli":
        from mltrail.cli.app import cli

        return cli
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
