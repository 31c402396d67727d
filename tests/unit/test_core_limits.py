"""The limits on new entries, and the checks readers and the codec make with them."""

import json

import pytest

from mltrail.core.codec import decode_record, parse_json, validate_entry
from mltrail.core.entry import Entry, Record, sign_entry
from mltrail.core.limits import (
    MAX_DEPTH,
    MAX_ENTRY_BYTES,
    MAX_RECORD_DEPTH,
    exceeds_text_depth,
    run_id_problem,
    value_problem,
)
from mltrail.errors import SchemaError
from mltrail.ledger.ledger import Draft, Ledger
from mltrail.record.recorder import RunWriter
from mltrail.testing import FixedClock, MemoryStore, fixed_signer

TIME = "2026-11-24T17:56:18.123456Z"


def nested(depth: int, leaf: object = 1) -> object:
    """A value ``depth`` levels of objects and arrays deep (alternating)."""
    value = leaf
    for level in range(depth):
        value = {"a": value} if level % 2 else [value]
    return value


def entry(body: dict) -> dict:
    return {"v": "mltrail/1", "kind": "note", "time": TIME, "actor": {}, "body": body}


@pytest.fixture
def ledger() -> Ledger:
    return Ledger.create(
        MemoryStore(),
        fixed_signer(),
        origin="test.mltrail.local/limits",
        clock=FixedClock(),
    )


# -- value_problem and exceeds_text_depth -------------------------------------


@pytest.mark.parametrize("depth", [0, 1, 2, MAX_DEPTH - 1, MAX_DEPTH])
def test_values_up_to_the_depth_limit_pass(depth):
    assert value_problem(nested(depth), "body") is None
    assert not exceeds_text_depth(json.dumps(nested(depth)), MAX_DEPTH)


@pytest.mark.parametrize("depth", [MAX_DEPTH + 1, 980, 100_000])
def test_values_past_the_depth_limit_are_named(depth):
    problem = value_problem(nested(depth), "body")
    assert problem is not None
    assert f"nests deeper than {MAX_DEPTH} levels" in problem
    assert len(problem) < 200
    assert exceeds_text_depth("[" * depth + "]" * depth, MAX_DEPTH)


def test_a_cycle_is_too_deep_not_a_hang():
    cycle: dict = {}
    cycle["self"] = cycle
    assert "nests deeper" in str(value_problem(cycle, "body"))


@pytest.mark.parametrize(
    ("value", "where"),
    [
        ({"x": 2**53}, "body.x"),
        ({"x": [1, -(2**53)]}, "body.x.1"),
        ({"x": {"y": 2**60}}, "body.x.y"),
        (2**64, "entry run"),
    ],
)
def test_integers_json_cannot_carry_exactly_are_named(value, where):
    problem = value_problem(value, where.split(".")[0])
    assert problem is not None
    assert problem.startswith(f"{where}: integer")
    assert "write it as a string" in problem


@pytest.mark.parametrize("value", [2**53 - 1, -(2**53 - 1), True, 1e300, "9" * 30])
def test_exact_values_pass(value):
    assert value_problem({"x": value}, "body") is None


def test_brackets_inside_strings_do_not_count():
    text = json.dumps({"s": "[" * 500 + '\\"{' * 100, "t": ["]]]"]})
    assert not exceeds_text_depth(text, 3)
    assert not exceeds_text_depth(text.encode(), 3)
    assert exceeds_text_depth(json.dumps([[[[text]]]]), 3)


# -- run ids ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "run_id",
    ["01a2491f-45e7-7b67-a6d1-b8d64ff33d19", "a", "job:42.rank_0", "x" * 128, "..."],
)
def test_valid_run_ids(run_id):
    assert run_id_problem(run_id) is None


@pytest.mark.parametrize(
    "run_id",
    ["", ".", "..", "a/b", "../../x", "x" * 129, "a b", "é", "a\\b", "a\x00", 7, None],
)
def test_invalid_run_ids(run_id):
    assert run_id_problem(run_id) is not None


# -- the codec ---------------------------------------------------------------------


def test_parse_json_refuses_deep_text_before_parsing_it():
    deep = "[" * 100_000 + "]" * 100_000
    with pytest.raises(SchemaError, match=f"deeper than {MAX_RECORD_DEPTH} levels"):
        parse_json(deep, what="record")
    with pytest.raises(SchemaError, match=f"--body nests deeper than {MAX_DEPTH}"):
        parse_json(
            json.dumps(nested(MAX_DEPTH + 1)), what="--body", max_depth=MAX_DEPTH
        )


