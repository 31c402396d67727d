"""Ledger key files: Ed25519 private keys as PKCS#8 PEM, optionally password-protected."""

from __future__ import annotations

import base64
import binascii
import errno
import os
import secrets
import stat
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING

from mltrail.capture.run.commitment import CommitmentKey
from mltrail.capture.run.userfiles import read_user_file
from mltrail.core.signing import Ed25519Signer
from mltrail.errors import AuthError, ConfigError
from mltrail.ledger.private_files import check_private_file

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = [
    "COMMITMENT_KEY_FILE",
    "MAX_KEY_FILE_BYTES",
    "destroy_key_file",
    "fsync_dir",
    "generate_signer",
    "key_password",
    "load_commitment_key",
    "load_signer",
    "make_private_folder",
    "move_key_file",
    "save_signer",
]

MAX_KEY_FILE_BYTES = 16 * 2**10
"""A key file is read only up to this size (an Ed25519 key file is well under 1 KiB)."""

PASSWORD_ENV = "MLTRAIL_KEY_PASSWORD"  # noqa: S105 (a name, not a password)
"""The environment variable holding the password of encrypted key files."""


def key_password(env: Mapping[str, str] | None = None) -> bytes | None:
    """The key files' password from ``MLTRAIL_KEY_PASSWORD`` (None: unset or empty).

    The bytes are those the environment holds: a password that is not UTF-8
    (Python reads such bytes as lone surrogates) is encoded back with
    ``surrogateescape``, so every command reads the same password, and none
    fails on it with a traceback quoting a character of it.
    """
    value = (os.environ if env is None else env).get(PASSWORD_ENV)
    return value.encode("utf-8", "surrogateescape") if value else None


def generate_signer() -> Ed25519Signer:
    """A new random Ed25519 ledger key."""
    return Ed25519Signer(secrets.token_bytes(32))


def save_signer(
    signer: Ed25519Signer, path: Path, password: bytes | None = None
) -> None:
    """Write the private key to ``path`` with mode 0600 (never over an existing file).

    The file and its folder are synced before this returns: a rotation stores
    records that revoke the old key right after, and a power loss must not keep
    them while losing the only key still valid.
    """
    from cryptography.hazmat.primitives import serialization

    algorithm: serialization.KeySerializationEncryption = (
        serialization.BestAvailableEncryption(password)
        if password
        else serialization.NoEncryption()
    )
    pem = signer.private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, algorithm
    )
    fd = _create_key_file(path)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(path.parent)


def load_signer(
    path: Path,
    password: bytes | None = None,
    *,
    env: Mapping[str, str] | None = None,
) -> Ed25519Signer:
    """Read an Ed25519 private key file (PKCS#8 PEM or OpenSSH).

    The file, encrypted or not, must be safe from other users
    (:func:`mltrail.ledger.private_files.check_private_file`, looking up its
    escape hatch in ``env``, default the process environment).

    Raises:
        ConfigError: missing, unreadable, not a regular file, readable or
            replaceable by other users, larger than ``MAX_KEY_FILE_BYTES``, not
            a key, or not Ed25519.
        AuthError: the key is encrypted and the password is wrong or missing.
    """
    if not path.exists():
        raise ConfigError(
            f"signing key {path} not found",
            hint="check ledger.json, or pass --key PATH",
        )
    data = read_user_file(
        path,
        what="signing key",
        limit=MAX_KEY_FILE_BYTES,
        error=ConfigError,
        check=partial(check_private_file, path, what="signing key", env=env),
    )
    seed = _plain_pkcs8_seed(data) if password is None else None
    if seed is not None:
        return Ed25519Signer(seed)
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    key = _parse_private_key(path, data, password)
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path} is not an Ed25519 private key")
    return Ed25519Signer.from_private_key(key)


# An unencrypted PKCS#8 Ed25519 key (RFC 8410) is always these 16 DER bytes and the
# 32-byte seed. Reading it directly keeps `cryptography` (~50 ms to import) off the
# path of every wrapped run; any other file goes through `cryptography`.
_PKCS8_ED25519_PREFIX = bytes.fromhex("302e020100300506032b657004220420")
_PEM_BEGIN = b"-----BEGIN PRIVATE KEY-----"
_PEM_END = b"-----END PRIVATE KEY-----"


def _plain_pkcs8_seed(data: bytes) -> bytes | None:
    text = data.strip()
    if not (text.startswith(_PEM_BEGIN) and text.endswith(_PEM_END)):
        return None
    body = b"".join(text[len(_PEM_BEGIN) : -len(_PEM_END)].split())
    try:
        der = base64.b64decode(body, validate=True)
    except binascii.Error:
        return None
    if len(der) != 48 or not der.startswith(_PKCS8_ED25519_PREFIX):
        return None
    return der[16:]


def _parse_private_key(path: Path, data: bytes, password: bytes | None) -> object:
    from cryptography.hazmat.primitives import serialization

    loader = (
        serialization.load_ssh_private_key
        if data.startswith(b"-----BEGIN OPENSSH")
        else serialization.load_pem_private_key
    )
    try:
        return loader(data, password=password)
    except TypeError as e:
        if password is None:
            raise AuthError(
                f"signing key {path} is encrypted and no password was given",
                hint="set MLTRAIL_KEY_PASSWORD",
            ) from e
        raise ConfigError(
            f"signing key {path} is not encrypted; do not pass a password",
            hint="unset MLTRAIL_KEY_PASSWORD",
        ) from e
    except ValueError as e:
        if password is not None:
            raise AuthError(
                f"wrong password for signing key {path}, or the file is corrupt",
                hint="check MLTRAIL_KEY_PASSWORD",
            ) from e
        raise ConfigError(f"{path} is not a readable private key file: {e}") from e


