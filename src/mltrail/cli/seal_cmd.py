"""``mltrail seal``: copy the ledger to write-once storage; ``seal status``, ``seal configure``."""

from __future__ import annotations

import click

from mltrail.cli.output import console, emit_json, json_option, open_from
from mltrail.core.seal import parse_retention
from mltrail.errors import InputError
from mltrail.storage.worm import open_worm
from mltrail.values import replace

__all__ = ["seal"]

_to_option = click.option(
    "--to",
    "url",
    metavar="URL",
    help="s3://BUCKET/PREFIX (a bucket with Object Lock) or a folder "
    "(default: MLTRAIL_SEAL_TARGET, else seal_target in ledger.json).",
)
_retain_option = click.option(
    "--retain",
    metavar="PERIOD",
    help="Keep sealed objects this long (COMPLIANCE mode on S3): 7y, 18m, 400d; "
    "six months at least (default: seal_retain in ledger.json).",
)


@click.group(invoke_without_command=True)
@_to_option
@_retain_option
@json_option
@click.pass_context
def seal(
    ctx: click.Context, url: str | None, retain: str | None, as_json: bool
) -> None:
    """Seal the records since the last seal to write-once storage.

    \b
    Each seal writes one segment: the records since the last sealed
    checkpoint (their canonical bytes), the newest signed checkpoint, its
    timestamp and cosignature evidence, and a manifest with their SHA-256,
    written last. On S3 every object is put with Object Lock in COMPLIANCE
    mode until the retention ends: nobody can delete it or shorten its
    retention, the bucket's owner included. In a folder, files are made
    read-only. Running it twice adds nothing; a seal that was interrupted is
    finished by the next. Blobs are not sealed (they may have to be purged).
    `mltrail verify --against-seals` then checks the ledger against them.

    \b
    Examples:
      mltrail seal --to s3://audit-worm/team-a --retain 7y
      mltrail seal --to /mnt/worm/team-a --retain 10y
      mltrail seal configure --to s3://audit-worm/team-a --retain 7y
      mltrail seal                  # to the configured target
      mltrail seal status
    """
    if ctx.invoked_subcommand is not None:
        if url or retain or as_json:
            raise InputError(
                "give --to, --retain and --json after the subcommand",
                hint=f"mltrail seal {ctx.invoked_subcommand} --help",
            )
        return
    from mltrail.evidence.seals import configured_target, seal_ledger

    home = open_from(
        ctx, local_only="seal"
    )  # read-only: sealing writes nothing into the ledger
    worm, retention = configured_target(home, url, retain)
    result = seal_ledger(home, worm, retention)
    if as_json:
        emit_json(result.to_dict())
        return
    if not result.written:
        console.print(
            f"nothing to seal: records 0 to {result.sealed_size - 1} are sealed at "
            f"{result.url}",
            markup=False,
        )
        return
    for name in result.written:
        note = " (finished an interrupted seal)" if name == result.resumed else ""
        held = " under legal hold" if name in result.held else ""
        console.print(f"sealed segment {name}{held}{note}", markup=False)
    until = f", retained until {result.retain_until}" if result.retain_until else ""
    console.print(
        f"records 0 to {result.sealed_size - 1} are sealed at {result.url}{until} "
        f"({result.records} new records, {result.bytes:,} bytes)",
        markup=False,
    )


@seal.command()
@_to_option
@json_option
@click.pass_context
def status(ctx: click.Context, url: str | None, as_json: bool) -> None:
    """What is sealed: segments, up to which record, unfinished seals, retention.

    \b
    Examples:
      mltrail seal status
      mltrail seal status --to s3://audit-worm/team-a --json
    """
    from mltrail.evidence.seals import seal_status, seal_store

    home = open_from(ctx, local_only="seal")
    worm = seal_store(home, url)
    info = seal_status(home, worm)
    if as_json:
        emit_json(info)
        return
    console.print(
        f"{info['url']}: {info['segments']} segment(s), records 0 to "
        f"{info['sealed_size'] - 1} sealed; {info['unsealed_records']} record(s) "
        "not sealed yet",
        markup=False,
    )
    if info["last_segment"]:
        console.print(
            f"  last segment {info['last_segment']} sealed {info['last_sealed_at']}, "
            f"retained until {info['retain_until'] or '(no retention: a folder)'}",
            markup=False,
        )
    for name in info["unfinished"]:
        console.print(
            f"  unfinished: {name} (`mltrail seal` finishes it)", markup=False
        )