def test_user_integers_are_refused_not_rounded_stored_ones_read_as_floats():
    text = '{"x": 9007199254740993}'
    with pytest.raises(
        SchemaError, match=r"^--body: integer 9007199254740993 is beyond"
    ):
        parse_json(text, what="--body", exact_ints=True)
    assert parse_json(text) == {"x": 9007199254740992.0}
    assert parse_json('{"x": 9007199254740991}', exact_ints=True) == {
        "x": 9007199254740991
    }


def test_validate_entry_checks_limits_first():
    with pytest.raises(
        SchemaError, match=r"cannot append: body\.a\..*nests deeper than 64"
    ):
        validate_entry(entry({"text": "t", "a": nested(MAX_DEPTH)}))
    with pytest.raises(SchemaError, match=r"entry actor.*nests deeper than 64"):
        validate_entry({**entry({"text": "t"}), "actor": {"ci": nested(MAX_DEPTH)}})
    with pytest.raises(SchemaError, match="run id 'a/b' is not 1 to 128"):
        validate_entry({**entry({"text": "t"}), "run": "a/b"})


def test_validate_entry_measures_the_canonical_size():
    empty = entry({"text": "", "pad": ""})
    room = MAX_ENTRY_BYTES - len(json.dumps(empty, separators=(",", ":")))
    validate_entry(entry({"text": "", "pad": "x" * room}))
    with pytest.raises(SchemaError, match="4,194,305 bytes of canonical JSON") as info:
        validate_entry(entry({"text": "", "pad": "x" * (room + 1)}))
    assert "blob" in str(info.value.hint)


def test_a_stored_record_past_the_depth_limit_is_a_schema_error():
    body = {"text": "old", "deep": nested(MAX_DEPTH + 30)}
    signed = sign_entry(Entry("note", TIME, {}, body), fixed_signer())
    data = Record(seq=0, prev="0" * 64, entry=signed).to_bytes()
    with pytest.raises(SchemaError, match="record nests deeper than 66 levels"):
        decode_record(data)
    shallow = {"text": "ok", "deep": nested(MAX_DEPTH - 1)}
    signed = sign_entry(Entry("note", TIME, {}, shallow), fixed_signer())
    decode_record(Record(seq=0, prev="0" * 64, entry=signed).to_bytes())


# -- every append goes through it ------------------------------------------------


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"text": "t", "a": nested(980)}, "nests deeper than 64"),
        ({"text": "t", "x": 2**60}, "body.x: integer 1152921504606846976 is beyond"),
        ({"text": "t", "pad": "x" * MAX_ENTRY_BYTES}, "bytes of canonical JSON"),
    ],
)
def test_ledger_append_refuses_and_writes_nothing(ledger, body, message):
    size = ledger.head().size
    with pytest.raises(SchemaError, match=message):
        ledger.append("note", body)
    with pytest.raises(SchemaError, match=message):
        ledger.append_many([Draft("note", {"text": "fine"}), Draft("note", body)])
    with pytest.raises(SchemaError, match=message):
        RunWriter(ledger, "run-1").write([("note", body)])
    assert ledger.head().size == size
    assert ledger.verify().ok


def test_ledger_append_refuses_a_bad_run_id(ledger):
    with pytest.raises(SchemaError, match=r"run id '\.\./\.\./x'"):
        ledger.append("note", {"text": "t"}, run="../../x")
    assert ledger.append("note", {"text": "t"}, run="job:1.rank-0").entry.run


def test_an_unterminated_string_of_escaped_quotes_is_one_match():
    """Each quote of ``\\"\\"\\"...`` left unterminated started a string match that
    scanned to the end and failed: 80 KB took 36 s, a megabyte hours, before
    the parser could say the text is not JSON (a bundle file, a request body).
    Now the unterminated string is one match to the end of the text, so no
    quote inside it starts another (checked by structure, not by a clock)."""
    from mltrail.core.limits import _STRING_BYTES

    text = b"[" * 20 + b'"' + b'\\"' * 50_000
    match = _STRING_BYTES.match(text, 20)
    assert match is not None
    assert match.end() == len(text)
    assert exceeds_text_depth(text, 16)  # the 20 brackets before the string
