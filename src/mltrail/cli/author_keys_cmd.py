"""``mltrail keys new|register|revoke``: per-person (author) keys (ADR 0025).

Each person or CI job holds its own Ed25519 key; the ledger's log key registers
it to an identity (the ``actor.user`` its entries carry), with a proof that the
key's holder asked for it. Entries signed by an author key then prove who wrote
them. The commands are added to the ``mltrail keys`` group.
"""

from __future__ import annotations

from pathlib import Path

import click

from mltrail.cli.output import console, emit_json, json_option, open_from
from mltrail.cli.server_ledger import require_server_ledger, server_ledger_options
from mltrail.cli.typed_text import typed
from mltrail.errors import InputError

__all__ = ["new_key", "register", "revoke"]


def _password() -> bytes | None:
    from mltrail.ledger.keystore import key_password

    return key_password()


@click.command(name="new")
@click.option(
    "--out",
    "out",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the new private key (never over an existing file).",
)
@json_option
def new_key(out: Path, as_json: bool) -> None:
    """Make a new Ed25519 key file for one person or CI job.

    The file is PKCS#8 PEM, mode 0600, encrypted with MLTRAIL_KEY_PASSWORD
    when set. Keep it with its owner; the ledger's owner registers its public
    key with `mltrail keys register`. Needs no ledger home.

    \b
    Examples:
      mltrail keys new --out ~/.config/mltrail/bob.key
      mltrail keys new --out ci.key --json
    """
    from mltrail.core.signing import encode_b64
    from mltrail.ledger.keystore import generate_signer, save_signer

    if out.exists():
        raise InputError(f"{out} already exists", hint="choose another --out path")
    signer = generate_signer()
    save_signer(signer, out, _password())
    row = {
        "key": signer.key_id,
        "public_key": encode_b64(signer.public_key),
        "file": str(out),
    }
    if as_json:
        emit_json(row)
        return
    console.print(f"wrote {out}: key {row['key']}\npublic key {row['public_key']}")


@click.command()
@click.option(
    "--key-file",
    "key_file",
    type=click.Path(path_type=Path, dir_okay=False),
    help="The author's private key file (`mltrail keys new`); only its public key "
    "and a proof signed with it go into the ledger. Client mode: the home's key.",
)
@click.option(
    "--identity",
    help="The author's name as entries carry it in actor.user (1 to 200 "
    "characters). Client mode: the token's name.",
)
@click.option(
    "--reason",
    default="registered",
    show_default=True,
    help="Why the key is registered (recorded in the ledger).",
)
@json_option
@click.pass_context
def register(
    ctx: click.Context,
    key_file: Path | None,
    identity: str | None,
    reason: str,
    as_json: bool,
) -> None:
    """Register a person's or CI job's key as an AUTHOR key of the ledger.

    Appends a key.added naming the identity, with the key's proof of
    possession, signed by the home's (log) key. The key may then sign entries
    whose actor.user is IDENTITY and nothing else: no key records, clock
    resets, purges or checkpoints. Verification names any entry it signs for
    another user.

    In client mode (MLTRAIL_URL and MLTRAIL_TOKEN set) it posts the home's own
    key with its proof to the server, for the identity the token names; the
    server's log key signs the key.added.

    \b
    Examples:
      mltrail keys new --out bob.key
      mltrail keys register --key-file bob.key --identity bob
      mltrail keys register --key-file ci.key --identity ci-nightly --json
      MLTRAIL_URL=https://host/ledgers/team-a mltrail keys register
    """
    from mltrail.core.keyring import make_key_proof
    from mltrail.ledger.keystore import load_signer

    author = load_signer(key_file, _password()) if key_file else None
    home = open_from(ctx, writable=True)
    if home.trust is None and (author is None or identity is None):
        raise InputError(
            "--key-file and --identity are needed (outside client mode)",
            hint="mltrail keys register --key-file bob.key --identity bob",
        )
    author = author or home.ledger.signer
    identity = identity or str(home.ledger.actor.get("user", ""))
    assert author is not None
    proof = make_key_proof(author, home.ledger.origin, identity)
    reason = typed(home, reason) or reason
    record = home.ledger.register_key(author.public_key, identity, proof, reason=reason)
    home.checkpoint()
    row = {"seq": record.seq, "key": author.key_id, "identity": identity}
    if as_json:
        emit_json(row)
        return
    console.print(
        f"registered key {author.key_id[:16]}... for {identity!r} (seq {record.seq})"
    )


@click.command()
@click.argument("key_id")
@click.option(
    "--reason", required=True, help="Why the key is revoked (recorded in the ledger)."
)
@server_ledger_options("Revoke an author key", "author key is revoked")
@json_option
@click.pass_context
def revoke(
    ctx: click.Context,
    key_id: str,
    reason: str,
    db_url: str | None,
    ledger: str | None,
    keys_dir: Path | None,
    as_json: bool,
) -> None:
    """Revoke an author key: entries it signs from here on are refused.

    KEY_ID is the full key id (`mltrail keys list`). Entries it signed before
    keep verifying. The ledger's own (log) key is replaced with `mltrail keys
    rotate` instead.

    With --db and --ledger it revokes an author key of a team server's ledger,
    signed by that ledger's log key (<keys>/<ledger>.key): the server's admin's
    work, as clients hold no log key. A running `mltrail server` refuses the
    key's entries from its next write on. Revoke the holder's token too
    (`mltrail tokens revoke`), or they may register a new key.

    \b
    Examples:
      mltrail keys revoke 56475aa7...708c --reason "bob left the team"
      mltrail keys revoke "$KEY" --reason "CI key leaked" --json
      mltrail keys revoke "$KEY" --reason "laptop lost" \\
          --db postgresql://postgres@db/audit --ledger team-a --keys /etc/mltrail/keys
    """
    if db_url is not None or ledger is not None:
        _revoke_server_key(db_url, ledger, keys_dir, key_id, reason, as_json)
        return
    home = open_from(ctx, writable=True, local_only="keys revoke")
    record = home.ledger.revoke_key(key_id, reason=typed(home, reason) or reason)
    home.checkpoint()
    if as_json:
        emit_json({"seq": record.seq, "key": key_id})
        return
    console.print(f"revoked key {key_id[:16]}... (seq {record.seq})")


def _revoke_server_key(
    db_url: str | None,
    ledger: str | None,
    keys_dir: Path | None,
    key_id: str,
    reason: str,
    as_json: bool,
) -> None:
    db_url, ledger = require_server_ledger(
        db_url,
        ledger,
        doing="revoking a server ledger's author key",
        example="mltrail keys revoke KEY --reason TEXT",
    )
    from mltrail.server.control import default_keys_dir, revoke_author_key

    result = revoke_author_key(
        db_url, ledger, keys_dir or default_keys_dir(), key_id, reason=reason
    )
    if as_json:
        emit_json(result)
        return
    console.print(
        f"ledger {ledger}: revoked key {key_id[:16]}... (seq {result['seq']})"
    )
