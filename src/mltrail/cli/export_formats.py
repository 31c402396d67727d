"""``mltrail export intoto`` and ``mltrail export openlineage`` (ADR 0024)."""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from mltrail.cli.output import (
    console,
    derived_index,
    emit_json,
    json_option,
    open_from,
)
from mltrail.errors import InputError

if TYPE_CHECKING:
    from mltrail.core.report import VerificationReport
    from mltrail.ledger.home import Home

__all__ = ["intoto", "openlineage"]


def _write(output: Path | None, data: bytes) -> None:
    """``data`` to ``output``, or to stdout when there is none."""
    if output is None:
        click.echo(data.decode("utf-8"), nl=False)
        return
    from mltrail.cli.out_file import write_output_file

    try:
        write_output_file(output, data)
    except OSError as e:
        raise InputError(f"cannot write {output}: {e.strerror or e}") from e


def _require_intact(
    home: Home, trust_keys: tuple[str, ...], refusing: str
) -> VerificationReport:
    """The ledger's verification; raises (``refusing to REFUSING``) when it
    fails: nothing is handed out from such a ledger. From then on the ledger
    reads only the records verified (``verify_pinned``)."""
    from mltrail.cli.verify_cmd import resolve_trusted_keys, verification_progress
    from mltrail.ledger.home import verify_pinned

    with verification_progress(sys.stderr.isatty()) as progress:
        report = verify_pinned(
            home,
            trust_keys=resolve_trusted_keys(trust_keys, home.ledger.origin),
            progress=progress,
        )
    report.raise_for_failure(refusing=refusing)
    return report


_trust_key_option = click.option(
    "--trust-key",
    "trust_keys",
    multiple=True,
    metavar="KEY",
    help="Verify against this key (as `mltrail verify --trust-key`). Repeatable.",
)

_output_option = click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="Where to write it (default: stdout).",
)


@click.command()
@click.argument("ref", metavar="RUN")
@_output_option
@_trust_key_option
@json_option
@click.pass_context
def intoto(
    ctx: click.Context,
    ref: str,
    output: Path | None,
    trust_keys: tuple[str, ...],
    as_json: bool,
) -> None:
    """Write a run's SLSA provenance: an in-toto Statement in a signed DSSE envelope.

    \b
    Subjects are the files the run wrote (--output), with their SHA-256. The
    SLSA v1 predicate holds the command and hyperparameters (external
    parameters), the data, base model, code (git commit or program hash),
    container image and package list (resolved dependencies), and the run's
    id, times and ledger records (run details). The envelope is signed with
    the ledger's Ed25519 key; its key id is the mltrail key id
    (`mltrail keys export` prints the public key). Check it with any DSSE or
    in-toto verifier (e.g. securesystemslib's Envelope.verify). The ledger is
    verified first and nothing is signed when it fails (exit 3); the run is
    read through an index derived from the records, never index.db.

    \b
    Examples:
      mltrail export intoto baseline -o baseline.intoto.json
      mltrail export intoto 7f3e2a1c | jq -r .payload | base64 -d | jq .subject
      mltrail export intoto baseline -o p.json --json
    """
    from mltrail import __version__
    from mltrail.integrations.intoto import export_intoto

    home = open_from(ctx)
    verification = _require_intact(home, trust_keys, "sign provenance")
    index = derived_index(home)
    try:
        envelope = export_intoto(
            home, index, ref, version=__version__, verification=verification
        )
    finally:
        index.close()
    data = (json.dumps(envelope, indent=2) + "\n").encode()
    if output is None and not as_json:
        _write(None, data)
        return
    if output is not None:
        _write(output, data)
    statement = json.loads(base64.b64decode(envelope["payload"]))
    summary = {
        "path": None if output is None else str(output),
        "run": statement["predicate"]["runDetails"]["metadata"]["invocationId"],
        "subjects": len(statement["subject"]),
        "dependencies": len(
            statement["predicate"]["buildDefinition"]["resolvedDependencies"]
        ),
        "keyid": envelope["signatures"][0]["keyid"],
    }
    if as_json:
        emit_json(summary if output is not None else {**summary, "envelope": envelope})
        return
    console.print(
        f"wrote {output}: provenance of run {summary['run']}, "
        f"{summary['subjects']} subject(s), {summary['dependencies']} "
        f"dependencies, signed by key {summary['keyid'][:16]}",
        markup=False,
    )


@click.command()
@click.option("--run", "runs", multiple=True, metavar="RUN",
              help="A run to export (id, prefix or name). Repeatable.")  # fmt: skip
@click.option("--since", metavar="WHEN",
              help="Runs started since then: a date, a time, or an age (7d, 12h).")  # fmt: skip
@click.option(
    "--until", metavar="WHEN", help="Runs started until then (that day included)."
)
@_output_option
@click.option("--url", metavar="URL",
              help="POST each event to this OpenLineage HTTP endpoint instead "
              "(Marquez: http://HOST:5000/api/v1/lineage). A bearer token is "
              "read from OPENLINEAGE_API_KEY.")  # fmt: skip
@_trust_key_option
@json_option
@click.pass_context
def openlineage(
    ctx: click.Context,
    runs: tuple[str, ...],
    since: str | None,
    until: str | None,
    output: Path | None,
    url: str | None,
    trust_keys: tuple[str, ...],
    as_json: bool,
) -> None:
    """Write OpenLineage RunEvents of runs (START and COMPLETE/FAIL/ABORT).

    \b
    One event per line (JSON Lines) to stdout or -o FILE, or posted to --url.
    Inputs are the runs' datasets (--data), outputs what they wrote
    (--output), each with a `version` facet (the mltrail dataset id) and an
    `mltrail` facet (record seq, dataset id, sha256, files, bytes). Without
    --run or --since/--until every run is exported.

    \b
    Examples:
      mltrail export openlineage --since 7d -o events.jsonl
      mltrail export openlineage --run baseline --run 7f3e2a1c
      mltrail export openlineage --url http://localhost:5000/api/v1/lineage --json
    """
    import os

    from mltrail import __version__
    from mltrail.audit.query import RunFilter, resolve_run, search_runs, time_window
    from mltrail.integrations.openlineage import compute_events, post_events

    if url and output:
        raise InputError("give either -o FILE or --url, not both")
    home = open_from(ctx)
    _require_intact(home, trust_keys, "export OpenLineage events")
    index = derived_index(home)
    try:
        if runs:
            if since or until:
                raise InputError("--run cannot be combined with --since/--until")
            ids = list(dict.fromkeys(resolve_run(index, r) for r in runs))
        else:
            spec = RunFilter(window=time_window(since, until))
            ids = [s.id for s in search_runs(home, index, spec)]
        events = compute_events(home, index, ids, version=__version__)
    finally:
        index.close()
    summary = {"runs": len(ids), "events": len(events), "url": url,
               "path": None if output is None else str(output)}  # fmt: skip
    if url:
        post_events(events, url, api_key=os.environ.get("OPENLINEAGE_API_KEY") or None)
    else:
        lines = "".join(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
        if output is None and not as_json:
            _write(None, lines.encode())
            return
        if output is not None:
            _write(output, lines.encode())
    if as_json:
        emit_json(summary if url or output else {**summary, "events_list": events})
        return
    where = f"posted to {url}" if url else f"wrote {output}"
    console.print(f"{where}: {len(events)} event(s) of {len(ids)} run(s)", markup=False)