@seal.command()
@click.option("--to", "url", required=True, metavar="URL", help="Where to seal.")
@click.option(
    "--retain", required=True, metavar="PERIOD", help="e.g. 7y (six months at least)."
)
@json_option
@click.pass_context
def configure(ctx: click.Context, url: str, retain: str, as_json: bool) -> None:
    """Save the seal target and retention in ledger.json (used when --to is not given).

    \b
    Example:
      mltrail seal configure --to s3://audit-worm/team-a --retain 7y
    """
    from mltrail.config import Settings

    parse_retention(retain)
    worm = open_worm(url)
    home = open_from(ctx, writable=True, local_only="seal")
    settings = replace(
        Settings.load(home.path), seal_target=worm.url, seal_retain=retain
    )
    settings.save(home.path)
    if as_json:
        emit_json({"seal_target": worm.url, "seal_retain": retain})
        return
    console.print(f"seal target {worm.url}, retention {retain}", markup=False)


@seal.command(name="verify")
@click.argument("url", metavar="URL")
@click.option(
    "--trust-key",
    "trust_keys",
    multiple=True,
    required=True,
    metavar="KEY",
    help="The ledger's key, as `mltrail keys export` prints it (a key id, "
    "verifier key, base64 or PEM public key, or a file holding one). Repeatable.",
)
@click.option(
    "--origin",
    metavar="ORIGIN",
    help="The ledger's origin (default: the one the sealed manifests name).",
)
@json_option
@click.pass_context
def verify_seals(
    ctx: click.Context,
    url: str,
    trust_keys: tuple[str, ...],
    origin: str | None,
    as_json: bool,
) -> None:
    """Check the seals at URL alone: no ledger home is read.

    \b
    For an auditor who holds the seal location and the ledger's public key:
    the segments are walked from record 0, every record's signature and every
    checkpoint's (by a trusted key) are checked, segments beside each other
    must seal the same records, and objects overwritten, deleted or not locked
    in COMPLIANCE mode are named. Exit 0 when the seals verify, 3 otherwise.
    `mltrail verify --seals URL` then holds a live ledger to them.

    \b
    Examples:
      mltrail seal verify s3://audit-worm/team-a --trust-key ledger.vkey
      mltrail seal verify /mnt/worm/team-a --trust-key 3f9a... --json
    """
    from rich.text import Text

    from mltrail.cli.printing import one_line
    from mltrail.cli.verify_cmd import resolve_trusted_keys
    from mltrail.evidence.seal_audit import audit_seals, sealed_origin

    worm = open_worm(url)
    origin = origin or sealed_origin(worm)
    check = audit_seals(worm, origin, resolve_trusted_keys(trust_keys, origin))
    ok = check.ok and check.anchor is not None
    if as_json:
        emit_json(
            {
                "ok": ok,
                "url": check.url,
                "origin": origin,
                "segments": check.segments,
                "sealed_size": check.sealed_size,
                "anchor": check.anchor.description if check.anchor else None,
                "problems": [p.to_dict() for p in check.problems],
            }
        )
    else:
        verdict = (
            f"OK: {check.segments} segment(s), records 0 to {check.sealed_size - 1}"
            if ok
            else f"FAILED: the seals at {check.url} do not verify"
        )
        console.print(verdict, style="green" if ok else "bold red", markup=False)
        if check.anchor is not None:
            console.print(
                Text.assemble("  anchor: ", one_line(check.anchor.description))
            )
        for problem in check.problems:
            console.print(Text.assemble(f"  {problem.severity}: ", one_line(problem)))
    ctx.exit(0 if ok else 3)
