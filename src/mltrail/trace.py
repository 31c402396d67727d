"""Lineage over the index: what a node came from, what depends on it.

    >>> index = open_index(home)                         # doctest: +SKIP
    >>> node = resolve_node(index, "model.safetensors")  # doctest: +SKIP
    >>> graph = build_lineage(home, index, node, upstream=True)  # doctest: +SKIP

Nodes are typed ids (see ``mltrail.core.lineage``). The graph is grown one node at
a time by index queries, so following one model back through its runs and steps
to the raw sources costs a handful of lookups whatever the size of the ledger.
"""

from __future__ import annotations

import re
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.core.lineage import LineageGraph, Node
from mltrail.errors import InputError

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mltrail.index import Index

__all__ = [
    "MAX_NODES",
    "build_lineage",
    "downstream_models",
    "node_for_path",
    "resolve_node",
]

MAX_NODES = 2_000
_HEX = re.compile(r"[0-9a-f]{4,64}")
_TYPED = re.compile(r"(source|data|file|run|model):(.+)")
_DATA_COLUMNS = "run, role, path, dataset, sha256, files, bytes, model, direction, seq"


# -- nodes ---------------------------------------------------------------------


def _data_node_id(row: Any) -> str:
    dataset, sha, files, model = row[3], row[4], row[5], row[7]
    if model:
        return f"model:{model}"
    if sha and (files in (None, 1) or not dataset):
        return f"file:{sha}"
    return f"data:{dataset}"


def _data_node(row: Any) -> Node:
    role, path, files, size = row[1], row[2], row[5], row[6]
    node_id = _data_node_id(row)
    kind, _, ident = node_id.partition(":")
    name = Path(path).name if path else (role or "")
    details = (
        ("id", ident),
        ("path", path),
        ("role", role),
        ("files", files),
        ("bytes", size),
    )
    return Node(node_id, kind, f"{name} ({ident[:12]})", details)


def _run_node(index: Index, run_id: str) -> Node:
    row = index.query(
        "SELECT name, status, started, ended, user, git_commit, git_dirty, step "
        "FROM runs WHERE id = ?",
        (run_id,),
    )
    if not row:
        return Node(f"run:{run_id}", "run", run_id[:13], (("id", run_id),))
    name, status, started, ended, user, commit, dirty, step = row[0]
    label = f"{name or run_id[:13]} ({run_id[:13]})" + (" [step]" if step else "")
    details = (
        ("id", run_id),
        ("name", name),
        ("status", status),
        ("started", started),
        ("ended", ended),
        ("user", user),
        ("commit", commit),
        ("dirty", None if dirty is None else bool(dirty)),
        ("step", step),
    )
    return Node(f"run:{run_id}", "run", label, details)


def _model_node(index: Index, model: str) -> Node:
    rows = index.query(
        "SELECT path, format, name FROM models WHERE model = ? ORDER BY seq DESC LIMIT 1",
        (model,),
    ) or index.query(
        "SELECT path, NULL, role FROM data WHERE model = ? ORDER BY seq DESC LIMIT 1",
        (model,),
    )
    path, fmt, name = rows[0] if rows else (None, None, None)
    label = name or (Path(path).name if path else "model")
    details = (("id", model), ("path", path), ("format", fmt))
    return Node(f"model:{model}", "model", f"{label} ({model[:12]})", details)


def _source_node(index: Index, name: str) -> Node:
    rows = index.query(
        "SELECT location, kind, fingerprint, checked FROM sources WHERE name = ?",
        (name,),
    )
    location, kind, fingerprint, checked = rows[0] if rows else (None, None, None, None)
    details = (
        ("name", name),
        ("location", location),
        ("type", kind),
        ("fingerprint", fingerprint),
        ("checked", checked),
    )
    return Node(f"source:{name}", "source", f"{name} ({location})", details)


def _node(index: Index, node_id: str) -> Node:
    kind, _, ident = node_id.partition(":")
    if kind == "run":
        return _run_node(index, ident)
    if kind == "model":
        return _model_node(index, ident)
    if kind == "source":
        return _source_node(index, ident)
    column = "dataset" if kind == "data" else "sha256"
    rows = index.query(
        f"SELECT {_DATA_COLUMNS} FROM data WHERE {column} = ? "  # noqa: S608
        "ORDER BY direction DESC, seq DESC LIMIT 1",
        (ident,),
    )
    if rows:
        node = _data_node(rows[0])
        return Node(node_id, kind, node.label, node.details)
    return Node(node_id, kind, ident[:12], (("id", ident),))


# -- growing the graph -------------------------------------------------------------


