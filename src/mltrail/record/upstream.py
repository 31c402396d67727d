"""Which models a changed source affects: the runs that read a changed file, and
the model outputs downstream of them.

A source check knows which files changed (its old and new manifests). A run is
affected when it read one of those files (by its path under the source, or as a
file of a snapshot of the source: the run's manifest says which files and which
content) and what it read is not what the source holds now. A file that was only
added affects nobody: no run read it. When the check has no file-level answer (a
SQL source, a purged manifest) or a run's reading cannot be told (its manifest
purged), the run counts as affected: a flag too many beats a missed one.

Downstream of the affected runs, only model outputs are flagged: fingerprinted
checkpoints (the index's ``models`` table), anything ever promoted to a stage,
and outputs of training runs (read by later runs or not) whose file names are weights
(``.bin``, ``.pt``, ``.safetensors``, ``.pkl``, ``.onnx``, ...) or folders holding
one. Metrics, reports and logs (``metrics.json``) are not models.

    >>> runs = runs_reading_changes(index, get_blob, "customers", location, diff)  # doctest: +SKIP
    >>> models = downstream_model_outputs(index, runs, get_blob)                   # doctest: +SKIP
"""

from __future__ import annotations

import json
import posixpath
from typing import TYPE_CHECKING

from mltrail.audit.folder_reads import folders_above
from mltrail.audit.trace import build_lineage

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from mltrail.core.diff_data import FileChange
    from mltrail.core.lineage import LineageGraph, Node
    from mltrail.index import Index

__all__ = [
    "WEIGHT_SUFFIXES",
    "downstream_model_outputs",
    "is_model_output",
    "runs_reading_changes",
]

WEIGHT_SUFFIXES = frozenset(
    [
        ".safetensors",
        ".bin",
        ".pt",
        ".pth",
        ".ckpt",
        ".pkl",
        ".pickle",
        ".joblib",
        ".onnx",
        ".h5",
        ".hdf5",
        ".keras",
        ".gguf",
        ".ggml",
        ".pb",
        ".tflite",
        ".mlmodel",
        ".cbm",
        ".ubj",
        ".model",
        ".mar",
        ".msgpack",
        ".params",
    ]
)
_MAX_LINES = 200_000  # manifest lines read to find what a run read (or a weight file)


# -- the runs that read a changed file --------------------------------------------


def runs_reading_changes(
    index: Index,
    get_blob: Callable[[str], bytes | None],
    name: str,
    location: str,
    changes: Iterable[FileChange] | None,
) -> set[str]:
    """The runs that read (directly) a file of source ``name`` that changed or went.

    ``changes`` is the check's file-level diff; None when there is none, and then
    every run that read the source (any snapshot of it, any path under it) counts.
    """
    now: dict[str, str | None] | None = None
    if changes is not None:
        now = {
            c.path: (c.new or {}).get("sha256") for c in changes if c.old is not None
        }
        if not now:
            return set()
    root = location.rstrip("/")
    folder = root + "/"
    above = folders_above(root)
    marks = ", ".join("?" * len(above)) or "NULL"
    rows = index.query(
        "SELECT run, path, dataset, sha256, files, manifest FROM data "  # noqa: S608
        "WHERE direction = 'in' AND ("
        "dataset IN (SELECT fingerprint FROM source_prints WHERE name = ?) OR "
        "sha256 IN (SELECT fingerprint FROM source_prints WHERE name = ?) OR "
        f"path = ? OR (path >= ? AND path < ?) OR path IN ({marks})) ORDER BY seq",
        (name, name, root, folder, folder[:-1] + "0", *above),
    )
    runs: set[str] = set()
    for run, path, _dataset, sha, files, manifest in rows:
        if run in runs:
            continue
        if now is None:
            runs.add(run)
            continue
        read = _files_read(get_blob, root, path, sha, files, manifest, now)
        if read is None or any(
            rel in read and read[rel] != new for rel, new in now.items()
        ):
            runs.add(run)
    return runs


