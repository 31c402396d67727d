"""``mltrail lineage`` and ``mltrail trace``: where things came from, what uses them."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from mltrail.audit.refs import resolve_node
from mltrail.audit.trace import MAX_NODES, build_lineage
from mltrail.cli.output import console, emit_json, json_option, open_from, open_index
from mltrail.cli.read_text import print_trace
from mltrail.cli.reads import trace_model
from mltrail.core.lineage import to_dot, to_mermaid, to_openlineage, to_tree

if TYPE_CHECKING:
    from mltrail.core.lineage import LineageGraph
    from mltrail.ledger.home import Home

__all__ = ["lineage", "trace"]

_FORMATS = ("tree", "json", "dot", "mermaid", "openlineage")


@click.command()
@click.argument("node", metavar="NODE")
@click.option(
    "--up", "direction", flag_value="up", default=True, help="Where it came from."
)
@click.option("--down", "direction", flag_value="down", help="What was made from it.")
@click.option("--depth", type=click.IntRange(min=1), help="Stop after N hops.")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(_FORMATS),
    default="tree",
    show_default=True,
    help="tree for people; dot (Graphviz), mermaid, openlineage (run events), json.",
)
@json_option
@click.pass_context
def lineage(
    ctx: click.Context,
    node: str,
    direction: str,
    depth: int | None,
    fmt: str,
    as_json: bool,
) -> None:
    """Follow lineage from NODE: raw source -> dataset -> step -> dataset -> run ->
    model -> fine-tune run -> model.

    NODE is a file or folder (matched by content), a model, dataset or run id
    (or 4+ hex digits of one; typed ids like data:3f2a... also work), a
    registered source's name, an output's file name, or a run name.

    \b
    Examples:
      mltrail lineage model.safetensors             # where it came from
      mltrail lineage data/raw --down               # everything made from it
      mltrail lineage baseline --format mermaid > lineage.mmd
      mltrail lineage baseline --format dot | dot -Tsvg > lineage.svg
      mltrail lineage baseline --format openlineage # OpenLineage RunEvents (JSON)
    """
    home = open_from(ctx)
    try:
        index = open_index(home)
        start = resolve_node(index, node, cwd=Path.cwd())
        graph = build_lineage(
            index, start, upstream=direction == "up", depth=depth, max_nodes=MAX_NODES
        )
        if len(graph.nodes) >= MAX_NODES:
            click.echo(
                f"note: the graph shown was cut at {len(graph.nodes):,} nodes (the "
                f"bound for display is {MAX_NODES:,}): it may go on; narrow it with "
                "--depth N, or ask `mltrail sources check` / `mltrail flags`, which "
                "follow all of it",
                err=True,
            )
        _print_graph(
            home, graph, "json" if as_json else fmt, upstream=direction == "up"
        )
    finally:
        home.close()


def _print_graph(home: Home, graph: LineageGraph, fmt: str, *, upstream: bool) -> None:
    if fmt == "json":
        emit_json(graph.to_dict())
    elif fmt == "dot":
        click.echo(to_dot(graph))
    elif fmt == "mermaid":
        click.echo(to_mermaid(graph))
    elif fmt == "openlineage":
        emit_json(to_openlineage(graph, namespace=home.settings.origin))
    else:
        for line in to_tree(graph, upstream=upstream):
            console.print(line, markup=False)


@click.command()
@click.argument("model", metavar="MODEL")
@json_option
@click.pass_context
def trace(ctx: click.Context, model: str, as_json: bool) -> None:
    """Answer "what exactly made this model?".

    MODEL is a model file or folder (matched by content), its fingerprint or
    content id (or 4+ hex digits), or an output's name. The answer: the run that
    wrote it, who ran it and when, its hyperparameters, data snapshots, base
    model, code commit and environment, then back through preprocessing steps
    to the raw sources; and its model card, open flags and approvals.

    \b
    Examples:
      mltrail trace out/model.safetensors
      mltrail trace 9f3c2a1b --json
      mltrail model history --at 2026-03-14     # which model was live, then trace it
    """
    answer, graph = trace_model(lambda: open_from(ctx), model)
    if as_json:
        emit_json(answer)
        return
    print_trace(answer, graph)
