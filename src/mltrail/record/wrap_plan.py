"""What ``mltrail run`` will do, worked out before anything is written.

``make_plan`` resolves the command and reads every named data and config path,
so bad input fails before the ledger is touched; the helpers here turn the plan
into the bodies of ``run.started`` and ``run.params``.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.capture.run.argv_secrets import redact_argv
from mltrail.capture.run.blob import Blob
from mltrail.capture.run.params import load_config, parse_argv, split_command
from mltrail.capture.run.process import resolve_command
from mltrail.capture.run.program import program_files
from mltrail.capture.run.redact import commit_secret
from mltrail.errors import ConfigError, InputError
from mltrail.record.datasets import add_overlaps, check_data, dataset_body
from mltrail.record.recorder import capture_context, with_rank

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from mltrail.capture.data.hashcache import HashCache
    from mltrail.capture.data.progress import ProgressFactory
    from mltrail.capture.run.params import ConfigFile
    from mltrail.ledger.home import Home

__all__ = [
    "FinetuneSpec",
    "Plan",
    "StepSpec",
    "WrapOptions",
    "argv_params",
    "at",
    "check_outputs",
    "config_body",
    "default_name",
    "interpreter",
    "make_plan",
    "scripts_of",
    "start_entries",
    "started_body",
    "try_config",
]

_PYTHON = re.compile(r"python[0-9.]*$")


@dataclass(frozen=True)
class StepSpec:
    """A preprocessing step (``mltrail step``): its name and extra script files."""

    name: str | None = None
    scripts: Sequence[Path] = ()


@dataclass(frozen=True)
class WrapOptions:
    """What ``mltrail run`` (or ``mltrail step``) was told besides the command."""

    name: str | None = None
    data: Sequence[tuple[str, str | Path]] = ()
    configs: Sequence[Path] = ()
    outputs: Sequence[Path] = ()
    extra_vars: Sequence[str] = ()
    log_limit: int = 8 * 2**20
    force: bool = False
    step: StepSpec | None = None
    describe: bool = False
    label: str | None = None
    progress: ProgressFactory | None = None
    """Shows how hashing goes (a progress bar): inputs before the command, outputs
    after it, never while it runs."""
    finetune: FinetuneSpec | None = None
    """A fine-tune: base model (fingerprinted before the command runs), adapter and
    fine-tuned model (after it), recorded as ``run.finetune``."""


@dataclass(frozen=True)
class FinetuneSpec:
    """What ``mltrail run --base-model/--adapter/--model-out`` named."""

    base: Path | None = None
    adapter: Path | None = None
    model: Path | None = None


@dataclass(frozen=True)
class Plan:
    argv: list[str]
    program: str
    configs: list[ConfigFile]
    found_configs: list[ConfigFile | tuple[Path, str]]
    params: dict[str, Any]
    data: list[tuple[str, str | Path]]
    secret_options: frozenset[str] = frozenset()
    """Options whose values are secrets though their names do not say so (``-p``)."""

    def config_params(self) -> list[dict[str, Any]]:
        """The flat params of every config file read (for the mask set)."""
        found = [c for c in self.found_configs if not isinstance(c, tuple)]
        return [c.params for c in [*self.configs, *found]]


def check_outputs(home: Home, outputs: Sequence[Path], force: bool) -> None:
    ledger_dir = home.path.resolve()
    for output in outputs:
        out = output.resolve()
        if (ledger_dir == out or out in ledger_dir.parents) and not force:
            raise ConfigError(
                f"the ledger {ledger_dir} is inside the output {output}",
                hint="keep the audit log apart from model weights, or pass --force",
            )


def make_plan(
    argv: Sequence[str], options: WrapOptions, cwd: Path, env: Mapping[str, str]
) -> Plan:
    program = resolve_command(argv, env=env)
    _, args = split_command(list(argv))
    parsed = parse_argv(args, cwd=cwd)
    data = [(role, check_data(loc, "data", cwd)) for role, loc in options.data]
    explicit = [load_config(at(cwd, p)) for p in options.configs]
    named = {Path(c.path).resolve() for c in explicit}
    found: list[ConfigFile | tuple[Path, str]] = []
    for path in parsed.config_files:
        if at(cwd, path).resolve() not in named:
            found.append(try_config(at(cwd, path)))
    params = {"params": parsed.params, "positional": parsed.positional}
    if parsed.removed:
        params["removed"] = parsed.removed
    secret = frozenset(redact_argv(list(argv)).options)
    return Plan(list(argv), program, explicit, found, params, data, secret)


def at(cwd: Path, path: Path) -> Path:
    return path if path.is_absolute() else cwd / path


def try_config(path: Path) -> ConfigFile | tuple[Path, str]:
    """The config file at ``path``, or ``(path, why it cannot be read)``."""
    try:
        return load_config(path)
    except InputError as e:
        return (path, str(e))


def config_body(config: ConfigFile | tuple[Path, str]) -> dict[str, Any]:
    if isinstance(config, tuple):
        path, error = config
        return {"source": "config", "params": {}, "error": error, "path": str(path)}
    name = Path(config.path).name
    return {
        "source": "config",
        "params": config.params,
        "file": {
            "path": config.path,
            "format": config.format,
            "sha256": config.sha256,
            "size": config.size,
            "content": Blob(
                config.data, f"application/{config.format}", text=True, name=name
            ),
            "content_redacted": False,  # the recorder masks it (capture.guard)
        },
    }


def argv_params(plan: Plan) -> dict[str, Any]:
    """The ``run.params`` body of the command's arguments; the values of options
    whose values are secrets (``-p``) as commitments."""
    params = {
        key: commit_secret(str(value)) if key in plan.secret_options else value
        for key, value in plan.params["params"].items()
    }
    return {"source": "argv", **plan.params, "params": params}


def interpreter(program: str) -> str | None:
    """The Python interpreter a command runs in, when it is a Python program."""
    if _PYTHON.match(Path(program).name):
        return program
    try:
        with open(program, "rb") as f:
            first = f.readline(256)
    except OSError:
        return None
    if not first.startswith(b"#!") or b"python" not in first:
        return None
    words = first[2:].decode(errors="replace").split()
    if words and Path(words[0]).name == "env" and len(words) > 1:
        return shutil.which(words[1])
    return words[0] if words else None


def scripts_of(plan: Plan, cwd: Path) -> list[Path]:
    """The script files a command runs: ``python clean.py``, ``python -m pkg.mod``,
    ``bash prep.sh``, or the program itself when it is a script with a ``#!`` line."""
    return program_files(plan.argv, cwd, plan.program)


