"""Runs that read a written output as part of a bigger folder.

A run may write ``out/feat/f.csv`` (a file node) and another read ``out/feat``
or ``out`` (a dataset node of its own id): the reader is downstream of the
writer though no id joins them, and the output is upstream of the reader. The
reader's manifest tells whether it read those bytes; when it cannot be read
(purged), the reader counts. Both directions apply the same rule, so going up
from the reader finds what going down from the output finds.

    >>> folder_readers(index, "file", sha)   # doctest: +SKIP
    [('01a2...', 'train')]
    >>> folder_writes(index, run, "path")    # doctest: +SKIP
    [('out/feat/f.csv',)]
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mltrail.index import Index

__all__ = ["folder_readers", "folder_writes", "folders_above", "manifest_bytes"]


def folders_above(location: str) -> list[str]:
    """The folders holding ``location`` (``a/b/c`` -> ``a``, ``a/``, ``a/b``,
    ``a/b/``): a run that read one of them read what is at ``location`` too."""
    parts = location.rstrip("/").split("/")
    found = []
    for i in range(1, len(parts)):
        folder = "/".join(parts[:i])
        if folder:
            found.extend((folder, folder + "/"))
    return found


def folder_readers(index: Index, kind: str, ident: str) -> list[tuple[str, str | None]]:
    """``(run, role)`` of each run that read a folder holding a place where the
    file or dataset ``kind:ident`` was written, and whose manifest lists its bytes."""
    column = "dataset" if kind == "data" else "sha256"
    paths = index.query(
        f"SELECT DISTINCT path FROM data WHERE {column} = ? "  # noqa: S608
        "AND direction = 'out' AND path IS NOT NULL",
        (ident,),
    )
    above = sorted({f for (p,) in paths for f in folders_above(p)})
    if not above:
        return []
    shas = {ident}
    if kind == "data":
        shas = {s for (s,) in index.query(
            "SELECT sha256 FROM output_files WHERE dataset = ?", (ident,)
        )}  # fmt: skip
    marks = ", ".join("?" * len(above))
    rows = index.query(
        "SELECT run, role, manifest FROM data WHERE direction = 'in' "  # noqa: S608
        f"AND path IN ({marks}) ORDER BY seq",
        tuple(above),
    )
    found = []
    for run, role, manifest in rows:
        listed = _listed(index, manifest)
        if listed is None or listed & shas:
            found.append((run, role))
    return found


def folder_writes(index: Index, run: str, columns: str) -> list[Any]:
    """The ``columns`` of each output row written inside a folder that ``run`` read
    (under its path, at any depth) whose bytes the reader's manifest lists: the
    rows whose outputs ``folder_readers`` finds ``run`` reading (the run's own
    reads; not yet those of its DVC stages).

    Cost: an index probe per folder read; where rows lie under it, lookups by the
    manifest's hashes (not a scan of every output ever written under the folder);
    the whole range only where the manifest cannot be read."""
    found: dict[int, Any] = {}
    for path, manifest, role in index.query(
        "SELECT path, manifest, role FROM data WHERE run = ? AND direction = 'in' "
        "AND path IS NOT NULL ORDER BY seq",
        (run,),
    ):
        stage = isinstance(role, str) and role.startswith("stage:")
        if stage or not path.rstrip("/"):
            continue
        under = (path.rstrip("/") + "/", path.rstrip("/") + "0")
        if not index.query(
            "SELECT 1 FROM data WHERE path >= ? AND path < ? LIMIT 1", under
        ):
            continue
        for seq, *rest in _rows_under(index, columns, under, _listed(index, manifest)):
            found[seq] = tuple(rest)
    return [found[seq] for seq in sorted(found)]


def _rows_under(
    index: Index, columns: str, under: tuple[str, str], listed: set[str] | None
) -> list[Any]:
    """``seq, columns`` of the output rows in the path range ``under``: those of
    the ``listed`` bytes (a written file of one, a written folder holding one),
    or all of them when the reader's manifest could not be read (None)."""
    select = (
        f"SELECT seq, {columns} FROM data WHERE direction = 'out' "  # noqa: S608
        "AND path >= ? AND path < ?"
    )
    if listed is None:
        return index.query(select, under)
    rows: list[Any] = []
    for chunk in _chunks(sorted(listed)):
        marks = ", ".join("?" * len(chunk))
        rows += index.query(f"{select} AND sha256 IN ({marks})", (*under, *chunk))
        held = [d for (d,) in index.query(
            f"SELECT DISTINCT dataset FROM output_files WHERE sha256 IN ({marks})",  # noqa: S608
            tuple(chunk),
        )]  # fmt: skip
        for sets in _chunks(held):
            marks = ", ".join("?" * len(sets))
            rows += index.query(f"{select} AND dataset IN ({marks})", (*under, *sets))
    return rows


def _chunks(values: list[str], size: int = 500) -> list[list[str]]:
    """``values`` in lists of at most ``size`` (below SQLite's bound on parameters)."""
    return [values[i : i + size] for i in range(0, len(values), size)]


def manifest_bytes(index: Index, digest: str | None) -> bytes | None:
    """A manifest blob's bytes, once they hash to ``digest`` (as
    ``Ledger.get_blob`` checks); None when no blob is named, or the store does
    not hold it (purged, or deleted: `mltrail verify` names it).

    Raises:
        IntegrityError: the bytes stored are not the blob's: no answer is made
            from them (nor said to be none).
    """
    from mltrail.errors import InputError

    if not digest:
        return None
    try:
        return index.ledger.get_blob(digest)
    except InputError:  # purged, or not held
        return None


def _listed(index: Index, manifest: str | None) -> set[str] | None:
    """The sha256 of each file of a manifest blob; None when it cannot be read.

    Raises:
        IntegrityError: the blob does not hash to its address.
    """
    data = manifest_bytes(index, manifest)
    if data is None:
        return None
    found = set()
    for line in data.splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            return None
        if isinstance(entry, dict) and isinstance(entry.get("sha256"), str):
            found.add(entry["sha256"])
    return found
