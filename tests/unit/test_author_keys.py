"""Author keys (ADR 0025): registration, the key ring's rules, append and verify.

Forged ledgers are written through ``Store.append`` directly, bypassing every
check ``Ledger`` makes, as a writer holding the store (and, where the test says
so, a key) could; verification must then name the record.
"""

from __future__ import annotations

from typing import Any

import pytest

from mltrail.core.chain import KeyRing, seal_entries
from mltrail.core.checkpoint import CheckpointSigner
from mltrail.core.codec import format_time
from mltrail.core.entry import Entry, sign_entry
from mltrail.core.keyring import (
    AUTHOR_FORBIDDEN_KINDS,
    compute_key_proof_message,
    make_key_proof,
)
from mltrail.core.signing import Signer, compute_key_id, encode_b64
from mltrail.errors import ConfigError, InputError
from mltrail.ledger.ledger import Ledger
from mltrail.ledger.stored import chain_head, new_batch
from mltrail.testing import FixedClock, MemoryStore, fixed_signer

ORIGIN = "example.org/authors"
LOG = fixed_signer("log")
BOB = fixed_signer("bob")
CAROL = fixed_signer("carol")


def _ledger() -> Ledger:
    ledger = Ledger.create(
        MemoryStore(), LOG, origin=ORIGIN, clock=FixedClock(), actor={"user": "alice"}
    )
    ledger.register_key(BOB.public_key, "bob", make_key_proof(BOB, ORIGIN, "bob"))
    return ledger


def _entry(
    ledger: Ledger, signer: Signer, user: str | None, kind: str = "note", **body: Any
) -> Entry:
    actor = {} if user is None else {"user": user}
    time = format_time(ledger.clock.now())
    return sign_entry(Entry(kind, time, actor, body or {"text": "hi"}), signer)


def _forge(ledger: Ledger, entries: list[Entry], checkpoint_key: Signer = LOG) -> None:
    """Append ``entries`` with no check at all, the checkpoint signed by ``checkpoint_key``."""

    def prepare(head: Any) -> Any:
        batch = seal_entries(chain_head(head), entries, now=ledger.clock.now())
        text = CheckpointSigner(ORIGIN, checkpoint_key).sign(
            batch.head.size, batch.head.root()
        )
        return new_batch(batch.with_checkpoint(text))

    ledger.store.append(prepare)


def _errors(ledger: Ledger) -> list[tuple[int | None, str]]:
    return [(p.seq, p.code) for p in ledger.verify().errors]


def _key_body(signer: Signer, **extra: str) -> dict[str, str]:
    return {
        "alg": "ed25519",
        "key": signer.key_id,
        "public_key": encode_b64(signer.public_key),
        **extra,
    }


# -- the key ring ------------------------------------------------------------------


def test_an_author_key_keeps_its_identity_and_is_no_checkpoint_key() -> None:
    ring = _ledger().keys()
    assert ring.keys[BOB.key_id].identity == "bob"
    assert ring.keys[LOG.key_id].identity is None
    assert set(ring.valid_keys(5)) == {LOG.key_id}
    assert ring.signer_problem(BOB.key_id, 2, "note", "bob") is None
    assert ring.signer_problem(LOG.key_id, 2, "note", "anyone") is None
    assert ring.signer_problem(LOG.key_id, 2) is None


def test_the_log_keys_are_looked_up_again_when_a_key_is_added() -> None:
    """``valid_keys`` keeps the log keys' ids between key records (not every
    author key each checkpoint); a key added after it was asked is seen."""
    ledger = _ledger()
    ring = ledger.keys()
    assert set(ring.valid_keys(5)) == {LOG.key_id}
    new = fixed_signer("log-2")
    ledger.rotate_key(new)
    ring = ledger.keys()
    size = ledger.head().size
    assert set(ring.valid_keys(size)) == {new.key_id}
    assert set(ring.valid_keys(2)) == {LOG.key_id}  # before the rotation
    ring.apply(size, "key.added", _key_body(CAROL), new.key_id)
    assert set(ring.valid_keys(size + 1)) == {new.key_id, CAROL.key_id}
    assert ring == ring.__class__(dict(ring.keys), ring.genesis_key, ring.origin)


