"""Property tests: entry times written and read through the fast paths are
exactly what the plain ``strftime`` and a fresh parse give."""

from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mltrail.core.codec import _parse_time, format_time, parse_time
from mltrail.errors import SchemaError

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
