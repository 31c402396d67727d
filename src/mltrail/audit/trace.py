"""Lineage over the index: what a node came from, what depends on it.

    >>> index = open_index(home)                         # doctest: +SKIP
    >>> node = resolve_node(index, "model.safetensors")  # doctest: +SKIP
    >>> graph = build_lineage(home, index, node, upstream=True)  # doctest: +SKIP

Nodes are typed ids (see ``mltrail.core.lineage``). The graph is grown one node at
a time by index queries, so following one model back through its runs and steps
to the raw sources costs a handful of lookups whatever the size of the ledger.
"""

from __future__ import annotations

import functools
from collections import deque
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mltrail.audit.folder_reads import (
    folder_readers,
    folder_writes,
    folders_above,
    manifest_bytes,
)
from mltrail.audit.query import load_run
from mltrail.core.lineage import LineageGraph, Node

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mltrail.index import Index
    from mltrail.ledger.home import Home

__all__ = [
    "CONTENT_COLUMN",
    "DATA_COLUMNS",
    "MAX_CLAIMANTS_SHOWN",
    "MAX_NODES",
    "build_lineage",
    "data_node_id",
    "explain",
    "latest_writer",
    "run_outputs",
    "writer_runs",
]

MAX_NODES = 2_000
MAX_CLAIMANTS_SHOWN = 20
"""Runs claiming one output that a report or a refusal names one by one (the
oldest and the latest claims, half each); the rest are counted. ``writer_runs``
itself is never capped: promote checks every claimant."""
CONTENT_COLUMN = {"model": "model", "file": "sha256", "data": "dataset"}
"""The index column holding a node's id, by node kind (``models`` or ``data``)."""
DATA_COLUMNS = "run, role, path, dataset, sha256, files, bytes, model, direction, seq"


# -- nodes ---------------------------------------------------------------------


def data_node_id(row: Any) -> str:
    dataset, sha, files, model = row[3], row[4], row[5], row[7]
    if model:
        return f"model:{model}"
    if sha and (files in (None, 1) or not dataset):
        return f"file:{sha}"
    return f"data:{dataset}"


def _identified(row: Any) -> bool:
    """Whether a data row names content: a model, a file hash or a dataset id (an
    output that was never written, or could not be read, names none and is no
    node: ``data:None`` would join every such output of every run)."""
    return bool(row[7] or row[4] or row[3])


def _data_node(row: Any) -> Node:
    role, path, files, size = row[1], row[2], row[5], row[6]
    node_id = data_node_id(row)
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
        "SELECT location, kind, fingerprint, checked, failing FROM sources "
        "WHERE name = ?",
        (name,),
    )
    location, kind, fingerprint, checked, failing = rows[0] if rows else (None,) * 5
    details: tuple[tuple[str, Any], ...] = (
        ("name", name),
        ("location", location),
        ("type", kind),
        ("fingerprint", fingerprint),
        ("checked", checked),
    )
    if failing:  # its checks fail: the fingerprint is the last one read
        details += (("failing since", failing),)
    return Node(f"source:{name}", "source", f"{name} ({location})", details)


def _node(index: Index, node_id: str) -> Node:
    kind, _, ident = node_id.partition(":")
    if kind == "run":
        return _run_node(index, ident)
    if kind == "model":
        return _model_node(index, ident)
    if kind == "source":
        return _source_node(index, ident)
    if kind == "stage":
        return _stage_node(index, ident)
    column = "dataset" if kind == "data" else "sha256"
    rows = index.query(
        f"SELECT {DATA_COLUMNS} FROM data WHERE {column} = ? "  # noqa: S608
        "ORDER BY direction DESC, seq DESC LIMIT 1",
        (ident,),
    )
    if rows:
        node = _data_node(rows[0])
        return Node(node_id, kind, node.label, node.details)
    return Node(node_id, kind, ident[:12], (("id", ident),))


def _stage_node(index: Index, ident: str) -> Node:
    """A DVC stage run inside a run: ``stage:<run id>/<stage name>``."""
    run, _, name = ident.partition("/")
    rows = index.query("SELECT name FROM runs WHERE id = ?", (run,))
    label = f"{name} (in {rows[0][0] if rows and rows[0][0] else run[:13]})"
    return Node(f"stage:{ident}", "stage", label, (("run", run), ("stage", name)))


