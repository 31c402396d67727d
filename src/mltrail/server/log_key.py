"""A served ledger's log key files, and a rotation of them that any crash leaves mendable.

In the key folder, for ledger NAME:

- ``NAME.key``: the log key the server signs with;
- ``NAME.key.new``: a rotation's new key, written (and synced) before the
  records that add it are stored;
- ``NAME.key.old``: a second name of the old key file, made once the rotation
  is stored, so that the new key can be renamed over ``NAME.key`` in one
  atomic step and the old key still be destroyed (or moved) after it;
- ``NAME.key.move-to``: where a rotation asked to move the revoked key
  (``--move-old-key``, an absolute path and a newline), written (and synced)
  before the records are stored and removed once the key was moved: whoever
  finishes the rotation moves the key there rather than destroy it.

``NAME.key`` names a key at every moment. Each step is synced (file, then
folder) before the next. A rotation killed after its records were stored
(``NAME.key`` revoked, ``NAME.key.new`` the key the ledger added in its
place) is finished by the next ``keys rotate`` or ``keys revoke``, or by the
server when it loads its key, and its revoked key moved where the rotation
asked; a ``NAME.key.new`` the ledger never added is never taken up, and a
``NAME.key.move-to`` with no rotation in progress (no ``.new``, no ``.old``) is
removed. The steps run under an ``flock`` of the key folder, which a
killed process gives up: the server never renames or destroys a file a
rotation in progress is about to use.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
from typing import TYPE_CHECKING

from mltrail.errors import AuthError, ConfigError, MltrailError

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

    from mltrail.core.signing import Ed25519Signer
    from mltrail.ledger.ledger import Ledger

__all__ = [
    "current_log_key",
    "dispose_revoked_key",
    "finish_rotation",
    "key_paths",
    "keys_lock",
    "remember_move",
    "swap_in_new_key",
]

_log = logging.getLogger("mltrail")


def key_paths(keys: Path, name: str) -> tuple[Path, Path, Path]:
    """``(NAME.key, NAME.key.new, NAME.key.old)`` in ``keys``."""
    key = keys / f"{name}.key"
    return key, key.with_name(key.name + ".new"), key.with_name(key.name + ".old")


def _move_path(keys: Path, name: str) -> Path:
    """``NAME.key.move-to`` in ``keys``: where the revoked key is to be moved."""
    return keys / f"{name}.key.move-to"


def remember_move(keys: Path, name: str, target: Path | None) -> None:
    """Say durably where the rotation about to be stored moves its revoked key
    (``NAME.key.move-to``; ``target`` None: it is destroyed, and a stale file
    goes). Call under the lock, before the records are stored: a rotation
    killed after its store is then finished with the key moved, as asked.

    Raises:
        OSError: the folder cannot be written.
    """
    from mltrail.ledger.keystore import fsync_dir

    marker = _move_path(keys, name)
    _forget_move(marker)
    if target is None:
        return
    fd = os.open(marker, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(os.fsencode(target.absolute()) + b"\n")
        f.flush()
        os.fsync(f.fileno())
    fsync_dir(keys)


def _move_target(marker: Path) -> Path | None:
    """The destination ``NAME.key.move-to`` names; None when there is none. One
    cut short (no final newline) was never synced, so no rotation was stored
    after it: it names none.

    Raises:
        ConfigError: it is not a file a rotation of this user wrote (another
            user's, or one others can write): whoever can write the key
            folder could otherwise choose where the revoked key goes, and
            which file of that name is deleted as a copy cut short.
    """
    import stat
    from pathlib import Path

    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(marker, flags)
    except OSError:  # missing, or a link: names no move
        return None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return None
        if st.st_uid != os.geteuid() or st.st_mode & 0o022:
            raise ConfigError(
                f"{marker} was not written by a rotation of uid {os.geteuid()} "
                f"(it belongs to uid {st.st_uid}, mode "
                f"{stat.S_IMODE(st.st_mode):04o}): not following it; the revoked "
                f"key is left as {marker.name.removesuffix('.move-to')}.old",
                hint="remove it; the next `keys rotate` or server start then "
                "destroys the revoked key (or move that file yourself first)",
            )
        data = f.read(_MAX_MOVE_BYTES + 1)
    if not data.endswith(b"\n") or not 2 <= len(data) <= _MAX_MOVE_BYTES:
        return None
    return Path(os.fsdecode(data[:-1]))


_MAX_MOVE_BYTES = 4096


def _forget_move(marker: Path) -> None:
    """Remove ``NAME.key.move-to`` (a link: the link), synced."""
    from mltrail.ledger.keystore import fsync_dir

    if os.path.lexists(marker):
        with contextlib.suppress(FileNotFoundError):
            marker.unlink()
        fsync_dir(marker.parent)


@contextlib.contextmanager
def keys_lock(keys: Path, *, wait: bool) -> Iterator[bool]:
    """Hold the key folder's lock (an ``flock`` of the folder itself); yields
    False when ``wait`` is False and another process holds it."""
    fd = os.open(keys, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0) | os.O_CLOEXEC)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        os.close(fd)  # gives the lock up


def swap_in_new_key(keys: Path, name: str) -> None:
    """Put ``NAME.key.new`` in place of ``NAME.key``; the old key file is left
    as ``NAME.key.old`` for the caller to destroy or move. Call under the lock,
    only once the ledger stored the rotation to the new key."""
    from mltrail.ledger.keystore import fsync_dir

    key, new, old = key_paths(keys, name)
    if old.is_symlink():  # no name a rotation made: it would lead to the new key
        _remove_link(old)
    if key.exists():
        if os.path.lexists(old):
            if not _same(key, old):
                raise ConfigError(
                    f"{old} is in the way of the key rotation",
                    hint="it should hold a revoked key: destroy it, then run the "
                    "command again",
                )
        else:
            try:  # a link is a link: never the file it names, on another disk
                os.link(key, old, follow_symlinks=False)
            except OSError:  # no hard links here: no key file for a moment
                os.replace(key, old)
        fsync_dir(keys)
    os.replace(new, key)
    fsync_dir(keys)


def finish_rotation(
    keys: Path, name: str, ledger: Ledger, password: bytes | None
) -> list[str]:
    """Finish the files of a rotation that was stored but not completed on
    disk; what was done, one line each (empty: nothing to do). Call under the
    lock.

    ``NAME.key.new`` takes the place of ``NAME.key`` when the ledger holds
    exactly the records a rotation from ``NAME.key``'s key writes
    (:meth:`~mltrail.ledger.ledger.Ledger.rotated_to`) and the new key is
    valid now; with no ``NAME.key`` (an older mltrail destroyed it before the
    rename), when its key is a valid log key a rotation added. Then
    ``NAME.key.old`` is destroyed, or moved where ``NAME.key.move-to`` says
    the rotation asked (:func:`dispose_revoked_key`): it holds the revoked
    key, or is a second
    name of ``NAME.key`` (only the name is removed), or a symbolic link (only
    the link is removed: it is never taken for the old key). One holding a key
    valid now is left, with a warning.

    Raises:
        AuthError: a key file is encrypted and the password does not open it.
        ConfigError: the revoked key cannot be moved where the rotation asked
            (it is left as ``NAME.key.old``).
        OSError: the folder cannot be written.
    """
    from mltrail.ledger.keystore import destroy_key_file

    key, new, old = key_paths(keys, name)
    done: list[str] = []
    if new.exists():
        candidate = _load(new, password)
        current = _load(key, password) if key.exists() else None
        if candidate is not None and _rotated(ledger, current, candidate.key_id):
            if os.path.lexists(old) and not _same(key, old):
                _dispose_old(ledger, old, password, done)
            swap_in_new_key(keys, name)
            done.append(f"put {new.name} (key {candidate.key_id[:16]}...) in place")
    if os.path.lexists(old):
        if _same(key, old):
            destroy_key_file(old)  # a second name only: the name goes
        else:
            _dispose_old(ledger, old, password, done)
    if not (os.path.lexists(new) or os.path.lexists(old)):
        _forget_move(_move_path(keys, name))  # no rotation in progress: stale
    for line in done:
        _log.warning("finished an interrupted rotation of %s's log key: %s", name, line)
    return done


def current_log_key(
    keys: Path, name: str, ledger: Ledger, password: bytes | None
) -> Ed25519Signer:
    """The log key ledger ``name`` signs with now, for the server.

    An interrupted rotation's files are finished first when the key folder's
    lock is free and the folder can be written (else left to the rotation
    holding the lock, or to the next command). Then ``NAME.key``; when the
    ledger revoked its key in a rotation whose new key is in
    ``NAME.key.new`` (not renamed yet), that key. A revoked key with no
    rotation to take up is returned as it is: appends then say it was revoked.

    Raises:
        ConfigError, AuthError: ``NAME.key`` is missing or cannot be loaded,
            and no rotation's key can be taken up.
    """
    from mltrail.server.control import load_log_key

    key, new, _ = key_paths(keys, name)
    try:
        with keys_lock(keys, wait=False) as held:
            if held:
                finish_rotation(keys, name, ledger, password)
    except (OSError, MltrailError) as e:  # a read-only folder: taken up below
        _log.warning("cannot finish the rotation of %s's log key: %s", name, e)
    valid = ledger.keys().valid_keys(ledger.head().size)
    found = _load(key, password)
    if found is not None and found.key_id in valid:
        return found
    candidate = _load(new, password)
    if candidate is not None and _rotated(ledger, found, candidate.key_id):
        return candidate
    again = _load(key, password)  # a rotation may have renamed it meanwhile
    if again is not None and again.key_id in valid:
        return again
    return load_log_key(keys, name)


def _same(a: Path, b: Path) -> bool:
    """True when ``a`` and ``b`` are two names of one file (a hard link, as
    :func:`swap_in_new_key` makes); a missing one: False. A symbolic link is
    not followed: ``NAME.key.old`` linked to ``NAME.key`` is no second name of
    the old key (once the new key is renamed in, it leads to the new one)."""
    try:
        return os.path.samestat(os.lstat(a), os.lstat(b))
    except OSError:
        return False


def _remove_link(path: Path) -> None:
    """Remove the symbolic link ``path`` (never what it leads to), synced."""
    from mltrail.ledger.keystore import fsync_dir

    with contextlib.suppress(FileNotFoundError):
        path.unlink()
    fsync_dir(path.parent)


def _load(path: Path, password: bytes | None) -> Ed25519Signer | None:
    """The key in ``path``; None when there is none (missing, cut short, no key).

    Raises:
        AuthError: it is encrypted and ``password`` does not open it.
    """
    from mltrail.ledger.keystore import load_signer

    try:
        return load_signer(path, password)
    except AuthError:
        raise
    except (ConfigError, OSError, ValueError):
        return None


def _rotated(ledger: Ledger, current: Ed25519Signer | None, new_id: str) -> bool:
    """True when the ledger stored a rotation from ``current``'s key to
    ``new_id`` (with no ``current``: from any log key) and ``new_id`` is valid."""
    ring = ledger.keys()
    if new_id not in ring.valid_keys(ledger.head().size):
        return False
    if current is not None:
        return ledger.rotated_to(current.key_id) == new_id
    return any(
        state.is_log_key
        and state.revoked_seq is not None
        and ledger.rotated_to(key_id) == new_id
        for key_id, state in ring.keys.items()
    )


def _dispose_old(
    ledger: Ledger, old: Path, password: bytes | None, done: list[str]
) -> None:
    """Destroy (or move, as its rotation asked) ``NAME.key.old`` unless it
    holds a key valid now (warned)."""
    if old.is_symlink():  # no key file of a rotation: the link goes, not its file
        _remove_link(old)
        done.append(f"removed {old.name}, a symbolic link")
        return
    try:
        held = _load(old, password)
    except AuthError:
        held = None  # a key this password does not open: not one the server uses
    if held is not None and held.key_id in ledger.keys().valid_keys(ledger.head().size):
        _log.warning(
            "%s holds key %s..., valid now: left in place", old, held.key_id[:16]
        )
        return
    done.append(dispose_revoked_key(old.parent, old.name.removesuffix(".key.old")))


def dispose_revoked_key(keys: Path, name: str) -> str:
    """Move ``NAME.key.old`` (the revoked key) where ``NAME.key.move-to`` says
    its rotation asked, else destroy it; then ``NAME.key.move-to`` goes. Each
    step synced, so that a kill anywhere is finished by the next call: a copy
    already made in full (the kill came before the file in the key folder was
    destroyed) is kept and the key folder's file destroyed; a copy cut short
    (a prefix of the key file's bytes, never synced) is made again. Returns
    what was done, in one line. Call under the lock, once the new key is in
    place.

    Raises:
        ConfigError: the destination holds something else, or cannot be
            written: the revoked key is left as ``NAME.key.old``.
    """
    from mltrail.ledger.keystore import destroy_key_file, move_key_file

    _, _, old = key_paths(keys, name)
    marker = _move_path(keys, name)
    target = _move_target(marker)
    if target is None:
        destroy_key_file(old)
        line = f"destroyed {old.name}, the revoked key"
    else:
        if _cut_short_copy(old, target):
            target.unlink()
        if os.path.lexists(target) and _same_bytes(old, target):
            destroy_key_file(old)  # copied in full before a kill: the move is done
        else:
            move_key_file(old, target)
        line = f"moved {old.name}, the revoked key, to {target}"
    _forget_move(marker)
    return line


def _same_bytes(a: Path, b: Path) -> bool:
    """True when the regular files ``a`` and ``b`` (not links) hold the same
    bytes, ``b`` a file of this user's with one name (as the move makes it)."""
    if a.is_symlink() or not a.is_file() or not _own_file(b):
        return False
    if a.stat().st_size != b.stat().st_size:
        return False
    return a.read_bytes() == b.read_bytes()


def _cut_short_copy(old: Path, target: Path) -> bool:
    """True when ``target`` is a regular file of this user's, with one name,
    holding a proper prefix of ``old``'s bytes: a move's copy that a crash cut
    short (never another user's file, an empty one say, found at the
    destination)."""
    if not (old.is_file() and _own_file(target)):
        return False
    if target.stat().st_size >= old.stat().st_size:
        return False
    data, copied = old.read_bytes(), target.read_bytes()
    return len(copied) < len(data) and data.startswith(copied)


def _own_file(path: Path) -> bool:
    """Whether ``path`` is a regular file (not a link) of this user's with one
    name: the only kind of file a move of the revoked key leaves behind."""
    import stat

    try:
        st = path.lstat()
    except OSError:
        return False
    return stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid() and st.st_nlink == 1