def test_a_copy_of_the_ring_applies_records_without_changing_it() -> None:
    """The writer applies an append's key records to a copy (and new key rows
    to a copy of its ring): a revocation there must not revoke the key in the
    ring copied, which the copy shares key states with."""
    ledger = _ledger()
    ring = ledger.keys()
    before = ring.__class__(
        {k: s.__class__(s.public_key, s.added_seq, s.revoked_seq, s.identity)
         for k, s in ring.keys.items()},
        ring.genesis_key,
        ring.origin,
    )  # fmt: skip
    copied = ring.copy()
    size = ledger.head().size
    assert copied.apply(size, "key.revoked", {"key": BOB.key_id}, LOG.key_id) is None
    assert copied.apply(size + 1, "key.added", _key_body(CAROL), LOG.key_id) is None
    assert copied.keys[BOB.key_id].revoked_seq == size
    assert ring == before
    assert ring.keys[BOB.key_id].revoked_seq is None
    assert CAROL.key_id not in ring.keys
    assert set(copied.valid_keys(size + 2)) == {LOG.key_id, CAROL.key_id}
    assert set(ring.valid_keys(size + 2)) == {LOG.key_id}


def test_a_ring_keys_gave_cannot_change_the_writers_ring() -> None:
    """The writer keeps its ring from one key record to the next and shares
    key states between its copies: a caller that changes the ring ``keys()``
    gave (applies a record to it, changes a key's state) must not change the
    writer's. Before: ``keys()`` gave the writer's own ring, so a revocation
    applied to it, or a state changed in place, was the writer's from then on
    (its appends refused, or checked against keys the ledger never revoked)."""
    ledger = _ledger()
    size = ledger.head().size
    ring = ledger.keys()
    assert ring.apply(size, "key.revoked", {"key": LOG.key_id}, LOG.key_id) is None
    assert ledger.keys().keys[LOG.key_id].revoked_seq is None
    state = ledger.keys().keys[BOB.key_id]
    with pytest.raises(AttributeError):
        state.revoked_seq = size  # type: ignore[misc]
    assert ledger.keys().keys[BOB.key_id].revoked_seq is None
    ledger.append("note", {"text": "the writer's ring is its own"})


@pytest.mark.parametrize(
    ("kind", "user", "code"),
    [
        ("note", "alice", "author-user"),
        ("note", None, "author-user"),
        *[(kind, "bob", "author-kind") for kind in sorted(AUTHOR_FORBIDDEN_KINDS)],
        (None, None, "author-checkpoint"),
    ],
)
def test_what_an_author_key_may_not_sign(
    kind: str | None, user: str | None, code: str
) -> None:
    problem = _ledger().keys().signer_problem(BOB.key_id, 2, kind, user)
    assert problem is not None
    assert problem.code == code
    assert "bob" in problem


def _ring() -> KeyRing:
    ring = KeyRing()
    assert ring.apply(0, "key.added", _key_body(LOG, origin=ORIGIN), LOG.key_id) is None
    assert ring.origin == ORIGIN  # learned from the genesis record
    return ring


@pytest.mark.parametrize(
    ("extra", "code"),
    [
        ({"identity": "bob"}, "key-proof"),
        ({"identity": "bob", "proof": "AAAA"}, "key-proof"),
        (
            {
                "identity": "bob",
                "proof": encode_b64(make_key_proof(BOB, ORIGIN, "eve")),
            },
            "key-proof",
        ),
        (
            {
                "identity": "bob",
                "proof": encode_b64(make_key_proof(BOB, "example.org/other", "bob")),
            },
            "key-proof",
        ),
        (
            {
                "identity": "bob",
                "proof": encode_b64(make_key_proof(LOG, ORIGIN, "bob")),
            },
            "key-proof",
        ),
        ({"proof": encode_b64(make_key_proof(BOB, ORIGIN, "bob"))}, "key-proof"),
        ({"identity": "", "proof": encode_b64(make_key_proof(BOB, ORIGIN, ""))}, "key"),
    ],
)
def test_an_author_key_needs_a_proof_for_its_identity_and_ledger(
    extra: dict[str, str], code: str
) -> None:
    ring = _ring()
    problem = ring.apply(1, "key.added", _key_body(BOB, **extra), LOG.key_id)
    assert problem is not None
    assert problem.code == code
    assert BOB.key_id not in ring.keys


