"""``mltrail run``: wrap a command and record the whole run, with no log calls in it.

Order of events, chosen so that nothing is lost on a crash and bad input records
nothing:

1. Check everything the user named (the command, ``--data``, ``--config``,
   ``--output`` paths, a given run id) before writing anything.
2. Record runs whose recorder died as aborted, take this run's open-run lock
   (``LiveRun.open``: the one run lifecycle of ``mltrail.record.lifecycle``, which
   ``mltrail.start_run`` goes through too).
3. Capture context (code, environment, hardware in parallel), parameters, data
   manifests, and append them with ``run.started`` as one atomic batch.
4. Run the command (``capture.process``): output passed through live and hashed,
   signals forwarded. It sees ``MLTRAIL_RUN_ID``, ``MLTRAIL_HOME`` and
   ``MLTRAIL_SPOOL``, so ``mltrail.start_run()`` inside it joins this run, and
   never the key's password (``MLTRAIL_KEY_PASSWORD``) or other mltrail secrets:
   what it logs goes through the spool and the wrapper signs it.
5. Hash the outputs (after ``dvc repro`` also each DVC stage's files, as
   ``run.step`` entries: ``mltrail.record.dvc_steps``), append the spooled entries, then
   ``run.artifact`` entries and ``run.ended`` as one batch, sign a checkpoint,
   release the lock
   (``LiveRun.finish`` through ``wrap_end``: from here on the command's exit
   code always passes through).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mltrail.capture.data.hashcache import HashCache, default_cache_path
from mltrail.capture.machine.environment import is_mltrail_secret
from mltrail.capture.run.argv_secrets import redact_argv
from mltrail.capture.run.log_capture import LogMasking
from mltrail.capture.run.mask import MaskSet
from mltrail.capture.run.mask_channel import MASK_FD_ENV, MaskChannel
from mltrail.capture.run.process import ProcessResult, run_command
from mltrail.capture.run.redact import committing_with
from mltrail.errors import CommandNotFoundError, InputError, MltrailError
from mltrail.ledger.persist import write_durably
from mltrail.ledger.spool import SPOOL_ENV, create_spool, remove_spool
from mltrail.record.datasets import step_body
from mltrail.record.dvc_steps import dvc_command_secrets, dvc_stage_entries
from mltrail.record.finetune import ScannedModel, finetune_body, scan_model
from mltrail.record.lifecycle import Ending, LiveRun, rank_entries
from mltrail.record.open_runs import OpenRun, ingest_spool
from mltrail.record.recorder import (
    HOME_ENV,
    OPEN_RUNS,
    RUN_ID_ENV,
    RunWriter,
    capture_rank,
    check_new_run_id,
    check_run_id,
    distributed_run_id,
    new_run_id,
    secret_guard,
)
from mltrail.record.wrap_end import (
    changed_inputs,
    finish_run,
    guarded,
    output_bodies,
    run_status,
)
from mltrail.record.wrap_plan import (
    FinetuneSpec,
    Plan,
    StepSpec,
    WrapOptions,
    at,
    check_outputs,
    default_name,
    make_plan,
    scripts_of,
    start_entries,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Mapping, Sequence

    from mltrail.capture.run.guard import SecretGuard
    from mltrail.ledger.home import Home

__all__ = ["FinetuneSpec", "StepSpec", "WrapOptions", "WrapResult", "record_command"]


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
    problems: list[str] = field(default_factory=list)
    """mltrail's own failures after the command ran (the exit code still passes
    through); each says what was and was not recorded."""


def child_env(
    env: Mapping[str, str], home: Home, run_id: str, spool: Path
) -> dict[str, str]:
    """The wrapped command's environment: the wrapper's, less mltrail's secrets,
    plus what it needs to join the run."""
    kept = {k: v for k, v in env.items() if not is_mltrail_secret(k)}
    joined = {RUN_ID_ENV: run_id, HOME_ENV: str(home.path.resolve())}
    return {**kept, **joined, SPOOL_ENV: str(spool)}


@contextlib.contextmanager
def _joined_masking(
    child: dict[str, str],
    guard: SecretGuard,
    ended: Callable[[], list[str]] = list,
) -> Iterator[tuple[dict[str, str], LogMasking, tuple[int, ...]]]:
    """The command's environment, the masking of its output and the descriptor
    it inherits: secrets the processes that join the run learn
    (``log_params(db_password=…)``) come back through a pipe and are masked in
    the output kept (``capture.run.mask_channel``), and so are the secrets
    ``ended`` finds once the command has ended (a DVC pipeline's stage
    commands, which DVC printed)."""
    channel = MaskChannel()
    try:

        def learned() -> MaskSet:
            found = MaskSet.build([("secret", s) for s in ended()], guard.allow)
            return channel.masks(guard.allow) | found

        late = functools.cache(learned)
        masking = LogMasking(guard.masks, guard.allow, late=late)
        yield {**child, MASK_FD_ENV: channel.env_value}, masking, (channel.fd,)
    finally:
        channel.close()


STORE_LOGS_ENV = "MLTRAIL_STORE_LOGS"


def _log_setting(
    options: WrapOptions, home: Home, env: Mapping[str, str]
) -> WrapOptions:
    """``options`` with ``log_limit`` 0 when logs must not be stored at all:
    ``MLTRAIL_STORE_LOGS=0`` or ``"store_logs": false`` in ledger.json."""
    off = env.get(STORE_LOGS_ENV, "").strip().lower() in ("0", "false", "no", "off")
    if off or not home.settings.store_logs:
        return dataclasses.replace(options, log_limit=0)
    return options


def _run_id(env: Mapping[str, str], home: Home, rank: Any) -> str:
    """The id this wrapper records under.

    Every rank of a distributed run gets the same id: ``MLTRAIL_RUN_ID`` when set,
    else one derived from the launch (``distributed_run_id``); rank 0 records the
    run, the others their hardware. Without a rank, a given id not live in this
    home names the run to start (so a scheduler can choose it); a live one means
    this wrapper runs inside another run, and it starts a run of its own.

    Raises:
        InputError: the id is malformed, or rank 0 (or a rankless wrapper) was
            given the id of a run that already started: a run id names one run.
    """
    given = env.get(RUN_ID_ENV)
    if given:
        check_run_id(given, source=RUN_ID_ENV)
    launch = distributed_run_id(env, rank)
    if rank is not None and rank["rank"] > 0:  # another rank: joins, never starts
        return given or launch or new_run_id()
    if given and not OpenRun.is_live(home.path, given):
        return check_new_run_id(home.ledger, given, "from MLTRAIL_RUN_ID")
    if launch:
        return check_new_run_id(home.ledger, launch, "derived from the launch")
    return new_run_id()


def record_command(
    home: Home,
    argv: Sequence[str],
    options: WrapOptions,
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> WrapResult:
    """Run ``argv`` and record it as one run in ``home``'s ledger.

    Once the command has run this does not raise for mltrail's own failures:
    they are in ``WrapResult.problems``, and the run is left for
    ``close_stale_runs`` when its end could not be written.

    Raises:
        CommandNotFoundError: the command cannot be found (nothing recorded) or
            executed (the run is recorded as failed, its hint says so).
        InputError: a named data, config or output path is wrong, or the given run
            id names a run that already started (nothing recorded).
        StoreError: the start could not be written (nothing recorded, the command
            not run).
    """
    env = dict(os.environ if env is None else env)
    cwd = (cwd or Path.cwd()).resolve()
    plan = make_plan(argv, options, cwd, env)
    check_outputs(home, [at(cwd, p) for p in options.outputs], options.force)
    options = _log_setting(options, home, env)
    guard = secret_guard(home.path, env, argv=plan.argv, params=plan.config_params())
    rank = capture_rank(env)
    run_id = _run_id(env, home, rank)
    if rank is not None and rank["rank"] > 0:
        return _record_rank(home, plan, options, cwd, env, rank, run_id, guard)
    try:
        live = LiveRun.open(home, run_id, guard, spool=True)
    except MltrailError as e:
        _not_run(e)
        raise
    try:
        return _record(live, plan, options, cwd, env, rank, guard)
    except BaseException:
        live.lock.abandon()
        raise


def _record(
    live: LiveRun,
    plan: Plan,
    options: WrapOptions,
    cwd: Path,
    env: dict[str, str],
    rank: Any,
    guard: SecretGuard,
) -> WrapResult:
    home = live.home
    warnings: list[str] = []
    cache = HashCache(default_cache_path(home.path))
    try:
        with committing_with(guard.committer):
            start = start_entries(plan, options, cwd, env, rank, cache, warnings)
        base = _scan_base(options, cwd)
        _write_start(live, start)
        early_end = functools.partial(_early_end, live)
        child = child_env(env, home, live.run_id, cast("Path", live.spool))
        ended = functools.partial(dvc_command_secrets, plan.argv, cwd)
        with _joined_masking(child, guard, ended) as (child, masking, fds):
            result = _run_child(plan, options, cwd, child, early_end, masking, fds)
        outputs = output_bodies(
            [at(cwd, p) for p in options.outputs], cache, options.progress, warnings
        )
        warnings += changed_inputs(start, cache)
        with committing_with(guard.committer):
            stages = guarded(
                "DVC stages",
                lambda: dvc_stage_entries(
                    plan.argv, cwd, cache, warnings, options.progress
                ),
                warnings,
            )
    finally:
        cache.close()
    ending = finish_run(
        live,
        result=result,
        entries=functools.partial(
            _end_entries, plan, options, cwd, start, base, outputs, guard, stages
        ),
        warnings=warnings,
    )
    return WrapResult(
        live.run_id,
        run_status(result),
        result,
        ending.records,
        ending.checkpoint_size,
        live.closed,
        warnings + ending.warnings,
        ending.problems,
    )


def _write_start(live: LiveRun, start: list[tuple[str, dict[str, Any]]]) -> int:
    """Append the start batch (retried like the end); raise saying nothing was
    recorded and the command was not run."""
    try:
        return live.start(start)
    except MltrailError as e:
        _not_run(e)
        raise


def _not_run(error: MltrailError) -> None:
    """Add to ``error``'s hint that nothing of the run was recorded or run."""
    note = "nothing of this run was recorded and the command was not run"
    error.hint = f"{note}; {error.hint}" if error.hint else note


