"""Rotating a home's signing key, and getting the revoked private key out of it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from mltrail.config import Settings
from mltrail.errors import ConfigError
from mltrail.ledger.home import inside_folder
from mltrail.ledger.keystore import (
    destroy_key_file,
    generate_signer,
    move_key_file,
    save_signer,
)

if TYPE_CHECKING:
    from pathlib import Path

    from mltrail.ledger.home import Home

__all__ = ["RotationResult", "rotate_home_key"]


@dataclass(frozen=True)
class RotationResult:
    """What ``rotate_home_key`` did, and what became of the revoked private key."""

    added: str
    revoked: str
    old_key_file: Path
    disposal: str
    """``destroyed``, ``moved`` (to ``moved_to``) or ``outside`` (left where it was,
    outside the home, for its owner to destroy)."""
    moved_to: Path | None = None
    swept: tuple[Path, ...] = ()
    """Private keys of keys revoked earlier, found in keys/ and destroyed."""


def rotate_home_key(
    home: Home,
    *,
    reason: str,
    password: bytes | None = None,
    move_old_key_to: Path | None = None,
) -> RotationResult:
    """Rotate the ledger key, then get the revoked private key out of the home.

    A new key file is written, ``key.added`` + ``key.revoked`` are appended in one
    batch and ledger.json names the new key. Whoever holds a revoked private key
    can rewrite history before the rotation as far as that key reaches, so the
    old key file is overwritten and deleted (or, with ``move_old_key_to``, moved
    there). A key file outside the home (``init --key``) is left to its owner.

    Raises:
        ConfigError: ``move_old_key_to`` exists or lies inside the home.
    """
    old = home.ledger.signer
    old_file = home.settings.path(home.path, home.settings.signing_key)
    if move_old_key_to is not None:
        _check_destination(move_old_key_to, home.path)
    new = generate_signer()
    key_file = f"keys/{new.key_id}.key"
    save_signer(new, home.path / key_file, password)
    home.ledger.rotate_key(new, reason=reason)
    home.settings = Settings(**{**home.settings.__dict__, "signing_key": key_file})
    home.settings.save(home.path)
    if move_old_key_to is not None:
        move_key_file(old_file, move_old_key_to)
        disposal = "moved"
    elif inside_folder(old_file, home.path):
        destroy_key_file(old_file)
        disposal = "destroyed"
    else:
        disposal = "outside"
    swept = _sweep_revoked_keys(home)
    return RotationResult(
        added=new.key_id,
        revoked=old.key_id if old else "",
        old_key_file=old_file,
        disposal=disposal,
        moved_to=move_old_key_to,
        swept=swept,
    )


def _check_destination(target: Path, home: Path) -> None:
    # a dangling link "does not exist", but the move could not write there
    # (nor should it): refused now, not after the rotation is stored
    if target.exists() or target.is_symlink():
        raise ConfigError(f"{target} already exists; refusing to overwrite it")
    if inside_folder(target, home):
        raise ConfigError(
            f"{target} lies inside the ledger home: the revoked key must leave it",
            hint="choose a path on another disk or an offline medium",
        )


def _sweep_revoked_keys(home: Home) -> tuple[Path, ...]:
    """Destroy private key files in keys/ whose key the ledger has revoked."""
    ring = home.ledger.keys()
    revoked = {k for k, state in ring.keys.items() if state.revoked_seq is not None}
    swept = []
    for path in sorted((home.path / "keys").glob("*.key")):
        if path.stem in revoked:
            destroy_key_file(path)
            swept.append(path)
    return tuple(swept)