def test_a_proof_needs_the_origin_and_genesis_is_a_log_key() -> None:
    proof = encode_b64(make_key_proof(BOB, ORIGIN, "bob"))
    body = _key_body(BOB, identity="bob", proof=proof)
    unknown = KeyRing()  # a genesis that names no origin
    assert unknown.apply(0, "key.added", _key_body(LOG), LOG.key_id) is None
    problem = unknown.apply(1, "key.added", body, LOG.key_id)
    assert problem is not None
    assert "origin is unknown" in problem
    known = KeyRing(origin=ORIGIN)
    assert known.apply(0, "key.added", _key_body(LOG), LOG.key_id) is None
    assert known.apply(1, "key.added", body, LOG.key_id) is None
    genesis = _key_body(BOB, identity="bob", proof=proof, origin=ORIGIN)
    assert "log key" in str(KeyRing().apply(0, "key.added", genesis, BOB.key_id))


def test_key_records_signed_by_an_author_key_change_nothing() -> None:
    ring = _ring()
    proof = encode_b64(make_key_proof(BOB, ORIGIN, "bob"))
    ring.apply(1, "key.added", _key_body(BOB, identity="bob", proof=proof), LOG.key_id)
    added = ring.apply(2, "key.added", _key_body(CAROL), BOB.key_id)
    revoked = ring.apply(3, "key.revoked", {"key": LOG.key_id}, BOB.key_id)
    assert added is not None
    assert added.code == "key-signer"
    assert revoked is not None
    assert revoked.code == "key-signer"
    assert CAROL.key_id not in ring.keys
    assert ring.keys[LOG.key_id].revoked_seq is None


def test_key_records_by_a_key_not_valid_at_their_seq_change_nothing() -> None:
    """A key unknown to the ledger, revoked, or not yet added may not add or
    revoke a key: else a leaked, revoked key (or a key named without a valid
    signature) adds a key of its own."""
    ring = _ring()
    assert ring.apply(1, "key.added", _key_body(CAROL), LOG.key_id) is None
    assert ring.apply(2, "key.revoked", {"key": LOG.key_id}, CAROL.key_id) is None
    revoked = ring.apply(3, "key.added", _key_body(BOB), LOG.key_id)
    unknown = ring.apply(4, "key.revoked", {"key": CAROL.key_id}, BOB.key_id)
    assert revoked is not None
    assert revoked.code == "key-signer"
    assert "after it was revoked at seq 2" in revoked
    assert unknown is not None
    assert unknown.code == "key-signer"
    assert "never added" in unknown
    assert BOB.key_id not in ring.keys
    assert ring.keys[CAROL.key_id].revoked_seq is None
    early = _ring()
    assert early.apply(1, "key.added", _key_body(CAROL), LOG.key_id) is None
    problem = early.apply(1, "key.added", _key_body(BOB), CAROL.key_id)
    assert problem is not None
    assert "before it was added" in problem


@pytest.mark.parametrize(
    "weak", [bytes([1]) + bytes(31), bytes(32)], ids=["identity", "all-zeros"]
)
def test_a_small_order_key_is_never_added(weak: bytes) -> None:
    ring = _ring()
    body = {
        "alg": "ed25519",
        "key": compute_key_id(weak),
        "public_key": encode_b64(weak),
    }
    problem = ring.apply(1, "key.added", body, LOG.key_id)
    assert problem is not None
    assert problem.code == "key"
    assert "not a valid Ed25519 key" in problem
    assert compute_key_id(weak) not in ring.keys


def test_the_proof_message_is_the_documented_bytes() -> None:
    message = compute_key_proof_message("example.org/a", "Bob Ä", "ab" * 32)
    assert message == (
        b"mltrail-key-register/1\nexample.org/a\nBob \xc3\x84\n" + b"ab" * 32 + b"\n"
    )


# -- the ledger ----------------------------------------------------------------------