def _files_read(
    get_blob: Callable[[str], bytes | None],
    root: str,
    path: str | None,
    sha: str | None,
    files: int | None,
    manifest: str | None,
    now: dict[str, str | None],
) -> dict[str, str | None] | None:
    """Source-relative path -> the content a run read; None when it cannot be told."""
    if path and path.rstrip("/") and root.startswith(path.rstrip("/") + "/"):
        return _files_read_above(get_blob, root, path, manifest)
    under = path is not None and (path == root or path.startswith(root + "/"))
    prefix = path[len(root) + 1 :] if under and path != root else ""  # type: ignore[index]
    if not under and sha and files in (None, 1):
        return dict.fromkeys(now, sha)  # a snapshot of a one-file source
    entries = _manifest_files(get_blob, manifest) if manifest else None
    if entries is None:
        return {prefix: sha} if prefix and sha else None
    read = {posixpath.join(prefix, p) if prefix else p: s for p, s in entries.items()}
    if (
        prefix
        and len(entries) == 1
        and next(iter(entries)) == posixpath.basename(prefix)
    ):
        read[prefix] = next(iter(entries.values()))  # the run read one file
    return read


def _files_read_above(
    get_blob: Callable[[str], bytes | None],
    root: str,
    path: str,
    manifest: str | None,
) -> dict[str, str | None] | None:
    """What a run that read a folder holding the source read of it, keyed as the
    source's own manifest is: by path under a folder source, by file name for a
    one-file source. None when the run's manifest cannot be read."""
    entries = _manifest_files(get_blob, manifest) if manifest else None
    if entries is None:
        return None
    inner = root[len(path.rstrip("/")) + 1 :]
    read: dict[str, str | None] = {}
    for p, sha in entries.items():
        if p == inner:
            read[posixpath.basename(inner)] = sha
        elif p.startswith(inner + "/"):
            read[p[len(inner) + 1 :]] = sha
    return read


def _manifest_files(
    get_blob: Callable[[str], bytes | None], digest: str
) -> dict[str, str | None] | None:
    data = get_blob(digest)
    if data is None:
        return None
    found: dict[str, str | None] = {}
    for line in data.splitlines()[:_MAX_LINES]:
        try:
            entry = json.loads(line)
        except ValueError:
            return None
        if isinstance(entry, dict) and isinstance(entry.get("path"), str):
            sha = entry.get("sha256")
            found[entry["path"]] = sha if isinstance(sha, str) else None
    return found


# -- the model outputs downstream ---------------------------------------------------


def downstream_model_outputs(
    index: Index, starts: Iterable[str], get_blob: Callable[[str], bytes | None]
) -> list[Node]:
    """The models downstream of the nodes ``starts`` (e.g. ``run:<id>``), each once."""
    found: dict[str, Node] = {}
    for start in sorted(set(starts)):
        graph = build_lineage(index, start, upstream=False, max_nodes=None)
        for node_id, node in graph.nodes.items():
            if (
                node_id != start
                and node_id not in found
                and is_model_output(index, graph, node_id, get_blob)
            ):
                found[node_id] = node
    return [found[k] for k in sorted(found)]


def is_model_output(
    index: Index,
    graph: LineageGraph,
    node_id: str,
    get_blob: Callable[[str], bytes | None],
) -> bool:
    """Whether ``node_id`` of ``graph`` (grown downstream) is a model."""
    node = graph.nodes[node_id]
    if node.type == "model":
        return True
    if node.type not in ("file", "data"):
        return False
    kind, _, ident = node_id.partition(":")
    if index.query("SELECT 1 FROM promotions WHERE model = ? LIMIT 1", (node_id,)):
        return True
    if not _written_by_training(graph, node_id):
        return False
    return _holds_weights(index, kind, ident, get_blob)


def _written_by_training(graph: LineageGraph, node_id: str) -> bool:
    for parent in graph.parents(node_id):
        node = graph.nodes[parent]
        if node.type == "run" and not dict(node.details).get("step"):
            return True
    return False


def _holds_weights(
    index: Index, kind: str, ident: str, get_blob: Callable[[str], bytes | None]
) -> bool:
    column = "dataset" if kind == "data" else "sha256"
    rows = index.query(
        f"SELECT path, manifest, files FROM data WHERE {column} = ? "  # noqa: S608
        "AND direction = 'out' ORDER BY seq DESC",
        (ident,),
    )
    for path, manifest, _files in rows:
        if path and _is_weight_name(path):
            return True
        entries = _manifest_files(get_blob, manifest) if manifest else None
        if entries and any(_is_weight_name(p) for p in entries):
            return True
    return False


def _is_weight_name(path: str) -> bool:
    return posixpath.splitext(path.lower())[1] in WEIGHT_SUFFIXES
