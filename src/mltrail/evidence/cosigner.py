"""Being a witness, and taking a witness's cosignatures into the ledger.

A witness (c2sp.org/tlog-witness) keeps, per log origin, the newest checkpoint
it cosigned, and cosigns a new one only after checking that the log's key
signed it and that it extends the old one (an RFC 9162 consistency proof):
so it never cosigns a fork or a rollback. :func:`cosign` does that against a
JSON state file, under a lock, and adds a cosignature/v1 line.

It reads what a log sends a witness's ``add-checkpoint`` endpoint (an ``old
<size>`` line, the consistency proof, a blank line, the checkpoint), which
:func:`format_add_checkpoint` writes; or a bare checkpoint with the proof got
elsewhere. :func:`import_cosigned` stores a cosigned checkpoint (or the bare
cosignature lines a witness answers with) beside the ledger's own checkpoint.
"""

from __future__ import annotations

import fcntl
import json
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mltrail.config import write_atomic
from mltrail.core.checkpoint import (
    SIGNATURE_PREFIX,
    parse_note,
    parse_signed_checkpoint,
    verify_checkpoint,
)
from mltrail.core.cosignature import cosign_checkpoint
from mltrail.core.evidence import COSIGNATURE
from mltrail.core.merkle import verify_consistency
from mltrail.core.signing import decode_b64, encode_b64
from mltrail.errors import ConfigError, InputError, IntegrityError, MltrailError

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from pathlib import Path

    from mltrail.core.checkpoint import Checkpoint
    from mltrail.core.signing import Signer
    from mltrail.ledger.home import Home

__all__ = [
    "AddCheckpoint",
    "cosign",
    "format_add_checkpoint",
    "import_cosigned",
    "parse_add_checkpoint",
]

_MAX_PROOF_LINES = 63


@dataclass(frozen=True)
class AddCheckpoint:
    """A checkpoint sent to a witness, with the size it claims the witness saw
    last and the consistency proof from there (both None for a bare checkpoint)."""

    checkpoint: str
    old_size: int | None = None
    proof: tuple[bytes, ...] = ()


def format_add_checkpoint(
    old_size: int, proof: Sequence[bytes], checkpoint: str
) -> str:
    """The body of a tlog-witness ``add-checkpoint`` request."""
    lines = "".join(f"{encode_b64(h)}\n" for h in proof)
    return f"old {old_size}\n{lines}\n{checkpoint}"


def parse_add_checkpoint(text: str) -> AddCheckpoint:
    """Read an ``add-checkpoint`` body, or a bare signed checkpoint.

    Raises:
        SchemaError: (an InputError) neither form.
    """
    if not text.startswith("old "):
        parse_signed_checkpoint(text)
        return AddCheckpoint(text)
    head, sep, checkpoint = text.partition("\n\n")
    lines = head.split("\n")
    size_text = lines[0][len("old ") :]
    if (
        not sep
        or not (size_text.isascii() and size_text.isdigit())  # not "²", int() fails
        or len(size_text) > 20  # 2**64 - 1; int() fails past 4,300 digits
        or len(lines) - 1 > _MAX_PROOF_LINES
    ):
        raise InputError(
            "not a tlog-witness add-checkpoint body: `old N`, up to 63 proof "
            "lines, a blank line, then the checkpoint"
        )
    try:
        proof = tuple(decode_b64(line) for line in lines[1:])
    except ValueError as e:
        raise InputError(f"a consistency proof line is not base64: {e}") from e
    parse_signed_checkpoint(checkpoint)
    return AddCheckpoint(checkpoint, int(size_text), proof)


def cosign(
    request: AddCheckpoint,
    *,
    signer: Signer,
    name: str,
    state_path: Path,
    log_keys: Sequence[bytes] = (),
    prove: Callable[[int, int], Sequence[bytes]] | None = None,
    now: int | None = None,
) -> str:
    """Cosign ``request.checkpoint`` as witness ``name`` if it extends what it saw.

    Args:
        request: the checkpoint, and the proof from the witness's last size.
        signer: the witness key.
        name: the witness name (its key name).
        state_path: the witness's state (created on first use).
        log_keys: the log's Ed25519 keys to add to those the state trusts for
            the checkpoint's origin.
        prove: gives a consistency proof (old size, new size) when the request
            carries none (e.g. from a ledger this machine can read).
        now: POSIX time of the cosignature (default: the clock).

    Returns:
        The checkpoint note with this witness's cosignature line.

    Raises:
        ConfigError: no key of the log is known, or the state is unreadable.
        IntegrityError: the log's key did not sign it, or it is smaller than,
            forks from, or cannot be proven to extend the checkpoint cosigned last.
        InputError: the request names an old size that is not the last one.
    """
    lock_path = state_path.with_name(state_path.name + ".lock")
    state_path.parent.mkdir(parents=True, exist_ok=True)
    with open(lock_path, "a") as lock:
        fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
        state = _read_state(state_path)
        signed = parse_signed_checkpoint(request.checkpoint)
        origin = signed.checkpoint.origin
        log = state["logs"].setdefault(origin, {"keys": [], "checkpoint": None})
        keys = _log_keys(log, log_keys, origin)
        try:
            new = verify_checkpoint(signed, origin=origin, public_keys=keys)
        except MltrailError as e:
            raise IntegrityError(
                f"refusing to cosign: the checkpoint is not signed by a key of {origin}: {e}",
                hint="pass the log's key with --log-key",
            ) from e
        old = log["checkpoint"]
        if old is not None:
            _check_extends(parse_signed_checkpoint(old).checkpoint, new, request, prove)
        elif request.old_size not in (None, 0):
            raise InputError(
                f"the request says this witness last cosigned size {request.old_size}, "
                "but it never cosigned this log"
            )
        when = int(time.time()) if now is None else now
        text = cosign_checkpoint(signed, signer, name, when).to_text()
        log["checkpoint"] = text
        log["keys"] = sorted({encode_b64(k) for k in keys})
        write_atomic(state_path, json.dumps(state, indent=2) + "\n", mode=0o600)
    return text