def test_register_key_refuses_bad_proofs_duplicates_and_bad_identities() -> None:
    ledger = _ledger()
    carol_proof = make_key_proof(CAROL, ORIGIN, "carol")
    with pytest.raises(InputError, match="proof does not verify"):
        ledger.register_key(CAROL.public_key, "mallory", carol_proof)
    with pytest.raises(InputError, match="proof does not verify"):
        ledger.register_key(
            CAROL.public_key, "carol", make_key_proof(CAROL, "x.org/y", "carol")
        )
    with pytest.raises(InputError, match="already a key"):
        ledger.register_key(BOB.public_key, "bob", make_key_proof(BOB, ORIGIN, "bob"))
    with pytest.raises(InputError, match="already a key"):
        ledger.register_key(LOG.public_key, "log", make_key_proof(LOG, ORIGIN, "log"))
    with pytest.raises(InputError, match="1 to 200"):
        ledger.register_key(CAROL.public_key, "c" * 201, carol_proof)
    with pytest.raises(InputError, match="32 bytes"):
        ledger.register_key(b"short", "carol", carol_proof)
    assert ledger.head().size == 2
    assert ledger.verify().ok


def test_append_entries_enforces_the_author_rules_under_the_lock() -> None:
    ledger = _ledger()
    (record,) = ledger.append_entries([_entry(ledger, BOB, "bob")])
    assert record.seq == 2
    with pytest.raises(InputError, match="written as user 'alice'"):
        ledger.append_entries([_entry(ledger, BOB, "alice")])
    with pytest.raises(InputError, match="written as user None"):
        ledger.append_entries([_entry(ledger, BOB, None)])
    floor = ledger.time_floor()
    assert floor is not None
    reset = _entry(ledger, BOB, "bob", "clock.reset", reason="x", newest_time=floor[0])
    with pytest.raises(InputError, match=r"may not sign a clock\.reset"):
        ledger.append_entries([reset])
    assert ledger.head().size == 3
    assert ledger.verify().ok


def test_revoke_key_stops_an_author_key_and_refuses_log_keys() -> None:
    ledger = _ledger()
    with pytest.raises(InputError, match="log key"):
        ledger.revoke_key(LOG.key_id, reason="no")
    with pytest.raises(InputError, match="not a key"):
        ledger.revoke_key(CAROL.key_id, reason="no")
    record = ledger.revoke_key(BOB.key_id, reason="left")
    with pytest.raises(InputError, match="already revoked"):
        ledger.revoke_key(BOB.key_id, reason="again")
    with pytest.raises(ConfigError, match=f"revoked at seq {record.seq}"):
        ledger.append_entries([_entry(ledger, BOB, "bob")])
    assert ledger.verify().ok


def test_an_author_key_cannot_be_the_ledgers_own_signer() -> None:
    ledger = _ledger()
    as_bob = Ledger(
        ledger.store, BOB, origin=ORIGIN, clock=ledger.clock, actor={"user": "bob"}
    )
    with pytest.raises(ConfigError, match="may not sign checkpoints"):
        as_bob.append("note", {"text": "hi"})
    assert ledger.head().size == 2


# -- verification of forged ledgers ----------------------------------------------------


def test_verify_names_an_entry_an_author_key_signed_for_another_user() -> None:
    ledger = _ledger()
    _forge(ledger, [_entry(ledger, BOB, "bob"), _entry(ledger, BOB, "alice")])
    assert _errors(ledger) == [(3, "author-user")]


def test_verify_names_a_forbidden_kind_signed_by_an_author_key() -> None:
    ledger = _ledger()
    _forge(ledger, [_entry(ledger, BOB, "bob", "key.revoked", key=LOG.key_id)])
    assert _errors(ledger) == [(2, "author-kind"), (2, "key-signer")]


def test_verify_names_a_checkpoint_signed_by_an_author_key() -> None:
    ledger = _ledger()
    _forge(ledger, [_entry(ledger, BOB, "bob")], checkpoint_key=BOB)
    assert _errors(ledger) == [(2, "author-checkpoint")]


def test_verify_names_an_author_key_added_without_a_valid_proof() -> None:
    ledger = _ledger()
    body = _key_body(
        CAROL, identity="carol", proof=encode_b64(make_key_proof(CAROL, ORIGIN, "eve"))
    )
    _forge(ledger, [_entry(ledger, LOG, "alice", "key.added", **body)])
    assert _errors(ledger) == [(2, "key-proof")]
