"""A run's recorded facts for :func:`mltrail.core.diff.diff_runs`, read from the ledger."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mltrail.core.diff import RunDiff, RunFacts, diff_runs, merge_series
from mltrail.errors import InputError

if TYPE_CHECKING:
    from mltrail.audit.query import RunView
    from mltrail.ledger.home import Home

__all__ = ["compare_runs", "read_blob", "run_facts"]


def read_blob(home: Home, ref: Any) -> bytes | None:
    """The bytes of a blob reference (``{"blob": "sha256:..."}``), once they hash
    to its address; None when the reference is missing or the blob is not held
    (purged, or deleted: `mltrail verify` names it).

    Raises:
        IntegrityError: the stored bytes are not the blob's: never read as "not
            recorded" (ADR 0014, amendment of 2026-12-08).
        StoreError: the store cannot be read.
    """
    if not isinstance(ref, dict) or not isinstance(ref.get("blob"), str):
        return None
    try:
        return home.ledger.get_blob(ref["blob"])
    except InputError:  # purged, or not held
        return None


def run_facts(home: Home, view: RunView, *, manifests: bool = False) -> RunFacts:
    """What ``view``'s run recorded, with its package list (and, with ``manifests``,
    every dataset manifest) read from the ledger's blobs."""
    environment = view.body("run.environment")
    facts = RunFacts(
        view.id,
        run=_run_summary(view),
        code=view.body("run.code"),
        environment=environment,
        packages=read_blob(
            home, ((environment or {}).get("packages") or {}).get("list")
        ),
        hardware=view.body("run.hardware"),
        params=view.params(),
        data=view.bodies("run.data"),
        finetune=_merged(view.bodies("run.finetune")),
        outputs=view.bodies("run.artifact"),
        metrics=merge_series(view.bodies("run.metrics")),
    )
    if manifests:
        _load_manifests(home, facts, facts.data)
    return facts


def _run_summary(view: RunView) -> dict[str, Any]:
    s = view.summary
    started = view.body("run.started") or {}
    ended = view.body("run.ended") or {}
    return {
        "name": s.name,
        "status": s.status,
        "exit_code": s.exit_code,
        "signal": ended.get("signal"),
        "duration_s": s.duration_s,
        "command": s.command,
        "cwd": started.get("cwd"),
        "user": s.user,
        "claimed_user": s.claimed_user,
        "host": s.host,
    }


def _merged(bodies: list[dict[str, Any]]) -> dict[str, Any] | None:
    """Several ``run.finetune`` bodies as one (later keys win)."""
    if not bodies:
        return None
    merged: dict[str, Any] = {}
    for body in bodies:
        merged.update(body)
    return merged


def _load_manifests(home: Home, facts: RunFacts, bodies: list[dict[str, Any]]) -> None:
    for body in bodies:
        for ref in (body.get("manifest"), body.get("row_digests")):
            data = read_blob(home, ref)
            if data is not None:
                facts.manifests[str(ref["blob"])] = data


def compare_runs(
    home: Home, a: RunView, b: RunView, *, everything: bool = False
) -> RunDiff:
    """The differences between two runs; the manifests of only those datasets whose
    ids differ are read."""
    first, second = run_facts(home, a), run_facts(home, b)
    _load_manifests(home, first, _not_in(first.data, second.data))
    _load_manifests(home, second, _not_in(second.data, first.data))
    return diff_runs(first, second, everything=everything)


def _not_in(bodies: list[dict[str, Any]], other: list[dict[str, Any]]) -> list[Any]:
    """The data bodies whose dataset the other run did not read in the same role
    (a role may be read several times)."""
    there = {(d.get("role"), d.get("dataset")) for d in other}
    roles = {d.get("role") for d in other}
    return [
        d
        for d in bodies
        if d.get("role") in roles and (d.get("role"), d.get("dataset")) not in there
    ]
