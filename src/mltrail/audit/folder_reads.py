"""Runs that read a written output as part of a bigger folder.

A run may write ``out/feat/f.csv`` (a file node) and another read ``out/feat``
or ``out`` (a dataset node of its own id): the reader is downstream of the
writer though no id joins them. The reader's manifest tells whether it read
those bytes; when it cannot be read (purged), the reader counts.

    >>> folder_readers(index, "file", sha)   # doctest: +SKIP
    [('01a2...', 'train')]
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mltrail.index import Index

__all__ = ["folder_readers", "folders_above"]


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


def _listed(index: Index, manifest: str | None) -> set[str] | None:
    """The sha256 of each file of a manifest blob; None when it cannot be read."""
    data = index.ledger.store.get_blob(manifest) if manifest else None
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
