"""What the user typed, as a lineage node: a path, an id or prefix, a name.

>>> resolve_node(index, "model.safetensors")     # doctest: +SKIP
'model:9f3c...'
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from mltrail.audit.query import resolve_run
from mltrail.audit.trace import DATA_COLUMNS, data_node_id
from mltrail.errors import InputError

if TYPE_CHECKING:
    from mltrail.index import Index

__all__ = ["node_for_path", "resolve_node"]

_HEX = re.compile(r"[0-9a-f]{4,64}")
_TYPED = re.compile(r"(source|data|file|run|model):(.+)")


def resolve_node(index: Index, ref: str, *, cwd: Path | None = None) -> str:
    """The lineage node a reference names.

    A typed id (``run:...``, ``model:...``, ``data:...``, ``file:...``,
    ``source:...``), an existing file or folder (matched by content), a hex id
    or prefix of 4+ digits (model, dataset, file or run), a registered source's
    name, an output's name or file name (its latest), or a run name.

    The runs that wrote the node found (whose rows gave it) are checked against
    their records; on a difference the index is rebuilt and ``ref`` resolved
    again (see ``mltrail.index.check``).

    Raises:
        InputError: nothing matches, or a prefix matches several things.
    """
    from mltrail.index.check import repaired, runs_differ

    found = _resolve(index, ref, cwd)
    if repaired(index, runs_differ(index, _writer_runs(index, found))):
        found = _resolve(index, ref, cwd)
    return found


def _writer_runs(index: Index, node: str) -> set[str]:
    """The runs whose rows say they wrote ``node``."""
    kind, _, ident = node.partition(":")
    sql = {
        "model": "SELECT run FROM models WHERE model = ? UNION "
        "SELECT run FROM data WHERE model = ?",
        "file": "SELECT run FROM data WHERE sha256 = ? AND direction = 'out' UNION "
        "SELECT run FROM data WHERE sha256 = ? AND model IS NOT NULL",
        "data": "SELECT run FROM data WHERE dataset = ? AND direction = 'out' UNION "
        "SELECT run FROM data WHERE dataset = ? AND model IS NOT NULL",
    }.get(kind)
    if sql is None:
        return set()
    return {r for (r,) in index.query(sql, (ident, ident))}


def _resolve(index: Index, ref: str, cwd: Path | None) -> str:
    if m := _TYPED.fullmatch(ref):
        return _typed(index, m[1], m[2])
    path = Path(ref) if cwd is None else cwd / ref
    if path.exists():
        return node_for_path(index, path)
    if _HEX.fullmatch(ref):
        return _by_hex(index, ref)
    for finder in (_by_source, _by_output_name, _by_run):
        found = finder(index, ref)
        if found:
            return found
    raise InputError(
        f"nothing in the ledger is named {ref!r}",
        hint="give a file or folder, a model/dataset/run id (or 4+ hex digits of "
        "one), an output or run name; see `mltrail runs` and `mltrail show RUN`",
    )


def _typed(index: Index, kind: str, ident: str) -> str:
    if kind == "source":
        return f"source:{ident}"
    if kind == "run":
        return f"run:{resolve_run(index, f'run:{ident}')}"
    return _by_hex(index, ident, only=kind)


def _by_hex(index: Index, prefix: str, only: str | None = None) -> str:
    low, high = prefix, prefix + "g"
    candidates: set[str] = set()
    queries = {
        "model": "SELECT 'model:' || model FROM models WHERE model >= ? AND model < ? "
        "UNION SELECT 'model:' || model FROM data WHERE model >= ? AND model < ?",
        "data": "SELECT coalesce(CASE WHEN files = 1 THEN 'file:' || sha256 END, "
        "'data:' || dataset) FROM data WHERE dataset >= ? AND dataset < ? "
        "UNION SELECT 'data:' || dataset FROM output_files "
        "WHERE dataset >= ? AND dataset < ?",
        "file": "SELECT 'file:' || sha256 FROM data WHERE sha256 >= ? AND sha256 < ? "
        "UNION SELECT 'file:' || sha256 FROM output_files "
        "WHERE sha256 >= ? AND sha256 < ?",
    }
    for kind, sql in queries.items():
        if only in (None, kind):
            candidates.update(v for (v,) in index.query(sql, (low, high) * 2) if v)
    if only is None:
        candidates.update(
            f"run:{v}"
            for (v,) in index.query(
                "SELECT id FROM runs WHERE id >= ? AND id < ?", (low, high)
            )
        )
    return _one(candidates, prefix)


def _one(candidates: set[str], ref: str) -> str:
    if len(candidates) == 1:
        return candidates.pop()
    if not candidates:
        raise InputError(f"no model, dataset, file or run id starts with {ref!r}")
    shown = ", ".join(sorted(candidates)[:5])
    raise InputError(
        f"{ref!r} matches several things: {shown}", hint="give more digits"
    )


def _by_source(index: Index, ref: str) -> str | None:
    rows = index.query("SELECT name FROM sources WHERE name = ?", (ref,))
    return f"source:{ref}" if rows else None


def _by_output_name(index: Index, ref: str) -> str | None:
    rows = index.query(
        f"SELECT {DATA_COLUMNS} FROM data WHERE direction = 'out' AND "  # noqa: S608
        "(role = ? OR path = ? OR path LIKE ? ESCAPE '\\') ORDER BY seq DESC LIMIT 1",
        (ref, ref, "%/" + _like(ref)),
    )
    if rows:
        return data_node_id(rows[0])
    rows = index.query(
        "SELECT model FROM models WHERE name = ? ORDER BY seq DESC LIMIT 1", (ref,)
    )
    return f"model:{rows[0][0]}" if rows else None


def _like(text: str) -> str:
    return re.sub(r"([\\%_])", r"\\\1", text)


def _by_run(index: Index, ref: str) -> str | None:
    try:
        return f"run:{resolve_run(index, ref)}"
    except InputError:
        return None


def _purges(index: Index) -> bool:
    """Whether blobs were purged: a file listed only in a purged manifest is unknown."""
    return bool(index.ledger.store.purges())


def node_for_path(index: Index, path: Path) -> str:
    """The node of a file or folder on disk, found by its content.

    Raises:
        InputError: the ledger has never seen this content.
    """
    from mltrail.capture.data.files import capture_file_entries, hash_file
    from mltrail.core.manifest import compute_manifest

    if path.is_file():
        _, sha = hash_file(path)
        if index.query("SELECT 1 FROM data WHERE sha256 = ? LIMIT 1", (sha,)):
            model = index.query(
                "SELECT model FROM data WHERE sha256 = ? AND model IS NOT NULL LIMIT 1",
                (sha,),
            )
            return f"model:{model[0][0]}" if model else f"file:{sha}"
        if index.query("SELECT 1 FROM output_files WHERE sha256 = ? LIMIT 1", (sha,)):
            return f"file:{sha}"
        purged = " or was the manifest listing it purged?" if _purges(index) else ""
        raise InputError(
            f"the ledger has no record of {path} (sha256 {sha[:16]}...)",
            hint=f"was it changed since it was recorded{purged}? "
            "`mltrail data hash` shows its hash",
        )
    manifest = compute_manifest(capture_file_entries(path))
    rows = index.query(
        "SELECT model FROM data WHERE dataset = ? ORDER BY model IS NULL LIMIT 1",
        (manifest.dataset_id,),
    )
    if not rows:
        raise InputError(
            f"the ledger has no record of {path} (dataset {manifest.dataset_id[:16]}...)",
            hint="was it changed since it was recorded? `mltrail data hash` shows its id",
        )
    return f"model:{rows[0][0]}" if rows[0][0] else f"data:{manifest.dataset_id}"
