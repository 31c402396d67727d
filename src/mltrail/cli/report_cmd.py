"""``mltrail report MODEL``: one model's documentation, as Markdown, HTML or PDF."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import click

from mltrail import __version__
from mltrail.cli.output import derived_index, emit_json, json_option, open_from
from mltrail.errors import InputError, IntegrityError

__all__ = ["report"]


def _format_of(fmt: str | None, output: Path | None) -> str:
    if fmt is not None:
        return fmt
    suffix = output.suffix.lower().lstrip(".") if output is not None else ""
    return {"markdown": "md", "htm": "html"}.get(suffix, suffix) or "md"


@click.command()
@click.argument("model", metavar="MODEL")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["md", "html", "pdf"]),
    help="Markdown, HTML (one self-contained page) or PDF (default: from -o's "
    "suffix, else md).",
)
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    help="File to write (default: stdout; a PDF needs a file).",
)
@click.option(
    "--bundle",
    type=click.Path(path_type=Path, dir_okay=False, exists=True),
    metavar="FILE",
    help="A proof bundle handed over with the report: its SHA-256 goes in the "
    "record-keeping section.",
)
@click.option(
    "--trust-key",
    "trust_keys",
    multiple=True,
    metavar="KEY",
    help="Verify against this key (as `mltrail verify --trust-key`). Repeatable.",
)
@click.option(
    "--tsa-ca",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="CA certificate(s) a TSA must chain to (as `mltrail verify --tsa-ca`).",
)
@json_option
@click.pass_context
def report(
    ctx: click.Context,
    model: str,
    fmt: str | None,
    output: Path | None,
    bundle: Path | None,
    trust_keys: tuple[str, ...],
    tsa_ca: Path | None,
    as_json: bool,
) -> None:
    """Write the documentation of one model, with its evidence, for an auditor.

    Sections follow the EU AI Act's Annex IV and SR 11-7: description and
    intended purpose, owner and risk tier (`mltrail model describe`), the run
    that made it (git commit, dirty tree, command, program, environment), its
    data (every file's SHA-256, split distributions, the preprocessing chain),
    every hyperparameter, fine-tune base and delta, metrics, approvals,
    promotions and deployment dates, open flags, the lineage drawn as a
    picture, and record-keeping: the ledger is verified first and the verdict,
    the anchors it used (checkpoints, RFC 3161 timestamps) and the newest
    checkpoint are included. A ledger that fails verification still gets its
    report, headed by a warning that it is not intact, and the command then
    exits 3. Runs and lineage are read through an index derived from the
    records, never index.db. MODEL is a file, a model id (or 4+ hex digits),
    or an output's name. HTML and PDF need `pip install 'mltrail[report]'`.

    \b
    Examples:
      mltrail report model/weights.bin -o report.html
      mltrail report 3f2a9c1e --format pdf -o loan-model.pdf --bundle proof.json
      mltrail report model/weights.bin > report.md
      mltrail report model/weights.bin --json | jq .record_keeping.verdict
    """
    from mltrail.audit.refs import resolve_node
    from mltrail.cli.evidence_cmds import evidence_policy
    from mltrail.cli.verify_cmd import resolve_trusted_keys, verification_progress
    from mltrail.ledger.home import verify_pinned
    from mltrail.report import (
        bundle_facts,
        gather_report,
        render_html,
        render_markdown,
        render_pdf,
    )

    kind = _format_of(fmt, output)
    if kind not in ("md", "html", "pdf"):
        raise InputError(
            f"cannot tell the report format from {output}",
            hint="name the file .md, .html or .pdf, or give --format",
        )
    if kind == "pdf" and output is None and not as_json:
        raise InputError("a PDF report needs a file", hint="add -o report.pdf")
    home = open_from(ctx)
    try:
        policy = evidence_policy(home, tsa_ca, ())
        # verified first, and pinned in the verification's snapshot: every
        # record, checkpoint and token read below is one it read (pinned
        # apart, a server's second answer was verified, its first reported)
        with verification_progress(not as_json and sys.stderr.isatty()) as progress:
            verification = verify_pinned(
                home,
                trust_keys=resolve_trusted_keys(trust_keys, home.ledger.origin),
                evidence=policy,
                progress=progress,
            )
        index = derived_index(home)
        node = resolve_node(index, model, cwd=Path.cwd())
        if node.partition(":")[0] not in ("model", "file"):
            raise InputError(
                f"{model!r} names a {node.partition(':')[0]}, not a model",
                hint="give the model file, its id, or an output's name",
            )
        facts = bundle_facts(bundle, subject=node) if bundle is not None else None
        found = gather_report(
            home, index, node, verification=verification, bundle=facts, evidence=policy
        )
    finally:
        home.close()
    if as_json:
        emit_json(found)
        _refuse_unless_intact(found)
        return
    if kind == "pdf":
        data = render_pdf(found, version=__version__)
    elif kind == "html":
        data = render_html(found, version=__version__).encode()
    else:
        data = render_markdown(found).encode()
    if output is None:
        sys.stdout.buffer.write(data)
        sys.stdout.flush()
    else:
        from mltrail.cli.out_file import write_output_file

        try:
            write_output_file(output, data)
        except OSError as e:
            raise InputError(f"cannot write {output}: {e.strerror or e}") from e
        click.echo(f"wrote {output} ({kind}, {len(data):,} bytes)", err=True)
    _refuse_unless_intact(found)


def _refuse_unless_intact(found: dict[str, Any]) -> None:
    """Exit 3 once the report is written when its ledger fails verification:
    the document says so at its top, and no script may take it as a clean one."""
    kept = found["record_keeping"]
    if kept.get("ok") is False:
        raise IntegrityError(
            f"the report was written, but the ledger fails verification "
            f"({kept.get('verdict')}): it describes altered records",
            hint="run `mltrail verify` to see every problem",
        )
