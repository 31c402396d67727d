"""``mltrail export`` and ``mltrail verify-bundle``: offline proof bundles (ADR 0016)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from mltrail.cli.output import (
    console,
    derived_index,
    emit_json,
    json_option,
    open_from,
    raise_if_tampered,
)
from mltrail.cli.printing import one_line
from mltrail.errors import InputError, IntegrityError, StoreError

__all__ = ["export", "verify_bundle"]

_MAX_BUNDLE = 2 << 30
"""Largest bundle file read (2 GiB): blobs make bundles large, not unbounded."""


@click.command()
@click.argument("ref", metavar="RUN|MODEL")
@click.option(
    "-o",
    "--output",
    type=click.Path(path_type=Path, dir_okay=False),
    required=True,
    metavar="FILE",
    help="Where to write the bundle (JSON, canonical bytes).",
)
@click.option(
    "--no-blobs",
    is_flag=True,
    help="Carry only the blobs' hashes and sizes, not their bytes.",
)
@click.option(
    "--consistent-with",
    "consistent_with",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="A signed checkpoint of this ledger someone kept (an auditor's, saved from "
    "`mltrail checkpoint` or an earlier bundle): carry the RFC 9162 consistency "
    "proof from it to the bundle's checkpoint, for `verify-bundle "
    "--trust-checkpoint`. Exit 3 when this ledger does not extend it (a fork or "
    "rewrite). Repeatable.",
)
@json_option
@click.pass_context
def export(
    ctx: click.Context,
    ref: str,
    output: Path,
    no_blobs: bool,
    consistent_with: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Write a self-contained proof bundle of a run or a model and its lineage.

    \b
    The bundle holds the records of the run (or of the runs that made the model),
    its whole upstream lineage (data steps, base models), the promotions,
    approvals, descriptions, flags and notes about them, the ledger's key
    records, the blobs they reference (or only their hashes with --no-blobs),
    an inclusion proof of each record to the newest signed checkpoint, and the
    RFC 3161 timestamps and witness cosignatures kept about it. Anyone can
    check it without the ledger: `mltrail verify-bundle FILE`, or the
    standalone examples/verify_bundle.py. Its digest is printed: quote it.

    \b
    Examples:
      mltrail export model.safetensors -o model-proof.json
      mltrail export run:7f3e2a... -o run.json --no-blobs
      mltrail export train-v2 -o bundle.json --json
      mltrail export model.safetensors -o proof.json --consistent-with audit-2026-06.cp
    """
    from mltrail.audit.refs import resolve_node
    from mltrail.cli.verify_cmd import read_checkpoint_file
    from mltrail.core.bundle import compute_bundle_digest
    from mltrail.core.canonical import canonical_bytes
    from mltrail.evidence.bundle import export_bundle

    kept = [(str(p), read_checkpoint_file(p)) for p in consistent_with]
    home = open_from(ctx)

    def build() -> tuple[str, dict[str, Any]]:
        index = derived_index(home)
        try:
            _refuse_unreadable(index.skipped)
            node = resolve_node(index, ref)
            bundle = export_bundle(
                home.ledger, index, node, blobs=not no_blobs, consistent_with=kept
            )
        finally:
            index.close()
        return node, bundle

    # the index, the records chosen, their proofs and the checkpoint they lead
    # to, all of one state of the store: on a busy server an append between
    # two reads left the newest checkpoint read not the head's (ADR 0016,
    # amendment of 2026-12-08)
    try:
        node, bundle = home.ledger.store.read_in_snapshot(build)
    except StoreError as e:
        raise_if_tampered(home, e, refusing="write the bundle")
        raise
    data = canonical_bytes(bundle)
    _refuse_unless_it_verifies(data)
    from mltrail.cli.out_file import write_output_file

    try:
        write_output_file(output, data)
    except OSError as e:
        raise InputError(f"cannot write {output}: {e.strerror or e}") from e
    digest = compute_bundle_digest(bundle)
    summary = {
        "path": str(output),
        "digest": digest,
        "subject": node,
        "records": len(bundle["records"]),
        "blobs": len(bundle["blobs"]),
        "blobs_carried": sum(b["data"] is not None for b in bundle["blobs"]),
        "evidence": sum(len(e["items"]) for e in bundle["evidence"]),
        "consistent_with": [_size_of(text) for _, text in kept],
        "bytes": len(data),
    }
    if as_json:
        emit_json(summary)
        return
    console.print(
        f"wrote {output}: {summary['records']} record(s) of {node}, "
        f"{summary['blobs_carried']}/{summary['blobs']} blob(s) carried, "
        f"{summary['evidence']} timestamp(s)/cosignature(s), {len(data):,} bytes",
        markup=False,
    )
    for (where, _), old in zip(kept, summary["consistent_with"], strict=True):
        console.print(
            f"consistent with {where} (size {old}): proof to size "
            f"{_size_of(bundle['checkpoint'])} carried",
            markup=False,
        )
    console.print(f"digest {digest}", markup=False)


