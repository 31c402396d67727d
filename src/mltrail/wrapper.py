"""``mltrail run``: wrap a command and record the whole run, with no log calls in it.

Order of events, chosen so that nothing is lost on a crash and bad input records
nothing:

1. Check everything the user named (the command, ``--data``, ``--config``,
   ``--output`` paths) before writing anything.
2. Record runs whose recorder died as aborted, take this run's open-run lock.
3. Capture context (code, environment, hardware in parallel), parameters, data
   manifests, and append them with ``run.started`` as one atomic batch.
4. Run the command (``capture.process``): output passed through live and hashed,
   signals forwarded. It sees ``MLTRAIL_RUN_ID`` and ``MLTRAIL_HOME``, so
   ``mltrail.start_run()`` inside it joins this run.
5. Hash the outputs, append ``run.artifact`` entries and ``run.ended`` as one batch,
   sign a checkpoint, release the lock.
"""

from __future__ import annotations

import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.capture.blob import Blob
from mltrail.capture.hardware import capture_hardware
from mltrail.capture.hashcache import HashCache, default_cache_path
from mltrail.capture.params import load_config, parse_argv, split_command
from mltrail.capture.process import ProcessResult, resolve_command, run_command
from mltrail.capture.redact import redact_argv, redact_tree, scrub_text
from mltrail.datasets import (
    add_overlaps,
    artifact_body,
    check_data,
    dataset_body,
    step_body,
)
from mltrail.errors import ConfigError, InputError
from mltrail.finetune import ScannedModel, finetune_body, scan_model
from mltrail.recorder import (
    HOME_ENV,
    RUN_ID_ENV,
    OpenRun,
    RunWriter,
    capture_context,
    capture_rank,
    check_run_id,
    close_stale_runs,
    distributed_run_id,
    new_run_id,
    with_rank,
)

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

    from mltrail.capture.params import ConfigFile
    from mltrail.capture.process import StreamCapture
    from mltrail.capture.progress import ProgressFactory
    from mltrail.home import Home

__all__ = ["FinetuneSpec", "StepSpec", "WrapOptions", "WrapResult", "record_command"]

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
class WrapResult:
    """How the run went: its id, status, the process, and the records written."""

    run_id: str
    status: str
    process: ProcessResult
    records: int
    checkpoint_size: int | None
    closed_stale: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class _Plan:
    argv: list[str]
    program: str
    configs: list[ConfigFile]
    found_configs: list[ConfigFile | tuple[Path, str]]
    params: dict[str, Any]
    data: list[tuple[str, str | Path]]


def _check_outputs(home: Home, outputs: Sequence[Path], force: bool) -> None:
    ledger_dir = home.path.resolve()
    for output in outputs:
        out = output.resolve()
        if (ledger_dir == out or out in ledger_dir.parents) and not force:
            raise ConfigError(
                f"the ledger {ledger_dir} is inside the output {output}",
                hint="keep the audit log apart from model weights, or pass --force",
            )


def _plan(
    argv: Sequence[str], options: WrapOptions, cwd: Path, env: Mapping[str, str]
) -> _Plan:
    program = resolve_command(argv, env=env)
    _, args = split_command(list(argv))
    parsed = parse_argv(args, cwd=cwd)
    data = [(role, check_data(loc, "data", cwd)) for role, loc in options.data]
    explicit = [load_config(_at(cwd, p)) for p in options.configs]
    named = {Path(c.path).resolve() for c in explicit}
    found: list[ConfigFile | tuple[Path, str]] = []
    for path in parsed.config_files:
        if _at(cwd, path).resolve() not in named:
            found.append(_try_config(_at(cwd, path)))
    params = {"params": parsed.params, "positional": parsed.positional}
    if parsed.removed:
        params["removed"] = parsed.removed
    return _Plan(list(argv), program, explicit, found, params, data)


def _at(cwd: Path, path: Path) -> Path:
    return path if path.is_absolute() else cwd / path


def _try_config(path: Path) -> ConfigFile | tuple[Path, str]:
    try:
        return load_config(path)
    except InputError as e:
        return (path, str(e))


def _config_body(config: ConfigFile | tuple[Path, str]) -> dict[str, Any]:
    if isinstance(config, tuple):
        path, error = config
        return {"source": "config", "params": {}, "error": error, "path": str(path)}
    found = redact_tree(config.params)
    content = scrub_text(config.data, found.secrets)
    return {
        "source": "config",
        "params": found.value,
        "file": {
            "path": config.path,
            "format": config.format,
            "sha256": config.sha256,
            "size": config.size,
            "content": Blob(content, f"application/{config.format}"),
            "content_redacted": content != config.data,
        },
    }