def _end_entries(
    plan: Plan,
    options: WrapOptions,
    cwd: Path,
    start: list[tuple[str, dict[str, Any]]],
    base: ScannedModel | None,
    outputs: list[tuple[str, dict[str, Any]]],
    guard: SecretGuard,
    stages: list[tuple[str, dict[str, Any]]],
    warnings: list[str],
) -> list[tuple[str, dict[str, Any]]]:
    """Outputs, fine-tune, step and DVC stage entries; one that cannot be read is a
    warning."""
    tune = guarded(
        "fine-tune", lambda: _finetune_entries(options, cwd, base, warnings), warnings
    )
    with committing_with(guard.committer):
        step = guarded(
            "step", lambda: _step_entries(plan, options, cwd, start, outputs), warnings
        )
    return [*outputs, *tune, *step, *stages]


def _step_entries(
    plan: Plan,
    options: WrapOptions,
    cwd: Path,
    start: list[tuple[str, dict[str, Any]]],
    outputs: list[tuple[str, dict[str, Any]]],
) -> list[tuple[str, dict[str, Any]]]:
    if options.step is None:
        return []
    body = step_body(
        options.step.name or default_name(plan.argv),
        command=redact_argv(plan.argv).value,
        scripts=[*scripts_of(plan, cwd), *(at(cwd, s) for s in options.step.scripts)],
        inputs=[body for kind, body in start if kind == "run.data"],
        outputs=[body for _, body in outputs],
    )
    return [("run.step", body)]