_ALTERED = frozenset({"inclusion", "chain", "signature", "blob", "digest", "record"})
"""Bundle problems that mean bytes were altered in the home (a record, its
proof, a blob): what a bundle must never carry out of it. Others a bundle
exists to show its recipient (an author key signing as another user) or that
come from the options (--no-blobs leaves a manifest by hash only)."""


def _refuse_unreadable(skipped: list[int]) -> None:
    """No bundle from a ledger some of whose records cannot be read: the index
    it is chosen through leaves them out, so it would lack whatever of its
    subject they held, and its own check could not tell (exit 3)."""
    if skipped:
        shown = ", ".join(map(str, skipped[:5])) + (" ..." if len(skipped) > 5 else "")
        raise IntegrityError(
            f"refusing to write the bundle: record(s) at seq {shown} cannot be "
            "read, so the bundle could leave out records of its subject",
            hint="run `mltrail verify`: the ledger was altered or damaged",
        )


def _refuse_unless_it_verifies(data: bytes) -> None:
    """Check the bundle as its recipient would (keys from the bundle itself):
    one that carries an altered record, a replaced blob or a proof that fails
    is not handed out (exit 3) for the recipient to find out."""
    from datetime import UTC, datetime

    from mltrail.core.bundle import BundlePolicy, verify_bundle_bytes

    report = verify_bundle_bytes(data, BundlePolicy(now=datetime.now(UTC)))
    altered = [p for p in report.errors if p.code in _ALTERED]
    if altered:
        first = altered[0]
        raise IntegrityError(
            f"refusing to write the bundle: it fails its own verification ({first})",
            hint="run `mltrail verify`: the ledger was altered",
        )


