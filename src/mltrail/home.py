"""A ledger home on disk: create it, open it, and keep its witness checkpoint.

The witness is the newest checkpoint this machine has seen, kept outside the
store. Every new checkpoint must be consistent with it (an RFC 9162 proof is
checked before it is replaced) and verification checks the store against it,
so a store rolled back to an older copy, or forked, is caught. Point
``MLTRAIL_WITNESS`` at a path outside the home (another disk, a synced
folder) to survive a rollback of the whole home.
"""

from __future__ import annotations

import fcntl
import os
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from mltrail.capture.identity import capture_actor
from mltrail.capture.userfiles import read_user_file
from mltrail.config import Settings, resolve_home, write_atomic
from mltrail.core.checkpoint import (
    Checkpoint,
    SignedCheckpoint,
    parse_signed_checkpoint,
)
from mltrail.core.merkle import verify_consistency
from mltrail.errors import ConfigError, IntegrityError, MltrailError
from mltrail.keystore import generate_signer, load_signer, save_signer
from mltrail.ledger import Ledger
from mltrail.storage.sqlite import SQLiteStore

if TYPE_CHECKING:
    from collections.abc import Mapping

    from mltrail.core.verify import VerificationReport

__all__ = ["Home", "InitResult", "init_home", "open_home", "rotate_home_key"]

_MAX_WITNESS = 64 * 2**10  # a checkpoint note, even with many cosignatures, is far less


@dataclass
class Home:
    """An opened ledger home: its path, settings and ledger."""

    path: Path
    settings: Settings
    ledger: Ledger
    witness_path: Path

    def checkpoint(self) -> SignedCheckpoint:
        """Write a checkpoint and move the witness forward (after a consistency proof)."""
        signed = self.ledger.checkpoint()
        self._advance_witness(signed)
        return signed

    def witnessed(self) -> list[tuple[str, int, str]]:
        """The witness checkpoint as (label, size, text), if there is one."""
        text = self._read_witness()
        if text is None:
            return []
        try:
            size = parse_signed_checkpoint(text).checkpoint.size
        except MltrailError:
            size = 0
        return [(f"witnessed checkpoint ({self.witness_path})", size, text)]

    def verify(self, **kwargs: object) -> VerificationReport:
        """Verify the ledger against its own checkpoints and the witness."""
        return self.ledger.verify(witness=self.witnessed(), **kwargs)  # type: ignore[arg-type]

    def _read_witness(self) -> str | None:
        if not self.witness_path.exists():
            return None
        data = read_user_file(
            self.witness_path, what="witness", limit=_MAX_WITNESS, error=ConfigError
        )
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as e:
            raise ConfigError(
                f"witness {self.witness_path} is damaged: not UTF-8 text "
                f"({e.reason} at byte {e.start})",
                hint="restore it from a copy, or point MLTRAIL_WITNESS at a good one",
            ) from e

    def _advance_witness(self, signed: SignedCheckpoint) -> None:
        """Move the witness to ``signed`` if it is newer, after proving consistency.

        Runs under an exclusive lock on ``<witness>.lock`` so concurrent writers
        never move it backwards. A newer witness (another writer checkpointed
        meanwhile) is kept when the ledger is consistent with it.
        """
        self.witness_path.parent.mkdir(parents=True, exist_ok=True)
        lock_path = self.witness_path.with_name(self.witness_path.name + ".lock")
        with open(lock_path, "a") as lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            old_text = self._read_witness()
            old = parse_signed_checkpoint(old_text).checkpoint if old_text else None
            if old is None or old.size <= signed.checkpoint.size:
                self._check_extends(old, signed.checkpoint.size, signed.checkpoint.root)
                write_atomic(self.witness_path, signed.to_text())
            else:
                head = self.ledger.head()
                self._check_extends(old, head.size, head.root())

    def _check_extends(self, old: Checkpoint | None, size: int, root: bytes) -> None:
        """Raise unless the tree of ``size`` records with ``root`` extends ``old``."""
        if old is None or old.size == 0:
            return
        if old.size > size:
            raise IntegrityError(
                f"the ledger has {size} records but this machine saw a checkpoint of "
                f"{old.size}: the ledger was rolled back",
                hint="run `mltrail verify`",
            )
        proof = self.ledger.prove_consistency(old.size, size)
        verify_consistency(old.size, size, old.root, root, proof.hashes)

    def close(self) -> None:
        """Close the ledger."""
        self.ledger.close()


@dataclass(frozen=True)
class InitResult:
    """What ``init_home`` did."""

    home: Path
    created: bool
    origin: str
    key_id: str


