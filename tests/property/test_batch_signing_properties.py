"""Batched appends sign on several threads (``core.signing.sign_many``): the
signatures, entries and stored records are byte for byte those of signing one
entry at a time, and a failure in any thread reaches the caller."""

from __future__ import annotations

import threading
from unittest import mock

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mltrail.core import signing
from mltrail.core.entry import Entry, compose_record_bytes, sign_entry
from mltrail.ledger.ledger import Draft, Ledger
from mltrail.testing import FixedClock, MemoryStore, fixed_signer

SIGNER = fixed_signer()
TEXT = st.text(
    st.one_of(
        st.characters(codec="utf-8"),
        st.sampled_from(["\x00", '"', "\\", "\ue000", "\U0001f600"]),
    ),
    max_size=8,
)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**53 - 1), max_value=2**53 - 1),
    st.floats(allow_nan=False, allow_infinity=False),
    TEXT,
)
VALUES = st.recursive(
    SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3), st.dictionaries(TEXT, inner, max_size=3)
    ),
    max_leaves=8,
)
BODIES = st.builds(
    lambda text, extra: {**extra, "text": text},
    TEXT,
    st.dictionaries(
        TEXT.filter(lambda k: k not in {"refers_to", "attachments"}), VALUES, max_size=3
    ),
)
DRAFTS = st.lists(
    st.builds(Draft, st.just("note"), BODIES, st.one_of(st.none(), st.just("run-1"))),
    min_size=1,
    max_size=12,
)


def threads_of(count: int) -> mock._patch:
    """``sign_many`` signs on ``count`` threads, whatever the batch and cores."""
    return mock.patch.object(
        signing, "_signing_threads", lambda n, cores: min(count, n)
    )


@settings(max_examples=100, deadline=None)
@given(
    messages=st.lists(st.binary(max_size=600), max_size=40),
    count=st.integers(min_value=1, max_value=5),
)
def test_sign_many_is_sign_for_each_message(messages, count):
    with threads_of(count):
        signatures = signing.sign_many(SIGNER, messages)
    assert signatures == [SIGNER.sign(m) for m in messages]


def test_large_batches_sign_on_several_threads():
    """Without a patch: a batch of 4 threads' worth is signed on this thread and
    others on a machine of 2 cores or more (this thread's first signature waits
    until another thread has signed, so a slow start cannot hide them)."""
    names: set[str] = set()
    other_signed = threading.Event()
    real = signing._raw_sign
    main = threading.current_thread()

    def spy(message, secret):
        if threading.current_thread() is not main:
            names.add(threading.current_thread().name)
            other_signed.set()
        elif message:
            assert other_signed.wait(timeout=30)
        return real(message, secret)

    messages = [bytes([i % 256]) * 100 for i in range(4 * signing.PARALLEL_MIN)]
    with mock.patch.object(signing, "_raw_sign", spy):
        signatures = SIGNER.sign_many(messages, cores=2)
    assert names == {"mltrail-sign"}
    assert signatures == [SIGNER.sign(m) for m in messages]
    assert signing._signing_threads(2 * signing.PARALLEL_MIN - 1, 2) == 1


def test_a_failure_on_a_signing_thread_reaches_the_caller():
    messages: list = [b"x"] * 10 + ["not bytes"] + [b"y"] * 9
    before = threading.active_count()
    with threads_of(4), pytest.raises(TypeError):
        signing.sign_many(SIGNER, messages)
    assert threading.active_count() == before  # every thread was joined


def test_other_signers_sign_one_message_at_a_time():
    class Plain:
        key_id = SIGNER.key_id
        public_key = SIGNER.public_key

        def sign(self, message: bytes) -> bytes:
            return SIGNER.sign(message)

    assert signing.sign_many(Plain(), [b"a", b"b"]) == [
        SIGNER.sign(b"a"),
        SIGNER.sign(b"b"),
    ]


def stored(drafts: list[Draft], count: int) -> tuple[Ledger, list[bytes]]:
    ledger = Ledger.create(
        MemoryStore(), SIGNER, origin="test.example/batch", clock=FixedClock()
    )
    with threads_of(count):
        ledger.append_many(drafts)
    return ledger, [row.data for row in ledger.store.rows(1)]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(drafts=DRAFTS, count=st.integers(min_value=2, max_value=4))
