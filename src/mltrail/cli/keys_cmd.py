"""``mltrail keys``: list the ledger's keys and rotate the signing key."""

from __future__ import annotations

from pathlib import Path

import click
from rich.table import Table

from mltrail.cli.author_keys_cmd import new_key, register, revoke
from mltrail.cli.output import (
    console,
    emit_json,
    err_console,
    json_option,
    open_from,
)
from mltrail.cli.server_ledger import require_server_ledger, server_ledger_options
from mltrail.cli.typed_text import typed
from mltrail.errors import InputError
from mltrail.ledger.rotation import RotationResult, rotate_home_key

__all__ = ["keys"]


@click.group()
def keys() -> None:
    """Signing keys: which were valid when, rotation, and author keys.

    The ledger's LOG key signs checkpoints and key records; AUTHOR keys (one
    per person or CI job, registered to an identity) sign only their own
    entries.

    \b
    Examples:
      mltrail keys list
      mltrail keys new --out bob.key
      mltrail keys register --key-file bob.key --identity bob
    """


@keys.command(name="list")
@json_option
@click.pass_context
def list_keys(ctx: click.Context, as_json: bool) -> None:
    """List every key the ledger added, with the seqs it was valid for.

    Identity is empty for a log key and names the user an author key signs for.

    \b
    Examples:
      mltrail keys list
      mltrail keys list --json
    """
    home = open_from(ctx)
    ring = home.ledger.keys()
    rows = [
        {
            "key": k,
            "identity": s.identity,
            "role": "log" if s.identity is None else "author",
            "added_seq": max(s.added_seq, 0),
            "revoked_seq": s.revoked_seq,
            "status": "valid" if s.revoked_seq is None else "revoked",
        }
        for k, s in ring.keys.items()
    ]
    if as_json:
        emit_json(rows)
        return
    table = Table(
        "key id", "identity", "added at seq", "revoked at seq", "status", box=None
    )
    for r in rows:
        table.add_row(
            r["key"],
            r["identity"] or "(log key)",
            str(r["added_seq"]),
            "" if r["revoked_seq"] is None else str(r["revoked_seq"]),
            r["status"],
        )
    console.print(table)


@keys.command()
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "id", "vkey", "base64", "pem"]),
    default="text",
    show_default=True,
    help="text: every form below with labels; id, vkey, base64, pem: that form only.",
)
@json_option
@click.pass_context
def export(ctx: click.Context, fmt: str, as_json: bool) -> None:
    """Print the ledger's current public key, for auditors to pin.

    An auditor keeps this outside the ledger home and verifies with it:
    `mltrail verify --trust-key KEY` then needs nothing from the home to know
    which ledger it is (someone able to write the home could replace the key
    named in ledger.json, never this copy). Keys rotated in later stay trusted:
    the pinned key signs the records that add them. Export it right after
    `mltrail init`, and hand it over out of band.

    The forms, all accepted by --trust-key: the key id (hex SHA-256 of the
    public key), the C2SP signed-note verifier key (what witnesses and Go's
    sumdb tools read), the raw public key in base64, and a PEM public key.

    \b
    Examples:
      mltrail keys export
      mltrail keys export --format vkey > ledger.vkey
      mltrail verify --trust-key "$(cat ledger.vkey)"
    """
    from mltrail.core.checkpoint import format_verifier_key
    from mltrail.core.signing import encode_b64
    from mltrail.core.trust import format_public_pem

    home = open_from(ctx)
    ring = home.ledger.keys()
    size = home.ledger.head().size
    valid = ring.valid_keys(size)
    if not valid:
        raise InputError("the ledger has no valid key", hint="mltrail verify")
    rows = [
        {
            "key": key_id,
            "vkey": format_verifier_key(home.ledger.origin, public),
            "base64": encode_b64(public),
            "pem": format_public_pem(public),
            "origin": home.ledger.origin,
            "added_seq": max(ring.keys[key_id].added_seq, 0),
        }
        for key_id, public in valid.items()
    ]
    if as_json:
        emit_json(rows)
        return
    for row in rows:
        if fmt == "text":
            click.echo(
                f"ledger:       {row['origin']}\n"
                f"key id:       {row['key']}\n"
                f"verifier key: {row['vkey']}\n"
                f"public key:   {row['base64']} (Ed25519, base64)\n"
                f"{row['pem']}",
                nl=False,
            )
        else:
            field = {"id": "key", "vkey": "vkey", "base64": "base64", "pem": "pem"}
            click.echo(str(row[field[fmt]]).rstrip("\n"))


