"""Reading times for --since/--until/--week/--at."""

from datetime import UTC, date, datetime, time, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mltrail.audit.query import parse_at, parse_when, time_window
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


# -- odd inputs: refused, never guessed --------------------------------------------

OTHER_DIGITS = [
    0x0660,
    0x06F0,
    0x0966,
    0xFF10,
]  # Arabic-Indic, Persian, Devanagari, fullwidth
ACCEPTED = st.sampled_from(
    ["7d", "12h", "2026-W42", "2026W01", "2026-03-14", "2026-03-14T09:30Z",
     "2026-03-14T10:30+01:00", "2026-03-14 09:30:00.5"]
)  # fmt: skip


@pytest.mark.parametrize(
    "text",
    [
        "20260314",  # a date without dashes was read as its first instant, by --until too
        "2026-W42-1",  # an ISO week date was read as its Monday's first instant
        "\u0667d",
        "\uff17d",
        "\u0662\u0660\u0662\u0666-W42",
        "2026-03-14T0930",
        "2026-03-14T09:30+0100",
        "now",
        "2026-03-14T09:30 Europe/Paris",
    ],
)
def test_forms_outside_the_documented_ones_are_refused(text):
    with pytest.raises(InputError) as caught:
        parse_when(text, now=NOW, end=True)
    assert caught.value.exit_code == 2
    assert "2026-W42" in (caught.value.hint or "")


@given(ACCEPTED, st.sampled_from(OTHER_DIGITS), st.data())
def test_a_digit_of_another_script_is_refused(text, zero, data):
    """``int()`` and ``\\d`` read Arabic-Indic or fullwidth digits as numbers; the
    parser reads ASCII ones only, so nothing looking different means the same."""
    places = [i for i, c in enumerate(text) if c.isdigit()]
    i = data.draw(st.sampled_from(places))
    odd = text[:i] + chr(zero + int(text[i])) + text[i + 1 :]
    with pytest.raises(InputError):
        parse_when(odd, now=NOW)


@given(ACCEPTED, st.text(" \t\n", max_size=3), st.text(" \t\n", max_size=3))
def test_spaces_around_a_time_change_nothing(text, before, after):
    padded = before + text + after
    assert parse_when(padded, now=NOW) == parse_when(text, now=NOW)
    assert parse_at(padded, now=NOW) == parse_at(text, now=NOW)


# the index keeps epoch seconds as floats: exact to the microsecond in 1834-2106
@given(st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 12, 31)))
def test_at_a_day_includes_all_of_it_and_nothing_after(day):
    last = datetime.combine(day, time.max, UTC).timestamp()
    following = datetime.combine(day + timedelta(days=1), time.min, UTC).timestamp()
    assert last <= parse_at(day.isoformat()) < following


def test_at_a_time_includes_that_moment():
    assert parse_at("2026-03-14T09:30Z") == ts(2026, 3, 14, 9, 30)


@pytest.mark.parametrize(
    ("since", "until"),
    [("2026-03-15", "2026-03-14"), ("2026-03-15", "2026-03-14T23:00Z"), ("1h", "2h")],
)
def test_an_empty_window_is_an_input_error(since, until):
    with pytest.raises(InputError, match="is not before --until"):
        time_window(since, until)
    assert time_window("2026-03-14", "2026-03-14").start == ts(2026, 3, 14)


@pytest.mark.parametrize("week", ["7d", "2026-03-14", "2026-03-14T09:30Z"])
def test_week_takes_only_a_week(week):
    """A day or an age made a window of one instant: every run silently left out."""
    with pytest.raises(InputError, match="--week takes an ISO week"):
        time_window(week=week)
    assert time_window(week=" 2026-W42 ") == time_window(week="2026-W42")
