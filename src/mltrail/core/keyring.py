"""The key ring: which key was valid at which seq, and what each key may sign.

A ledger has two sorts of keys (ADR 0025):

* LOG keys (a ``key.added`` without ``identity``: the genesis key and every key
  rotated in) sign checkpoints, key records, clock resets and purges, and may
  sign any entry;
* AUTHOR keys (a ``key.added`` with ``identity``, registered by a log key with a
  proof that the holder of the key asked for it) sign only entries whose
  ``actor.user`` is their identity, and never a key record, ``clock.reset``,
  ``blob.purged`` or checkpoint.

So a record signed by an author key proves which person or job wrote it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mltrail.core.signing import (
    compute_key_id,
    decode_b64,
    is_valid_public_key,
    verify_signature,
)
from mltrail.values import Frozen, Value

if TYPE_CHECKING:
    from mltrail.core.signing import Signer

__all__ = [
    "AUTHOR_FORBIDDEN_KINDS",
    "KEY_PROOF_CONTEXT",
    "MAX_IDENTITY_CHARS",
    "KeyProblem",
    "KeyRing",
    "KeyState",
    "compute_key_proof_message",
    "identity_problem",
    "make_key_proof",
]

KEY_PROOF_CONTEXT = b"mltrail-key-register/1\n"
"""First line of the message an author key signs to prove it asked to be added."""

MAX_IDENTITY_CHARS = 200

AUTHOR_FORBIDDEN_KINDS = frozenset(
    {"key.added", "key.revoked", "clock.reset", "blob.purged"}
)
"""Kinds only a log key may sign."""


def compute_key_proof_message(origin: str, identity: str, key_id: str) -> bytes:
    """The bytes an author key signs to register as ``identity`` in ``origin``.

    ``b"mltrail-key-register/1\\n" + origin + "\\n" + identity + "\\n" +
    key_id + "\\n"`` in UTF-8: bound to one ledger, one identity and the key
    itself, so a proof cannot be replayed into another ledger or for another
    name. (An origin holds no newline and a key id is 64 hex digits, so the
    identity between them is unambiguous whatever it holds.)
    """
    return b"".join(
        (
            KEY_PROOF_CONTEXT,
            origin.encode("utf-8"),
            b"\n",
            identity.encode("utf-8"),
            b"\n",
            key_id.encode("ascii"),
            b"\n",
        )
    )


def make_key_proof(signer: Signer, origin: str, identity: str) -> bytes:
    """The proof ``signer``'s key asks to be registered as ``identity`` in ``origin``."""
    return signer.sign(compute_key_proof_message(origin, identity, signer.key_id))


def identity_problem(identity: object) -> str | None:
    """Why ``identity`` cannot name an author key, or None."""
    if not isinstance(identity, str):
        return "the identity is not a string"
    if not 1 <= len(identity) <= MAX_IDENTITY_CHARS:
        return f"the identity must be 1 to {MAX_IDENTITY_CHARS} characters"
    try:
        identity.encode("utf-8")
    except UnicodeEncodeError:
        return "the identity is not valid Unicode text"
    return None


class KeyProblem(str):
    """A problem message (a ``str``) carrying the problem code reports use.

    Codes: ``signer`` (key unknown, not yet added or revoked), ``author-user``
    (an author key signed another user's entry), ``author-kind`` (an author key
    signed a kind only a log key may), ``author-checkpoint`` (an author key
    signed a checkpoint), ``key-signer`` (a key record not signed by a log key),
    ``key-proof`` (an author key added without a valid proof), ``key``
    (anything else wrong with a key record).
    """

    code: str

    def __new__(cls, message: str, code: str = "key") -> KeyProblem:
        problem = super().__new__(cls, message)
        problem.code = code
        return problem


_set = object.__setattr__  # how a frozen value sets its fields in __init__


class KeyState(Frozen):
    """A key as the ledger knows it: when it was added and, if so, revoked.

    ``identity`` is the ``actor.user`` an author key signs for; None for a log key.
    Frozen: copies of a ring share their states (:meth:`KeyRing.copy`), so a
    revocation puts a new state in the ring that applies it.
    """

    __slots__ = __match_args__ = ("public_key", "added_seq", "revoked_seq", "identity")
    public_key: bytes
    added_seq: int
    revoked_seq: int | None
    identity: str | None

    def __init__(
        self,
        public_key: bytes,
        added_seq: int,
        revoked_seq: int | None = None,
        identity: str | None = None,
    ) -> None:
        _set(self, "public_key", public_key)
        _set(self, "added_seq", added_seq)
        _set(self, "revoked_seq", revoked_seq)
        _set(self, "identity", identity)

    @property
    def is_log_key(self) -> bool:
        """True for a log key (no identity)."""
        return self.identity is None


