"""A lineage graph drawn as inline SVG, in Python (no Graphviz binary).

Layered left to right: a node's column is the length of the longest path from a
node with no parents to it; nodes keep the order they were found in within a
column. Edges are straight lines with an arrowhead, labelled with their relation.
Every label is XML-escaped, its control, bidi and invisible characters shown as
escapes first: they come from the ledger (ADR 0040).
"""

from __future__ import annotations

from collections import deque
from html import escape as _xml
from typing import Any

from mltrail.shown import terminal_text

__all__ = ["lineage_svg"]

_W, _H, _GAP_X, _GAP_Y, _PAD = 210, 44, 70, 18, 12
_COLORS = {
    "source": "#fde2e2",
    "data": "#e0ecff",
    "file": "#e0ecff",
    "run": "#fff4d6",
    "model": "#dff5e1",
}
_MAX_LABEL = 30


def _columns(graph: dict[str, Any]) -> dict[str, int]:
    """Longest path from a root to each node (Kahn's order; nodes on a cycle: 0)."""
    ids = [n["id"] for n in graph["nodes"]]
    children: dict[str, list[str]] = {i: [] for i in ids}
    waiting = dict.fromkeys(ids, 0)
    for edge in graph["edges"]:
        if edge["to"] in waiting and edge["from"] in waiting:
            children[edge["from"]].append(edge["to"])
            waiting[edge["to"]] += 1
    column = dict.fromkeys(ids, 0)
    ready = deque(i for i in ids if waiting[i] == 0)
    while ready:
        node = ready.popleft()
        for child in children[node]:
            column[child] = max(column[child], column[node] + 1)
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    return column


def escape(value: str) -> str:
    """``value`` as SVG text: escapes shown, then XML-escaped."""
    return _xml(terminal_text(value))


def _cut(text: str) -> str:
    return text if len(text) <= _MAX_LABEL else text[: _MAX_LABEL - 1] + "…"


def lineage_svg(graph: dict[str, Any]) -> str:
    """The SVG text of a lineage graph (``LineageGraph.to_dict()``)."""
    column = _columns(graph)
    rows: dict[int, int] = {}
    places: dict[str, tuple[int, int]] = {}
    for node in graph["nodes"]:
        c = column[node["id"]]
        r = rows.get(c, 0)
        rows[c] = r + 1
        places[node["id"]] = (_PAD + c * (_W + _GAP_X), _PAD + r * (_H + _GAP_Y))
    width = _PAD * 2 + (max(column.values(), default=0) + 1) * (_W + _GAP_X) - _GAP_X
    height = _PAD * 2 + max(rows.values(), default=1) * (_H + _GAP_Y) - _GAP_Y
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="lineage" width="{width}" '
        f'height="{height}" viewBox="0 0 {width} {height}" role="img" '
        'aria-label="lineage of the model">',
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="10" refY="5" '
        'markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
        '<path d="M 0 0 L 10 5 L 0 10 z" fill="#555"/></marker></defs>',
    ]
    for edge in graph["edges"]:
        if edge["from"] not in places or edge["to"] not in places:
            continue
        (x1, y1), (x2, y2) = places[edge["from"]], places[edge["to"]]
        a, b = (x1 + _W, y1 + _H // 2), (x2, y2 + _H // 2)
        parts.append(
            f'<line x1="{a[0]}" y1="{a[1]}" x2="{b[0]}" y2="{b[1]}" stroke="#555" '
            'stroke-width="1.2" marker-end="url(#arrow)"/>'
        )
        mx, my = (a[0] + b[0]) // 2, (a[1] + b[1]) // 2 - 4
        parts.append(
            f'<text x="{mx}" y="{my}" font-size="10" text-anchor="middle" '
            f'fill="#555">{escape(str(edge["relation"]))}</text>'
        )
    for node in graph["nodes"]:
        x, y = places[node["id"]]
        fill = _COLORS.get(node["type"], "#eeeeee")
        stroke = "#1a7f37" if node["id"] == graph.get("root") else "#888"
        parts.append(
            f'<g class="node"><title>{escape(node["id"])}</title>'
            f'<rect x="{x}" y="{y}" width="{_W}" height="{_H}" rx="6" fill="{fill}" '
            f'stroke="{stroke}" stroke-width="1.5"/>'
            f'<text x="{x + 8}" y="{y + 17}" font-size="11" font-weight="bold">'
            f"{escape(node['type'])}</text>"
            f'<text x="{x + 8}" y="{y + 33}" font-size="11">'
            f"{escape(_cut(str(node['label'])))}</text></g>"
        )
    parts.append("</svg>")
    return "".join(parts)