def _read_state(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {"version": 1, "logs": {}}
    try:
        state = json.loads(path.read_text("utf-8"))
        if not isinstance(state.get("logs"), dict):
            raise TypeError("no logs")
    except (OSError, ValueError, TypeError, AttributeError) as e:
        raise ConfigError(
            f"cannot read the witness state {path}: {e}",
            hint="restore it from a copy: without it this witness forgets what it cosigned",
        ) from e
    return state


def _log_keys(log: dict[str, Any], given: Sequence[bytes], origin: str) -> list[bytes]:
    keys = {decode_b64(k) for k in log["keys"]} | set(given)
    if not keys:
        raise ConfigError(
            f"this witness knows no key of the log {origin}",
            hint="pass the log's key with --log-key (`mltrail keys export` prints it)",
        )
    return sorted(keys)


def _check_extends(
    old: Checkpoint,
    new: Checkpoint,
    request: AddCheckpoint,
    prove: Callable[[int, int], Sequence[bytes]] | None,
) -> None:
    if request.old_size is not None and request.old_size != old.size:
        raise InputError(
            f"the request is from size {request.old_size}, but this witness last "
            f"cosigned size {old.size} of {old.origin}",
            hint=f"send the consistency proof from size {old.size}",
        )
    if new.size < old.size:
        raise IntegrityError(
            f"refusing to cosign: the checkpoint has {new.size} records, fewer than "
            f"the {old.size} this witness cosigned: the log was rolled back"
        )
    if new.size == old.size:
        if new.root != old.root:
            raise IntegrityError(
                f"refusing to cosign: a different tree of {new.size} records than "
                "the one this witness cosigned: the log forked"
            )
        return
    proof = request.proof if request.old_size is not None else None
    if proof is None and prove is not None:
        proof = tuple(prove(old.size, new.size))
    if proof is None:
        raise InputError(
            f"a consistency proof from size {old.size} to {new.size} is needed",
            hint="send an add-checkpoint body (`mltrail witness request --old "
            f"{old.size}`) or --proof FILE",
        )
    try:
        verify_consistency(old.size, new.size, old.root, new.root, proof)
    except MltrailError as e:
        raise IntegrityError(
            f"refusing to cosign: the checkpoint of {new.size} records does not "
            f"extend the one of {old.size} this witness cosigned ({e}): the log forked",
        ) from e


def import_cosigned(home: Home, text: str) -> tuple[int, int]:
    """Store a cosigned checkpoint of this ledger; return (size, cosignature lines).

    ``text`` is a checkpoint note with the witness's lines, or only the lines a
    witness answers with (then they are about the newest checkpoint).

    Raises:
        InputError: not a note, not over a checkpoint this ledger has, or no
            signature line other than the ledger's.
    """
    if text.startswith(SIGNATURE_PREFIX):
        latest = home.ledger.store.latest_checkpoint()
        if latest is None:
            raise InputError("the ledger has no checkpoint to attach cosignatures to")
        text = latest.text + text
    note = parse_note(text)
    stored = next(
        (
            cp
            for cp in reversed(home.ledger.store.checkpoints())
            if _body(cp.text) == note.body
        ),
        None,
    )
    if stored is None:
        raise InputError(
            "the cosigned checkpoint is not one of this ledger's checkpoints",
            hint="cosign a checkpoint `mltrail checkpoint` printed for this ledger",
        )
    own = {(s.name, s.key_hash) for s in parse_note(stored.text).signatures}
    extra = [s for s in note.signatures if (s.name, s.key_hash) not in own]
    if not extra:
        raise InputError("the note carries no signature but the ledger's own")
    home.ledger.store.add_evidence(
        COSIGNATURE,
        stored.size,
        stored.text,
        text.encode("utf-8"),
        home.ledger.clock.now().strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
    )
    return stored.size, len(extra)


def _body(text: str) -> bytes | None:
    try:
        return parse_note(text).body
    except MltrailError:
        return None
