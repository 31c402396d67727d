"""The stages of a DVC pipeline run under ``mltrail run -- dvc repro``, as steps.

After a wrapped ``dvc repro`` or ``dvc exp run`` ends, ``dvc_stage_entries``
reads the ``dvc.lock`` it left in the working folder and returns one ``run.step``
entry per stage: the stage's command, its deps as inputs and outs as outputs (each
with DVC's md5 under ``dvc`` and, when the path exists, our SHA-256 or dataset id
through the hash cache), and its params. Since each stage names its own inputs and
outputs, the index links them, so ``mltrail trace model.pkl`` follows the model
back through ``train`` to the ``prepare`` stage that made its input.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from mltrail.capture.data.dvc_lock import (
    is_dvc_pipeline,
    parse_dvc_lock,
    stage_commands,
    stage_wdirs,
)
from mltrail.capture.run.argv_secrets import redact_argv
from mltrail.capture.run.redact import commit_secret
from mltrail.errors import CaptureError, InputError
from mltrail.record.datasets import artifact_body, step_body

if TYPE_CHECKING:
    from pathlib import Path

    from mltrail.capture.data.dvc_lock import DvcFile, DvcStage
    from mltrail.capture.data.hashcache import HashCache
    from mltrail.capture.data.progress import ProgressFactory

__all__ = ["dvc_command_secrets", "dvc_stage_entries"]

_LOCK = "dvc.lock"
_MASKED = b"[MASKED:secret]"


def dvc_stage_entries(
    argv: list[str],
    cwd: Path,
    cache: HashCache,
    warnings: list[str],
    progress: ProgressFactory | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """One ``run.step`` per stage of ``cwd/dvc.lock`` when ``argv`` ran a DVC
    pipeline; nothing for another command or when there is no ``dvc.lock``.
    Secrets in a stage's command are committed under the committer in force
    (``capture.run.redact.committing_with``).

    Raises:
        InputError: ``dvc.lock`` or ``dvc.yaml`` is malformed.
        CaptureError: one of them cannot be read.
    """
    if not is_dvc_pipeline(argv):
        return []
    lock = cwd / _LOCK
    if not lock.is_file():
        warnings.append(
            f"the DVC pipeline left no {_LOCK} in {cwd}: no stages recorded"
        )
        return []
    data = _read(lock)
    stages = parse_dvc_lock(data.decode("utf-8", errors="replace"))
    yaml_file = cwd / "dvc.yaml"
    wdirs = (
        stage_wdirs(_read(yaml_file).decode("utf-8", errors="replace"))
        if yaml_file.is_file()
        else {}
    )
    source = {"lock": _LOCK, **_lock_digests(data, _stage_secrets(stages))}
    return [
        ("run.step", _stage_body(stage, cwd, wdirs, source, cache, progress))
        for stage in stages
    ]


def dvc_command_secrets(argv: list[str], cwd: Path) -> list[str]:
    """The secrets of the stage commands in ``cwd/dvc.lock`` and ``cwd/dvc.yaml``
    when ``argv`` ran a DVC pipeline (``--api-key VALUE``, as
    :func:`dvc_stage_entries` commits them): DVC prints each stage's command
    before running it, so the output a wrapper keeps must be masked with them;
    and a stage that failed is in ``dvc.yaml`` only. Nothing when there is no
    pipeline; a file that cannot be read adds nothing (the stage entries say
    why). A value still a template (``${…}``) is not one."""
    if not is_dvc_pipeline(argv):
        return []
    commands: list[str] = []
    for name, read in ((_LOCK, _locked_commands), ("dvc.yaml", stage_commands)):
        path = cwd / name
        try:
            if path.is_file():
                commands += read(_read(path).decode("utf-8", errors="replace"))
        except (CaptureError, InputError):
            continue
    return [s for cmd in commands for s in redact_argv([cmd]).secrets if "${" not in s]


def _locked_commands(text: str) -> list[str]:
    return [cmd for stage in parse_dvc_lock(text) for cmd in stage.command]


def _stage_secrets(stages: list[DvcStage]) -> list[str]:
    return [
        s for st in stages for cmd in st.command for s in redact_argv([cmd]).secrets
    ]


def _lock_digests(data: bytes, secrets: list[str]) -> dict[str, Any]:
    """``lock_sha256``: the SHA-256 of ``dvc.lock``; when its commands hold
    secrets, of the lock with them masked, and the original's keyed commitment
    beside it (``lock_sha256_original``, checkable with ``mltrail secrets check
    --file``), as for a masked script (ADR 0013): the step entry holds the rest
    of the lock, so its plain hash would let anyone test guesses of them."""
    if not secrets:
        return {"lock_sha256": hashlib.sha256(data).hexdigest()}
    masked = data
    for value in sorted(set(secrets), key=len, reverse=True):
        masked = masked.replace(value.encode("utf-8", "surrogateescape"), _MASKED)
    return {
        "lock_sha256": hashlib.sha256(masked).hexdigest(),
        "lock_sha256_original": commit_secret(data.decode("utf-8", "surrogateescape")),
    }


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise CaptureError(f"cannot read {path}: {e.strerror or e}") from e


def _stage_body(
    stage: DvcStage,
    cwd: Path,
    wdirs: dict[str, str],
    source: dict[str, str],
    cache: HashCache,
    progress: ProgressFactory | None,
) -> dict[str, Any]:
    wdir = cwd / wdirs.get(stage.name.partition("@")[0], ".")
    body = step_body(
        stage.name,
        command=[_command_line(c) for c in stage.command],
        scripts=[],
        inputs=[_link(f, wdir, cache, progress) for f in stage.deps],
        outputs=[_link(f, wdir, cache, progress) for f in stage.outs],
    )
    for links, files in ((body["inputs"], stage.deps), (body["outputs"], stage.outs)):
        for link, file in zip(links, files, strict=True):
            link["dvc"] = file.to_dict()
    body["dvc"] = {"stage": stage.name, **source}
    if stage.params:
        body["params"] = stage.params
    return body


def _command_line(cmd: str) -> str:
    """A stage's ``cmd`` with its secrets committed, read as the shell command
    line it is (``--api-key VALUE``, ``-p VALUE``, ``curl -u``): as free text
    only ``NAME=VALUE`` and credential shapes were found."""
    return str(redact_argv([cmd]).value[0])


def _link(
    file: DvcFile, wdir: Path, cache: HashCache, progress: ProgressFactory | None
) -> dict[str, Any]:
    """What the path holds now (hashed through the cache), or only that it is missing."""
    if "://" in file.path:  # an external dep or out (s3://...): DVC's record only
        return {"path": file.path, "exists": False}
    path = wdir / file.path
    try:
        body = artifact_body(path, cache=cache, progress=progress)
    except OSError as e:
        raise CaptureError(f"cannot hash {path}: {e.strerror or e}") from e
    body["path"] = file.path
    return body