def destroy_key_file(path: Path) -> None:
    """Overwrite a private key file with zeros, flush it, and delete it.

    This removes the key from the file system as far as a program can; copies
    in backups, snapshots, or blocks a copy-on-write file system or an SSD
    keeps aside are beyond its reach.

    Only a regular file with no other name is overwritten: a symbolic link, a
    hard link or anything else found in its place is removed without writing
    through it, so a link planted in ``keys/`` cannot turn a rotation into the
    overwriting of another file.
    """
    if path.is_symlink():
        _remove(path)  # never write through a link
        return
    # O_NOFOLLOW: a link put there since the check is not followed; O_NONBLOCK: a
    # FIFO without a reader fails at once (neither exists on Windows)
    flags = os.O_WRONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOFOLLOW", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError:
        return
    except OSError as e:  # a link put there since, or a FIFO without a reader
        if e.errno not in (errno.ELOOP, errno.ENXIO):
            raise
        _remove(path)
        return
    with os.fdopen(fd, "wb") as f:
        st = os.fstat(fd)
        if stat.S_ISREG(st.st_mode) and st.st_nlink == 1:
            f.write(bytes(st.st_size))
            f.flush()
            os.fsync(fd)
    _remove(path)


def make_private_folder(folder: Path) -> None:
    """Create ``folder`` with mode 0700 (less what the umask takes), and each
    missing folder above it without write access for group and others.

    ``Path.mkdir(parents=True, mode=0o700)`` gives the folders above the last
    the umask's mode: 0777 under ``umask 000``, and whoever can write a folder
    above the key's can rename the key's folder away and put another in its
    place. The folder itself is left as it is when it exists (a key file's
    check refuses it, or warns, if others can write it).
    """
    missing = [p for p in (folder, *folder.parents) if not p.exists()]
    for path in reversed(missing):
        # a umask only takes bits away: 0o755 never gives group or others write
        try:
            path.mkdir(mode=0o700 if path == folder else 0o755)
        except FileExistsError:
            continue  # made meanwhile: its owner's choice, checked when read


def _create_key_file(path: Path) -> int:
    """A new private key file at ``path``, open for writing, mode 0600 from its
    creation (``O_EXCL``: never over an existing file, never through a link).

    Raises:
        ConfigError: something already has that name (a dangling link too).
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC
    try:
        make_private_folder(path.parent)
        return os.open(path, flags, 0o600)
    except FileExistsError as e:
        kind = "a symbolic link" if path.is_symlink() else "a file"
        raise ConfigError(
            f"{path} is already {kind}; refusing to write a private key over "
            "it or through it",
            hint="choose another path, or remove it first",
        ) from e
    except OSError as e:
        raise ConfigError(
            f"cannot create the private key file {path}: {e.strerror or e}"
        ) from e


def _remove(path: Path) -> None:
    path.unlink()
    fsync_dir(path.parent)


def move_key_file(source: Path, target: Path) -> None:
    """Move a private key file to ``target`` (another disk is fine), durably.

    The copy is written and flushed before the original is destroyed.
    """
    data = source.read_bytes()
    fd = _create_key_file(target)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(target.parent)
    destroy_key_file(source)


def fsync_dir(folder: Path) -> None:
    """Sync ``folder``: the names made, renamed or removed in it are on disk."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


COMMITMENT_KEY_FILE = "keys/commitment.hmac-key"
"""The commitment key's file in a home (``capture.commitment``): 32 raw bytes, 0600."""


def load_commitment_key(home: Path, *, create: bool = True) -> CommitmentKey:
    """The home's commitment key, created on first need (mode 0600, never in a
    bundle: only the private ``keys/`` folder holds it).

    Raises:
        ConfigError: it is missing (and not to be created) or malformed, or it
            cannot be written.
    """
    path = home / COMMITMENT_KEY_FILE
    if create and not path.exists():
        _create_commitment_key(path)
    if not path.exists():
        raise ConfigError(
            f"no commitment key at {path}",
            hint="commitments made with a lost key can no longer be checked; "
            "a new key is made by the next recording command",
        )
    data = read_user_file(
        path,
        what="commitment key",
        limit=MAX_KEY_FILE_BYTES,
        error=ConfigError,
        check=partial(check_private_file, path, what="commitment key"),
    )
    try:
        return CommitmentKey(data)
    except ValueError as e:
        raise ConfigError(f"{path}: not a commitment key ({len(data)} bytes)") from e


def _create_commitment_key(path: Path) -> None:
    """Write a new key beside ``path`` (mode 0600 from its creation), then give
    it its name with ``link``: a process reading it never finds the file
    half-written, and of two making it at once the second uses the first's.
    Where the file system has no hard links, the key is written in place."""
    import tempfile

    key = CommitmentKey.generate()
    try:
        make_private_folder(path.parent)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".new-", suffix=".tmp")
        try:
            _write_durably(fd, key.secret)
            os.link(tmp, path)
        except FileExistsError:  # another process made it first: use theirs
            return
        except OSError as e:
            if e.errno not in _NO_HARD_LINKS:
                raise
            _write_durably(_create_key_file(path), key.secret)
        finally:  # the other name of a linked key is only removed
            destroy_key_file(Path(tmp))
    except FileExistsError:
        return
    except ConfigError as e:
        if isinstance(e.__cause__, FileExistsError):
            return
        raise
    except OSError as e:
        raise ConfigError(
            f"cannot create the commitment key {path}: {e.strerror or e}"
        ) from e
    fsync_dir(path.parent)


_NO_HARD_LINKS = {errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK}


def _write_durably(fd: int, data: bytes) -> None:
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