def _stage_edges(
    index: Index, ident: str, direction: str
) -> Iterator[tuple[str, str, Any]]:
    """The files a DVC stage read (``in``) or wrote (``out``)."""
    run, _, name = ident.partition("/")
    for row in index.query(
        f"SELECT {DATA_COLUMNS} FROM data WHERE run = ? AND role = ? "  # noqa: S608
        "AND direction = ? ORDER BY seq",
        (run, f"stage:{name}", direction),
    ):
        if not _identified(row):
            continue
        relation = "read" if direction == "in" else "wrote"
        yield data_node_id(row), relation, _data_node(row)


def _writers(
    index: Index, rows: list[Any], relation: str
) -> Iterator[tuple[str, str, Any]]:
    """The runs, or the DVC stages within them, of ``(run, role)`` rows."""
    seen: set[str] = set()
    for run, role in rows:
        if isinstance(role, str) and role.startswith(_STAGE):
            stage = f"{run}/{role.removeprefix(_STAGE)}"
            node_id, make = (
                f"stage:{stage}",
                functools.partial(_stage_node, index, stage),
            )
        else:
            node_id, make = f"run:{run}", functools.partial(_run_node, index, run)
        if node_id not in seen:
            seen.add(node_id)
            yield node_id, relation, make


_STAGE = "stage:"


# -- growing the graph -------------------------------------------------------------


def build_lineage(
    index: Index,
    start: str,
    *,
    upstream: bool,
    depth: int | None = None,
    max_nodes: int | None = MAX_NODES,
) -> LineageGraph:
    """The graph reachable from ``start`` going up (where from) or down (what uses it).

    At most ``max_nodes`` nodes (a bound for display); None grows all of it, for
    answers that must not miss a node (which models a changed source affects).

    Every edge comes from rows of the runs in the graph (what each read and
    wrote), of the datasets' files and of the sources; they are checked against
    the records before the graph is returned, and on a difference the index is
    rebuilt and the graph grown again (see ``mltrail.index.check``).
    """
    from mltrail.index.check import repaired

    graph = _grow(index, start, upstream=upstream, depth=depth, max_nodes=max_nodes)
    if repaired(index, graph_differs(index, graph)):
        graph = _grow(index, start, upstream=upstream, depth=depth, max_nodes=max_nodes)
    return graph


def graph_differs(index: Index, graph: LineageGraph) -> str | None:
    """Whether the rows behind ``graph`` disagree with the records (see
    ``build_lineage``): its runs' rows, its sources' rows, and each ``contains``
    edge (a file listed in a written dataset's manifest)."""
    from mltrail.index.check import runs_differ, sources_differ

    runs, sources = set(), set()
    for node in graph.nodes.values():
        if node.type == "run":
            runs.add(node.id.removeprefix("run:"))
        elif node.type == "stage":
            runs.add(str(dict(node.details)["run"]))
        elif node.type == "source":
            sources.add(node.id.removeprefix("source:"))
    problem = runs_differ(index, runs)
    if problem is None and sources:
        problem = sources_differ(index, sources)
    return problem or _contains_differ(index, graph)


def _contains_differ(index: Index, graph: LineageGraph) -> str | None:
    """Whether each ``data -contains-> file`` edge is a file of that dataset's
    manifest, as written by a run (the manifest named by the run's own rows).

    Raises:
        IntegrityError: that manifest's bytes do not hash to its address.
    """
    import json

    for edge in graph.edges:
        if edge.relation != "contains":
            continue
        dataset, sha = edge.source.removeprefix("data:"), edge.target
        if not edge.source.startswith("data:"):
            dataset, sha = edge.target.removeprefix("data:"), edge.source
        sha = sha.removeprefix("file:")
        rows = index.query(
            "SELECT manifest FROM data WHERE dataset = ? AND direction = 'out' "
            "AND manifest IS NOT NULL LIMIT 1",
            (dataset,),
        )
        blob = manifest_bytes(index, rows[0][0]) if rows else None
        if not blob:
            continue  # nothing to check against (a purged manifest)
        found = False
        for line in blob.splitlines():
            try:
                found = json.loads(line).get("sha256") == sha
            except (ValueError, AttributeError):
                continue
            if found:
                break
        if not found:
            return f"output_files says dataset {dataset[:16]} holds file {sha[:16]}"
    return None