def build_lineage(
    index: Index,
    start: str,
    *,
    upstream: bool,
    depth: int | None = None,
    max_nodes: int = MAX_NODES,
) -> LineageGraph:
    """The graph reachable from ``start`` going up (where from) or down (what uses it)."""
    graph = LineageGraph()
    graph.add_node(_node(index, start))
    queue: deque[tuple[str, int]] = deque([(start, 0)])
    step = _parents if upstream else _children
    while queue and len(graph.nodes) < max_nodes:
        node_id, level = queue.popleft()
        if depth is not None and level >= depth:
            continue
        for other, relation, node in step(index, node_id):
            if other not in graph.nodes:
                graph.add_node(node() if callable(node) else node)
                queue.append((other, level + 1))
            if upstream:
                graph.add_edge(other, node_id, relation)
            else:
                graph.add_edge(node_id, other, relation)
    return graph


def _parents(index: Index, node_id: str) -> Iterator[tuple[str, str, Any]]:
    kind, _, ident = node_id.partition(":")
    if kind == "run":
        for row in index.query(
            f"SELECT {_DATA_COLUMNS} FROM data WHERE run = ? AND direction = 'in' "  # noqa: S608
            "ORDER BY seq",
            (ident,),
        ):
            yield _data_node_id(row), "read", _data_node(row)
        for (model,) in index.query(
            "SELECT DISTINCT model FROM models WHERE run = ? AND role = 'base'",
            (ident,),
        ):
            yield f"model:{model}", "base", lambda m=model: _model_node(index, m)
        return
    if kind == "source":
        return
    yield from _producers(index, kind, ident)
    yield from _sources_of(index, kind, ident)


def _producers(index: Index, kind: str, ident: str) -> Iterator[tuple[str, str, Any]]:
    if kind == "model":
        runs = index.query(
            "SELECT run FROM models WHERE model = ? AND role IN ('output', 'adapter') "
            "UNION SELECT run FROM data WHERE model = ? AND direction = 'out'",
            (ident, ident),
        )
    else:
        column = "dataset" if kind == "data" else "sha256"
        runs = index.query(
            f"SELECT DISTINCT run FROM data WHERE {column} = ? AND direction = 'out'",  # noqa: S608
            (ident,),
        )
    for (run,) in runs:
        yield f"run:{run}", "wrote", lambda r=run: _run_node(index, r)
    if kind == "file":
        for (dataset,) in index.query(
            "SELECT dataset FROM output_files WHERE sha256 = ?", (ident,)
        ):
            yield (
                f"data:{dataset}",
                "contains",
                lambda d=dataset: _node(index, f"data:{d}"),
            )


def _sources_of(index: Index, kind: str, ident: str) -> Iterator[tuple[str, str, Any]]:
    names = {n for (n,) in index.query(
        "SELECT name FROM source_prints WHERE fingerprint = ?", (ident,)
    )}  # fmt: skip
    column = "dataset" if kind == "data" else "sha256"
    paths = [p for (p,) in index.query(
        f"SELECT DISTINCT path FROM data WHERE {column} = ? AND direction = 'in'",  # noqa: S608
        (ident,),
    ) if p]  # fmt: skip
    for name, location in index.query("SELECT name, location FROM sources"):
        if any(_under(p, location) for p in paths):
            names.add(name)
    for name in sorted(names):
        yield f"source:{name}", "snapshot", lambda n=name: _source_node(index, n)


def _under(path: str, location: str) -> bool:
    location = location.rstrip("/")
    return path == location or path.startswith(location + "/")


def _children(index: Index, node_id: str) -> Iterator[tuple[str, str, Any]]:
    kind, _, ident = node_id.partition(":")
    if kind == "run":
        for row in index.query(
            f"SELECT {_DATA_COLUMNS} FROM data WHERE run = ? AND direction = 'out' "  # noqa: S608
            "ORDER BY seq",
            (ident,),
        ):
            yield _data_node_id(row), "wrote", _data_node(row)
        for (model,) in index.query(
            "SELECT DISTINCT model FROM models WHERE run = ? AND role IN ('output', 'adapter')",
            (ident,),
        ):
            yield f"model:{model}", "wrote", lambda m=model: _model_node(index, m)
        return
    if kind == "source":
        yield from _source_children(index, ident)
        return
    yield from _consumers(index, kind, ident)