@click.command(name="verify-bundle")
@click.argument("path", type=click.Path(path_type=Path, dir_okay=False))
@click.option(
    "--trust-key",
    "trust_keys",
    multiple=True,
    metavar="KEY",
    help="The ledger key to trust (key id, verifier key, base64 or PEM public key, "
    "or a file holding one, as `mltrail keys export` prints). Repeatable. "
    "Without it the keys come from the bundle itself.",
)
@click.option(
    "--tsa-ca",
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="CA certificate(s) (PEM) the TSA of a timestamp must chain to; a TSA "
    "certificate in the file pins the TSA (only tokens it signed count).",
)
@click.option(
    "--witness-key",
    "witness_keys",
    multiple=True,
    metavar="VKEY",
    help="Require a cosignature by this witness (C2SP verifier key, or a file). "
    "Repeatable.",
)
@click.option(
    "--trust-checkpoint",
    "trust_checkpoints",
    multiple=True,
    type=click.Path(path_type=Path, dir_okay=False),
    metavar="FILE",
    help="A signed checkpoint of the ledger you kept (saved from `mltrail "
    "checkpoint` or an earlier bundle): the bundle must prove its checkpoint "
    "extends it (exported with --consistent-with FILE). Repeatable.",
)
@click.option("--quiet", "-q", is_flag=True, help="Print only the verdict.")
@json_option
@click.pass_context
def verify_bundle(
    ctx: click.Context,
    path: Path,
    trust_keys: tuple[str, ...],
    tsa_ca: Path | None,
    witness_keys: tuple[str, ...],
    trust_checkpoints: tuple[Path, ...],
    quiet: bool,
    as_json: bool,
) -> None:
    """Check a proof bundle with no ledger; exit 0 when intact, 3 when not.

    \b
    Checks every record's canonical bytes, its signature by a key valid at its
    seq (the bundle's key.added / key.revoked records), the prev links between
    neighbouring records, each inclusion proof to the checkpoint, the
    checkpoint's signature and origin, every blob's hash, and the RFC 3161
    timestamps (against --tsa-ca) and cosignatures (of --witness-key) with the
    consistency proof of the checkpoint they are about. With --trust-checkpoint,
    the bundle's checkpoint must extend each checkpoint you kept (an RFC 9162
    consistency proof the bundle carries): a fork or rewrite of the ledger by
    its key holder fails, exit 3. Any edit fails, naming the record. Needs no
    MLTRAIL_HOME and writes nothing.

    \b
    Examples:
      mltrail verify-bundle model-proof.json --trust-key ledger.vkey
      mltrail verify-bundle bundle.json --tsa-ca tsa-root.pem --json
      mltrail verify-bundle proof.json --trust-key ledger.vkey \\
          --trust-checkpoint audit-2026-06.cp
    """
    from datetime import UTC, datetime

    from mltrail.capture.run.userfiles import read_user_file
    from mltrail.cli.evidence_cmds import load_tsa_ca, parse_witness_keys
    from mltrail.cli.verify_cmd import read_checkpoint_file
    from mltrail.core.bundle import BundlePolicy, verify_bundle_bytes

    kept = tuple((str(p), read_checkpoint_file(p)) for p in trust_checkpoints)
    data = read_user_file(path, what="bundle", limit=_MAX_BUNDLE)
    keys, origins = _trusted(trust_keys)
    policy = BundlePolicy(
        trusted_keys=keys,
        trusted_origins=origins,
        tsa_roots=load_tsa_ca(tsa_ca) if tsa_ca else (),
        witness_keys=parse_witness_keys(witness_keys),
        trusted_checkpoints=kept,
        now=datetime.now(UTC),
    )
    report = verify_bundle_bytes(data, policy)
    if as_json:
        emit_json(report.to_dict())
    else:
        from rich.text import Text

        style = "green" if report.ok else "bold red"
        if report.digest:
            console.print(f"digest {report.digest}", markup=False)
        if report.subject:
            console.print(Text.assemble("subject ", one_line(report.subject)))
        # the bundle is untrusted input: one line each, whatever it holds (ADR 0040)
        console.print(one_line(report.verdict(), style))
        if not quiet:
            for anchor in report.anchors:
                where = "outside the bundle" if anchor.external else "from the bundle"
                console.print(
                    Text.assemble(f"  anchor ({where}): ", one_line(anchor.description))
                )
            for problem in report.problems:
                where = f"record {problem.seq}" if problem.seq is not None else "bundle"
                console.print(
                    Text.assemble(
                        f"  {problem.severity}: {where}: ", one_line(problem.message)
                    )
                )
    ctx.exit(0 if report.ok else 3)


def _size_of(text: str) -> int:
    """The size of a checkpoint already read and checked."""
    from mltrail.core.checkpoint import parse_signed_checkpoint

    return parse_signed_checkpoint(text).checkpoint.size


def _trusted(values: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(key ids, ledger origins named by verifier keys) from --trust-key values.

    Raises:
        InputError: a value is no key this can read.
    """
    from mltrail.cli.verify_cmd import parse_key_value

    ids, origins = [], []
    for value in values:
        key = parse_key_value(value, "--trust-key", "trusted key file")
        ids.append(key.key_id)
        if key.name is not None:
            origins.append(key.name)
    return tuple(ids), tuple(origins)