def _grow(
    index: Index,
    start: str,
    *,
    upstream: bool,
    depth: int | None,
    max_nodes: int | None,
) -> LineageGraph:
    graph = LineageGraph()
    graph.add_node(_node(index, start))
    queue: deque[tuple[str, int]] = deque([(start, 0)])
    step = _parents if upstream else _children
    while queue and (max_nodes is None or len(graph.nodes) < max_nodes):
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


def _run_edges(
    index: Index, run: str, direction: str, roles: tuple[str, ...], relation: str
) -> Iterator[tuple[str, str, Any]]:
    """The data a run read (``in``) or wrote (``out``), then its models in ``roles``."""
    for row in index.query(
        f"SELECT {DATA_COLUMNS} FROM data WHERE run = ? AND direction = ? "  # noqa: S608
        "AND (role IS NULL OR role NOT LIKE 'stage:%') ORDER BY seq",
        (run, direction),
    ):
        if not _identified(row):
            continue
        yield (
            data_node_id(row),
            ("read" if direction == "in" else "wrote"),
            _data_node(row),
        )
    if not roles:
        return
    marks = ", ".join("?" * len(roles))
    for (model,) in index.query(
        f"SELECT DISTINCT model FROM models WHERE run = ? AND role IN ({marks})",  # noqa: S608
        (run, *roles),
    ):
        yield f"model:{model}", relation, lambda m=model: _model_node(index, m)


def _folder_edges(index: Index, run: str) -> Iterator[tuple[str, str, Any]]:
    """The outputs written inside a folder the run read, as ``folder_readers``
    finds the run from them (see ``folder_reads``)."""
    for row in folder_writes(index, run, DATA_COLUMNS):
        if _identified(row):
            yield data_node_id(row), "read", _data_node(row)


def run_outputs(index: Index, run: str) -> set[str]:
    """The nodes of the outputs a run wrote (its ``run.artifact`` entries)."""
    return {node for node, _, _ in _run_edges(index, run, "out", (), "wrote")}


def latest_writer(index: Index, node_id: str) -> tuple[str | None, str | None]:
    """The run that last wrote the model, file or dataset ``node_id``, and the path."""
    kind, _, ident = node_id.partition(":")
    rows = []
    if kind == "model":
        rows = index.query(
            "SELECT run, path FROM models WHERE model = ? AND role IN ('output', 'adapter') "
            "ORDER BY seq DESC LIMIT 1",
            (ident,),
        )
    column = CONTENT_COLUMN.get(kind)
    if not rows and column is not None:
        rows = index.query(
            f"SELECT run, path FROM data WHERE {column} = ? AND direction = 'out' "  # noqa: S608
            "ORDER BY seq DESC LIMIT 1",
            (ident,),
        )
    return (rows[0][0], rows[0][1]) if rows else (None, None)


def writer_runs(index: Index, node_id: str) -> list[str]:
    """Every run that says it wrote the model, file or dataset ``node_id``, oldest
    claim first (the latest writer last). Any writer may record output bytes that
    another run also wrote, so each of them is a claimant, none the maker."""
    kind, _, ident = node_id.partition(":")
    column = CONTENT_COLUMN.get(kind)
    if column is None:
        return []
    sql = (  # column is one of three names
        "SELECT run, MAX(seq) AS last FROM ("  # noqa: S608
        "SELECT run, seq FROM models WHERE model = ? AND role IN ('output', 'adapter') "
        f"UNION ALL SELECT run, seq FROM data WHERE {column} = ? "
        "AND direction = 'out') GROUP BY run ORDER BY last"
    )
    rows = index.query(sql, (ident if kind == "model" else "", ident))
    return [run for run, _ in rows]


def _parents(index: Index, node_id: str) -> Iterator[tuple[str, str, Any]]:
    kind, _, ident = node_id.partition(":")
    if kind == "run":
        yield from _run_edges(index, ident, "in", ("base",), "base")
        yield from _folder_edges(index, ident)
        return
    if kind == "stage":
        yield from _stage_edges(index, ident, "in")
        run = ident.partition("/")[0]
        yield f"run:{run}", "ran", lambda: _run_node(index, run)
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
            f"SELECT DISTINCT run, role FROM data WHERE {column} = ? "  # noqa: S608
            "AND direction = 'out'",
            (ident,),
        )
    yield from _writers(
        index, [(r[0], r[1] if len(r) > 1 else None) for r in runs], "wrote"
    )
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
        if any(_under(p, location) or _under(location, p) for p in paths):
            names.add(name)
    for name in sorted(names):
        yield f"source:{name}", "snapshot", lambda n=name: _source_node(index, n)