def default_name(argv: Sequence[str]) -> str:
    program, _ = split_command(list(argv))
    return " ".join(Path(p).name if i == 0 else p for i, p in enumerate(program))


def started_body(
    plan: Plan, options: WrapOptions, cwd: Path, rank: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": "wrapper",
        "name": options.name or default_name(plan.argv),
        "command": redact_argv(plan.argv).value,
        "program": plan.program,
        "cwd": str(cwd),
        "pid": os.getpid(),
    }
    if rank is not None:
        body["rank"] = rank
    return body


def start_entries(
    plan: Plan,
    options: WrapOptions,
    cwd: Path,
    env: Mapping[str, str],
    rank: Any,
    cache: HashCache,
    warnings: list[str],
) -> list[tuple[str, dict[str, Any]]]:
    """``run.started`` and what goes with it: code, environment, hardware,
    parameters, config files and data manifests (leakage warnings added)."""
    entries = [("run.started", started_body(plan, options, cwd, rank))]
    context = capture_context(
        cwd=cwd,
        env=env,
        python=interpreter(plan.program),
        extra_vars=options.extra_vars,
        argv=plan.argv,
        program=plan.program,
    )
    entries += [with_rank(kind, body, rank) for kind, body in context]
    code = dict(context)["run.code"]
    if code.get("warning"):
        warnings.append(str(code["warning"]))
    entries.append(("run.params", argv_params(plan)))
    entries += [
        ("run.params", config_body(c)) for c in [*plan.configs, *plan.found_configs]
    ]
    data = [
        dataset_body(
            role,
            location,
            cache=cache,
            describe=options.describe,
            label=options.label,
            progress=options.progress,
        )
        for role, location in plan.data
    ]
    warnings += add_overlaps(data)
    entries += [("run.data", body) for body in data]
    return entries