@keys.command()
@click.option(
    "--reason",
    default="scheduled rotation",
    show_default=True,
    help="Why the key is rotated (recorded in the ledger).",
)
@click.option(
    "--move-old-key",
    "move_old_key",
    type=click.Path(path_type=Path, dir_okay=False),
    help="Move the revoked private key to this file (outside the home) instead "
    "of destroying it.",
)
@server_ledger_options("Rotate the log key", "log key is rotated")
@json_option
@click.pass_context
def rotate(
    ctx: click.Context,
    reason: str,
    move_old_key: Path | None,
    db_url: str | None,
    ledger: str | None,
    keys_dir: Path | None,
    as_json: bool,
) -> None:
    """Add a new signing key and revoke the current one, in one atomic append.

    Entries signed before the rotation keep verifying; anything signed by the old
    key afterwards fails verification. The new key is written to keys/ (mode 0600,
    encrypted with MLTRAIL_KEY_PASSWORD when set) and becomes the signing key.

    Whoever holds a revoked private key could rewrite the history it signed, so
    the old key file is overwritten and deleted (or moved out of the home with
    --move-old-key). Private keys of keys revoked earlier that are still in
    keys/ are destroyed too. A key file outside the home (init --key) is left to
    you, with a warning.

    \b
    Examples:
      mltrail keys rotate --reason "laptop lost"
      mltrail keys rotate --move-old-key /media/offline/old-ledger.key
      mltrail keys rotate --db postgresql://postgres@db/audit --ledger team-a \\
          --keys /etc/mltrail/keys

    With --db and --ledger it rotates the log key of a team server's ledger
    (the key file <keys>/<ledger>.key); a running `mltrail server` signs with
    the new key from its next write on. Clients pin the new key by themselves:
    the log proves the rotation (its key.added is signed by the old key).
    """
    if db_url is not None or ledger is not None:
        _rotate_server_key(db_url, ledger, keys_dir, reason, move_old_key, as_json)
        return
    from mltrail.ledger.keystore import key_password

    home = open_from(ctx, writable=True, local_only="keys rotate")
    result = rotate_home_key(
        home,
        reason=typed(home, reason) or reason,
        password=key_password(),
        move_old_key_to=move_old_key,
    )
    home.checkpoint()
    if as_json:
        emit_json(
            {
                "revoked": result.revoked,
                "added": result.added,
                "old_key_file": str(result.old_key_file),
                "old_key": result.disposal,
                "moved_to": str(result.moved_to) if result.moved_to else None,
                "swept": [str(p) for p in result.swept],
            }
        )
        return
    console.print(
        f"revoked {result.revoked[:16]}...; new signing key {result.added[:16]}..."
    )
    _say_disposal(result)


def _rotate_server_key(
    db_url: str | None,
    ledger: str | None,
    keys_dir: Path | None,
    reason: str,
    move_old_key: Path | None,
    as_json: bool,
) -> None:
    db_url, ledger = require_server_ledger(
        db_url,
        ledger,
        doing="rotating a server ledger's log key",
        example="mltrail keys rotate",
    )
    from mltrail.server.control import default_keys_dir, rotate_log_key

    result = rotate_log_key(
        db_url,
        ledger,
        keys_dir or default_keys_dir(),
        reason=reason,
        move_old_key_to=move_old_key,
    )
    if as_json:
        emit_json(result)
        return
    console.print(
        f"ledger {ledger}: revoked log key {result['revoked'][:16]}...; new log key "
        f"{result['added'][:16]}... in {result['key_file']}"
    )
    err_console.print(
        "a running server signs with the new key from its next write on; clients "
        "pin it when they next contact the server"
    )
    if move_old_key is not None:
        err_console.print(
            f"warning: the revoked log key was moved to {move_old_key}; whoever "
            "holds it can sign what clients will refuse only once they saw the "
            "rotation: keep it offline, or destroy it",
            style="yellow",
        )


def _say_disposal(result: RotationResult) -> None:
    old = result.old_key_file
    if result.disposal == "destroyed":
        err_console.print(f"the revoked private key {old} was overwritten and deleted")
    elif result.disposal == "moved":
        err_console.print(
            f"warning: the revoked private key was moved to {result.moved_to}; whoever "
            "holds it can rewrite the history it signed: keep it offline, or destroy it",
            style="yellow",
        )
    else:
        err_console.print(
            f"warning: the revoked private key {old} lies outside the home and was "
            "left there; destroy it (whoever holds it can rewrite the history it "
            "signed)",
            style="yellow",
        )
    for path in result.swept:
        err_console.print(f"also destroyed {path}, the private key of a revoked key")


keys.add_command(new_key)
keys.add_command(register)
keys.add_command(revoke)
