"""Lineage graphs: what came from what, and how to print it.

Nodes are typed ids: ``source:<name>``, ``data:<dataset id>``, ``file:<sha256>``,
``run:<run id>``, ``stage:<run id>/<name>`` (a DVC stage within a run) and
``model:<id>``. Edges point the way data flows: a run reads
a dataset (``data -> run``), writes one (``run -> data``), starts from a base
model (``model -> run``); a folder a run wrote contains the file another run read
(``data -> file``); a registered source feeds the datasets read from it.

The graph is plain values; the service that builds it from the index lives in
``mltrail.audit.trace``. Renderers here are pure: text tree, Graphviz DOT, Mermaid and
OpenLineage run events.

    >>> g = LineageGraph()
    >>> g.add_node(Node("data:ab", "data", "raw.csv"))
    >>> g.add_node(Node("run:1", "run", "clean"))
    >>> g.add_edge("data:ab", "run:1", "read")
    >>> print(to_mermaid(g))
    flowchart LR
      n0[("raw.csv")]
      n1["clean"]
      n0 -->|read| n1
"""

from __future__ import annotations

import json
import re
from typing import Any

from mltrail.values import Frozen, Value

__all__ = [
    "Edge",
    "LineageGraph",
    "Node",
    "to_dot",
    "to_mermaid",
    "to_openlineage",
    "to_tree",
]

NODE_TYPES = ("source", "data", "file", "run", "stage", "model")


class Node(Frozen):
    """One thing in the lineage: its typed id, type, a label and details."""

    __match_args__ = ("id", "type", "label", "details")
    id: str
    type: str
    label: str
    details: tuple[tuple[str, Any], ...]

    def __init__(
        self,
        id: str,
        type: str,
        label: str,
        details: tuple[tuple[str, Any], ...] = (),
    ) -> None:
        object.__setattr__(self, "id", id)
        object.__setattr__(self, "type", type)
        object.__setattr__(self, "label", label)
        object.__setattr__(self, "details", details)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values."""
        return {
            "id": self.id,
            "type": self.type,
            "label": self.label,
            "details": dict(self.details),
        }


class Edge(Frozen):
    """A flow from ``source`` to ``target`` (``read``, ``wrote``, ``base``, ...)."""

    __match_args__ = ("source", "target", "relation")
    source: str
    target: str
    relation: str

    def __init__(self, source: str, target: str, relation: str) -> None:
        object.__setattr__(self, "source", source)
        object.__setattr__(self, "target", target)
        object.__setattr__(self, "relation", relation)


class LineageGraph(Value):
    """Nodes and edges, in the order they were found."""

    __match_args__ = ("nodes", "edges", "root", "_seen")
    _compared = _shown = __match_args__[:3]  # not _seen
    nodes: dict[str, Node]
    edges: list[Edge]
    root: str | None
    _seen: set[Edge]

    def __init__(
        self,
        nodes: dict[str, Node] | None = None,
        edges: list[Edge] | None = None,
        root: str | None = None,
        _seen: set[Edge] | None = None,
    ) -> None:
        self.nodes = {} if nodes is None else nodes
        self.edges = [] if edges is None else edges
        self.root = root
        self._seen = set() if _seen is None else _seen

    def add_node(self, node: Node) -> None:
        """Add ``node`` (the first one added under an id wins)."""
        self.nodes.setdefault(node.id, node)
        if self.root is None:
            self.root = node.id

    def add_edge(self, source: str, target: str, relation: str) -> None:
        """Add an edge once."""
        edge = Edge(source, target, relation)
        if edge not in self._seen:
            self._seen.add(edge)
            self.edges.append(edge)

    def parents(self, node_id: str) -> list[str]:
        """Nodes with an edge into ``node_id``, in the order the edges were found."""
        return list(self._sources_by_target().get(node_id, ()))

    def _sources_by_target(self) -> dict[str, list[str]]:
        """Each target's edge sources: made once and brought up to date with the
        edges appended since (edges are only ever appended). Flagging asks for the
        parents of every node of a graph grown whole, and a scan of every edge
        for each made that quadratic."""
        cached: tuple[list[Edge], int, dict[str, list[str]]] | None = getattr(
            self, "_by_target", None
        )
        if cached is None or cached[0] is not self.edges:
            cached = (self.edges, 0, {})
        edges, done, by_target = cached
        for edge in edges[done:]:
            by_target.setdefault(edge.target, []).append(edge.source)
        self._by_target = (edges, len(edges), by_target)
        return by_target

    def children(self, node_id: str) -> list[str]:
        """Nodes ``node_id`` has an edge to."""
        return [e.target for e in self.edges if e.source == node_id]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: root, nodes and edges."""
        return {
            "root": self.root,
            "nodes": [n.to_dict() for n in self.nodes.values()],
            "edges": [
                {"from": e.source, "to": e.target, "relation": e.relation}
                for e in self.edges
            ],
        }


# -- renderers ---------------------------------------------------------------


