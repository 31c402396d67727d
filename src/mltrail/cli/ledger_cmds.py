"""``init``, ``append``, ``log``, ``show``, ``checkpoint``, ``prove``."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import click

from mltrail.capture.machine.identity import describe_user
from mltrail.cli.output import (
    COUNT,
    AppState,
    console,
    emit_json,
    json_option,
    open_from,
    open_index,
)
from mltrail.cli.reads import inclusion_bundle, show_target
from mltrail.cli.typed_text import typed_body
from mltrail.core.merkle import range_root, verify_consistency
from mltrail.errors import InputError
from mltrail.ledger.home import Home, init_home
from mltrail.storage.registry import is_server_url

__all__ = ["COMMANDS"]


@click.command()
@click.option(
    "--origin",
    help="Ledger name bound into every checkpoint "
    "(default: mltrail.local/<random>), e.g. example.com/ml-team-a.",
)
@click.option(
    "--key",
    "key_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Use this existing Ed25519 private key (PEM or OpenSSH) instead of "
    "generating one. Encrypted keys read MLTRAIL_KEY_PASSWORD.",
)
@click.option("--force", is_flag=True, help="Allow a ledger inside a git work tree.")
@click.option(
    "--store",
    "store_url",
    help="Keep the ledger in this store (default: $MLTRAIL_STORE_URL, else "
    "ledger.db in the home): sqlite:///FILE or postgresql://USER@HOST/DB (set up "
    "by `mltrail db init`; no password in the URL). Keys stay in the home. "
    "An mltrail server's https://HOST/ledgers/NAME (or MLTRAIL_URL) makes a "
    "client-mode home holding only your key.",
)
@click.option(
    "--trust-key",
    "trust_key",
    help="Client mode: pin this log key id of the server (from its admin) "
    "instead of trusting the keys it names on first contact "
    "(MLTRAIL_TRUST_KEY; comma-separated for several).",
)
@json_option
@click.pass_context
def init(
    ctx: click.Context,
    origin: str | None,
    key_path: Path | None,
    force: bool,
    store_url: str | None,
    trust_key: str | None,
    as_json: bool,
) -> None:
    """Create a ledger at the home with a new signing key and its genesis record.

    Safe to run twice: an existing ledger is left untouched.

    \b
    Examples:
      mltrail init
      MLTRAIL_HOME=/srv/audit mltrail init --origin example.com/credit-models
      mltrail init --key ~/.ssh/id_ed25519
      mltrail init --store postgresql://mltrail_app@db.example.com/audit
      MLTRAIL_URL=https://mltrail.example.com/ledgers/team-a mltrail init
    """
    state: AppState = ctx.obj
    env = {**os.environ, "MLTRAIL_TRUST_KEY": trust_key} if trust_key else None
    result = init_home(
        state.home,
        origin=origin,
        key_path=key_path,
        force=force,
        store=store_url,
        env=env,
    )
    if as_json:
        emit_json(
            {
                "home": str(result.home),
                "created": result.created,
                "origin": result.origin,
                "key": result.key_id,
                "store": result.store,
            }
        )
    elif result.created and is_server_url(result.store):
        console.print(
            f"joined ledger {result.origin} kept by {result.store}\n"
            f"your key {result.key_id[:16]}... is in {result.home}/keys (mode 0600); "
            "register it with `mltrail keys register`"
        )
    elif result.created:
        console.print(
            f"created ledger {result.origin} at {result.home}\n"
            f"signing key {result.key_id[:16]}... (keys/, mode 0600)"
            + ("" if result.store == "ledger.db" else f"\nstore {result.store}")
        )
    else:
        console.print(
            f"a ledger already exists at {result.home} ({result.origin}); "
            "nothing changed"
        )


@click.command()
@click.option("--kind", required=True, help="Entry kind, e.g. note.")
@click.option(
    "--body",
    "body_text",
    required=True,
    help="JSON object; @FILE reads a file, - reads stdin.",
)
@click.option(
    "--run",
    help="The run the entry belongs to: its id, a unique prefix of 4+ characters, "
    "or its name (the latest run of that name). It must exist.",
)
@click.option(
    "--attach",
    "attachments",
    multiple=True,
    type=click.Path(path_type=Path, exists=True, dir_okay=False),
    help="Store a file as a blob and list it in body.attachments (repeatable).",
)
@json_option
@click.pass_context
def append(
    ctx: click.Context,
    kind: str,
    body_text: str,
    run: str | None,
    attachments: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Sign and append one entry. All or nothing: bad input writes nothing.

    \b
    Examples:
      mltrail append --kind note --body '{"text": "approved for production"}'
      mltrail append --kind note --body @note.json --attach review.pdf
      echo '{"text": "from a pipe"}' | mltrail append --kind note --body -
      mltrail append --kind note --run baseline --body '{"text": "lr too high"}'
    """
    from mltrail.cli.body import read_attachment, read_body  # (not for reading)

    body = read_body(body_text)
    home = open_from(ctx, writable=True)
    if run is not None:
        run = _existing_run(home, run)
    if attachments:
        refs = [
            {**home.ledger.put_blob(read_attachment(p)), "name": p.name}
            for p in attachments
        ]
        body["attachments"] = [*body.get("attachments", []), *refs]
    record = home.ledger.append(kind, typed_body(home, body), run=run)
    if as_json:
        emit_json(record.to_dict())
    else:
        console.print(f"appended seq {record.seq} ({kind})")


