"""Lineage graphs and their renderers (pure)."""

import json
import re

from hypothesis import given
from hypothesis import strategies as st

from mltrail.core.lineage import (
    LineageGraph,
    Node,
    to_dot,
    to_mermaid,
    to_openlineage,
    to_tree,
)


def _chain() -> LineageGraph:
    """raw -> clean (step) -> train.csv -> train run -> model, seen from the model."""
    g = LineageGraph()
    g.add_node(Node("model:m1", "model", "model.safetensors"))
    g.add_node(
        Node(
            "run:r2",
            "run",
            "train",
            (
                ("name", "train"),
                ("status", "succeeded"),
                ("ended", "2026-03-14T09:00:00.000000Z"),
            ),
        )
    )
    g.add_node(Node("file:f1", "file", "train.csv", (("path", "/d/train.csv"),)))
    g.add_node(
        Node("run:r1", "run", "clean", (("name", "clean"), ("status", "failed")))
    )
    g.add_node(Node("source:raw", "source", 'raw "bank" data'))
    g.add_edge("run:r2", "model:m1", "wrote")
    g.add_edge("file:f1", "run:r2", "read")
    g.add_edge("run:r1", "file:f1", "wrote")
    g.add_edge("source:raw", "run:r1", "snapshot")
    g.add_edge("source:raw", "run:r1", "snapshot")  # added once
    return g


def test_edges_are_added_once_and_parents_children_follow_them():
    g = _chain()
    assert len(g.edges) == 4
    assert g.parents("run:r2") == ["file:f1"]
    assert g.children("run:r1") == ["file:f1"]
    assert g.root == "model:m1"


def test_tree_walks_up_from_the_root_and_marks_repeats():
    g = _chain()
    g.add_edge("source:raw", "run:r2", "snapshot")  # reachable twice
    lines = to_tree(g, upstream=True)
    assert lines[0] == "model model.safetensors"
    assert lines[1] == "  <-wrote- run train"
    assert any(line.endswith("(see above)") for line in lines)
    assert sum("source raw" in line for line in lines) == 2


def test_tree_downstream_uses_forward_arrows():
    g = LineageGraph()
    g.add_node(Node("data:d", "data", "raw"))
    g.add_node(Node("run:r", "run", "clean"))
    g.add_edge("data:d", "run:r", "read")
    assert to_tree(g, upstream=False) == ["data raw", "  -read-> run clean"]


def test_mermaid_declares_every_node_and_edge_with_safe_labels():
    text = to_mermaid(_chain())
    lines = text.splitlines()
    assert lines[0] == "flowchart LR"
    assert sum(1 for line in lines if re.match(r"  n\d+[\[{(/]", line)) == 5
    assert sum(1 for line in lines if "-->|" in line) == 4
    assert '"raw _bank_ data"' in text  # quotes would end the label early


def test_dot_is_a_digraph_with_quoted_ids():
    text = to_dot(_chain())
    assert text.startswith("digraph lineage {")
    assert text.endswith("}")
    assert '"source:raw" -> "run:r1" [label="snapshot"];' in text
    assert 'label="source: raw \\"bank\\" data"' in text


def test_openlineage_has_one_run_event_per_run_with_inputs_and_outputs():
    events = to_openlineage(_chain(), namespace="mltrail.example/team")
    assert [e["run"]["runId"] for e in events] == ["r2", "r1"]
    train = events[0]
    assert train["eventType"] == "COMPLETE"
    assert train["eventTime"] == "2026-03-14T09:00:00.000000Z"
    assert train["job"] == {"namespace": "mltrail.example/team", "name": "train"}
    assert [d["name"] for d in train["inputs"]] == ["file:f1"]
    assert [d["name"] for d in train["outputs"]] == ["model:m1"]
    assert train["inputs"][0]["facets"]["mltrail"]["path"] == "/d/train.csv"
    assert events[1]["eventType"] == "FAIL"
    for event in events:
        assert {"eventType", "eventTime", "producer", "schemaURL", "run", "job"} <= set(
            event
        )
    json.dumps(events)


def test_to_dict_lists_nodes_and_edges():
    out = _chain().to_dict()
    assert out["root"] == "model:m1"
    assert {n["id"] for n in out["nodes"]} == {
        "model:m1",
        "run:r2",
        "file:f1",
        "run:r1",
        "source:raw",
    }
    assert {"from": "file:f1", "to": "run:r2", "relation": "read"} in out["edges"]


def test_tree_of_a_chain_deeper_than_the_recursion_limit():
    """A source cleaned through thousands of steps prints, both ways."""
    import sys

    depth = sys.getrecursionlimit() + 500
    g = LineageGraph()
    for i in range(depth):
        g.add_node(Node(f"data:{i}", "data", f"d{i}"))
        if i:
            g.add_edge(f"data:{i - 1}", f"data:{i}", "read")
    down = to_tree(g, upstream=False)
    assert len(down) == depth
    assert down[-1] == "  " * (depth - 1) + f"-read-> data d{depth - 1}"
    g.root = f"data:{depth - 1}"
    assert to_tree(g)[-1] == "  " * (depth - 1) + "<-read- data d0"


@given(
    st.lists(
        st.tuples(
            st.sampled_from("abcdef"),
            st.sampled_from("abcdef"),
            st.sampled_from(["read", "wrote"]),
        ),
        max_size=30,
    ),
    st.integers(min_value=0, max_value=30),
)
def test_parents_are_the_sources_of_the_edges_into_a_node(edges, asked_after):
    """``parents`` (kept by target, brought up to date as edges are appended)
    answers what a scan of every edge answers, in edge order, whenever asked."""
    g = LineageGraph()
    for i, (source, target, relation) in enumerate(edges):
        if i == asked_after:
            g.parents("a")  # made here, then extended by the edges after
        g.add_edge(source, target, relation)
    for node in "abcdefz":
        assert g.parents(node) == [e.source for e in g.edges if e.target == node]
    copy = LineageGraph(g.nodes, list(g.edges), g.root)
    assert copy.parents("b") == g.parents("b")
