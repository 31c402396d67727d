"""``mltrail server --limit`` / ``MLTRAIL_SERVER_LIMITS`` text: any text parses to
bounds that are all positive and finite or is refused with ValueError (an
``error_interval`` or ``verify_pause`` of ``inf`` was taken: one refusal
while a user verified kept it from verifying until the server restarted), and any valid
bounds written as ``name=value`` pairs parse back to themselves."""

from __future__ import annotations

import dataclasses
import math

from hypothesis import example, given
from hypothesis import strategies as st

from mltrail.server.limits import ServerLimits, parse_limits

FIELDS = dataclasses.fields(ServerLimits)
NAMES = [f.name for f in FIELDS]
VALUES = ["0", "1", "-1", ".5", "nan", "inf", "-inf", "1e3", "1_0", " 2 ", "x"]
PAIR = st.tuples(
    st.sampled_from([*NAMES, "holds-per-user", "holds_per", ""]),
    st.sampled_from(["=", "", "=="]),
    st.sampled_from(VALUES) | st.text(max_size=4),
).map("".join)
TEXT = st.lists(PAIR, max_size=6).map(",".join) | st.text(max_size=30)


@given(TEXT)
@example("verify_pause=inf")
@example("error_interval=1e400")
def test_any_text_is_bounds_all_positive_or_a_value_error(text: str) -> None:
    try:
        limits = parse_limits(text)
    except ValueError:
        return
    for field in FIELDS:
        value = getattr(limits, field.name)
        assert value > 0, (text, field.name, value)
        assert math.isfinite(value), (text, field.name, value)


def _value(field: dataclasses.Field[object]) -> st.SearchStrategy[object]:
    if field.type in (float, "float"):
        return st.floats(min_value=1e-6, max_value=1e9)
    return st.integers(min_value=1, max_value=10**9)


@given(st.fixed_dictionaries({f.name: _value(f) for f in FIELDS}))
def test_valid_bounds_written_as_pairs_parse_back(values: dict[str, object]) -> None:
    limits = ServerLimits(**values)  # type: ignore[arg-type]
    text = ",".join(f"{k}={v!r}" for k, v in values.items())
    assert parse_limits(text) == limits