def _password(env: Mapping[str, str], password: bytes | None) -> bytes | None:
    if password is not None:
        return password
    value = env.get("MLTRAIL_KEY_PASSWORD")
    return value.encode("utf-8", "surrogateescape") if value else None


def _inside_git_work_tree(path: Path) -> Path | None:
    for parent in [path, *path.parents]:
        if (parent / ".git").exists():
            return parent
    return None


def init_home(
    home: str | Path | None = None,
    *,
    origin: str | None = None,
    key_path: Path | None = None,
    password: bytes | None = None,
    force: bool = False,
    env: Mapping[str, str] | None = None,
) -> InitResult:
    """Create a ledger home with a new (or given) key and its genesis record.

    Safe to run twice: an existing ledger is left as it is.

    Raises:
        ConfigError: the home is inside a git work tree (unless ``force``), or the key
            cannot be read.
    """
    env = os.environ if env is None else env
    path = resolve_home(home, env).resolve()
    if (path / "ledger.json").exists():
        settings = Settings.load(path)
        return InitResult(path, False, settings.origin, settings.trusted_key)
    work_tree = _inside_git_work_tree(path)
    if work_tree is not None and not force:
        raise ConfigError(
            f"refusing to create a ledger inside the git work tree {work_tree}",
            hint="keep the audit log apart from code and weights, or pass --force",
        )
    pw = _password(env, password)
    signer = load_signer(key_path, pw) if key_path else generate_signer()
    key_file = str(key_path.resolve()) if key_path else f"keys/{signer.key_id}.key"
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not key_path:
            save_signer(signer, path / key_file, pw)
    except OSError as e:
        raise ConfigError(
            f"cannot create the ledger home {path}: {e.strerror or e}",
            hint="point MLTRAIL_HOME (or --home) at a folder you can create and write",
        ) from e
    origin = origin or f"mltrail.local/{secrets.token_hex(8)}"
    store = SQLiteStore(path / "ledger.db", create=True)
    if store.head().size:
        store.close()
        raise ConfigError(
            f"{path / 'ledger.db'} already holds records but ledger.json is "
            "missing: an earlier init was interrupted",
            hint="move ledger.db aside and run `mltrail init` again",
        )
    settings = Settings(
        origin=origin,
        store="ledger.db",
        signing_key=key_file,
        trusted_key=signer.key_id,
    )
    ledger = Ledger.create(store, signer, origin=origin, actor=capture_actor(env))
    home_obj = Home(path, settings, ledger, _witness_path(path, settings, env))
    home_obj._advance_witness(_latest(ledger))
    settings.save(path)
    ledger.close()
    return InitResult(path, True, origin, signer.key_id)


def _latest(ledger: Ledger) -> SignedCheckpoint:
    latest = ledger.latest_checkpoint()
    assert latest is not None
    return parse_signed_checkpoint(latest[1])


def _witness_path(home: Path, settings: Settings, env: Mapping[str, str]) -> Path:
    override = env.get("MLTRAIL_WITNESS")
    return (
        Path(override).expanduser()
        if override
        else settings.path(home, settings.witness)
    )


def open_home(
    home: str | Path | None = None,
    *,
    writable: bool = True,
    password: bytes | None = None,
    env: Mapping[str, str] | None = None,
) -> Home:
    """Open an existing ledger home (with its signing key when ``writable``).

    Raises:
        ConfigError: no ledger there, or the key cannot be loaded.
        StoreError: the store cannot be opened.
    """
    env = os.environ if env is None else env
    path = resolve_home(home, env)
    settings = Settings.load(path)
    signer = None
    if writable:
        signer = load_signer(
            settings.path(path, settings.signing_key), _password(env, password)
        )
    store = SQLiteStore(settings.path(path, settings.store))
    meta_origin = store.meta().get("origin")
    if meta_origin is not None and meta_origin != settings.origin:
        store.close()
        raise ConfigError(
            f"ledger.json says origin {settings.origin} but the store holds "
            f"{meta_origin}"
        )
    ledger = Ledger(
        store,
        signer,
        origin=settings.origin,
        actor=capture_actor(env),
        trusted_key=settings.trusted_key,
    )
    return Home(path, settings, ledger, _witness_path(path, settings, env))


def rotate_home_key(home: Home, *, reason: str, password: bytes | None = None) -> str:
    """Rotate the ledger key: new key file, key.added + key.revoked, settings updated."""
    new = generate_signer()
    key_file = f"keys/{new.key_id}.key"
    save_signer(new, home.path / key_file, password)
    home.ledger.rotate_key(new, reason=reason)
    home.settings = Settings(**{**home.settings.__dict__, "signing_key": key_file})
    home.settings.save(home.path)
    return new.key_id
