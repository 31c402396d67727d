"""A writer's key ring brought up to date from the key records after its anchor
is the ring a fresh writer builds from every key record (ADR 0025 amendment of
2026-12-08).

Random batches of key records, valid or not (log and author keys added and
revoked by log keys, author keys and keys not valid at their seq; proofs that
do not verify; keys added twice; signatures that do not verify) and notes are
written with no check at all; after each batch a long-lived writer's ring is
compared with a new writer's, and the long-lived writer must have read only
from its anchor on.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from mltrail.core.chain import KEY_KINDS, seal_entries
from mltrail.core.checkpoint import CheckpointSigner
from mltrail.core.codec import format_time
from mltrail.core.entry import Entry, Signature, sign_entry
from mltrail.core.keyring import make_key_proof
from mltrail.core.signing import Signer, encode_b64
from mltrail.ledger.ledger import Ledger
from mltrail.ledger.stored import chain_head, new_batch
from mltrail.testing import FixedClock, MemoryStore, fixed_signer
from mltrail.values import replace

ORIGIN = "example.org/ring-refresh"
KEYS = [fixed_signer(f"ring-refresh-{i}") for i in range(6)]
GENESIS = KEYS[0]

_key = st.integers(0, len(KEYS) - 1)
_op = st.one_of(
    st.tuples(st.just("add-log"), _key, _key, st.booleans()),
    st.tuples(st.just("add-author"), _key, _key, st.booleans()),
    st.tuples(st.just("revoke"), _key, _key, st.booleans()),
    st.tuples(st.just("note"), _key, _key, st.booleans()),
)
_batches = st.lists(st.lists(_op, min_size=1, max_size=4), min_size=1, max_size=8)


def _body(signer: Signer, **extra: Any) -> dict[str, Any]:
    return {
        "alg": "ed25519",
        "key": signer.key_id,
        "public_key": encode_b64(signer.public_key),
        **extra,
    }


def _entry(op: tuple[str, int, int, bool], clock: FixedClock) -> Entry:
    """The entry of ``op``: (what, key it names, key signing it, a twist): the
    twist is a proof for another identity (author keys) or a signature that
    does not verify (every other kind)."""
    what, named, by, twist = op
    key, signer = KEYS[named], KEYS[by]
    if what == "add-log":
        kind, body = "key.added", _body(key, reason="log")
    elif what == "add-author":
        proof = make_key_proof(key, ORIGIN, "someone-else" if twist else "dev")
        kind = "key.added"
        body = _body(key, identity="dev", proof=encode_b64(proof), reason="author")
        twist = False
    elif what == "revoke":
        kind, body = "key.revoked", {"key": key.key_id, "reason": "revoked"}
    else:
        kind, body = "note", {"text": "between"}
    time = format_time(clock.now())
    entry = Entry(kind, time, {"user": "dev"}, body)
    if not twist:
        return sign_entry(entry, signer)
    other = KEYS[(by + 1) % len(KEYS)]  # signed by another key, named as signer's
    signed = sign_entry(entry, other)
    assert signed.sig is not None
    return replace(
        signed,
        sig=Signature(signer.key_id, signed.sig.value, signed.sig.alg),
        signed_bytes=None,
    )


def _forge(store: MemoryStore, entries: list[Entry], clock: FixedClock) -> None:
    def prepare(head: Any) -> Any:
        batch = seal_entries(chain_head(head), entries, now=clock.now())
        text = CheckpointSigner(ORIGIN, GENESIS).sign(
            batch.head.size, batch.head.root()
        )
        return new_batch(batch.with_checkpoint(text))

    store.append(prepare)


@settings(max_examples=150, deadline=None)
@given(_batches)
def test_the_ring_kept_up_to_date_is_the_ring_built_from_every_record(
    batches: list[list[tuple[str, int, int, bool]]],
) -> None:
    clock = FixedClock()
    store = MemoryStore()
    genesis = Entry("key.added", format_time(clock.now()), {}, _body(GENESIS))
    _forge(store, [sign_entry(genesis, GENESIS)], clock)
    live = Ledger(store, None, origin=ORIGIN)
    live.keys()
    starts: list[int] = []
    read = store.rows_of_kinds

    def spy(kinds: Any, start: int = 0) -> Any:
        if tuple(kinds) == tuple(KEY_KINDS):
            starts.append(start)
        return read(kinds, start)

    store.rows_of_kinds = spy  # type: ignore[method-assign]
    for batch in batches:
        anchor = max(r.seq for r in read(KEY_KINDS))
        _forge(store, [_entry(op, clock) for op in batch], clock)
        starts.clear()
        kept = live.keys()
        assert starts == [anchor]  # only the rows from its anchor on
        fresh = Ledger(store, None, origin=ORIGIN).keys()
        assert kept == fresh
        assert kept.valid_keys(store.head().size) == fresh.valid_keys(store.head().size)
