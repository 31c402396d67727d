"""``mltrail keys``: list the ledger's keys and rotate the signing key."""

from __future__ import annotations

import os

import click
from rich.table import Table

from mltrail.cli.output import console, emit_json, json_option, open_from
from mltrail.home import rotate_home_key

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """Signing keys: which were valid when, and rotation."""


@keys.command(name="list")
@json_option
@click.pass_context
def list_keys(ctx: click.Context, as_json: bool) -> None:
    """List every key the ledger added, with the seqs it was valid for."""
    home = open_from(ctx)
    ring = home.ledger.keys()
    rows = [
        {
            "key": k,
            "added_seq": max(s.added_seq, 0),
            "revoked_seq": s.revoked_seq,
            "status": "valid" if s.revoked_seq is None else "revoked",
        }
        for k, s in ring.keys.items()
    ]
    if as_json:
        emit_json(rows)
        return
    table = Table("key id", "added at seq", "revoked at seq", "status", box=None)
    for r in rows:
        table.add_row(
            r["key"],
            str(r["added_seq"]),
            "" if r["revoked_seq"] is None else str(r["revoked_seq"]),
            r["status"],
        )
    console.print(table)


@keys.command()
@click.option(
    "--reason",
    default="scheduled rotation",
    show_default=True,
    help="Why the key is rotated (recorded in the ledger).",
)
@json_option
@click.pass_context
def rotate(ctx: click.Context, reason: str, as_json: bool) -> None:
    """Add a new signing key and revoke the current one, in one atomic append.

    Entries signed before the rotation keep verifying; anything signed by the old
    key afterwards fails verification. The new key is written to keys/ (mode 0600,
    encrypted with MLTRAIL_KEY_PASSWORD when set) and becomes the signing key.
    """
    home = open_from(ctx, writable=True)
    password = os.environ.get("MLTRAIL_KEY_PASSWORD")
    old = home.ledger.signer.key_id if home.ledger.signer else ""
    new = rotate_home_key(
        home, reason=reason, password=password.encode() if password else None
    )
    home.checkpoint()
    if as_json:
        emit_json({"revoked": old, "added": new})
    else:
        console.print(f"revoked {old[:16]}...; new signing key {new[:16]}...")
