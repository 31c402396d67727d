"""``timestamp`` and ``witness``: time and cosignatures from outside the ledger.

Also the pieces ``checkpoint --tsa/--cosigned`` and ``verify --tsa-ca/--witness-key``
use (see :mod:`mltrail.evidence.timestamps`, :mod:`mltrail.evidence.cosigner`, ADR 0015).
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from mltrail.capture.run.userfiles import read_user_file, read_user_text
from mltrail.cli.output import console, emit_json, err_console, json_option, open_from
from mltrail.errors import ConfigError, InputError, SchemaError

if TYPE_CHECKING:
    from cryptography.x509 import Certificate

    from mltrail.core.cosignature import WitnessKey
    from mltrail.core.report import Problem
    from mltrail.evidence.policy import EvidencePolicy
    from mltrail.evidence.timestamps import Stamp
    from mltrail.ledger.home import Home

__all__ = [
    "evidence_policy",
    "import_cosigned_file",
    "load_tsa_ca",
    "parse_witness_keys",
    "stamp_newest_checkpoint",
    "timestamp",
    "witness",
]

_MAX_NOTE = 64 * 1024


def _tsa_url(home: Home, given: str | None) -> str:
    from mltrail.evidence.timestamps import configured_tsa

    url = given or configured_tsa(home)
    if not url:
        raise InputError(
            "no TSA given",
            hint="pass --tsa URL, or set MLTRAIL_TSA_URL (or tsa_url in ledger.json)",
        )
    return url


def _stamp_dict(stamp: Stamp) -> dict[str, Any]:
    return {"size": stamp.size, "new": stamp.new, **stamp.info.to_dict()}


def _print_stamp(stamp: Stamp) -> None:
    from rich.text import Text

    from mltrail.cli.printing import one_line

    info = stamp.info.to_dict()
    verb = "stamped" if stamp.new else "already stamped"
    err_console.print(  # the TSA's name is the signer's word: one line (ADR 0040)
        Text.assemble(
            f"{verb}: the checkpoint of size {stamp.size} existed before "
            f"{stamp.info.latest:%Y-%m-%dT%H:%M:%SZ} (RFC 3161, ",
            one_line(info["tsa"]),
            ")",
        )
    )


def stamp_newest_checkpoint(home: Home, url: str | None) -> dict[str, Any]:
    """Stamp the newest checkpoint (``checkpoint --tsa``); say so on stderr."""
    from mltrail.evidence.timestamps import stamp_newest

    stamp = stamp_newest(home, _tsa_url(home, url))
    _print_stamp(stamp)
    return _stamp_dict(stamp)


def import_cosigned_file(home: Home, path: Path) -> tuple[int, int]:
    """Store the cosigned checkpoint in ``path`` (``-``: stdin) (``checkpoint --cosigned``)."""
    from mltrail.evidence.cosigner import import_cosigned

    text = _read_note(path, "cosigned checkpoint")
    size, lines = import_cosigned(home, text)
    err_console.print(
        f"stored {lines} cosignature line(s) of the checkpoint of size {size}",
        markup=False,
    )
    return size, lines


def _read_note(path: Path, what: str) -> str:
    if str(path) == "-":
        return sys.stdin.read(_MAX_NOTE + 1)[:_MAX_NOTE]
    return read_user_text(path, what=what, limit=_MAX_NOTE)


def evidence_policy(
    home: Home, tsa_ca: Path | None, witness_keys: tuple[str, ...]
) -> EvidencePolicy:
    """What ``verify`` trusts: ``--tsa-ca`` (else ``MLTRAIL_TSA_CA``, else
    ``tsa_ca`` in ledger.json) and every ``--witness-key``.

    A CA ledger.json names lies in the home's hands: whoever can write it names
    the CA, and can stamp with a TSA of their own under it, wherever the file
    lies. Its anchor is inside the home, and a file that cannot be read is a
    warning of the report, not an error that stops verification.

    Raises:
        InputError: a CA file given by option or variable, or a witness key,
            cannot be read.
    """
    from mltrail.evidence.policy import EvidencePolicy
    from mltrail.ledger.home import reached_through

    keys = parse_witness_keys(witness_keys)
    path = tsa_ca
    if path is None and os.environ.get("MLTRAIL_TSA_CA"):
        path = Path(os.environ["MLTRAIL_TSA_CA"])
    if path is not None:
        return EvidencePolicy(
            tsa_roots=load_tsa_ca(path),
            tsa_source=str(path),
            tsa_external=not reached_through(path, home.path),
            witness_keys=keys,
        )
    if not home.settings.tsa_ca:
        return EvidencePolicy(witness_keys=keys)
    path = home.settings.path(home.path, home.settings.tsa_ca)
    try:
        roots = load_tsa_ca(path)
    except InputError as e:
        return EvidencePolicy(witness_keys=keys, problems=(_no_ca(e),))
    return EvidencePolicy(
        tsa_roots=roots,
        tsa_source=f"{path}, named in ledger.json",
        tsa_external=False,
        witness_keys=keys,
    )


def _no_ca(error: InputError) -> Problem:
    from mltrail.core.report import Problem, Severity

    return Problem(
        None,
        "tsa-ca",
        f"the TSA CA file ledger.json names cannot be used ({error}): timestamp "
        "tokens are reported unverified; pass --tsa-ca FILE to check them",
        Severity.WARNING,
    )


def parse_witness_keys(values: tuple[str, ...]) -> list[WitnessKey]:
    """Witness verifier keys from ``--witness-key`` values (each a key, or a file).

    Raises:
        InputError: a value is neither.
    """
    from mltrail.core.cosignature import parse_witness_key

    keys = []
    for value in values:
        text = value
        if "+" not in value and Path(value).is_file():
            text = read_user_text(Path(value), what="witness key file", limit=4096)
        try:
            keys.append(parse_witness_key(text))
        except SchemaError as e:
            raise InputError(
                f"--witness-key {value[:80]!r}: {e}",
                hint="a witness verifier key: name+keyhash+base64(0x04 || key)",
            ) from e
    return keys


def load_tsa_ca(path: Path) -> list[Certificate]:
    """The CA certificates (PEM) in ``path``.

    Raises:
        InputError: the file cannot be read or holds no certificate.
    """
    from mltrail.core.timestamp import load_tsa_roots

    try:
        return list(
            load_tsa_roots(read_user_file(path, what="TSA CA file", limit=_MAX_NOTE))
        )
    except SchemaError as e:
        raise InputError(f"TSA CA file {path}: {e}") from e


@click.command()
@click.option(
    "--tsa",
    "url",
    metavar="URL",
    help="The RFC 3161 TSA (default: MLTRAIL_TSA_URL, tsa_url).",
)
@click.option(
    "--pending",
    is_flag=True,
    help="Stamp every checkpoint a run left waiting (its TSA was down), not the newest.",
)
@json_option
@click.pass_context
def timestamp(
    ctx: click.Context, url: str | None, pending: bool, as_json: bool
) -> None:
    """Get an RFC 3161 timestamp for checkpoints from a TSA, and keep it.

    The TSA signs SHA-256 of the checkpoint's signed note text: proof, checked by
    `mltrail verify --tsa-ca CA.pem`, that every record it covers existed before
    the TSA's time. Without --pending the newest checkpoint is stamped (as
    `mltrail checkpoint --tsa URL`). With a TSA set, every run stamps its end
    checkpoint; when the TSA is down the run still succeeds, and --pending
    stamps those checkpoints later.

    \b
    Examples:
      mltrail timestamp --tsa https://freetsa.org/tsr
      MLTRAIL_TSA_URL=https://tsa.example/tsr mltrail timestamp --pending
    """
    from mltrail.evidence.timestamps import stamp_newest, stamp_pending

    home = open_from(ctx, writable=True)
    target = _tsa_url(home, url)
    stamps = stamp_pending(home, target) if pending else [stamp_newest(home, target)]
    if as_json:
        emit_json([_stamp_dict(s) for s in stamps])
        return
    for stamp in stamps:
        _print_stamp(stamp)
    if pending and not stamps:
        console.print("no checkpoint waits for a timestamp")


@click.group()
def witness() -> None:
    """Act as a witness: cosign checkpoints that only ever grow (C2SP tlog-witness).

    A witness holds its own key, not the ledger's. It cosigns a checkpoint only
    if the log's key signed it and it extends the last one it cosigned, so a
    ledger rolled back or forked, even by someone holding the ledger key, gets
    no cosignature for its new history. `mltrail verify --witness-key VKEY`
    requires a cosigned checkpoint the ledger still extends.

    \b
    Examples:
      mltrail witness keygen --name witness.example/w1 -o w1.key > w1.vkey
      mltrail witness request --old 0 > req.txt          (on the ledger's side)
      mltrail witness cosign --key w1.key --name witness.example/w1 \\
          --log-key "$(mltrail keys export --format vkey)" req.txt > cosigned.cp
      mltrail checkpoint --cosigned cosigned.cp           (back on the ledger)
    """


@witness.command()
@click.option(
    "--name", required=True, help="The witness name, e.g. witness.example/w1."
)
@click.option(
    "-o",
    "--output",
    "path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="Where to write the private key (PEM, mode 0600; never overwritten).",
)
def keygen(name: str, path: Path) -> None:
    """Make a witness key; print its verifier key (what verifiers pass to --witness-key)."""
    from mltrail.core.checkpoint import is_valid_key_name
    from mltrail.core.cosignature import WitnessKey
    from mltrail.ledger.keystore import generate_signer, save_signer

    if not is_valid_key_name(name):
        raise InputError(f"invalid witness name {name!r}: no spaces or '+'")
    if path.exists():
        raise InputError(f"{path} exists; refusing to overwrite a key")
    signer = generate_signer()
    save_signer(signer, path)
    click.echo(WitnessKey(name, signer.public_key).to_vkey())


@witness.command()
@click.option(
    "--key",
    "key_path",
    required=True,
    type=click.Path(path_type=Path, dir_okay=False),
    help="The witness's private key (PEM or OpenSSH Ed25519).",
)
@click.option("--name", required=True, help="The witness name its cosignatures carry.")
@click.option(
    "--state",
    "state_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="What this witness cosigned last, per log (default: KEY.state.json).",
)
@click.option(
    "--log-key",
    "log_keys",
    multiple=True,
    metavar="KEY",
    help="A key of the log (as `mltrail keys export` prints it), kept in the state. "
    "Needed the first time; repeatable.",
)
@click.option(
    "--proof",
    "proof_path",
    type=click.Path(path_type=Path, dir_okay=False),
    help="`mltrail prove --consistency OLD NEW --json` output, for a bare checkpoint.",
)
@click.argument(
    "checkpoint_path", metavar="CHECKPOINT_FILE", type=click.Path(path_type=Path)
)
@click.pass_context
def cosign(
    ctx: click.Context,
    key_path: Path,
    name: str,
    state_path: Path | None,
    log_keys: tuple[str, ...],
    proof_path: Path | None,
    checkpoint_path: Path,
) -> None:
    """Cosign a checkpoint if it extends the last one this witness cosigned.

    CHECKPOINT_FILE (- for stdin) is a tlog-witness add-checkpoint body (`mltrail
    witness request` writes one: the old size, a consistency proof and the
    checkpoint) or a bare checkpoint (the proof then comes from --proof, or from
    the ledger at --home / MLTRAIL_HOME when this machine can read it). Prints
    the checkpoint with this witness's cosignature; refuses (exit 3) a
    checkpoint not signed by the log's key, smaller than, or forking from, the
    one cosigned last.
    """
    from mltrail.evidence.cosigner import cosign as cosign_request
    from mltrail.evidence.cosigner import parse_add_checkpoint
    from mltrail.ledger.keystore import load_signer

    request = parse_add_checkpoint(_read_note(checkpoint_path, "checkpoint file"))
    text = cosign_request(
        request,
        signer=load_signer(key_path),
        name=name,
        state_path=state_path or key_path.with_name(key_path.name + ".state.json"),
        log_keys=[_log_key(k) for k in log_keys],
        prove=_prover(ctx, proof_path),
    )
    click.echo(text, nl=False)


def _log_key(value: str) -> bytes:
    from mltrail.cli.verify_cmd import parse_key_value

    key = parse_key_value(value, "--log-key", "log key file")
    if key.public_key is None:
        raise InputError(
            "--log-key needs the public key itself, not its id",
            hint="`mltrail keys export --format vkey` prints it",
        )
    return key.public_key


def _prover(ctx: click.Context, proof_path: Path | None) -> Any:
    def from_file(old: int, new: int) -> list[bytes]:
        import json

        assert proof_path is not None
        data = json.loads(
            read_user_text(proof_path, what="proof file", limit=_MAX_NOTE)
        )
        if (data.get("old_size"), data.get("new_size")) != (old, new):
            raise InputError(f"--proof is not a consistency proof from {old} to {new}")
        return [bytes.fromhex(h) for h in data["proof"]]

    def from_home(old: int, new: int) -> list[bytes]:
        try:
            home = open_from(ctx)
        except ConfigError as e:
            raise InputError(
                f"a consistency proof from size {old} to {new} is needed: {e}",
                hint="send an add-checkpoint body (`mltrail witness request`) or --proof",
            ) from e
        return list(home.ledger.prove_consistency(old, new).hashes)

    return from_file if proof_path is not None else from_home


@witness.command()
@click.option(
    "--old",
    "old_size",
    type=click.IntRange(0),
    default=0,
    show_default=True,
    help="The size the witness cosigned last (it answers with it when this is wrong).",
)
@click.pass_context
def request(ctx: click.Context, old_size: int) -> None:
    """Print a tlog-witness add-checkpoint body for the newest checkpoint.

    POST it to a witness's `<prefix>/add-checkpoint` (or give it to `mltrail
    witness cosign`): the witness answers with cosignature lines, which
    `mltrail checkpoint --cosigned -` stores.
    """
    from mltrail.evidence.cosigner import format_add_checkpoint

    home = open_from(ctx)
    latest = home.ledger.store.latest_checkpoint()
    if latest is None:
        raise InputError("the ledger has no checkpoint")
    if old_size > latest.size:
        raise InputError(
            f"--old {old_size} is beyond the newest checkpoint ({latest.size})"
        )
    proof = (
        home.ledger.prove_consistency(old_size, latest.size).hashes
        if 0 < old_size < latest.size
        else ()
    )
    click.echo(format_add_checkpoint(old_size, proof, latest.text), nl=False)