def _scan_base(options: WrapOptions, cwd: Path) -> ScannedModel | None:
    """The base model's fingerprint, taken before the command can change it."""
    spec = options.finetune
    if spec is None or spec.base is None:
        return None
    return scan_model(at(cwd, spec.base), what="base", progress=options.progress)


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
    adapter = at(cwd, spec.adapter) if spec.adapter else None
    model = at(cwd, spec.model) if spec.model else None
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
    plan: Plan,
    options: WrapOptions,
    cwd: Path,
    env: dict[str, str],
    end: Callable[[dict[str, Any]], str],
    masking: LogMasking,
    pass_fds: tuple[int, ...] = (),
) -> ProcessResult:
    """Run the command; if it cannot start or the wrapper is interrupted, record
    that end (``end``) before the error goes on."""
    try:
        return run_command(
            plan.argv,
            cwd=cwd,
            env=env,
            log_limit=options.log_limit,
            masking=masking,
            pass_fds=pass_fds,
        )
    except CommandNotFoundError as e:
        recorded = end({"status": "failed", "exit_code": e.exit_code, "error": str(e)})
        hint = f"{e.hint}; the run {recorded}" if e.hint else f"the run {recorded}"
        raise CommandNotFoundError(str(e), hint=hint, code=e.exit_code) from e
    except BaseException as e:
        end({"status": "interrupted", "exit_code": None, "error": repr(e)})
        raise


def _early_end(live: LiveRun, body: dict[str, Any]) -> str:
    """Record ``body`` as the end of a run whose command did not run to its end,
    after what it spooled; say what happened."""
    ending = live.finish(body)
    if ending.error is not None:
        return f"started but its end is not recorded ({ending.error}); it is left stale"
    return f"was recorded as {body['status']}"


def _record_rank(
    home: Home,
    plan: Plan,
    options: WrapOptions,
    cwd: Path,
    env: dict[str, str],
    rank: Any,
    run_id: str,
    guard: SecretGuard,
) -> WrapResult:
    """A rank > 0 of a distributed run: add this machine's hardware, run, then
    append what the command logged through its spool."""
    writer = RunWriter(home.ledger, run_id, guard)
    hardware = rank_entries(env, rank)
    written = len(write_durably(home, functools.partial(writer.write, hardware)))
    name = f"{run_id}.{os.getpid()}.spool"
    spool = create_spool(home.path / OPEN_RUNS / name)
    try:
        child = child_env(env, home, run_id, spool)
        with _joined_masking(child, guard) as (child, masking, fds):
            result = run_command(
                plan.argv,
                cwd=cwd,
                env=child,
                log_limit=options.log_limit,
                masking=masking,
                pass_fds=fds,
            )
    except BaseException:
        remove_spool(spool)
        raise
    ending = Ending(records=written)
    try:
        spooled, warned = ingest_spool(home, writer, spool)
        ending.records += spooled
        ending.warnings += warned
    except MltrailError as e:
        ending.problems.append(
            f"rank {rank['rank']} of run {run_id}: what the command logged was not "
            f"recorded: {e} (it stays in {spool})"
        )
    return WrapResult(
        run_id,
        run_status(result),
        result,
        ending.records,
        None,
        warnings=ending.warnings,
        problems=ending.problems,
    )
