"""The Python API of runs: ``mltrail.start_run`` and ``Run``.

Example::

    import mltrail

    with mltrail.start_run(name="baseline", params={"lr": 0.1}) as run:
        for step in range(100):
            run.log_metrics({"loss": 1 / (step + 1)}, step=step)
        run.log_artifact("model.json")

Started inside ``mltrail run`` (which sets ``MLTRAIL_RUN_ID`` and ``MLTRAIL_SPOOL``),
``start_run`` joins the wrapper's run instead of starting another: the wrapper has
already recorded the command, code, environment and hardware, and it records the
end. The joined process is not given the key's password, so it does not sign: its
entries go through the wrapper's spool (``mltrail.ledger.spool``) and the wrapper appends
them. In a distributed job only rank 0 records run-level entries; every other
rank adds its own ``run.hardware`` and ignores the rest. A run id names one run:
``MLTRAIL_RUN_ID`` naming a run that started earlier and is not live is refused.

Ending a run never hides the caller's own exception: if the end cannot be written
(after retries, see ``mltrail.ledger.persist``), the run is left stale with its outcome
for ``close_stale_runs``, the problem is logged and added as a note to that
exception.

Metrics are buffered in memory and written in batches (one signed ``run.metrics``
entry per 10,000 points or 30 seconds, and at the end; the points themselves in a
JSON blob), so logging from a training loop costs a few microseconds.
"""

from __future__ import annotations

import argparse
import atexit
import dataclasses
import functools
import json
import logging
import math
import os
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from mltrail.capture.data.hashcache import HashCache, default_cache_path
from mltrail.capture.run.argv_secrets import redact_argv
from mltrail.capture.run.blob import Blob
from mltrail.capture.run.params import flatten, json_safe, parse_argv, split_command
from mltrail.config import SETTINGS_FILE, resolve_home
from mltrail.core.limits import value_problem
from mltrail.errors import InputError, MltrailError, SchemaError
from mltrail.ledger.home import Home, init_home, open_home
from mltrail.ledger.persist import write_durably
from mltrail.ledger.spool import spool_from_env
from mltrail.record.datasets import (
    artifact_body,
    check_data,
    dataset_body,
    require_path,
    step_body,
)
from mltrail.record.lifecycle import LiveRun, ended_by, rank_entries
from mltrail.record.open_runs import OpenRun
from mltrail.record.recorder import (
    HOME_ENV,
    RUN_ID_ENV,
    RunWriter,
    SpoolWriter,
    active_run,
    capture_context,
    capture_rank,
    check_new_run_id,
    check_run_id,
    distributed_run_id,
    enter_run,
    leave_run,
    new_run_id,
    other_rank,
    secret_guard,
    with_rank,
)
from mltrail.record.wrap_plan import at, config_body, try_config

if TYPE_CHECKING:
    from collections.abc import Callable, Mapping, Sequence
    from types import TracebackType

    from mltrail.capture.run.guard import SecretGuard

__all__ = ["Run", "open_or_create_home", "start_run"]

FLUSH_POINTS = 10_000
FLUSH_SECONDS = 30.0
_NOT_ENDED = "the process exited without ending the run (use `with` or Run.end)"
_log = logging.getLogger("mltrail")


def _number(value: Any) -> int | float | str:
    """A metric value as JSON: ints stay ints, non-finite floats become strings."""
    if type(value) is float and math.isfinite(value):  # the common case, fast
        return value
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and abs(value) <= 2**53 - 1:
        return value
    number = float(value.item() if hasattr(value, "item") else value)
    if math.isfinite(number):
        return number
    return "nan" if math.isnan(number) else ("inf" if number > 0 else "-inf")


def _summary(steps: list[int], values: list[Any]) -> dict[str, Any]:
    numbers = [v for v in values if not isinstance(v, str)]
    return {
        "count": len(values),
        "first_step": steps[0],
        "last_step": steps[-1],
        "last": values[-1],
        "min": min(numbers) if numbers else None,
        "max": max(numbers) if numbers else None,
    }


_MAX_PARAMS_DEPTH = 200
"""Params nest at most this deep before they are flattened (as config files do)."""