def _existing_run(home: Home, ref: str) -> str:
    """The id of the run ``ref`` names (id, prefix or name).

    Raises:
        InputError: no such run (the message names close ids and names).
    """
    from mltrail.audit.query import resolve_run
    from mltrail.record.recorder import check_run_id

    try:
        return resolve_run(open_index(home), ref)
    except InputError as e:
        check_run_id(ref, source="--run")  # a malformed id says so first
        e.hint = "nothing was appended; " + (e.hint or "see `mltrail runs`")
        raise


def _summary(record: dict[str, Any]) -> str:
    body = record["entry"]["body"]
    text = (
        body.get("text")
        or body.get("name")
        or body.get("key")
        or body.get("reason")
        or json.dumps(body)
    )
    return str(text).replace("\n", " ")[:80]


@click.command(name="log")
@click.option("--kind", help="Only entries of this kind.")
@click.option("--run", help="Only entries of this run.")
@click.option(
    "--from",
    "start",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="First seq.",
)
@click.option(
    "--limit", type=click.IntRange(1, COUNT.max), help="At most this many records."
)
@json_option
@click.pass_context
def log_cmd(
    ctx: click.Context,
    kind: str | None,
    run: str | None,
    start: int,
    limit: int | None,
    as_json: bool,
) -> None:
    """List records, oldest first.

    \b
    Examples:
      mltrail log
      mltrail log --kind note --json | jq '.[].entry.body.text'
    """
    home = open_from(ctx)
    rows = []
    for record in home.ledger.records(start):
        entry = record.entry
        if (kind and entry.kind != kind) or (run and entry.run != run):
            continue
        rows.append(record.to_dict())
        if limit is not None and len(rows) >= limit:
            break
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    from mltrail.cli.printing import one_line

    table = Table("seq", "time", "kind", "run", "actor", "summary", box=None)
    for r in rows:
        e = r["entry"]
        table.add_row(
            str(r["seq"]),
            e["time"][:19] + "Z",
            e["kind"],
            e.get("run") or "",
            # one line each: a value cannot add a row (ADR 0040)
            one_line(
                describe_user(e["actor"].get("user"), e["actor"].get("claimed_user"))
            ),
            one_line(_summary(r)),
        )
    console.print(table)


@click.command()
@click.argument("target", metavar="RUN|SEQ")
@click.option("--full", is_flag=True, help="Do not truncate large text blobs.")
@json_option
@click.pass_context
def show(ctx: click.Context, target: str, full: bool, as_json: bool) -> None:
    """Show a run in full, or one record with its blobs resolved.

    RUN is a run id, a prefix of 4+ characters, or a run name (its latest run):
    who started it and when, code, environment, hardware, params, data
    manifests, steps, fine-tune, outputs, metrics and exit status, then the
    model card, open flags and approvals of its outputs. A number is a
    record's seq.

    \b
    Examples:
      mltrail show baseline
      mltrail show 01a21107-c022 --json
      mltrail show 0                       # record 0, blobs inlined
    """
    show_target(lambda: open_from(ctx), target, full, as_json)


