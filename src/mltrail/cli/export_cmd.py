"""``mltrail export``: proof bundles, in-toto/SLSA provenance, OpenLineage events.

``mltrail export RUN|MODEL -o FILE`` (a proof bundle, ADR 0016) is unchanged:
a first word that is not a subcommand is taken as the bundle's subject, so it
means ``mltrail export bundle RUN|MODEL -o FILE``. A run whose name is one of the
subcommands is exported with ``mltrail export bundle NAME``.
"""

from __future__ import annotations

import click

from mltrail.cli.bundle_cmd import export as bundle
from mltrail.cli.export_formats import intoto, openlineage

__all__ = ["export"]


class _ExportGroup(click.Group):
    """A group whose first word defaults to ``bundle`` when it is no subcommand."""

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("-h", "--help"):
            args = ["bundle", *args]
        return super().parse_args(ctx, args)


@click.group(cls=_ExportGroup)
def export() -> None:
    """Export a run or model: a proof bundle, SLSA provenance or OpenLineage events.

    \b
    A first word that is not a subcommand names what to bundle, so
    `mltrail export RUN|MODEL -o FILE` is `mltrail export bundle RUN|MODEL -o FILE`.

    \b
    Examples:
      mltrail export model.safetensors -o model-proof.json
      mltrail export intoto baseline -o baseline.intoto.json
      mltrail export openlineage --since 7d -o events.jsonl
      mltrail export openlineage --url http://marquez:5000/api/v1/lineage
    """


export.add_command(bundle, name="bundle")
export.add_command(intoto)
export.add_command(openlineage)