def _params_mapping(params: Any) -> dict[str, Any]:
    if params is None:
        return {}
    if isinstance(params, argparse.Namespace):
        return vars(params)
    if dataclasses.is_dataclass(params) and not isinstance(params, type):
        return dataclasses.asdict(params)
    if hasattr(params, "items"):
        return dict(params)
    if hasattr(params, "__dict__"):
        return {k: v for k, v in vars(params).items() if not k.startswith("_")}
    raise InputError(
        f"cannot read parameters from a {type(params).__name__}",
        hint="pass a mapping, an argparse.Namespace, a dataclass or an object",
    )


class Run:
    """One run in the ledger; use ``mltrail.start_run`` to get one."""

    def __init__(
        self,
        home: Home,
        run_id: str,
        *,
        name: str | None,
        joined: bool,
        rank: Mapping[str, int] | None = None,
        live: LiveRun | None = None,
        writer: RunWriter | None = None,
    ) -> None:
        self.home = home
        self.id = run_id
        self.name = name
        self.joined = joined
        self.rank = dict(rank) if rank else None
        self.status: str | None = None
        self._writer = writer or RunWriter(home.ledger, run_id, _guard(home.path))
        self._live = live
        self._pid = os.getpid()  # a forked child inherits the run, never its end
        self._started = time.monotonic()
        self._buffer: dict[str, tuple[list[int], list[Any]]] = {}
        self._counters: dict[str, int] = {}
        self._buffered = 0
        self._last_flush = time.monotonic()
        self._mutex = threading.Lock()
        atexit.register(self._at_exit)

    @property
    def records_run_level(self) -> bool:
        """False on ranks > 0 of a distributed run: they only add their hardware."""
        return self.rank is None or self.rank.get("rank", 0) == 0

    def log_params(self, params: Any = None, /, **more: Any) -> None:
        """Record hyperparameters: a mapping, ``argparse.Namespace``, dataclass or
        object, and/or keywords. Nested values are flattened to dotted keys."""
        values = {**_params_mapping(params), **more}
        problem = value_problem(values, "params", _MAX_PARAMS_DEPTH, exact_ints=False)
        if problem is not None:
            raise SchemaError(f"cannot log params: {problem}")
        source = "argparse" if isinstance(params, argparse.Namespace) else "api"
        if values and self.records_run_level:
            flat = json_safe(flatten(values))
            self._writer.write([("run.params", {"source": source, "params": flat})])

    def log_metrics(
        self, metrics: Mapping[str, Any], *, step: int | None = None
    ) -> None:
        """Buffer metric values at ``step`` (default: one past the name's last step)."""
        if not self.records_run_level:
            return
        with self._mutex:
            for name, value in metrics.items():
                at = self._counters.get(name, 0) if step is None else int(step)
                steps, values = self._buffer.setdefault(name, ([], []))
                steps.append(at)
                values.append(_number(value))
                self._counters[name] = at + 1
            self._buffered += len(metrics)
            due = self._buffered >= FLUSH_POINTS
            due = due or time.monotonic() - self._last_flush > FLUSH_SECONDS
        if due:
            self.flush()

    def flush(self) -> None:
        """Write buffered metrics now: one ``run.metrics`` entry per batch.

        The points go into a JSON blob (fast to write and hash); the entry holds
        each series' count, step range, last, min and max value.
        """
        entries = self._take_metrics()
        if entries:
            self._writer.write(entries)

    def _take_metrics(self) -> list[tuple[str, dict[str, Any]]]:
        """The buffered metrics as a ``run.metrics`` entry (none when empty)."""
        with self._mutex:
            buffer, self._buffer, self._buffered = self._buffer, {}, 0
            self._last_flush = time.monotonic()
        if not buffer:
            return []
        points = {k: {"steps": s, "values": v} for k, (s, v) in buffer.items()}
        data = json.dumps(points, separators=(",", ":"), allow_nan=False).encode()
        body = {
            "series": {k: _summary(s, v) for k, (s, v) in buffer.items()},
            "points": Blob(data, "application/json"),
        }
        return [("run.metrics", body)]

    def log_dataset(
        self,
        path: str | Path,
        *,
        role: str = "train",
        describe: bool = False,
        label: str | None = None,
    ) -> str:
        """Record the manifest of a file, folder or fsspec URL the run reads; return
        its dataset id. ``describe`` (or a ``label`` column) adds split statistics
        of tabular data. Local files go through the home's hash cache."""
        location = check_data(path if isinstance(path, str) else Path(path), "dataset")
        body = self._with_cache(
            lambda cache: dataset_body(
                role, location, cache=cache, describe=describe, label=label
            )
        )
        if self.records_run_level:
            self._writer.write([("run.data", body)])
        return str(body["dataset"])

    def _with_cache(
        self, work: Callable[[HashCache], dict[str, Any]]
    ) -> dict[str, Any]:
        cache = HashCache(default_cache_path(self.home.path))
        try:
            return work(cache)
        finally:
            cache.close()

    def log_artifact(
        self, path: str | Path, *, name: str | None = None
    ) -> dict[str, Any]:
        """Record an output file or folder (size and SHA-256, or a manifest)."""
        body = self._with_cache(
            lambda cache: artifact_body(Path(path), name, cache=cache)
        )
        if self.records_run_level:
            self._writer.write([("run.artifact", body)])
        return {k: v for k, v in body.items() if k != "manifest"}

    def log_finetune(
        self,
        *,
        base: str | Path | None = None,
        adapter: str | Path | None = None,
        model: str | Path | None = None,
        top: int = 10,
    ) -> dict[str, Any]:
        """Record a fine-tune (``run.finetune``): the ``base`` checkpoint's model id,
        a PEFT ``adapter`` folder's settings and effective rank, the fine-tuned or
        merged ``model``, and the weight delta against the base. Returns the body
        without its blobs (``body["model"]["model"]`` is the fine-tuned model's id).

        Raises:
            InputError: a path holds no readable checkpoint (nothing recorded).
        """
        from mltrail.record.finetune import finetune_body, without_blobs

        body = finetune_body(
            base=_opt_path(base),
            adapter=_opt_path(adapter),
            model=_opt_path(model),
            top=top,
        )
        if self.records_run_level:
            self._writer.write([("run.finetune", body)])
        return without_blobs(body)

    def log_step(
        self,
        name: str,
        *,
        inputs: Sequence[str | Path] = (),
        outputs: Sequence[str | Path] = (),
        scripts: Sequence[str | Path] = (),
        params: Mapping[str, Any] | None = None,
        command: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Record a preprocessing step: the scripts it ran and the datasets it read
        and wrote, each by manifest, so lineage can be followed from raw sources.

        Returns the input and output dataset ids: ``{"inputs": [...], "outputs": [...]}``.

        Raises:
            InputError: an input or script does not exist (nothing recorded).
        """
        reads = [dataset_body("input", require_path(Path(p), "input")) for p in inputs]
        code = [require_path(Path(p), "script") for p in scripts]
        writes = [artifact_body(Path(p)) for p in outputs]
        if command is not None:  # read as a command line: ``-p X``, ``curl -u``…
            guard = self._writer.guard
            command = redact_argv(list(command), committer=guard.committer).value
        body = step_body(
            name, command=command, scripts=code, inputs=reads, outputs=writes
        )
        if params:
            body["params"] = json_safe(flatten(dict(params)))
        if self.records_run_level:
            self._writer.write([("run.step", body)])
        return {
            "inputs": [b["dataset"] for b in reads],
            "outputs": [b.get("dataset") or b.get("sha256") for b in writes],
        }

    def note(self, text: str) -> None:
        """Record a free-text remark in this run."""
        self._writer.write([("note", {"text": text})])

    def end(
        self,
        status: str = "succeeded",
        *,
        error: str | None = None,
        exit_code: int | None = None,
    ) -> None:
        """Flush metrics and, for a run this process started, record its end.

        ``status`` is one of succeeded, failed, interrupted, aborted. Ending twice
        does nothing, and so does ending in a child forked from the process that
        started or joined the run (``os.fork``: its ``with`` block, exception hook
        or ``atexit`` end is the parent's run's, which the parent ends; what the
        child buffered is not written). The buffered metrics and ``run.ended``
        are one batch, written by the one run lifecycle (``LiveRun.finish``, as
        ``mltrail run`` ends its runs): retried through a rotated key and a
        locked or full store, then a checkpoint signed and the run's lock
        released.

        Raises:
            MltrailError: the end could not be written; the run is left stale,
                its outcome kept for ``close_stale_runs`` (the message says so).
        """
        if self.status is not None:
            return
        self.status = status
        leave_run(self)
        if os.getpid() != self._pid:
            return
        atexit.unregister(self._at_exit)
        entries = self._take_metrics()
        body: dict[str, Any] = {
            "status": status,
            "exit_code": exit_code,
            "duration_s": round(time.monotonic() - self._started, 6),
        }
        if error:
            body["error"] = error
        if self.joined or self._live is None:
            self._write_joined(body, entries)
            return
        ending = self._live.finish(body, before=entries)
        for line in ending.problems:
            _log.warning("mltrail: %s", line)
        for warning in ending.warnings:
            _log.warning("mltrail: run %s: %s", self.id, warning)
        if isinstance(ending.error, MltrailError):
            raise self._left_stale(ending.error) from ending.error
        if ending.error is not None:
            raise ending.error

    def end_after(self, error: BaseException | None) -> None:
        """End the run as the code it recorded ended: returned (``error`` None,
        succeeded), raised ``SystemExit`` (its code), ``KeyboardInterrupt``
        (interrupted) or another exception (failed, with it as the error). For a
        framework callback's end or exception hook (``lifecycle.ended_by``).

        Raises:
            MltrailError: the end could not be written (see ``end``).
        """
        ended = ended_by(error)
        self.end(ended.status, error=ended.error, exit_code=ended.exit_code)

    def _write_joined(
        self, body: Mapping[str, Any], entries: list[tuple[str, dict[str, Any]]]
    ) -> None:
        """A joined run's end: only its buffered metrics are written."""
        try:
            if entries:
                write_durably(self.home, functools.partial(self._writer.write, entries))
        except MltrailError as e:
            raise self._left_stale(e) from e

    def nested(self, name: str | None = None) -> Run:
        """A handle on this same run for a nested ``start_run()``: what it logs
        goes into this run, and its end flushes its metrics without ending it."""
        return Run(
            self.home, self.id, name=name or self.name, joined=True,
            rank=self.rank, writer=self._writer,
        )  # fmt: skip

    def _left_stale(self, error: MltrailError) -> MltrailError:
        """The error, saying what was lost (the lifecycle kept the outcome in the
        run's lock file for ``close_stale_runs``)."""
        if self.joined:
            text = f"run {self.id}: its buffered metrics were not recorded ({error})"
        else:
            text = (
                f"run {self.id}: its start was recorded but its end was not "
                f"({error}); it is left stale, for `mltrail runs close --stale` to "
                "record as aborted"
            )
        return type(error)(text, hint=error.hint)

    def _at_exit(self) -> None:
        try:
            self.end("succeeded" if self.joined else "aborted", error=_NOT_ENDED)
        except MltrailError as e:
            _log.error("mltrail: %s", e)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.end_after(exc)
        except MltrailError as e:
            if exc is None:
                raise
            _log.error("mltrail: %s", e)  # the caller's exception goes on, noted
            exc.add_note(f"mltrail: {e}")

    def __repr__(self) -> str:
        return f"Run(id={self.id!r}, name={self.name!r}, joined={self.joined})"


def _argv() -> list[str]:
    return [sys.executable, *sys.argv]


def _guard(home: Path, env: Mapping[str, str] | None = None) -> Any:
    """The secret guard of this process's run (its environment and command)."""
    return secret_guard(home, os.environ if env is None else env, argv=_argv())


def _opt_path(value: str | Path | None) -> Path | None:
    return None if value is None else Path(value)


def open_or_create_home(home: str | Path | None, env: Mapping[str, str]) -> Home:
    """Open the ledger home, creating it (with a new key) the first time."""
    if not (resolve_home(home, env) / SETTINGS_FILE).exists():
        created = init_home(home, env=env)
        _log.warning(
            "created a new ledger at %s (key %s)", created.home, created.key_id
        )
    return open_home(home, env=env)


def start_run(
    name: str | None = None,
    *,
    params: Any = None,
    data: Mapping[str, str | Path] | None = None,
    home: str | Path | None = None,
    capture: bool = True,
    source: str = "api",
) -> Run:
    """Start a run (or join the one ``mltrail run`` started) and return it.

    Args:
        name: a name to find the run by (default: the script's name).
        params: hyperparameters, as for ``Run.log_params``.
        data: datasets by role, e.g. ``{"train": "data/train.csv"}``.
        home: the ledger home (default: ``$MLTRAIL_HOME``, else ``~/.mltrail``).
        capture: record code, environment, hardware and ``sys.argv`` parameters.
        source: what started it (``api`` or ``autolog``), recorded in ``run.started``.

    A legitimate join is the command ``mltrail run`` wraps (``MLTRAIL_SPOOL``),
    a process of a run whose recorder is live, or a rank > 0 of a distributed run.
    Otherwise a given or launch-derived id names the run to start.

    Raises:
        InputError: a dataset path does not exist, or ``MLTRAIL_RUN_ID`` names a
            run that already started and is not live (nothing recorded).
    """
    env = dict(os.environ)
    paths = {
        role: check_data(p if isinstance(p, str) else Path(p), "dataset")
        for role, p in (data or {}).items()
    }
    outer = active_run()
    if outer is not None:  # one process, one run: join it
        run = outer.nested(name)
    else:
        rank = capture_rank(env)
        run = _join_or_start(env, rank, name, home, capture=capture, source=source)
        if run.joined and (not run.records_run_level or other_rank(env)):
            run._writer.write(rank_entries(env, rank))
        enter_run(run)
    run.log_params(params)
    for role, path in paths.items():
        run.log_dataset(path, role=role)
    return run


def _join_or_start(
    env: Mapping[str, str],
    rank: Mapping[str, int] | None,
    name: str | None,
    home: str | Path | None,
    *,
    capture: bool,
    source: str,
) -> Run:
    launch_id = distributed_run_id(env, rank)
    given = env.get(RUN_ID_ENV)
    above_zero = rank is not None and rank["rank"] > 0
    joined_id = given or (launch_id if above_zero else None)
    if given:
        check_run_id(given, source=RUN_ID_ENV)
    spool = spool_from_env(env)
    if given and spool is not None:
        joined = open_home(env.get(HOME_ENV) or home, writable=False, env=env)
        writer = SpoolWriter(joined.ledger, given, spool, _guard(joined.path, env))
        return Run(joined, given, name=name, joined=True, rank=rank, writer=writer)
    if joined_id:
        check_run_id(joined_id)
    ledger_home = open_or_create_home(
        env.get(HOME_ENV) or home if joined_id else home, env
    )
    if joined_id and (above_zero or OpenRun.is_live(ledger_home.path, joined_id)):
        return Run(ledger_home, joined_id, name=name, joined=True, rank=rank)
    run_id = given or launch_id
    if run_id:
        origin = "from MLTRAIL_RUN_ID" if given else "derived from the launch"
        try:
            check_new_run_id(ledger_home.ledger, run_id, origin)
        except InputError:
            ledger_home.close()
            raise
    return _start_new(
        ledger_home, name, env, rank, capture=capture, source=source, run_id=run_id
    )


def _start_new(
    home: Home,
    name: str | None,
    env: Mapping[str, str],
    rank: Mapping[str, int] | None,
    *,
    capture: bool,
    source: str,
    run_id: str | None = None,
) -> Run:
    guard = _guard(home.path, env)
    live = LiveRun.open(home, run_id or new_run_id(), guard)
    name = name or Path(sys.argv[0] or "python").name
    try:
        live.start(
            _start_entries(name, env, rank, guard, capture=capture, source=source)
        )
    except BaseException:
        live.give_up()
        raise
    return Run(
        home, live.run_id, name=name, joined=False, rank=rank, live=live,
        writer=live.writer,
    )  # fmt: skip


def _start_entries(
    name: str,
    env: Mapping[str, str],
    rank: Mapping[str, int] | None,
    guard: SecretGuard,
    *,
    capture: bool,
    source: str,
) -> list[tuple[str, Any]]:
    """``run.started`` of this process and, with ``capture``, its code,
    environment, hardware, ``sys.argv`` parameters and the config files named."""
    argv = _argv()
    command = redact_argv(argv, committer=guard.committer)
    started: dict[str, Any] = {
        "source": source,
        "name": name,
        "command": command.value,
        "program": sys.executable,
        "cwd": str(Path.cwd()),
        "pid": os.getpid(),
    }
    if rank:
        started["rank"] = dict(rank)
    entries: list[tuple[str, Any]] = [("run.started", started)]
    if not capture:
        return entries
    context = capture_context(cwd=Path.cwd(), env=env, argv=argv)
    entries += [with_rank(kind, body, rank) for kind, body in context]
    if warning := dict(context)["run.code"].get("warning"):
        _log.warning("mltrail: warning: %s", warning)
    parsed = parse_argv(split_command(argv)[1], cwd=Path.cwd())
    values = {
        k: guard.committer.commit(str(v)) if k in command.options else v
        for k, v in parsed.params.items()
    }
    argv_params = {"params": values, "positional": parsed.positional}
    entries.append(("run.params", {"source": "argv", **argv_params}))
    entries += [
        ("run.params", config_body(try_config(at(Path.cwd(), Path(p)))))
        for p in parsed.config_files
    ]
    return entries