@click.command()
@click.option(
    "--adopt",
    is_flag=True,
    help="For a ledger written by mltrail 0.1: verify the whole ledger and, if "
    "only the coverage of its newest records is missing, sign a checkpoint of them.",
)
@click.option(
    "--tsa",
    metavar="URL",
    help="Also get an RFC 3161 timestamp of it from this TSA and keep it.",
)
@click.option(
    "--cosigned",
    type=click.Path(path_type=Path, dir_okay=False, allow_dash=True),
    metavar="FILE",
    help="Store a witness's cosignatures of one of this ledger's checkpoints "
    "(the cosigned note, or the lines a witness answered with; - reads stdin).",
)
@json_option
@click.pass_context
def checkpoint(
    ctx: click.Context,
    adopt: bool,
    tsa: str | None,
    cosigned: Path | None,
    as_json: bool,
) -> None:
    """Print the signed checkpoint (C2SP tlog-checkpoint) of the whole ledger.

    Every append stores the checkpoint of its batch; this prints the newest one
    after checking it (signed by a valid key, covering every record, its root
    matching the stored tree) and moves the witness file to it. Keep a copy
    outside the home (`mltrail verify --trust-checkpoint FILE` checks the ledger
    still extends it), publish it, or let a witness cosign it: that is what makes
    cutting records from the end, or rolling the whole home back, detectable.
    --tsa URL has a TSA stamp it (proof of when, see `mltrail timestamp`);
    --cosigned FILE keeps a witness's cosignature (see `mltrail witness`).

    \b
    Examples:
      mltrail checkpoint > checkpoints/$(date +%F).cp
      mltrail checkpoint --tsa https://freetsa.org/tsr
      mltrail checkpoint --cosigned cosigned.cp
      mltrail checkpoint --adopt          once, on a ledger from mltrail 0.1
    """
    from mltrail.cli import evidence_cmds

    home = open_from(ctx, writable=True)
    if cosigned is not None:
        evidence_cmds.import_cosigned_file(home, cosigned)
    signed = home.checkpoint(adopt=adopt)
    stamp = evidence_cmds.stamp_newest_checkpoint(home, tsa) if tsa else None
    if as_json:
        cp = signed.checkpoint
        out = {
            "origin": cp.origin,
            "size": cp.size,
            "root": cp.root.hex(),
            "note": signed.to_text(),
        }
        emit_json({**out, "timestamp": stamp} if stamp else out)
    else:
        click.echo(signed.to_text(), nl=False)


@click.command()
@click.argument("seq", type=int, required=False)
@click.option(
    "--consistency",
    nargs=2,
    type=int,
    metavar="OLD NEW",
    help="Prove the tree of OLD records is a prefix of the tree of NEW.",
)
@json_option
@click.pass_context
def prove(
    ctx: click.Context,
    seq: int | None,
    consistency: tuple[int, int] | None,
    as_json: bool,
) -> None:
    """Print an RFC 9162 inclusion proof of SEQ to the latest checkpoint.

    \b
    Examples:
      mltrail prove 41                  record 41 is in the signed tree
      mltrail prove --consistency 10 50 the log of 50 extends the log of 10
    """
    home = open_from(ctx)
    if consistency:
        out = _consistency_bundle(home, *consistency)
    elif seq is not None:
        out = inclusion_bundle(home, seq)
    else:
        raise InputError("give a SEQ, or --consistency OLD NEW")
    if as_json:
        emit_json(out)
    else:
        for key, value in out.items():
            if isinstance(value, list):
                click.echo(f"{key}:")
                click.echo("".join(f"  {v}\n" for v in value), nl=False)
            else:
                click.echo(
                    f"{key}: {value}" if "\n" not in str(value) else f"{key}:\n{value}"
                )


def _consistency_bundle(home: Home, old: int, new: int) -> dict[str, Any]:
    proof = home.ledger.prove_consistency(old, new)
    node = home.ledger.store.node
    old_root, new_root = range_root(0, old, node), range_root(0, new, node)
    verify_consistency(old, new, old_root, new_root, proof.hashes)
    return {
        "type": "consistency",
        "origin": home.ledger.origin,
        "old_size": old,
        "new_size": new,
        "old_root": old_root.hex(),
        "new_root": new_root.hex(),
        "proof": [h.hex() for h in proof.hashes],
    }


COMMANDS = (init, append, log_cmd, show, checkpoint, prove)
