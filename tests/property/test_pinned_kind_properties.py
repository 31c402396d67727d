"""``pinned._envelope_kind`` reads the entry's kind off a record's canonical
bytes without parsing them: it must agree with the parsed record whatever the
body holds (members named ``kind`` or ``sig``, strings that spell them)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mltrail.core.canonical import canonical_bytes
from mltrail.ledger.pinned import _envelope_kind

TRICKY = st.sampled_from(
    ['"kind":"x"', ',"kind":"', ',"sig":{', '"sig"', "kind", "sig", '\\"', "{}"]
)
KEYS = st.one_of(
    st.sampled_from(["kind", "sig", "run", "time", "v", "body"]), st.text()
)
LEAVES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(2**53) + 1, 2**53 - 1),
    st.text(),
    TRICKY,
)
VALUES = st.recursive(
    LEAVES,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(KEYS, inner, max_size=4)
    ),
    max_leaves=20,
)
KIND = st.from_regex(r"[a-z][a-z0-9_]{0,8}(\.[a-z][a-z0-9_]{0,8}){0,2}", fullmatch=True)


@given(
    kind=KIND,
    body=st.dictionaries(KEYS, VALUES, max_size=5),
    actor=st.dictionaries(KEYS, VALUES, max_size=3),
    run=st.one_of(st.none(), st.from_regex(r"[A-Za-z0-9._:-]{1,40}", fullmatch=True)),
)
def test_the_kind_read_off_the_bytes_is_the_entrys(kind, body, actor, run) -> None:
    entry = {
        "v": "mltrail/1",
        "kind": kind,
        "time": "2026-01-01T00:00:00.000000Z",
        "actor": actor,
        "body": body,
        "sig": {"alg": "ed25519", "key": "0" * 64, "value": "A" * 86 + "=="},
    }
    if run is not None:
        entry["run"] = run
    data = canonical_bytes({"entry": entry, "prev": "0" * 64, "seq": 7})
    assert _envelope_kind(data) == kind.encode()


@given(
    kind=KIND,
    body=st.dictionaries(KEYS, VALUES, max_size=3),
    extra=st.dictionaries(
        st.sampled_from(["a", "kinds", "p", "ru", "s", "sigs", "tag", "u", "w", "z"]),
        VALUES,
        min_size=1,
        max_size=3,
    ),
)
def test_members_the_entry_does_not_know_do_not_change_its_kind(
    kind, body, extra
) -> None:
    """Unknown entry members are kept and signed (``Entry.extra``): wherever
    they sort, whatever they hold (``kind``, ``sig`` members), the kind read is
    the entry's."""
    entry = {
        **extra,
        "v": "mltrail/1",
        "kind": kind,
        "time": "2026-01-01T00:00:00.000000Z",
        "actor": {},
        "body": body,
        "sig": {"alg": "ed25519", "key": "0" * 64, "value": "A" * 86 + "=="},
    }
    data = canonical_bytes({"entry": entry, "prev": "0" * 64, "seq": 7})
    assert _envelope_kind(data) == kind.encode()


def test_a_member_that_mimics_the_envelope_is_not_taken_for_it() -> None:
    sig = {"alg": "ed25519", "key": "0" * 64, "value": "A" * 86 + "=="}
    for extra in (
        {"p": {"a": 0, "kind": "key.added"}},
        {"x": {"a": 0, "kind": "key.added", "sig": {}}},
        {"x": {"a": 0, "kind": "key.added", "sig": sig, "time": "t", "v": "v"}},
    ):
        entry = {**extra, "v": "mltrail/1", "kind": "note", "time": "t",
                 "actor": {}, "body": {}, "sig": sig}  # fmt: skip
        data = canonical_bytes({"entry": entry, "prev": "0" * 64, "seq": 7})
        assert _envelope_kind(data) == b"note"


@given(st.binary(max_size=200))
def test_any_bytes_give_a_kind_or_none_without_failing(data: bytes) -> None:
    assert isinstance(_envelope_kind(data), bytes)
