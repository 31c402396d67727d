"""Questions over a ledger from Python: the same answers as the CLI.

    >>> import mltrail
    >>> with mltrail.audit("/srv/audit") as audit:          # doctest: +SKIP
    ...     for run in audit.runs(week="2026-W42", name="loan-*"):
    ...         print(run.id, run.name, run.status)
    ...     made = audit.trace("model.safetensors")["made_by"][0]
    ...     changed = audit.diff("baseline", "retrain").to_dict()
    ...     live = audit.stage_holders(at="2026-03-14T09:30Z")["production"]

Answers come from the derived index (caught up when the ``Audit`` opens); the
content of a run is read from the ledger's own records.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.audit.query import (
    RunFilter,
    load_run,
    parse_at,
    resolve_run,
    search_runs,
    time_window,
)
from mltrail.audit.refs import resolve_node
from mltrail.audit.trace import build_lineage, explain
from mltrail.errors import InputError
from mltrail.index import open_index
from mltrail.ledger.home import open_home
from mltrail.record.sources import list_flags, list_sources
from mltrail.record.stages import stage_history, stage_holders
from mltrail.record.upstream import downstream_model_outputs
from mltrail.reproduce import compare_runs

if TYPE_CHECKING:
    from collections.abc import Mapping
    from types import TracebackType

    from mltrail.audit.query import RunView
    from mltrail.core.diff import RunDiff
    from mltrail.core.lineage import LineageGraph, Node
    from mltrail.ledger.home import Home
    from mltrail.record.recorder import RunSummary
    from mltrail.record.sources import Flag
    from mltrail.record.stages import Promotion

__all__ = ["Audit", "audit"]


class Audit:
    """Read-only questions over one ledger home (see the module docstring)."""

    def __init__(self, home: Home) -> None:
        self.home = home
        self.index = open_index(home)

    def runs(
        self,
        *,
        since: str | None = None,
        until: str | None = None,
        week: str | None = None,
        user: str | None = None,
        status: str | None = None,
        params: Mapping[str, Any] | None = None,
        dataset: str | None = None,
        name: str | None = None,
        limit: int | None = None,
    ) -> list[RunSummary]:
        """Runs matching every filter given, oldest first (the newest ``limit``).

        Times as ``mltrail runs`` reads them: a date, a time, ``7d``; ``week`` an
        ISO week such as ``2026-W42``. ``params`` values match as typed on the
        command line (``{"lr": 0.5}`` or ``{"lr": "0.5"}``).
        """
        spec = RunFilter(
            window=time_window(since, until, week),
            user=user,
            status=status,
            params=[(k, _typed(v)) for k, v in (params or {}).items()],
            dataset=dataset,
            name=name,
            limit=limit,
        )
        return search_runs(self.home, self.index, spec)

    def run(self, ref: str) -> RunView:
        """One run in full: an id, a 4+ character prefix, or a name (its latest run)."""
        return load_run(self.home, self.index, resolve_run(self.index, ref))

    def diff(self, a: str, b: str, *, everything: bool = False) -> RunDiff:
        """What changed from run ``a`` to run ``b`` (``mltrail diff``): params, data
        file by file, code, environment, hardware, fine-tune, metrics."""
        first = load_run(self.home, self.index, resolve_run(self.index, a))
        second = load_run(self.home, self.index, resolve_run(self.index, b))
        return compare_runs(self.home, first, second, everything=everything)

    def trace(self, model: str | Path) -> dict[str, Any]:
        """What made ``model`` (a path, an id or prefix, an output name): the same
        JSON as ``mltrail trace --json``."""
        start = resolve_node(self.index, str(model), cwd=Path.cwd())
        graph = build_lineage(self.index, start, upstream=True)
        return explain(self.home, self.index, start, graph)

    def lineage(
        self, node: str | Path, *, down: bool = False, depth: int | None = None
    ) -> LineageGraph:
        """The lineage graph from ``node``, upstream (default) or downstream."""
        start = resolve_node(self.index, str(node), cwd=Path.cwd())
        return build_lineage(self.index, start, upstream=not down, depth=depth)

    def affected_models(self, node: str | Path) -> list[Node]:
        """The models downstream of ``node`` (a source, a dataset, a file, a run):
        fingerprinted checkpoints, promoted outputs, and weight files that final
        runs wrote (not their metrics or reports)."""
        start = resolve_node(self.index, str(node), cwd=Path.cwd())

        def get_blob(digest: str) -> bytes | None:
            try:
                return self.home.ledger.get_blob(digest)
            except InputError:  # purged or missing: verify names it
                return None

        return downstream_model_outputs(self.index, [start], get_blob)

    def stage_holders(self, *, at: str | None = None) -> dict[str, Promotion]:
        """The model holding each stage now, or at ``at`` (a date or a time)."""
        moment = None if at is None else parse_at(at)
        return stage_holders(self.index, at=moment)

    def promotions(self, *, stage: str | None = None) -> list[Promotion]:
        """Every promotion and demotion, oldest first."""
        return stage_history(self.index, stage=stage)

    def sources(self) -> list[dict[str, Any]]:
        """Registered upstream sources with their latest fingerprints."""
        return list_sources(self.index)

    def flags(self, *, include_cleared: bool = False) -> list[Flag]:
        """Models awaiting re-audit because a source changed."""
        return list_flags(self.index, include_cleared=include_cleared)

    def close(self) -> None:
        """Close the index and the ledger."""
        self.index.close()
        self.home.close()

    def __enter__(self) -> Audit:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _typed(value: Any) -> str:
    """A parameter value as the text ``--param`` would give."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def audit(home: str | Path | None = None) -> Audit:
    """Open the ledger at ``home`` (default ``$MLTRAIL_HOME``, else ``~/.mltrail``)
    read-only, for questions."""
    return Audit(open_home(home, writable=False))