def _interpreter(program: str) -> str | None:
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


_SCRIPT_SUFFIXES = (".py", ".sh", ".bash", ".r", ".jl", ".sql", ".pl", ".rb", ".js")


def _scripts_of(plan: _Plan, cwd: Path) -> list[Path]:
    """The script files a command runs: ``python clean.py``, ``bash prep.sh``, or
    the program itself when it is a script with a ``#!`` line."""
    program, _ = split_command(plan.argv)
    found = [
        _at(cwd, Path(p))
        for p in program[1:]
        if p.lower().endswith(_SCRIPT_SUFFIXES) and _at(cwd, Path(p)).is_file()
    ]
    if not found and _is_script(Path(plan.program)):
        found.append(Path(plan.program))
    return found


def _is_script(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return f.read(2) == b"#!"
    except OSError:
        return False


def _default_name(argv: Sequence[str]) -> str:
    program, _ = split_command(list(argv))
    return " ".join(Path(p).name if i == 0 else p for i, p in enumerate(program))


def _started_body(
    plan: _Plan, options: WrapOptions, cwd: Path, rank: Any
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "source": "wrapper",
        "name": options.name or _default_name(plan.argv),
        "command": redact_argv(plan.argv).value,
        "program": plan.program,
        "cwd": str(cwd),
        "pid": os.getpid(),
    }
    if rank is not None:
        body["rank"] = rank
    return body


def _start_entries(
    plan: _Plan,
    options: WrapOptions,
    cwd: Path,
    env: Mapping[str, str],
    rank: Any,
    cache: HashCache,
    warnings: list[str],
) -> list[tuple[str, dict[str, Any]]]:
    entries = [("run.started", _started_body(plan, options, cwd, rank))]
    context = capture_context(
        cwd=cwd,
        env=env,
        python=_interpreter(plan.program),
        extra_vars=options.extra_vars,
    )
    entries += [with_rank(kind, body, rank) for kind, body in context]
    entries.append(("run.params", {"source": "argv", **plan.params}))
    entries += [
        ("run.params", _config_body(c)) for c in [*plan.configs, *plan.found_configs]
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


def _stream(capture: StreamCapture) -> dict[str, Any]:
    stored = capture.stored
    return {
        "sha256": capture.sha256,
        "size": capture.size,
        "stored": Blob(stored, "application/octet-stream") if stored else None,
        "truncated": capture.truncated,
        "omitted": capture.omitted,
    }


def _status(result: ProcessResult) -> str:
    if result.signal is not None or result.signals_received:
        return "interrupted"
    return "succeeded" if result.returncode == 0 else "failed"


def _ended_body(result: ProcessResult) -> dict[str, Any]:
    return {
        "status": _status(result),
        "exit_code": result.returncode if result.signal is None else None,
        "signal": result.signal,
        "duration_s": round(result.duration_s, 6),
        "pid": result.pid,
        "stdout": _stream(result.stdout),
        "stderr": _stream(result.stderr),
        "signals_received": list(result.signals_received),
    }


def _child_env(env: Mapping[str, str], home: Home, run_id: str) -> dict[str, str]:
    return {**env, RUN_ID_ENV: run_id, HOME_ENV: str(home.path.resolve())}


def _run_id(env: Mapping[str, str], home: Home, rank: Any) -> str:
    """The id this wrapper records under.

    Every rank of a distributed run gets the same id: ``MLTRAIL_RUN_ID`` when set,
    else one derived from the launch (``distributed_run_id``); rank 0 records the
    run, the others their hardware. Without a rank, a given id not live in this
    home names the run to start (so a scheduler can choose it); a live one means
    this wrapper runs inside another run, and it starts a run of its own.
    """
    given = env.get(RUN_ID_ENV)
    if given:
        check_run_id(given, source=RUN_ID_ENV)
    if given and (rank is not None or not OpenRun.is_live(home.path, given)):
        return given
    return distributed_run_id(env, rank) or new_run_id()


def record_command(
    home: Home,
    argv: Sequence[str],
    options: WrapOptions,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> WrapResult:
    """Run ``argv`` and record it as one run in ``home``'s ledger.

    Raises:
        CommandNotFoundError: the command cannot be started (nothing recorded).
        InputError: a named data, config or output path is wrong (nothing recorded).
    """
    env = dict(os.environ if env is None else env)
    cwd = (cwd or Path.cwd()).resolve()
    plan = _plan(argv, options, cwd, env)
    _check_outputs(home, [_at(cwd, p) for p in options.outputs], options.force)
    rank = capture_rank(env)
    run_id = _run_id(env, home, rank)
    if rank is not None and rank["rank"] > 0:
        return _record_rank(home, plan, options, cwd, env, rank, run_id)
    closed = close_stale_runs(home)
    lock = OpenRun.create(home.path, run_id, seq=home.ledger.head().size)
    try:
        result = _record(home, plan, options, cwd, env, rank, run_id, closed)
    except BaseException:
        lock.abandon()
        raise
    lock.release()
    return result


def _record(
    home: Home,
    plan: _Plan,
    options: WrapOptions,
    cwd: Path,
    env: dict[str, str],
    rank: Any,
    run_id: str,
    closed: list[str],
) -> WrapResult:
    writer = RunWriter(home.ledger, run_id)
    warnings: list[str] = []
    cache = HashCache(default_cache_path(home.path))
    try:
        start = _start_entries(plan, options, cwd, env, rank, cache, warnings)
        base = _scan_base(options, cwd)
        started = writer.write(start)
        result = _run_child(plan, options, cwd, _child_env(env, home, run_id), writer)
        outputs = [
            (
                "run.artifact",
                artifact_body(_at(cwd, p), cache=cache, progress=options.progress),
            )
            for p in options.outputs
        ]
    finally:
        cache.close()
    step = []
    if options.step is not None:
        inputs = [body for kind, body in start if kind == "run.data"]
        body = step_body(
            options.step.name or _default_name(plan.argv),
            command=redact_argv(plan.argv).value,
            scripts=[
                *_scripts_of(plan, cwd),
                *(_at(cwd, s) for s in options.step.scripts),
            ],
            inputs=inputs,
            outputs=[body for _, body in outputs],
        )
        step = [("run.step", body)]
    tune = _finetune_entries(options, cwd, base, warnings)
    ended = writer.write([*outputs, *tune, *step, ("run.ended", _ended_body(result))])
    checkpoint = home.checkpoint()
    return WrapResult(
        run_id,
        _status(result),
        result,
        len(started) + len(ended),
        checkpoint.checkpoint.size,
        closed,
        warnings,
    )


def _scan_base(options: WrapOptions, cwd: Path) -> ScannedModel | None:
    """The base model's fingerprint, taken before the command can change it."""
    spec = options.finetune
    if spec is None or spec.base is None:
        return None
    return scan_model(_at(cwd, spec.base), what="base", progress=options.progress)


def _finetune_entries(
    options: WrapOptions, cwd: Path, base: ScannedModel | None, warnings: list[str]
) -> list[tuple[str, dict[str, Any]]]:
    """The ``run.finetune`` entry, after the command wrote the adapter or model.

    An adapter or model that cannot be read then (the command failed, say) does
    not lose the run: the entry keeps the base and says what went wrong.
    """
    spec = options.finetune
    if spec is None:
        return []
    adapter = _at(cwd, spec.adapter) if spec.adapter else None
    model = _at(cwd, spec.model) if spec.model else None
    try:
        body = finetune_body(
            base=base, adapter=adapter, model=model, progress=options.progress
        )
    except InputError as e:
        warnings.append(f"fine-tune not fully recorded: {e}")
        if base is None:
            return []
        body = {"base": base.part, "error": str(e)}
    return [("run.finetune", body)]


def _run_child(
    plan: _Plan, options: WrapOptions, cwd: Path, env: dict[str, str], writer: RunWriter
) -> ProcessResult:
    try:
        return run_command(plan.argv, cwd=cwd, env=env, log_limit=options.log_limit)
    except BaseException as e:
        ended = {"status": "interrupted", "exit_code": None, "error": repr(e)}
        writer.write([("run.ended", ended)])
        raise


def _record_rank(
    home: Home,
    plan: _Plan,
    options: WrapOptions,
    cwd: Path,
    env: dict[str, str],
    rank: Any,
    run_id: str,
) -> WrapResult:
    """A rank > 0 of a distributed run: add this machine's hardware, run, return."""
    writer = RunWriter(home.ledger, run_id)
    written = writer.write([("run.hardware", {**capture_hardware(env), "rank": rank})])
    child_env = _child_env(env, home, run_id)
    result = run_command(plan.argv, cwd=cwd, env=child_env, log_limit=options.log_limit)
    return WrapResult(run_id, _status(result), result, len(written), None)
