"""Verification compares a store's derived columns with the signed bytes.

``check_record`` is given the (kind, run, time) a store keeps beside a row;
whatever those say, it names exactly the columns that differ from the decoded
entry, and the walk reports one ``column-differs`` error per such column at
that seq (ADR 0011, amendment of 2026-12-07).
"""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from mltrail.core.entry import Entry, Record, sign_entry
from mltrail.core.record_check import check_record
from mltrail.core.verify import LedgerVerifier
from mltrail.testing import fixed_signer

SIGNER = fixed_signer("column-properties")
KEYS = {SIGNER.key_id: SIGNER.public_key}
ENTRY = sign_entry(
    Entry("note", "2026-01-01T00:00:00.000000Z", {"user": "u"}, {"text": "t"}, run="r"),
    SIGNER,
)
DATA = Record(1, "0" * 64, ENTRY).to_bytes()
SIGNED = ("note", "r", "2026-01-01T00:00:00.000000Z")

texts = st.one_of(st.sampled_from(SIGNED), st.text(max_size=30))
columns = st.tuples(texts, st.one_of(st.none(), texts), texts)


@given(columns)
def test_exactly_the_columns_that_differ_are_named(stored: tuple) -> None:
    check = check_record(1, b"", DATA, KEYS, stored)
    names = ("kind", "run", "time")
    expected = tuple(
        (name, have, want)
        for name, have, want in zip(names, stored, SIGNED, strict=True)
        if have != want
    )
    assert check.columns_differ == expected
    verifier = LedgerVerifier("example.org/columns", [], [])
    verifier._expected_seq = 1  # the walk's place: this row is seq 1
    verifier.accept(check)
    found = [p for p in verifier.report.problems if p.code == "column-differs"]
    assert [(p.seq, p.severity) for p in found] == [(1, "error")] * len(expected)


def test_no_columns_means_nothing_compared() -> None:
    assert check_record(1, b"", DATA, KEYS).columns_differ == ()
    assert check_record(1, b"", DATA, KEYS, SIGNED).columns_differ == ()