def _under(path: str, location: str) -> bool:
    location = location.rstrip("/")
    return path == location or path.startswith(location + "/")


def _children(index: Index, node_id: str) -> Iterator[tuple[str, str, Any]]:
    kind, _, ident = node_id.partition(":")
    if kind == "run":
        yield from _run_edges(index, ident, "out", ("output", "adapter"), "wrote")
        for (role,) in index.query(
            "SELECT DISTINCT role FROM data WHERE run = ? AND role LIKE 'stage:%'",
            (ident,),
        ):
            stage = f"{ident}/{role.removeprefix(_STAGE)}"
            yield f"stage:{stage}", "ran", lambda s=stage: _stage_node(index, s)
        return
    if kind == "stage":
        yield from _stage_edges(index, ident, "out")
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
    yield from _writers(
        index,
        index.query(
            f"SELECT DISTINCT run, role FROM data WHERE {column} = ? "  # noqa: S608
            "AND direction = 'in'",
            (ident,),
        )
        + folder_readers(index, kind, ident),
        "read",
    )
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
    folder = location.rstrip("/") + "/"
    above = folders_above(location)
    marks = ", ".join("?" * len(above)) or "NULL"
    rows = index.query(
        f"SELECT {DATA_COLUMNS} FROM data WHERE direction = 'in' AND ("  # noqa: S608
        "dataset IN (SELECT fingerprint FROM source_prints WHERE name = ?) OR "
        "sha256 IN (SELECT fingerprint FROM source_prints WHERE name = ?) OR "
        f"path = ? OR (path >= ? AND path < ?) OR path IN ({marks})) ORDER BY seq",
        (name, name, location.rstrip("/"), folder, folder[:-1] + "0", *above),
    )
    seen: set[str] = set()
    for row in rows:
        if not _identified(row):
            continue
        node_id = data_node_id(row)
        if node_id not in seen:
            seen.add(node_id)
            yield node_id, "snapshot", _data_node(row)


def explain(
    home: Home, index: Index, start: str, graph: LineageGraph
) -> dict[str, Any]:
    """What made ``start``: each run that wrote it, with its parameters, data, code,
    environment and fine-tune (and ``added_by_others``: the run's records another
    user than its starter signed, or None; ``purged``: its blobs that were
    purged, and by whom), and the upstream ``graph`` as JSON."""

    producers = list(dict.fromkeys(_producer_runs(graph, start)))
    runs = []
    for run_node in producers:
        view = load_run(home, index, run_node.removeprefix("run:"))
        runs.append(
            {
                "run": view.summary.to_dict(),
                "params": {k: v for k, (v, _) in sorted(view.params().items())},
                "data": [
                    {k: b.get(k) for k in ("role", "dataset", "files", "bytes", "path")}
                    for b in view.bodies("run.data")
                ],
                "code": _pick(view.body("run.code"), ("commit", "branch", "dirty")),
                "environment": _environment(view.body("run.environment")),
                "finetune": view.bodies("run.finetune"),
                "added_by_others": view.added_by_others(),
                "purged": view.purged,
            }
        )
    return {
        "node": graph.nodes[start].to_dict(),
        "made_by": runs,
        "lineage": graph.to_dict(),
    }


def _producer_runs(graph: LineageGraph, start: str) -> Iterator[str]:
    """The runs that wrote ``start``, directly or through a DVC stage they ran."""
    for parent in graph.parents(start):
        node = graph.nodes[parent]
        if node.type == "run":
            yield parent
        elif node.type == "stage":
            yield f"run:{dict(node.details)['run']}"


def _pick(body: dict[str, Any] | None, keys: tuple[str, ...]) -> dict[str, Any] | None:
    return None if body is None else {k: body.get(k) for k in keys}


def _environment(body: dict[str, Any] | None) -> dict[str, Any] | None:
    if body is None:
        return None
    packages = body.get("packages") or {}
    return {
        "python": (body.get("python") or {}).get("version"),
        "packages": packages.get("count") if isinstance(packages, dict) else None,
        "packages_sha256": packages.get("sha256")
        if isinstance(packages, dict)
        else None,
        "container": (body.get("container") or {}).get("image"),
        "cuda": body.get("cuda"),
    }
