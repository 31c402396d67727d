"""Flags: models awaiting re-audit because an upstream source changed.

``sources check`` writes ``model.flagged`` (status ``open``); ``flags clear``
writes it again with status ``cleared`` and what the review found. A flag is
shown by name: the model's path and output name, the run that made it and that
run's name, not only their hashes.

    >>> [f.model_name for f in list_flags(index)]   # doctest: +SKIP
    >>> open_flags_of(index, "file:5727bc...")      # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.errors import InputError
from mltrail.values import Frozen

if TYPE_CHECKING:
    from mltrail.index import Index
    from mltrail.ledger.home import Home

__all__ = ["Flag", "clear_flag", "list_flags", "open_flags_of"]

_COLUMNS = (
    "f.seq, f.model, f.run, f.source, f.reason, f.time, f.cleared_seq, f.path, "
    "r.name, (SELECT name FROM models m WHERE 'model:' || m.model = f.model "
    "ORDER BY m.seq DESC LIMIT 1)"
)
_FROM = " FROM flags f LEFT JOIN runs r ON r.id = f.run"


class Flag(Frozen):
    """A model awaiting re-audit (or reviewed, when ``cleared_seq`` is set)."""

    __match_args__ = (
        "seq", "model", "run", "source", "reason", "time", "cleared_seq", "path",
        "run_name", "model_name",
    )  # fmt: skip
    seq: int
    model: str
    run: str | None
    source: str | None
    reason: str | None
    time: str
    cleared_seq: int | None
    path: str | None
    run_name: str | None
    model_name: str | None

    def __init__(
        self,
        seq: int,
        model: str,
        run: str | None,
        source: str | None,
        reason: str | None,
        time: str,
        cleared_seq: int | None,
        path: str | None = None,
        run_name: str | None = None,
        model_name: str | None = None,
    ) -> None:
        object.__setattr__(self, "seq", seq)
        object.__setattr__(self, "model", model)
        object.__setattr__(self, "run", run)
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "reason", reason)
        object.__setattr__(self, "time", time)
        object.__setattr__(self, "cleared_seq", cleared_seq)
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "run_name", run_name)
        object.__setattr__(self, "model_name", model_name)

    @property
    def name(self) -> str:
        """What a person calls the model: its output name or file name, else its id."""
        if self.model_name:
            return self.model_name
        if self.path:
            return Path(self.path).name or self.path
        return self.model.partition(":")[2][:12]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return dict(self.__dict__) | {"name": self.name}


def list_flags(index: Index, *, include_cleared: bool = False) -> list[Flag]:
    """Flags, oldest first; open ones only unless ``include_cleared``.

    Each row is checked against its record (and the one that cleared it) first;
    on a difference the index is rebuilt and read again.
    """
    from mltrail.index.check import repaired, runs_differ, seqs_differ

    sql = f"SELECT {_COLUMNS}{_FROM}"
    if not include_cleared:
        sql += " WHERE f.cleared_seq IS NULL"
    found = [Flag(*row) for row in index.query(sql + " ORDER BY f.seq")]
    problem = seqs_differ(index, [f.seq for f in found]) or runs_differ(
        index, [f.run for f in found if f.run]
    )
    if repaired(index, problem):
        found = [Flag(*row) for row in index.query(sql + " ORDER BY f.seq")]
    return found


def open_flags_of(index: Index, nodes: str | list[str]) -> list[Flag]:
    """The open flags of one model node id (``file:<sha>``) or several."""
    wanted = [nodes] if isinstance(nodes, str) else list(nodes)
    if not wanted:
        return []
    marks = ", ".join("?" * len(wanted))
    sql = (
        f"SELECT {_COLUMNS}{_FROM} WHERE f.cleared_seq IS NULL "
        f"AND f.model IN ({marks}) ORDER BY f.seq"
    )
    return [Flag(*row) for row in index.query(sql, tuple(wanted))]


def clear_flag(
    home: Home, index: Index, ref: str, *, note: str, cwd: Path | None = None
) -> str:
    """Record that a flagged model was reviewed; return its node id.

    Raises:
        InputError: the model has no open flag.
    """
    from mltrail.audit.refs import resolve_node

    open_nodes = {f.model for f in list_flags(index)}
    # a signed decision: a path's linked weights are read, never taken from the
    # home's hash cache, which whoever can write it could steer (ADR 0009)
    node = (
        ref
        if ref in open_nodes
        else resolve_node(index, ref, cwd=cwd, trust_cache=False)
    )
    if node not in open_nodes:
        raise InputError(f"{node} has no open flag", hint="see `mltrail flags`")
    kind, _, ident = node.partition(":")
    body = {"model": ident, "model_type": kind, "status": "cleared", "note": note}
    home.ledger.append("model.flagged", body)
    return node