class KeyRing(Value):
    """Which key was valid at which seq, built by applying key records in order.

    ``origin`` checks the proofs of author keys; None: taken from the genesis
    record's ``origin``.
    """

    __match_args__ = ("keys", "genesis_key", "origin")
    __slots__ = (*__match_args__, "_log_ids")
    keys: dict[str, KeyState]
    genesis_key: str | None
    origin: str | None

    def __init__(
        self,
        keys: dict[str, KeyState] | None = None,
        genesis_key: str | None = None,
        origin: str | None = None,
    ) -> None:
        self.keys = {} if keys is None else keys
        self.genesis_key = genesis_key
        self.origin = origin
        self._log_ids: tuple[int, tuple[str, ...]] = (-1, ())
        """(how many keys there were, the log keys' ids among them): keys are
        only ever added, so the count tells when to look again."""

    def copy(self) -> KeyRing:
        """A ring that applies records without changing this one: the dict of
        keys is copied, the states shared (a revocation replaces the state it
        changes, never changes it in place), so a copy costs a dict copy
        however many keys the ledger holds."""
        ring = KeyRing(dict(self.keys), self.genesis_key, self.origin)
        ring._log_ids = self._log_ids
        return ring

    def _log_keys(self) -> tuple[str, ...]:
        """The ids of the log keys, without a walk over every author key each
        time: ``valid_keys`` is asked at every checkpoint a verification walks,
        and a ledger may hold many author keys."""
        count, ids = self._log_ids
        if count != len(self.keys):
            ids = tuple(k for k, s in self.keys.items() if s.identity is None)
            self._log_ids = (len(self.keys), ids)
        return ids

    def valid_at(self, key_id: str, seq: int) -> bool:
        """True when ``key_id`` (log or author key) is valid at ``seq``."""
        state = self.keys.get(key_id)
        if state is None:
            return False
        return state.added_seq < seq and (
            state.revoked_seq is None or seq < state.revoked_seq
        )

    def valid_keys(self, seq: int) -> dict[str, bytes]:
        """LOG keys valid at ``seq``: those that may sign a checkpoint of size ``seq``."""
        keys, valid_at = self.keys, self.valid_at
        return {k: keys[k].public_key for k in self._log_keys() if valid_at(k, seq)}

    def signer_problem(
        self,
        key_id: str,
        seq: int,
        kind: str | None = None,
        user: object = None,
    ) -> KeyProblem | None:
        """Why ``key_id`` may not sign the record at ``seq``, or None.

        With ``kind`` (and the entry's ``actor.user`` as ``user``): may it sign
        that entry. Without: may it sign the checkpoint of size ``seq`` (only a
        log key may), which is also the stricter answer for a caller that
        forgets the entry.
        """
        state = self.keys.get(key_id)
        problem = self._validity_problem(key_id, seq, state)
        if problem is not None or state is None or state.identity is None:
            return problem
        who = f"author key {key_id[:16]}... of {state.identity!r}"
        if kind is None:
            return KeyProblem(
                f"signed by {who}, which may not sign checkpoints (only a log key may)",
                "author-checkpoint",
            )
        if kind in AUTHOR_FORBIDDEN_KINDS:
            return KeyProblem(
                f"signed by {who}, which may not sign a {kind} (only a log key may)",
                "author-kind",
            )
        if user != state.identity:
            return KeyProblem(
                f"signed by {who} but written as user {user!r}: an author key signs "
                "only its own identity's entries",
                "author-user",
            )
        return None

    @staticmethod
    def _validity_problem(
        key_id: str, seq: int, state: KeyState | None
    ) -> KeyProblem | None:
        short = f"{key_id[:16]}..."
        if state is None:
            return KeyProblem(
                f"signed by key {short} which the ledger never added", "signer"
            )
        if state.revoked_seq is not None and seq >= state.revoked_seq:
            return KeyProblem(
                f"signed by key {short} after it was revoked at seq "
                f"{state.revoked_seq}",
                "signer",
            )
        if state.added_seq >= seq:
            return KeyProblem(
                f"signed by key {short} before it was added at seq {state.added_seq}",
                "signer",
            )
        return None

    def apply(
        self, seq: int, kind: str, body: dict[str, object], signer: str
    ) -> KeyProblem | None:
        """Apply a key record; return a problem or None. Genesis adds its own signer.

        A key record after genesis must be signed by a log key, or it changes
        nothing; a key added with an identity must carry a valid proof.
        """
        if seq > 0 and kind in ("key.added", "key.revoked"):
            state = self.keys.get(signer)
            if state is not None and state.identity is not None:
                return KeyProblem(
                    f"{kind} signed by author key {signer[:16]}... of "
                    f"{state.identity!r}: key records are signed by a log key; "
                    "it was not applied",
                    "key-signer",
                )
            invalid = self._validity_problem(signer, seq, state)
            if invalid is not None:
                # a key unknown, revoked or not yet added may not change the keys:
                # applied, it would let whoever holds it (a leaked, revoked key)
                # or whoever names it (no key at all) add a key of their own
                return KeyProblem(
                    f"{kind} {invalid}: key records are signed by a valid log "
                    "key; it was not applied",
                    "key-signer",
                )
        if kind == "key.added":
            return self._add(seq, body, signer)
        if kind == "key.revoked":
            return self._revoke(seq, str(body.get("key")))
        return None

    def _add(self, seq: int, body: dict[str, object], signer: str) -> KeyProblem | None:
        decoded = _public_key(body)
        if isinstance(decoded, KeyProblem):
            return decoded
        public_key, key_id = decoded
        if key_id in self.keys:
            return KeyProblem(
                f"key {key_id[:16]}... was already added at seq "
                f"{self.keys[key_id].added_seq}",
                "key",
            )
        identity = body.get("identity")
        if seq == 0:
            return self._add_genesis(key_id, public_key, body, signer)
        problem = self._proof_problem(key_id, public_key, identity, body)
        if problem:
            return problem
        self.keys[key_id] = KeyState(
            public_key, seq, identity=identity if isinstance(identity, str) else None
        )
        return None

    def _add_genesis(
        self, key_id: str, public_key: bytes, body: dict[str, object], signer: str
    ) -> KeyProblem | None:
        if signer != key_id:
            return KeyProblem(
                "the genesis key.added must be signed by the key it adds", "key"
            )
        if body.get("identity") is not None:
            return KeyProblem(
                "the genesis key.added names an identity: the first key is "
                "the ledger's log key",
                "key",
            )
        origin = body.get("origin")
        if self.origin is None and isinstance(origin, str):
            self.origin = origin
        self.genesis_key = key_id
        self.keys[key_id] = KeyState(public_key, -1)
        return None

    def _proof_problem(
        self, key_id: str, public_key: bytes, identity: object, body: dict[str, object]
    ) -> KeyProblem | None:
        if identity is None:
            if "proof" in body:
                return KeyProblem(
                    "key.added carries a proof but no identity", "key-proof"
                )
            return None  # a log key
        bad = identity_problem(identity)
        if bad:
            return KeyProblem(f"key.added for key {key_id[:16]}...: {bad}", "key")
        assert isinstance(identity, str)
        what = f"author key {key_id[:16]}... of {identity!r}"
        if "proof" not in body:
            why = "was added without a proof that its holder asked for it"
        elif self.origin is None:
            why = "has a proof that cannot be checked: the ledger's origin is unknown"
        else:
            try:
                proof = decode_b64(str(body.get("proof")))
            except ValueError:
                proof = b""
            message = compute_key_proof_message(self.origin, identity, key_id)
            if verify_signature(public_key, message, proof):
                return None
            why = (
                "has a proof that does not verify (not made by that key, for that "
                f"identity, in ledger {self.origin!r})"
            )
        return KeyProblem(f"{what} {why}", "key-proof")

    def _revoke(self, seq: int, key_id: str) -> KeyProblem | None:
        state = self.keys.get(key_id)
        if state is None:
            return KeyProblem(
                f"key.revoked names key {key_id[:16]}... which the ledger never added",
                "key",
            )
        if state.revoked_seq is not None:
            return KeyProblem(
                f"key {key_id[:16]}... was already revoked at seq {state.revoked_seq}",
                "key",
            )
        # a new state, not this one changed: copies of the ring share states
        self.keys[key_id] = KeyState(
            state.public_key, state.added_seq, seq, identity=state.identity
        )
        return None


def _public_key(body: dict[str, object]) -> tuple[bytes, str] | KeyProblem:
    """A ``key.added`` body's public key and key id, or why they are refused."""
    try:
        public_key = decode_b64(str(body.get("public_key")))
        key_id = compute_key_id(public_key)
    except ValueError as e:
        return KeyProblem(f"key.added carries an invalid public key: {e}", "key")
    if not is_valid_public_key(public_key):
        return KeyProblem(
            "key.added carries a public key that is not a valid Ed25519 key "
            "(a small-order or non-canonical point, such as the identity or all "
            "zeros, that no signature can be checked against); it was not applied",
            "key",
        )
    if key_id != body.get("key"):
        return KeyProblem(
            "key.added names a key id that is not the hash of its public key", "key"
        )
    return public_key, key_id
