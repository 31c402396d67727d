"""Property tests: entry times written and read through the fast paths are
exactly what the plain ``strftime`` and a fresh parse give."""

import sqlite3
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mltrail.core.anchored_time import LatestDated
from mltrail.core.chain import (
    EMPTY_HEAD,
    TIME_TOLERANCE,
    compute_floor,
    is_later,
    seal_entries,
)
from mltrail.core.checkpoint import CheckpointSigner
from mltrail.core.codec import _parse_time, format_time, parse_time
from mltrail.core.entry import Entry, sign_entry
from mltrail.core.signing import encode_b64
from mltrail.errors import InputError, SchemaError
from mltrail.ledger.stored import new_batch
from mltrail.ledger.verification import verify_store
from mltrail.storage.base import TIME_ORDER_SQL, time_order_key
from mltrail.testing import MemoryStore, fixed_signer

ZONES = st.sampled_from(
    [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-11))]
)
MOMENTS = st.datetimes(
    min_value=datetime(1, 1, 2), max_value=datetime(9999, 12, 30), timezones=ZONES
)


@given(MOMENTS)
def test_format_time_is_strftime(moment):
    expected = moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    assert format_time(moment) == expected


@given(MOMENTS)
def test_parse_time_round_trips_and_matches_an_uncached_parse(moment):
    text = format_time(moment)
    if len(text) != 27:  # years before 1000: strftime does not pad them
        with pytest.raises(SchemaError):
            parse_time(text)
        return
    assert parse_time(text) == _parse_time(text) == moment.astimezone(UTC)
    assert parse_time(text) == parse_time(text)  # the cached answer


@given(st.one_of(st.text(max_size=30), st.integers(), st.none()))
def test_parse_time_refuses_what_an_uncached_parse_refuses(text):
    try:
        expected = _parse_time(text)
    except SchemaError:
        with pytest.raises(SchemaError):
            parse_time(text)
        with pytest.raises(SchemaError):  # an error is never kept as an answer
            parse_time(text)
    else:
        assert parse_time(text) == expected


# -- stores order times as the core reads them ----------------------------------


@st.composite
def spellings(draw):
    """A valid entry time in any of its spellings: no fraction, or 1 to 9 digits."""
    moment = draw(st.datetimes(min_value=datetime(1000, 1, 1), max_value=MAX_DAY))
    digits = draw(st.integers(0, 9))
    fraction = draw(st.text("0123456789", min_size=digits, max_size=digits))
    return (
        moment.strftime("%Y-%m-%dT%H:%M:%S") + (f".{fraction}" if digits else "") + "Z"
    )


MAX_DAY = datetime(9999, 12, 31)


@given(spellings(), spellings())
def test_stores_order_times_as_the_core_reads_them(a, b):
    """A store's floor is the chain's only if its order is the core's: the key
    compares two times exactly as ``parse_time`` does (equal when the core reads
    one instant), in Python and in SQL."""
    with sqlite3.connect(":memory:") as conn:
        conn.execute("CREATE TABLE records (time TEXT)")
        conn.executemany("INSERT INTO records VALUES (?)", [(a,), (b,)])
        in_sql = dict(conn.execute(f"SELECT time, {TIME_ORDER_SQL} FROM records"))
    assert in_sql == {a: time_order_key(a), b: time_order_key(b)}
    key_a, key_b = time_order_key(a), time_order_key(b)
    assert (key_a > key_b) == is_later(a, b) == (parse_time(a) > parse_time(b))
    assert (key_a == key_b) == (parse_time(a) == parse_time(b))


# -- records dated after an anchor -----------------------------------------------


@given(
    st.lists(spellings(), min_size=1, max_size=12),
    st.data(),
    st.datetimes(min_value=datetime(1000, 1, 1), max_value=MAX_DAY, timezones=ZONES),
)
def test_a_record_is_named_exactly_when_dated_after_the_anchor(times, data, when):
    """Whatever the spellings: the latest-dated of the first ``size`` records is
    named when it is more than the tolerance after the anchor's time."""
    dates = LatestDated()
    for seq, time in enumerate(times):
        dates.see(seq, "note", time)
        dates.mark(seq + 1)
    size = data.draw(st.integers(1, len(times)))
    latest = max(parse_time(t) for t in times[:size])
    found = dates.problem(size, when, "an anchor")
    if latest - when <= TIME_TOLERANCE:
        assert found is None
    else:
        assert found is not None
        assert parse_time(times[found.seq]) == latest
        assert found.seq < size
        assert found.severity == "error"


def test_an_unmarked_size_and_a_later_reset():
    dates = LatestDated()
    dates.mark(0)  # nothing seen: nothing to compare
    dates.see(0, "note", "2026-02-01T00:00:00Z")
    dates.see(1, "clock.reset", "2026-01-01T00:00:00Z")
    dates.mark(1)  # only sizes walked by a checkpoint are known
    early = datetime(2026, 1, 1, tzinfo=UTC)
    assert dates.problem(0, early, "x") is None
    assert dates.problem(2, early, "x") is None
    found = dates.problem(1, early, "timestamp #1")
    assert found is not None
    assert (found.seq, found.severity) == (0, "warning")
    assert "the clock reset at seq 1" in found.message


