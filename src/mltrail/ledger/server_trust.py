"""What a client trusts of an mltrail server: its pinned log keys and the newest
checkpoint it has seen, one file per server ledger URL and origin
(``server-trust/<ledger>@<hash>.json`` in the client's home; ADR 0028).

On first contact the client pins the server's log key(s): the keys ``GET
/ledgers/<name>`` names, each public key checked against its id; or only the
ones given with ``--trust-key``/``MLTRAIL_TRUST_KEY`` (key ids printed by the
server's admin), which is the only way not to trust the first answer. From
then on the URL must answer for the origin pinned there, and every checkpoint
the server gives (on each open, and after each append) must be signed by a
pinned key valid at its size and extend the kept checkpoint: an RFC 9162
consistency proof from the server, checked here. A log that shrank, or whose
tree differs from one the client saw, is refused (``IntegrityError``), and the
newest checkpoint is kept, so the server can never show this client two
histories. A checkpoint signed by a key the client has not pinned is taken
only when the log proves the key was rotated in (its ``key.added`` signed by a
pinned key and included in the tree); the key is then pinned, the old one kept
for older checkpoints.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import re
import stat
import sys
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mltrail.config import write_atomic
from mltrail.core.canonical import compute_leaf_hash
from mltrail.core.checkpoint import (
    Checkpoint,
    parse_signed_checkpoint,
    verify_checkpoint,
)
from mltrail.core.codec import decode_record
from mltrail.core.head import KEY_KINDS
from mltrail.core.merkle import verify_consistency, verify_inclusion
from mltrail.core.signing import compute_key_id, decode_b64, verify_signature
from mltrail.errors import ConfigError, IntegrityError, MltrailError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from mltrail.core.report import StoredCheckpoint
    from mltrail.storage.http import HttpStore

__all__ = [
    "TRUST_DIR",
    "ServerTrust",
    "parse_trust_keys",
    "server_id",
    "trust_file_name",
]

TRUST_DIR = "server-trust"
TRUST_FORMAT = 2
_DEFAULT_PORTS = {"http": 80, "https": 443}
_KEY_ID = re.compile(r"[0-9a-f]{64}")


def parse_trust_keys(text: str | None) -> tuple[str, ...]:
    """Key ids from ``--trust-key``/``MLTRAIL_TRUST_KEY`` (comma-separated).

    Raises:
        InputError: one is not 64 lowercase hex digits.
    """
    from mltrail.errors import InputError

    keys = tuple(k.strip().lower() for k in (text or "").split(",") if k.strip())
    for key in keys:
        if not _KEY_ID.fullmatch(key):
            raise InputError(
                f"{key[:70]!r} is not a key id (64 hex digits)",
                hint="the server's admin prints it (mltrail keys list on the server)",
            )
    return keys


@dataclass
class ServerTrust:
    """The pinned log keys of one log (one origin) and the newest checkpoint seen.

    Args:
        path: the trust file.
        ledger: the ledger's name on the server (the first one it was met under).
        origin: its origin (bound into every checkpoint).
        genesis_key: the key id of its genesis record.
        log_keys: key id -> raw Ed25519 public key of each pinned log key.
        checkpoint: the newest checkpoint text this client has seen (None: none).
        servers: the server ledger URLs (:func:`server_id`) pinned to this log.
        key_seqs: key id -> (seq of its ``key.added``, seq of its ``key.revoked``
            or None), as far as this client proved them; a key pinned on first
            contact counts as added before seq 0.
    """

    path: Path
    ledger: str
    origin: str
    genesis_key: str
    log_keys: dict[str, bytes]
    checkpoint: str | None = None
    pinned_by: str = "first contact"
    servers: list[str] = field(default_factory=list)
    key_seqs: dict[str, tuple[int, int | None]] = field(default_factory=dict)
    migrated_from: Path | None = field(default=None, repr=False)
    # a home this process may not write (ADR 0012): checked and kept in memory
    read_only: bool = field(default=False, repr=False)
    _store: HttpStore | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls, home: Path, store: HttpStore, trust_keys: Sequence[str] = ()
    ) -> ServerTrust:
        """Load the trust of the log ``store``'s server ledger serves (pinning its
        keys on first contact, or taking over a trust file keyed by the ledger
        name only), then check and keep the server's latest checkpoint.

        The trust state is kept per server ledger URL (:func:`server_id`) and
        the origin it answered for on first contact: a URL that answers for
        another origin later is refused, and two servers serving a ledger of
        one name never share a pin or a checkpoint.

        Raises:
            IntegrityError: the server's origin, keys or checkpoint disagree with
                what was pinned, or its log was forked or shrunk.
            ConfigError: a trust file is unreadable.
        """
        from mltrail.storage.readonly import can_write

        folder = home / TRUST_DIR
        sid = server_id(store.server.url)
        claimed = _claimed_origin(store)
        read_only = not can_write(folder)
        with _folder_locked(folder, read_only=read_only):
            trust = _find(folder, sid)
            if trust is None:
                trust = _first_contact(
                    folder, store, sid, claimed, trust_keys, read_only=read_only
                )
            elif trust.origin != claimed:
                raise IntegrityError(
                    f"the server at {sid} answers for origin {claimed!r}, but "
                    f"this client pinned origin {trust.origin!r} there: another "
                    "log answers at that address",
                    hint=f"if the server was really replaced, move {trust.path} "
                    "aside and pin the new one with --trust-key (a key id from "
                    "its admin)",
                )
            trust._store = store
            trust.read_only = read_only
            if trust_keys and not set(trust_keys) <= set(trust.log_keys):
                raise IntegrityError(
                    "the key given with --trust-key/MLTRAIL_TRUST_KEY is not a log "
                    f"key this client pinned for {trust.origin}",
                    hint=f"move {trust.path} aside to pin the server again",
                )
            trust.refresh()
            if trust.migrated_from is not None and not read_only:
                with trust._locked():
                    trust._save()  # the new file first: nothing kept is lost
                trust.migrated_from.replace(
                    trust.migrated_from.with_name(
                        trust.migrated_from.name + ".migrated"
                    )
                )
                trust.migrated_from = None
        return trust

    @classmethod
    def _pin(
        cls,
        path: Path,
        store: HttpStore,
        trust_keys: Sequence[str],
        origin: str,
    ) -> ServerTrust:
        info = store.info()
        named = list(info.get("log_keys") or [])
        wanted = list(trust_keys) or named
        published = {k["key"]: k.get("public_key") for k in store.list_keys()}
        keys: dict[str, bytes] = {}
        for key_id in wanted:
            if key_id not in named or not published.get(key_id):
                raise IntegrityError(
                    f"the server does not name {key_id[:16]}... as a log key of "
                    f"ledger {store.server.ledger}",
                    hint="check the key id with the server's admin",
                )
            public = decode_b64(str(published[key_id]))
            if compute_key_id(public) != key_id:
                raise IntegrityError(
                    f"the server's public key for {key_id[:16]}... does not hash "
                    "to that id"
                )
            keys[key_id] = public
        if not keys:
            raise IntegrityError(
                f"the server names no log key for {store.server.ledger}"
            )
        return cls(
            path,
            store.server.ledger,
            origin,
            str(info.get("genesis_key") or next(iter(keys))),
            keys,
            pinned_by="--trust-key" if trust_keys else "first contact",
        )

    @classmethod
    def _load(cls, path: Path) -> ServerTrust:
        try:
            return cls._from_json(path, path.read_text("utf-8"))
        except OSError as e:
            raise ConfigError(
                f"cannot read the server trust file {path}: {e}",
                hint="restore it from a copy, or move it aside to pin the server again",
            ) from e

    @classmethod
    def _from_json(cls, path: Path, text: str) -> ServerTrust:
        """Parse a trust file (this format, or the first one: no servers, no
        key seqs, which reads as keys pinned before seq 0).

        Raises:
            ConfigError: it is not a trust file.
        """
        try:
            data = json.loads(text)
            keys = {str(k): decode_b64(str(v)) for k, v in data["log_keys"].items()}
            for key_id, public in keys.items():
                if compute_key_id(public) != key_id:
                    raise ValueError(f"key {key_id[:16]}... is not its key's hash")
            seqs: dict[str, tuple[int, int | None]] = {}
            for key_id, (added, revoked) in (data.get("key_seqs") or {}).items():
                if (
                    key_id not in keys
                    or type(added) is not int
                    or not (revoked is None or type(revoked) is int)
                ):
                    raise ValueError(f"bad key_seqs entry for {key_id[:16]}...")
                seqs[key_id] = (added, revoked)
            servers = data.get("servers") or []
            checkpoint = data.get("checkpoint")
            texts = [data["ledger"], data["origin"], data["genesis_key"], *servers]
            if not isinstance(servers, list) or not all(
                isinstance(t, str) for t in texts
            ):
                raise ValueError("a name, origin, key or server is not text")
            if checkpoint is not None and not isinstance(checkpoint, str):
                raise ValueError("the checkpoint is not text")
            return cls(
                path,
                data["ledger"],
                data["origin"],
                data["genesis_key"],
                keys,
                checkpoint,
                str(data.get("pinned_by", "first contact")),
                servers,
                seqs,
            )
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(
                f"cannot read the server trust file {path}: {e}",
                hint="restore it from a copy, or move it aside to pin the server again",
            ) from e

    def _to_json(self) -> str:
        from mltrail.core.signing import encode_b64

        data: dict[str, Any] = {
            "version": TRUST_FORMAT,
            "ledger": self.ledger,
            "origin": self.origin,
            "servers": self.servers,
            "genesis_key": self.genesis_key,
            "log_keys": {k: encode_b64(v) for k, v in self.log_keys.items()},
            "key_seqs": {k: list(v) for k, v in self.key_seqs.items()},
            "pinned_by": self.pinned_by,
            "checkpoint": self.checkpoint,
        }
        return json.dumps(data, indent=2) + "\n"

    def _save(self) -> None:
        if self.read_only:
            return  # kept for this process only: nothing is written (ADR 0012)
        write_atomic(self.path, self._to_json(), mode=0o600)

    def _reload(self) -> None:
        """Take what other processes of this home wrote (under the lock)."""
        if not self.path.exists():
            return
        found = self._load(self.path)
        self.servers = found.servers
        self.log_keys, self.key_seqs = found.log_keys, found.key_seqs
        if found.checkpoint is not None:
            self.checkpoint = found.checkpoint

    # -- checking what the server gives --------------------------------------

    def refresh(self) -> Checkpoint | None:
        """Fetch the server's latest checkpoint, check it and keep it if newest.

        It is fetched after the kept one is read (under the trust file's lock),
        so it can never honestly be older: one that is means the log shrank.

        Raises:
            IntegrityError: see :meth:`accept`; or the server shows no
                checkpoint at all after this client saw one.
        """
        assert self._store is not None
        with self._locked():
            kept = self._kept()
            latest = self._store.latest_checkpoint()
            if latest is None:
                if kept is None:
                    return None
                raise IntegrityError(
                    f"the server shows no checkpoint of {self.ledger}, but this "
                    f"client saw one of {kept[1].size} records: the log was emptied"
                )
            return self._take(latest.text, kept, older_ok=False)

    def accept(self, text: str) -> Checkpoint:
        """Check a checkpoint the server answered an append with; keep it if newest.

        It must be signed by a pinned log key valid at its size (or by a key
        the log proves was rotated in, which is then pinned), carry the
        ledger's origin, and be consistent with the kept checkpoint (the
        server's consistency proof, in whichever direction: another process of
        this home may have kept a newer one meanwhile).

        Raises:
            IntegrityError: any of that fails.
        """
        with self._locked():
            return self._take(text, self._kept(), older_ok=True)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.path.with_name(self.path.name + ".lock")
        if self.read_only:
            with _shared_lock(lock):
                yield
            return
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(lock, "a") as held:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX)
            yield

    def _kept(self) -> tuple[str, Checkpoint] | None:
        """The newest kept checkpoint (the file's, which other processes move)."""
        self._reload()
        text = self.checkpoint
        if text is None:
            return None
        return text, self._verified(text, f"the checkpoint kept in {self.path}")

    def _take(
        self, text: str, kept: tuple[str, Checkpoint] | None, *, older_ok: bool
    ) -> Checkpoint:
        if not self._signed_by_pinned(text):
            self._learn_rotation(text, kept)
        new = self._verified(text, "the server's checkpoint")
        if kept is not None and new.size < kept[1].size and older_ok:
            self._check_extends(new, kept[1])  # the kept one extends it
        elif kept is not None:
            self._check_extends(kept[1], new)
        if kept is None or new.size > kept[1].size:
            self.checkpoint = text
            self._save()
        else:
            self.checkpoint = kept[0]
        return new

    def check_inclusion(self, seq: int, leaf: bytes, checkpoint: Checkpoint) -> None:
        """Check the server's proof that leaf ``seq`` is in ``checkpoint``'s tree.

        Raises:
            IntegrityError: the proof does not verify.
        """
        assert self._store is not None
        hashes = self._store.inclusion_hashes(seq, checkpoint.size)
        try:
            verify_inclusion(seq, checkpoint.size, leaf, hashes, checkpoint.root)
        except MltrailError as e:
            raise IntegrityError(
                f"the server's checkpoint of {checkpoint.size} records does not "
                f"include record {seq} as it was appended: {e}",
                hint="run `mltrail verify`; report it to the server's admin",
            ) from e

    def valid_at(self, key_id: str, size: int) -> bool:
        """May pinned log key ``key_id`` sign a checkpoint of ``size`` records
        (added before it, not revoked at or before it, as the keyring rules)?"""
        if key_id not in self.log_keys:
            return False
        added, revoked = self.key_seqs.get(key_id, (-1, None))
        return added < size and (revoked is None or size < revoked)

    def _signed_by_pinned(self, text: str) -> bool:
        """Does any pinned key (valid or not at its size) sign ``text``?"""
        return _signer_of(text, self.origin, self.log_keys) is not None

    def _verified(self, text: str, what: str) -> Checkpoint:
        try:
            size = parse_signed_checkpoint(text).checkpoint.size
        except (MltrailError, ValueError) as e:
            raise IntegrityError(f"{what} is not a signed checkpoint: {e}") from e
        valid = {k: v for k, v in self.log_keys.items() if self.valid_at(k, size)}
        try:
            if not valid:
                raise IntegrityError("no pinned log key is valid at that size")
            return verify_checkpoint(
                text, origin=self.origin, public_keys=list(valid.values())
            )
        except (MltrailError, ValueError) as e:
            signer = _signer_of(text, self.origin, self.log_keys)
            if signer is not None:
                added, revoked = self.key_seqs.get(signer, (-1, None))
                when = (
                    f"revoked at seq {revoked}"
                    if revoked is not None and size >= revoked
                    else f"added at seq {added}"
                )
                raise IntegrityError(
                    f"{what} ({size} records) is signed by log key "
                    f"{signer[:16]}... of {self.origin}, which was {when}: it may "
                    "not sign a checkpoint of that size",
                    hint="whoever holds a revoked log key can sign anything; "
                    f"report it to the server's admin and keep {self.path}",
                ) from e
            raise IntegrityError(
                f"{what} is not signed by a pinned log key of {self.origin}, nor "
                f"by a key the log proves was rotated in: {e}",
                hint="a rotated log key is pinned when the log holds its key.added "
                "signed by a pinned key; otherwise ask the server's admin for "
                f"the key id, move {self.path} aside and pin it with --trust-key",
            ) from e

    def _check_extends(self, old: Checkpoint, new: Checkpoint) -> None:
        if new.size < old.size:
            raise IntegrityError(
                f"the server shows {new.size} records of {self.ledger}, but this "
                f"client saw a checkpoint of {old.size}: the log shrank or was "
                "rolled back",
                hint=f"report it to the server's admin; keep {self.path} as evidence",
            )
        if new.size == old.size:
            if new.root != old.root:
                raise IntegrityError(
                    f"the server's tree of {new.size} records differs from the one "
                    "this client saw at that size: the log was forked or rewritten",
                    hint=f"report it to the server's admin; keep {self.path}",
                )
            return
        assert self._store is not None
        hashes = self._store.consistency_hashes(old.size, new.size)
        try:
            verify_consistency(old.size, new.size, old.root, new.root, hashes)
        except MltrailError as e:
            raise IntegrityError(
                f"the server's log of {new.size} records does not extend the "
                f"checkpoint of {old.size} this client saw: it was forked or "
                f"rewritten ({e})",
                hint=f"report it to the server's admin; keep {self.path}",
            ) from e

    # -- a rotated log key --------------------------------------------------------

    def _learn_rotation(self, text: str, kept: tuple[str, Checkpoint] | None) -> None:
        """Pin the key that signs ``text`` if the log proves it was rotated in.

        The log's key records are walked in order; a ``key.added`` of a log key
        (no identity) is taken only when its record is included in ``text``'s
        tree (the server's inclusion proof), ``text`` is consistent with the
        kept checkpoint, and the entry is signed by a key pinned and valid at
        its seq; a ``key.revoked`` of a pinned key, proven the same way, marks
        it revoked. Nothing is pinned unless a key so proven signs ``text``.
        Raises nothing: what it cannot prove, :meth:`_verified` refuses.
        """
        assert self._store is not None
        try:
            signed = parse_signed_checkpoint(text)
        except (MltrailError, ValueError):
            return
        size = signed.checkpoint.size
        if signed.checkpoint.origin != self.origin:
            return
        keys = dict(self.log_keys)
        seqs = {k: self.key_seqs.get(k, (-1, None)) for k in keys}
        proven: list[tuple[int, str, str]] = []  # (seq, kind, key)
        anchored: Checkpoint | None = None
        for row in self._store.rows_of_kinds(KEY_KINDS):
            if row.seq >= size:
                break
            step = _key_step(row.seq, row.data, keys, seqs)
            if step is None:
                continue
            if anchored is None:
                anchored = self._anchor(text, keys, seqs, kept)
                if anchored is None:
                    return
            leaf = compute_leaf_hash(row.data)
            hashes = self._store.inclusion_hashes(row.seq, size)
            try:
                verify_inclusion(row.seq, size, leaf, hashes, anchored.root)
            except MltrailError:
                continue
            kind, key_id, public = step
            if kind == "key.added":
                keys[key_id] = public
                seqs[key_id] = (row.seq, None)
            else:
                seqs[key_id] = (seqs[key_id][0], row.seq)
            proven.append((row.seq, kind, key_id))
        signer = _signer_of(text, self.origin, keys)
        if signer is None or signer in self.log_keys or anchored is None:
            return
        added, revoked = seqs[signer]
        if not (added < size and (revoked is None or size < revoked)):
            return
        self.log_keys, self.key_seqs = keys, seqs
        self._save()
        rotated = [k for s, kind, k in proven if kind == "key.added"]
        gone = [k for s, kind, k in proven if kind == "key.revoked"]
        print(  # noqa: T201 - said once, when the key is pinned
            f"mltrail: the log key of {self.origin} was rotated: pinned "
            + ", ".join(f"{k[:16]}... (key.added at seq {seqs[k][0]})" for k in rotated)
            + ("; revoked " + ", ".join(f"{k[:16]}..." for k in gone) if gone else "")
            + f" ({self.path})",
            file=sys.stderr,
        )

    def _anchor(
        self,
        text: str,
        keys: dict[str, bytes],
        seqs: dict[str, tuple[int, int | None]],
        kept: tuple[str, Checkpoint] | None,
    ) -> Checkpoint | None:
        """``text``'s checkpoint, parsed, once shown consistent with the kept one
        (so the records proven in it are in the log this client saw grow).

        Raises:
            IntegrityError: it is not (forked, rewritten or shrunk).
        """
        try:
            new = parse_signed_checkpoint(text).checkpoint
        except (MltrailError, ValueError):
            return None
        if kept is not None:
            if new.size < kept[1].size:
                self._check_extends(new, kept[1])
            else:
                self._check_extends(kept[1], new)
        return new

    def for_verification(self) -> list[StoredCheckpoint]:
        """The kept checkpoint, as an anchor outside the server for ``verify``."""
        from mltrail.core.report import StoredCheckpoint

        if self.checkpoint is None:
            return []
        label = f"checkpoint this client kept ({self.path}, inside this home)"
        return [
            StoredCheckpoint(
                label,
                _size(self.checkpoint),
                self.checkpoint,
                external=True,
                in_store=False,
            )
        ]


def server_id(url: str) -> str:
    """The server ledger a URL names, as the trust state records it: scheme and
    host lower-cased, a default port dropped, no trailing slash, nothing after
    the path (``https://h/ledgers/a`` and ``HTTPS://H:443/ledgers/a/`` are one).

    Raises:
        InputError: not an http(s) URL naming a ledger.
    """
    from urllib.parse import urlsplit, urlunsplit

    from mltrail.storage.registry import is_server_url

    if not is_server_url(url):
        from mltrail.errors import InputError

        raise InputError(f"{url[:200]!r} is not an http(s) URL of a ledger")
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    netloc = host if port in (None, _DEFAULT_PORTS[scheme]) else f"{host}:{port}"
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def trust_file_name(ledger: str, sid: str, origin: str) -> str:
    """The trust file of log ``origin`` as server ledger ``sid`` serves it:
    ``<ledger>@<16 hex digits of SHA-256(sid, newline, origin)>.json``."""
    digest = hashlib.sha256(f"{sid}\n{origin}".encode()).hexdigest()[:16]
    safe = re.sub(r"[^a-z0-9-]", "-", ledger.lower())[:48] or "ledger"
    return f"{safe}@{digest}.json"


def _claimed_origin(store: HttpStore) -> str:
    """The origin the server says its ledger has (one line, as checkpoints carry).

    Raises:
        IntegrityError: it names none, or one no checkpoint could carry.
    """
    origin = store.info().get("origin")
    try:
        if not isinstance(origin, str):
            raise ValueError("it is not text")
        Checkpoint(origin, 0, bytes(32))  # the rules of an origin line
    except ValueError as e:
        raise IntegrityError(
            f"the server's ledger {store.server.ledger} names no usable origin "
            f"({str(origin)[:80]!r}: {e})"
        ) from e
    return origin


@contextmanager
def _folder_locked(folder: Path, *, read_only: bool = False) -> Iterator[None]:
    """Held while trust files are looked up, pinned or migrated."""
    if read_only:
        with _shared_lock(folder / ".pin.lock"):
            yield
        return
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    with open(folder / ".pin.lock", "a") as held:
        fcntl.flock(held.fileno(), fcntl.LOCK_EX)
        yield


@contextmanager
def _shared_lock(lock: Path) -> Iterator[None]:
    """In a home this process may not write: a shared lock on ``lock`` when it
    is a regular file (a writer of the live home is waited for), else none;
    nothing is created (ADR 0012)."""
    try:
        fd: int | None = os.open(lock, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        fd = None
    try:
        if fd is not None and stat.S_ISREG(os.fstat(fd).st_mode):
            fcntl.flock(fd, fcntl.LOCK_SH)
        yield
    finally:
        if fd is not None:
            os.close(fd)


def _find(folder: Path, sid: str) -> ServerTrust | None:
    """The trust file pinned for server ledger ``sid``, if any."""
    for path in sorted(folder.glob("*@*.json")):
        trust = ServerTrust._load(path)
        if sid in trust.servers:
            return trust
    return None


def _first_contact(
    folder: Path,
    store: HttpStore,
    sid: str,
    origin: str,
    trust_keys: Sequence[str],
    *,
    read_only: bool = False,
) -> ServerTrust:
    """The trust of a server ledger this client has not met at this URL: a
    trust file of the first format (``<ledger>.json``, keyed by the name only)
    taken over when its origin is the one the server names (written under the
    new name once the server's checkpoint checks against it), else a new pin."""
    ledger = store.server.ledger
    path = folder / trust_file_name(ledger, sid, origin)
    legacy = folder / f"{ledger}.json"
    if legacy.exists():
        old = ServerTrust._load(legacy)
        if old.origin == origin:
            old.path, old.servers = path, [sid]
            old.key_seqs = dict.fromkeys(old.log_keys, (-1, None))
            old.migrated_from = legacy
            return old
        if not trust_keys:
            raise IntegrityError(
                f"the server at {sid} answers for origin {origin!r}, but this "
                f"client pinned ledger {ledger} with origin {old.origin!r} "
                f"({legacy}, which does not say which server it was)",
                hint="if this is another server's ledger, pin it with --trust-key "
                "(a key id from its admin); otherwise report it",
            )
    trust = ServerTrust._pin(path, store, trust_keys, origin)
    trust.servers = [sid]
    trust.read_only = read_only  # pinned for this process only (ADR 0012)
    trust._save()
    return trust


def _signer_of(text: str, origin: str, keys: dict[str, bytes]) -> str | None:
    """Which of ``keys`` signs checkpoint ``text`` of ``origin`` (None: none)."""
    for key_id, public in keys.items():
        try:
            verify_checkpoint(text, origin=origin, public_keys=[public])
        except (MltrailError, ValueError):
            continue
        return key_id
    return None


def _key_step(  # noqa: PLR0911 - one refusal per rule, each plain
    seq: int,
    data: bytes,
    keys: dict[str, bytes],
    seqs: dict[str, tuple[int, int | None]],
) -> tuple[str, str, bytes] | None:
    """What a key record shown by the server would change, if it is one this
    client can check: ``("key.added", key, public key)`` of a new log key or
    ``("key.revoked", key, b"")`` of a known one, signed by a key of ``keys``
    valid at ``seq`` (the keyring's rule for key records). None: it changes
    nothing this client tracks, or it does not check."""
    try:
        decoded = decode_record(data)
    except MltrailError:
        return None
    entry = decoded.record.entry
    if decoded.record.seq != seq or entry.sig is None:
        return None
    signer = entry.sig.key
    added, revoked = seqs.get(signer, (-1, None))
    if signer not in keys or not (added < seq and (revoked is None or seq < revoked)):
        return None
    try:
        signature = decode_b64(entry.sig.value)
    except ValueError:
        return None
    if not verify_signature(keys[signer], decoded.signing_bytes, signature):
        return None
    body = entry.body
    key_id = str(body.get("key"))
    if entry.kind == "key.added":
        if body.get("identity") is not None or key_id in keys:
            return None
        try:
            public = decode_b64(str(body.get("public_key")))
        except ValueError:
            return None
        if compute_key_id(public) != key_id:
            return None
        return "key.added", key_id, public
    if entry.kind == "key.revoked" and key_id in keys:
        if seqs.get(key_id, (-1, None))[1] is not None:
            return None
        return "key.revoked", key_id, b""
    return None


def _size(text: str) -> int:
    try:
        return parse_signed_checkpoint(text).checkpoint.size
    except MltrailError:
        return 0