def test_threaded_batches_store_the_one_thread_bytes(drafts, count):
    """The stored records of a batch signed on several threads are the bytes of
    the same batch signed on one, and those of entries signed one by one with
    ``sign_entry`` (every member canonicalised) and chained by hand."""
    ledger, threaded = stored(drafts, count)
    assert threaded == stored(drafts, 1)[1]
    prev = ledger.store.rows(0, 1)
    expected, seq = [], 1
    prev_hash = _record_hash(next(iter(prev)).data)
    for draft, data in zip(drafts, threaded, strict=True):
        time = _entry_time(data)
        entry = sign_entry(
            Entry(draft.kind, time, ledger.actor, dict(draft.body), draft.run), SIGNER
        )
        assert entry.signed_bytes is not None
        record = compose_record_bytes(seq, prev_hash, entry.signed_bytes)
        expected.append(record)
        prev_hash, seq = _record_hash(record), seq + 1
    assert threaded == expected


def _record_hash(data: bytes) -> str:
    from mltrail.core.canonical import compute_record_hash

    return compute_record_hash(data).hex()


def _entry_time(data: bytes) -> str:
    from mltrail.core.codec import decode_record

    return decode_record(data).record.entry.time


DEEP = st.recursive(
    st.one_of(
        SCALARS,
        st.sampled_from([2**53, -(2**53), 10**20, "\ud800", ("a", 1)]),
    ),
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.tuples(inner, inner),
        st.dictionaries(
            st.one_of(TEXT, st.sampled_from(["\ud7ff", "\ud800\udc00", "\uffff"])),
            inner,
            max_size=3,
        ),
    ),
    max_leaves=10,
)


@settings(max_examples=300)
@given(value=DEEP, depth=st.integers(min_value=1, max_value=5))
def test_plain_json_is_both_checks_in_one_walk(value, depth):
    """An append skips the limits' walk and the canonical fast path's check of a
    body ``plain_json`` accepts: it accepts exactly what both accept, and its
    canonical bytes are then RFC 8785's."""
    import rfc8785

    from mltrail.core.canonical import (
        fast_canonical_bytes,
        json_compatible,
        plain_json,
    )
    from mltrail.core.limits import value_problem

    both = json_compatible(value) and value_problem(value, "body", depth) is None
    assert plain_json(value, depth) == both
    if both:
        fast = fast_canonical_bytes(value, checked=True)
        assert fast is None or fast == rfc8785.dumps(value)


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": "x", "n": 2**53}, "body.n: integer 9007199254740992 is beyond"),
        ({"text": "x", "deep": [[[[[[[[]]]]]]]] * 1}, None),
        ({"text": "x", "f": 0.5}, None),
    ],
)
def test_batched_bodies_are_checked_as_before(body, message):
    """The limits still refuse what they refused (the one-walk check only
    accepts), and bodies it does not accept still append."""
    from mltrail.errors import SchemaError

    ledger = Ledger.create(MemoryStore(), SIGNER, origin="test.example/batch")
    if message is None:
        ledger.append_many([Draft("note", body)] * 200)
        return
    with pytest.raises(SchemaError, match=message.replace(".", r"\.")):
        ledger.append_many(
            [Draft("note", {"text": "fine"})] * 150 + [Draft("note", body)]
        )
    assert ledger.head().size == 1  # nothing of the batch was written


def test_too_deep_bodies_are_refused_as_before():
    from mltrail.core.limits import MAX_DEPTH
    from mltrail.errors import SchemaError

    deep: object = "leaf"
    for _ in range(MAX_DEPTH - 1):  # the body is level 1
        deep = [deep]
    ledger = Ledger.create(MemoryStore(), SIGNER, origin="test.example/batch")
    ledger.append_many([Draft("note", {"text": "x", "deep": deep})])
    with pytest.raises(SchemaError, match="nests deeper than 64 levels"):
        ledger.append_many([Draft("note", {"text": "x", "deep": [deep]})])


def test_a_ledgers_large_batch_is_signed_on_the_cores_it_may_use():
    """``append_many`` hands its batch to ``sign_many`` with the process's usable
    cores: on two, another thread signs part of a batch of 256 (fails when the
    ledger passes no core count, which signs on one thread)."""
    from mltrail.ledger import ledger as ledger_module

    names: set[str] = set()
    other_signed = threading.Event()
    real = signing._raw_sign
    main = threading.current_thread()

    def spy(message, secret):
        if threading.current_thread() is not main:
            names.add(threading.current_thread().name)
            other_signed.set()
        elif threading.active_count() > 1:  # let another thread sign first
            other_signed.wait(timeout=30)
        return real(message, secret)

    ledger = Ledger.create(MemoryStore(), SIGNER, origin="test.example/batch")
    drafts = [Draft("note", {"text": f"n{i}"}) for i in range(4 * signing.PARALLEL_MIN)]
    with (
        mock.patch.object(ledger_module, "_usable_cores", return_value=2),
        mock.patch.object(signing, "_raw_sign", spy),
    ):
        ledger.append_many(drafts)
    assert "mltrail-sign" in names