@given(st.lists(spellings(), max_size=8), MOMENTS)
def test_the_latest_record_is_named_when_dated_after_the_clock(times, now):
    dates = LatestDated()
    for seq, time in enumerate(times):
        dates.see(seq, "note", time)
    found = dates.after(now)
    if not times or max(parse_time(t) for t in times) - now <= TIME_TOLERANCE:
        assert found is None
    else:
        assert found is not None
        assert (found.code, found.severity) == ("future", "warning")
        assert parse_time(times[found.seq]) == max(parse_time(t) for t in times)


# -- the first and last minutes of the calendar -----------------------------------

EDGE_TIMES = st.one_of(
    st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(1, 1, 1, 0, 10)),
    st.datetimes(
        min_value=datetime(9999, 12, 31, 23, 50),
        max_value=datetime(9999, 12, 31, 23, 59),
    ),
).map(lambda d: d.replace(tzinfo=UTC))
EDGE_SIGNER = fixed_signer("edge")


def _edge_entry(kind: str, moment: datetime, body: dict) -> Entry:
    time = moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ").rjust(27, "0")  # pad year 1
    return sign_entry(Entry(kind, time, {"user": "a"}, body), EDGE_SIGNER)


@given(st.lists(EDGE_TIMES, min_size=1, max_size=4), EDGE_TIMES)
def test_times_at_the_ends_of_the_calendar_never_overflow(moments, now):
    """Entries dated in the first minutes of year 1 or the last of 9999 are
    refused or accepted by appends, and reported or passed by verification:
    comparing ``newest - tolerance`` or ``now + tolerance`` raised OverflowError
    (a traceback, and a ledger no one could verify)."""
    genesis = _edge_entry("key.added", moments[0], {
        "alg": "ed25519", "key": EDGE_SIGNER.key_id, "origin": "example.org/edge",
        "public_key": encode_b64(EDGE_SIGNER.public_key), "reason": "edge",
    })  # fmt: skip
    notes = [_edge_entry("note", m, {"text": "x"}) for m in moments[1:]]
    try:
        sealed = seal_entries(EMPTY_HEAD, [genesis, *notes], now=now)
    except InputError:
        sealed = seal_entries(EMPTY_HEAD, [genesis], now=max(moments[0], now))
    store = MemoryStore()
    text = CheckpointSigner("example.org/edge", EDGE_SIGNER).sign(
        sealed.head.size, sealed.head.root()
    )
    store.append(lambda head: new_batch(sealed.with_checkpoint(text)))
    report = verify_store(store, origin="example.org/edge")
    assert not [p for p in report.errors if p.code not in ("time",)]


# -- the newest time read from records is the one appends keep ---------------------

START = datetime(2026, 1, 1, tzinfo=UTC)


@given(st.lists(st.integers(-299, 3600), min_size=1, max_size=10), st.data())
def test_the_floor_read_from_records_is_the_one_appends_keep(steps, data):
    """``compute_floor`` over the records (with a pushed window somewhere) gives
    the floor ``seal_entries`` chained: what an append falls back on when the
    stored copy was altered."""
    moments, newest = [], START
    for seconds in steps:  # back at most 299 s from the newest: within tolerance
        moments.append(newest + timedelta(seconds=seconds))
        newest = max(newest, moments[-1])
    entries = [_edge_entry("note", m, {"text": "x"}) for m in moments]
    at = data.draw(st.integers(0, len(entries)))
    count = data.draw(st.integers(1, 3))
    header_time = max(moments, default=START) + timedelta(seconds=1)
    header = _edge_entry(
        "ledger.pushed", header_time,
        {"origin": "example.org/laptop", "key": EDGE_SIGNER.key_id,
         "checkpoint": CheckpointSigner("example.org/laptop", EDGE_SIGNER).sign(
             count + 1, bytes(32)), "count": count, "from": 1, "to": count + 1},
    )  # fmt: skip
    old = [
        _edge_entry("note", START - timedelta(days=9 - i), {"t": i})
        for i in range(count)
    ]
    genesis = _edge_entry("key.added", START, {
        "alg": "ed25519", "key": EDGE_SIGNER.key_id, "origin": "example.org/edge",
        "public_key": encode_b64(EDGE_SIGNER.public_key), "reason": "edge",
    })  # fmt: skip
    batch = [genesis, *entries[:at], header, *old]
    sealed = seal_entries(EMPTY_HEAD, batch, now=header_time)
    records = [(seq, e.kind, e.body, e.time) for seq, e in enumerate(batch)]
    assert compute_floor(records) == sealed.head.floor_time