def _consumers(index: Index, kind: str, ident: str) -> Iterator[tuple[str, str, Any]]:
    if kind == "model":
        runs = index.query(
            "SELECT run FROM models WHERE model = ? AND role = 'base' "
            "UNION SELECT i.run FROM data o JOIN data i ON i.direction = 'in' AND "
            "(i.sha256 = o.sha256 OR i.dataset = o.dataset) "
            "WHERE o.model = ? AND o.direction = 'out'",
            (ident, ident),
        )
        relations = {r for (r,) in index.query(
            "SELECT run FROM models WHERE model = ? AND role = 'base'", (ident,)
        )}  # fmt: skip
        for (run,) in runs:
            relation = "base" if run in relations else "read"
            yield f"run:{run}", relation, lambda r=run: _run_node(index, r)
        return
    column = "dataset" if kind == "data" else "sha256"
    for (run,) in index.query(
        f"SELECT DISTINCT run FROM data WHERE {column} = ? AND direction = 'in'",  # noqa: S608
        (ident,),
    ):
        yield f"run:{run}", "read", lambda r=run: _run_node(index, r)
    if kind == "data":
        for (sha,) in index.query(
            "SELECT DISTINCT o.sha256 FROM output_files o JOIN data i "
            "ON i.sha256 = o.sha256 AND i.direction = 'in' WHERE o.dataset = ?",
            (ident,),
        ):
            yield f"file:{sha}", "contains", lambda s=sha: _node(index, f"file:{s}")


def _source_children(index: Index, name: str) -> Iterator[tuple[str, str, Any]]:
    rows = index.query("SELECT location FROM sources WHERE name = ?", (name,))
    if not rows:
        return
    location = rows[0][0]
    prints = {p for (p,) in index.query(
        "SELECT fingerprint FROM source_prints WHERE name = ?", (name,)
    )}  # fmt: skip
    seen: set[str] = set()
    for row in index.query(
        f"SELECT {_DATA_COLUMNS} FROM data WHERE direction = 'in' ORDER BY seq"  # noqa: S608
    ):
        path, dataset, sha = row[2], row[3], row[4]
        if dataset in prints or sha in prints or (path and _under(path, location)):
            node_id = _data_node_id(row)
            if node_id not in seen:
                seen.add(node_id)
                yield node_id, "snapshot", _data_node(row)


# -- models downstream ---------------------------------------------------------------


def downstream_models(index: Index, start: str) -> list[Node]:
    """The models that depend on ``start``: fingerprinted models, and the final
    outputs (read by no later run) of the non-step runs downstream of it."""
    graph = build_lineage(index, start, upstream=False)
    found = []
    for node_id, node in graph.nodes.items():
        if node_id == start:
            continue
        if node.type == "model" or (
            node.type in ("file", "data")
            and not graph.children(node_id)
            and _written_by_training(graph, node_id)
        ):
            found.append(node)
    return found


def _written_by_training(graph: LineageGraph, node_id: str) -> bool:
    for parent in graph.parents(node_id):
        node = graph.nodes[parent]
        if node.type == "run" and not dict(node.details).get("step"):
            return True
    return False


# -- resolving what the user typed ------------------------------------------------------


def resolve_node(index: Index, ref: str, *, cwd: Path | None = None) -> str:
    """The lineage node a reference names.

    A typed id (``run:...``, ``model:...``, ``data:...``, ``file:...``,
    ``source:...``), an existing file or folder (matched by content), a hex id
    or prefix of 4+ digits (model, dataset, file or run), a registered source's
    name, an output's name or file name (its latest), or a run name.

    Raises:
        InputError: nothing matches, or a prefix matches several things.
    """
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
        from mltrail.query import resolve_run

        return f"run:{resolve_run(index, ident)}"
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
        f"SELECT {_DATA_COLUMNS} FROM data WHERE direction = 'out' AND "  # noqa: S608
        "(role = ? OR path = ? OR path LIKE ? ESCAPE '\\') ORDER BY seq DESC LIMIT 1",
        (ref, ref, "%/" + _like(ref)),
    )
    if rows:
        return _data_node_id(rows[0])
    rows = index.query(
        "SELECT model FROM models WHERE name = ? ORDER BY seq DESC LIMIT 1", (ref,)
    )
    return f"model:{rows[0][0]}" if rows else None


def _like(text: str) -> str:
    return re.sub(r"([\\%_])", r"\\\1", text)


def _by_run(index: Index, ref: str) -> str | None:
    from mltrail.query import resolve_run

    try:
        return f"run:{resolve_run(index, ref)}"
    except InputError:
        return None


def node_for_path(index: Index, path: Path) -> str:
    """The node of a file or folder on disk, found by its content.

    Raises:
        InputError: the ledger has never seen this content.
    """
    from mltrail.capture.data import capture_file_entries, hash_file
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
        raise InputError(
            f"the ledger has no record of {path} (sha256 {sha[:16]}...)",
            hint="was it changed since it was recorded? `mltrail data hash` shows its hash",
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
