"""``mltrail run``: wrap a command and record the run."""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mltrail.errors import InputError
from mltrail.shown import terminal_text

if TYPE_CHECKING:
    from mltrail.cli.state import AppState

__all__ = ["run", "step", "wrap"]

_SIZE = re.compile(r"(\d+)\s*([KMG]i?B?|B)?", re.IGNORECASE)
_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30}
MAX_LOG_LIMIT = 512 * 2**20
"""The most of each output stream a run may keep (stored as one blob, in memory first)."""


def _parse_size(_ctx: click.Context, _param: click.Parameter, value: str) -> int:
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        raise click.BadParameter(f"{value!r} is not a size like 8MiB or 100000")
    unit = (match.group(2) or "").lower()[:1]
    size = int(match.group(1)) * _UNITS[unit]
    if size > MAX_LOG_LIMIT:
        raise click.BadParameter(f"{value!r} is more than the most allowed, 512MiB")
    return size


def _parse_data(
    _ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]
) -> list[tuple[str, str]]:
    pairs = []
    for value in values:
        role, sep, path = value.partition("=")
        if not sep or not role or not path:
            raise click.BadParameter(
                f"{value!r} is not ROLE=PATH, e.g. train=data/train"
            )
        pairs.append((role, path))
    return pairs


class WrapCommand(click.Command):
    """A command that wraps another: options first, then ``--`` and the command.

    Click leaves an unknown option in the wrapped command (``--nmae x -- cmd``
    would run ``--nmae``); here an unknown option before the command is an error
    naming the closest known option.
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        check_options(self, ctx, args)
        return super().parse_args(ctx, args)


def check_options(command: click.Command, ctx: click.Context, args: list[str]) -> None:
    """Raise on the first unknown option before the wrapped command starts.

    Raises:
        InputError: an argument before the command looks like an option mltrail
            does not have; the message suggests the closest ones.
    """
    takes_value: dict[str, bool] = dict.fromkeys(ctx.help_option_names, False)
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                takes_value[name] = not (param.is_flag or param.count)
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--" or not arg.startswith("-") or arg == "-":
            return
        name = arg.partition("=")[0]
        if name not in takes_value:
            close = difflib.get_close_matches(
                name, sorted(takes_value), n=3, cutoff=0.7
            )
            mean = f"; did you mean {' or '.join(close)}?" if close else ""
            raise InputError(
                f"mltrail {command.name}: no such option {name}{mean}",
                hint="mltrail's options go before `--`, the command after it: "
                f"mltrail {command.name} [OPTIONS] -- COMMAND",
            )
        i += 2 if takes_value[name] and "=" not in arg else 1


_config_option = click.option(
    "--config",
    "configs",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="A config file (YAML, JSON, TOML) to record, flattened to dotted keys. Config "
    "files named in the command's arguments are found without it. Repeatable.",
)


@click.command(
    cls=WrapCommand,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--name", help="A name to find the run by (default: the program's name).")
@click.option(
    "--data",
    multiple=True,
    metavar="ROLE=PATH",
    callback=_parse_data,
    help="A dataset the command reads, by role (train, validation, test, ...): a file, "
    "a folder or an fsspec URL (s3://, https://, ...); every file's SHA-256 goes into "
    "a manifest. Repeatable.",
)
@click.option(
    "--label",
    help="Label column of tabular --data (CSV, TSV, JSONL, Parquet): record each "
    "split's rows, columns, label distribution and numeric summaries, and warn about "
    "rows shared between splits.",
)
@click.option(
    "--describe", is_flag=True, help="Record split statistics without a label column."
)
@_config_option
@click.option(
    "--output",
    "outputs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A file or folder the command writes, hashed after it ends. Repeatable.",
)
@click.option(
    "--base-model",
    type=click.Path(path_type=Path),
    help="The checkpoint a fine-tune starts from (safetensors file or shards, Hugging "
    "Face folder, .bin/.pt): its model id is taken before the command runs, and the "
    "run is recorded as a fine-tune (run.finetune).",
)
@click.option(
    "--adapter",
    type=click.Path(path_type=Path),
    help="A PEFT adapter folder the command writes: its settings (rank, alpha, "
    "targets), effective rank and LoRA update norms are recorded after it ends.",
)
@click.option(
    "--model-out",
    type=click.Path(path_type=Path),
    help="The fine-tuned (or merged) model the command writes: its model id and "
    "weight delta against --base-model are recorded after it ends.",
)
@click.option(
    "--env",
    "extra_vars",
    multiple=True,
    metavar="NAME",
    help="Also record this environment variable (secrets are still redacted).",
)
@click.option(
    "--log-limit",
    default="8MiB",
    callback=_parse_size,
    show_default=True,
    help="How much of stdout and stderr to store (head and tail); all is hashed.",
)
@click.option("--force", is_flag=True, help="Allow a ledger inside an output folder.")
@click.option("-q", "--quiet", is_flag=True, help="Print nothing of mltrail's own.")
@click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print the run summary as JSON on stderr (stdout is the command's).",
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def run(
    ctx: click.Context,
    name: str | None,
    data: list[tuple[str, str]],
    label: str | None,
    describe: bool,
    configs: tuple[Path, ...],
    outputs: tuple[Path, ...],
    base_model: Path | None,
    adapter: Path | None,
    model_out: Path | None,
    extra_vars: tuple[str, ...],
    log_limit: int,
    force: bool,
    quiet: bool,
    as_json: bool,
    command: tuple[str, ...],
) -> int:
    """Run COMMAND and record it: code, environment, hardware, parameters, data,
    outputs, exit status, and hashes of its output. No log calls needed.

    The command's stdin, stdout and stderr work as without mltrail; Ctrl-C and
    SIGTERM reach it; mltrail exits with its exit code, even when mltrail itself
    fails to record the end (that is said on stderr as `error:` lines). Inside it,
    `mltrail.start_run()` joins this run (through MLTRAIL_RUN_ID); the command is
    not given MLTRAIL_KEY_PASSWORD, and what it logs is signed by mltrail. A
    checkpoint is signed when it ends. A given MLTRAIL_RUN_ID must not name a run
    that already started.

    \b
    Examples:
      mltrail run -- python train.py --lr 0.01 --epochs 10
      mltrail run --name baseline --data train=data/train.csv \\
          --data validation=data/val.csv --config conf.yaml \\
          --output model.pt -- python train.py --config conf.yaml
      mltrail run -- torchrun --nproc-per-node 4 train.py
      mltrail run --base-model ./base --adapter ./lora --model-out ./merged \\
          --data train=data/sft.jsonl -- python finetune.py
    """
    from mltrail.record.wrapper import FinetuneSpec, WrapOptions

    tune = None
    if base_model or adapter or model_out:
        tune = FinetuneSpec(base=base_model, adapter=adapter, model=model_out)
    written = [p for p in (adapter, model_out) if p is not None and p not in outputs]
    options = WrapOptions(
        name=name,
        data=data,
        configs=configs,
        outputs=[*outputs, *written],
        finetune=tune,
        extra_vars=extra_vars,
        log_limit=log_limit,
        force=force,
        describe=describe,
        label=label,
    )
    return wrap(ctx, command, options, quiet=quiet, as_json=as_json)


def wrap(
    ctx: click.Context,
    command: tuple[str, ...],
    options: object,
    *,
    quiet: bool,
    as_json: bool,
) -> int:
    """Record ``command`` with ``options`` and return the exit code to leave with."""
    from mltrail.capture.run.process import exit_like
    from mltrail.cli.hash_bar import hash_bar_factory
    from mltrail.record.runs import open_or_create_home
    from mltrail.record.wrapper import WrapOptions, record_command

    assert isinstance(options, WrapOptions)
    if options.progress is None:
        bar = hash_bar_factory(quiet=quiet or as_json)
        options = dataclasses.replace(options, progress=bar)
    argv = list(command)
    if argv and argv[0] == "--":
        argv = argv[1:]
    if not argv:
        raise InputError("no command to run", hint="mltrail run -- python train.py")
    state: AppState = ctx.obj
    home = open_or_create_home(state.home, os.environ)
    try:
        result = record_command(home, argv, options)
    finally:
        home.close()
    for problem in result.problems:  # mltrail's own; the exit code is the command's
        click.echo(f"error: {terminal_text(problem, multiline=True)}", err=True)
    if not quiet:
        _summary(result, as_json)
    return exit_like(result.process)


def _summary(result: object, as_json: bool) -> None:
    from mltrail.record.wrapper import WrapResult

    assert isinstance(result, WrapResult)
    process = result.process
    if as_json:
        summary = {
            "run": result.run_id,
            "status": result.status,
            "exit_code": process.returncode,
            "signal": process.signal,
            "duration_s": round(process.duration_s, 3),
            "records": result.records,
            "checkpoint_size": result.checkpoint_size,
            "closed_stale": result.closed_stale,
            "warnings": result.warnings,
            "problems": result.problems,
        }
        print(json.dumps(summary), file=sys.stderr)
        return
    for warning in result.warnings:
        # warnings name files and values of the run (ADR 0040)
        click.echo(
            f"mltrail: warning: {terminal_text(warning, multiline=True)}", err=True
        )
    for stale in result.closed_stale:
        click.echo(
            f"mltrail: recorded run {stale} as aborted (its recorder died)", err=True
        )
    how = f"signal {process.signal}" if process.signal else f"exit {process.returncode}"
    click.echo(
        f"mltrail: run {result.run_id} {result.status} ({how}) in "
        f"{process.duration_s:.2f} s; {result.records} records",
        err=True,
    )


@click.command(
    cls=WrapCommand,
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--name", help="The step's name (default: the program's name).")
@click.option(
    "--in",
    "inputs",
    multiple=True,
    help="A file, folder or fsspec URL the step reads (its manifest is recorded). "
    "Repeatable.",
)
@click.option(
    "--out",
    "outputs",
    multiple=True,
    type=click.Path(path_type=Path),
    help="A file or folder the step writes (hashed after it ends). Repeatable.",
)
@click.option(
    "--script",
    "scripts",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    help="Another script file the step uses; the one the command runs is found "
    "without it. Repeatable.",
)
@_config_option
@click.option("-q", "--quiet", is_flag=True, help="Print nothing of mltrail's own.")
@click.option(
    "--json", "as_json", is_flag=True, help="Print the summary as JSON on stderr."
)
@click.argument("command", nargs=-1, required=True, type=click.UNPROCESSED)
@click.pass_context
def step(
    ctx: click.Context,
    name: str | None,
    inputs: tuple[str, ...],
    outputs: tuple[Path, ...],
    scripts: tuple[Path, ...],
    configs: tuple[Path, ...],
    quiet: bool,
    as_json: bool,
    command: tuple[str, ...],
) -> int:
    """Run a preprocessing step and record it: its scripts (content and SHA-256),
    command, parameters, and the manifests of what it read and wrote.

    Chained steps (raw ingestion -> cleaning -> augmentation -> training set) link
    up in the ledger through the dataset ids of their inputs and outputs.

    \b
    Examples:
      mltrail step --in data/raw --out data/clean -- python clean.py data/raw data/clean
      mltrail step --name augment --in data/clean --out data/train \\
          --script augment_lib.py -- python augment.py --seed 7
    """
    from mltrail.record.wrapper import StepSpec, WrapOptions

    options = WrapOptions(
        name=name,
        data=[("input", p) for p in inputs],
        configs=configs,
        outputs=outputs,
        step=StepSpec(name=name, scripts=scripts),
    )
    return wrap(ctx, command, options, quiet=quiet, as_json=as_json)
