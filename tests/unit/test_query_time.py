"""Reading times for --since/--until/--week/--at."""

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mltrail.audit.query import parse_when
from mltrail.errors import InputError

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def ts(*args):
    return datetime(*args, tzinfo=UTC).timestamp()


@pytest.mark.parametrize(
    ("text", "end", "expected"),
    [
        ("2026-03-14", False, ts(2026, 3, 14)),
        ("2026-03-14", True, ts(2026, 3, 15)),
        ("2026-03-14T09:30", False, ts(2026, 3, 14, 9, 30)),
        ("2026-03-14T09:30Z", False, ts(2026, 3, 14, 9, 30)),
        ("2026-03-14T10:30+01:00", False, ts(2026, 3, 14, 9, 30)),
        ("2026-W42", False, ts(2026, 10, 12)),
        ("2026-W42", True, ts(2026, 10, 19)),
        ("2026W01", False, ts(2025, 12, 29)),
        ("7d", False, ts(2026, 11, 18, 12, 0)),
        ("12h", False, ts(2026, 11, 25, 0, 0)),
        ("30m", False, ts(2026, 11, 25, 11, 30)),
        ("2w", False, ts(2026, 11, 11, 12, 0)),
    ],
)
def test_forms(text, end, expected):
    assert parse_when(text, now=NOW, end=end) == expected


@pytest.mark.parametrize(
    "text", ["", "yesterday", "2026-13-01", "2026-W54", "7 days", "3y"]
)
def test_bad_times_are_input_errors_with_a_hint(text):
    with pytest.raises(InputError) as caught:
        parse_when(text, now=NOW)
    assert caught.value.exit_code == 2


@given(st.text(max_size=40))
def test_any_text_parses_or_is_an_input_error(text):
    try:
        value = parse_when(text, now=NOW)
    except InputError:
        return
    assert isinstance(value, float)


def test_an_age_too_large_is_an_input_error():
    with pytest.raises(InputError):
        parse_when("99999999999w", now=NOW)
