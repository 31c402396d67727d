"""What a client trusts of an mltrail server: its pinned log keys and the newest
checkpoint it has seen (``server-trust/<ledger>.json`` in the client's home).

On first contact the client pins the server's log key(s): the keys ``GET
/ledgers/<name>`` names, each public key checked against its id; or only the
ones given with ``--trust-key``/``MLTRAIL_TRUST_KEY`` (key ids printed by the
server's admin), which is the only way not to trust the first answer. From
then on every checkpoint the server gives (on each open, and after each
append) must be signed by a pinned key and extend the kept checkpoint: an RFC
9162 consistency proof from the server, checked here. A log that shrank, or
whose tree differs from one the client saw, is refused (``IntegrityError``),
and the newest checkpoint is kept, so the server can never show this client
two histories.
"""

from __future__ import annotations

import fcntl
import json
import re
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mltrail.config import write_atomic
from mltrail.core.checkpoint import (
    Checkpoint,
    parse_signed_checkpoint,
    verify_checkpoint,
)
from mltrail.core.merkle import verify_consistency, verify_inclusion
from mltrail.core.signing import compute_key_id, decode_b64
from mltrail.errors import ConfigError, IntegrityError, MltrailError

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from pathlib import Path

    from mltrail.core.report import StoredCheckpoint
    from mltrail.storage.http import HttpStore

__all__ = ["TRUST_DIR", "ServerTrust", "parse_trust_keys"]

TRUST_DIR = "server-trust"
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
    """The pinned log keys of one server ledger and the newest checkpoint seen.

    Args:
        path: the trust file.
        ledger: the ledger's name on the server.
        origin: its origin (bound into every checkpoint).
        genesis_key: the key id of its genesis record.
        log_keys: key id -> raw Ed25519 public key of each pinned log key.
        checkpoint: the newest checkpoint text this client has seen (None: none).
    """

    path: Path
    ledger: str
    origin: str
    genesis_key: str
    log_keys: dict[str, bytes]
    checkpoint: str | None = None
    pinned_by: str = "first contact"
    _store: HttpStore | None = field(default=None, repr=False)

    @classmethod
    def open(
        cls, home: Path, store: HttpStore, trust_keys: Sequence[str] = ()
    ) -> ServerTrust:
        """Load the trust of ``store``'s ledger from ``home`` (pinning its keys on
        first contact), then check and keep the server's latest checkpoint.

        Raises:
            IntegrityError: the server's origin, keys or checkpoint disagree with
                what was pinned, or its log was forked or shrunk.
            ConfigError: the trust file is unreadable.
        """
        path = home / TRUST_DIR / f"{store.server.ledger}.json"
        if path.exists():
            trust = cls._load(path)
        else:
            trust = cls._pin(path, store, trust_keys)
            trust._save()
        trust._store = store
        info = store.info()
        if info.get("origin") != trust.origin:
            raise IntegrityError(
                f"the server says ledger {trust.ledger} has origin "
                f"{info.get('origin')!r}, but this client pinned {trust.origin!r}",
                hint=f"another ledger answers at {store.location}; if that is "
                f"expected, move {path} aside and pin the server again",
            )
        if trust_keys and not set(trust_keys) <= set(trust.log_keys):
            raise IntegrityError(
                "the key given with --trust-key/MLTRAIL_TRUST_KEY is not a log key "
                f"this client pinned for {trust.ledger}",
                hint=f"move {path} aside to pin the server again",
            )
        trust.refresh()
        return trust

    @classmethod
    def _pin(
        cls, path: Path, store: HttpStore, trust_keys: Sequence[str]
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
            str(info["origin"]),
            str(info.get("genesis_key") or next(iter(keys))),
            keys,
            pinned_by="--trust-key" if trust_keys else "first contact",
        )

    @classmethod
    def _load(cls, path: Path) -> ServerTrust:
        try:
            data = json.loads(path.read_text("utf-8"))
            return cls(
                path,
                str(data["ledger"]),
                str(data["origin"]),
                str(data["genesis_key"]),
                {k: decode_b64(v) for k, v in data["log_keys"].items()},
                data.get("checkpoint"),
                str(data.get("pinned_by", "first contact")),
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
            raise ConfigError(
                f"cannot read the server trust file {path}: {e}",
                hint="restore it from a copy, or move it aside to pin the server again",
            ) from e

    def _save(self) -> None:
        from mltrail.core.signing import encode_b64

        data: dict[str, Any] = {
            "ledger": self.ledger,
            "origin": self.origin,
            "genesis_key": self.genesis_key,
            "log_keys": {k: encode_b64(v) for k, v in self.log_keys.items()},
            "pinned_by": self.pinned_by,
            "checkpoint": self.checkpoint,
        }
        write_atomic(self.path, json.dumps(data, indent=2) + "\n", mode=0o600)

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

        It must be signed by a pinned log key, carry the ledger's origin, and be
        consistent with the kept checkpoint (the server's consistency proof, in
        whichever direction: another process of this home may have kept a newer
        one meanwhile).

        Raises:
            IntegrityError: any of that fails.
        """
        with self._locked():
            return self._take(text, self._kept(), older_ok=True)

    @contextmanager
    def _locked(self) -> Iterator[None]:
        lock = self.path.with_name(self.path.name + ".lock")
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        with open(lock, "a") as held:
            fcntl.flock(held.fileno(), fcntl.LOCK_EX)
            yield

    def _kept(self) -> tuple[str, Checkpoint] | None:
        """The newest kept checkpoint (the file's, which other processes move)."""
        text = self._load(self.path).checkpoint if self.path.exists() else None
        text = text or self.checkpoint
        if text is None:
            return None
        return text, self._verified(text, f"the checkpoint kept in {self.path}")

    def _take(
        self, text: str, kept: tuple[str, Checkpoint] | None, *, older_ok: bool
    ) -> Checkpoint:
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

    def _verified(self, text: str, what: str) -> Checkpoint:
        try:
            return verify_checkpoint(
                text, origin=self.origin, public_keys=list(self.log_keys.values())
            )
        except (MltrailError, ValueError) as e:
            raise IntegrityError(
                f"{what} is not signed by a pinned log key of {self.ledger}: {e}",
                hint="if the server's admin rotated its log key, pin the new one "
                f"with --trust-key after moving {self.path} aside",
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

    def for_verification(self) -> list[StoredCheckpoint]:
        """The kept checkpoint, as an anchor outside the server for ``verify``."""
        from mltrail.core.report import StoredCheckpoint

        if self.checkpoint is None:
            return []
        label = f"checkpoint this client kept ({self.path})"
        return [
            StoredCheckpoint(
                label,
                _size(self.checkpoint),
                self.checkpoint,
                external=True,
                in_store=False,
            )
        ]


def _size(text: str) -> int:
    try:
        return parse_signed_checkpoint(text).checkpoint.size
    except MltrailError:
        return 0