def to_tree(graph: LineageGraph, *, upstream: bool = True) -> list[str]:
    """Indented lines from the root, following parents (``upstream``) or children.

    A node reached twice is printed once in full and then as ``(see above)``.
    """
    if graph.root is None:
        return []
    lines: list[str] = []
    seen: set[str] = set()
    nexts: dict[str, list[tuple[str, str]]] = {}
    for e in graph.edges:  # one pass: a deep chain is not walked edge list by edge list
        here, there = (e.target, e.source) if upstream else (e.source, e.target)
        nexts.setdefault(here, []).append((there, e.relation))
    stack = [(graph.root, 0, "")]  # not recursion: a chain may be deeper than Python's
    while stack:
        node_id, depth, relation = stack.pop()
        node = graph.nodes[node_id]
        arrow = f"<-{relation}- " if upstream else f"-{relation}-> "
        prefix = "  " * depth + (arrow if depth else "")
        if node_id in seen:
            lines.append(f"{prefix}{node.type} {node.label} (see above)")
            continue
        seen.add(node_id)
        lines.append(f"{prefix}{node.type} {node.label}")
        stack.extend((o, depth + 1, r) for o, r in reversed(nexts.get(node_id, [])))
    return lines


_SHAPES = {
    "source": ("[(", ")]"),
    "data": ("[(", ")]"),
    "file": ("[/", "/]"),
    "run": ("[", "]"),
    "stage": ("[[", "]]"),
    "model": ("{{", "}}"),
}
_DOT_SHAPES = {
    "source": "cylinder",
    "data": "cylinder",
    "file": "note",
    "run": "box",
    "stage": "component",
    "model": "hexagon",
}


def to_mermaid(graph: LineageGraph) -> str:
    """A Mermaid ``flowchart LR`` of the graph."""
    ids = {node_id: f"n{i}" for i, node_id in enumerate(graph.nodes)}
    lines = ["flowchart LR"]
    for node_id, node in graph.nodes.items():
        left, right = _SHAPES.get(node.type, ("[", "]"))
        lines.append(f'  {ids[node_id]}{left}"{_mermaid_text(node.label)}"{right}')
    lines.extend(
        f"  {ids[e.source]} -->|{e.relation}| {ids[e.target]}"
        for e in graph.edges
        if e.source in ids and e.target in ids
    )
    return "\n".join(lines)


def _mermaid_text(text: str) -> str:
    return re.sub(r'["<>{}\[\]|]', "_", text)


def to_dot(graph: LineageGraph) -> str:
    """A Graphviz DOT digraph of the graph."""
    lines = ["digraph lineage {", "  rankdir=LR;", '  node [fontname="Helvetica"];']
    for node_id, node in graph.nodes.items():
        shape = _DOT_SHAPES.get(node.type, "box")
        lines.append(
            f"  {_dot_id(node_id)} [label={_dot_id(node.type + ': ' + node.label)}, "
            f"shape={shape}];"
        )
    lines.extend(
        f"  {_dot_id(e.source)} -> {_dot_id(e.target)} [label={_dot_id(e.relation)}];"
        for e in graph.edges
    )
    lines.append("}")
    return "\n".join(lines)


def _dot_id(text: str) -> str:
    return json.dumps(text)  # a DOT double-quoted string: " and \ escaped


_PRODUCER = "urn:mltrail"
_SCHEMA_URL = "https://openlineage.io/spec/2-0-2/OpenLineage.json#/$defs/RunEvent"
_FACET_SCHEMA = "urn:mltrail:facets:content"


def to_openlineage(graph: LineageGraph, *, namespace: str) -> list[dict[str, Any]]:
    """One OpenLineage ``COMPLETE`` RunEvent per run node, with its inputs and outputs.

    ``namespace`` names the ledger (its origin); datasets are named by their
    content id, so the same bytes are the same dataset across runs.
    """
    events = []
    for node_id, node in graph.nodes.items():
        if node.type != "run":
            continue
        details = dict(node.details)
        events.append(
            {
                "eventType": _event_type(details.get("status")),
                "eventTime": details.get("ended") or details.get("started"),
                "producer": _PRODUCER,
                "schemaURL": _SCHEMA_URL,
                "run": {"runId": node_id.removeprefix("run:")},
                "job": {
                    "namespace": namespace,
                    "name": details.get("name") or node.label,
                },
                "inputs": [
                    _ol_dataset(graph.nodes[e.source], namespace)
                    for e in graph.edges
                    if e.target == node_id and _is_dataset(graph, e.source)
                ],
                "outputs": [
                    _ol_dataset(graph.nodes[e.target], namespace)
                    for e in graph.edges
                    if e.source == node_id and _is_dataset(graph, e.target)
                ],
            }
        )
    return events


def _is_dataset(graph: LineageGraph, node_id: str) -> bool:
    node = graph.nodes.get(node_id)
    return node is not None and node.type not in ("run", "stage")


def _event_type(status: Any) -> str:
    if status == "succeeded":
        return "COMPLETE"
    if status in ("running", "open", "stale", None):
        return "RUNNING"
    return "FAIL" if status == "failed" else "ABORT"


def _ol_dataset(node: Node, namespace: str) -> dict[str, Any]:
    details = dict(node.details)
    facets: dict[str, Any] = {}
    if details.get("path"):
        facets["mltrail"] = {
            "_producer": _PRODUCER,
            "_schemaURL": _FACET_SCHEMA,
            "path": details["path"],
            "type": node.type,
        }
    return {"namespace": namespace, "name": node.id, "facets": facets}
