"""The server's shares (``mltrail.server.limits``): bounds parsed and checked,
slots counted per user, ledger and process, a throttled error log; and the
client's answer to a 429 (retried after ``Retry-After``, then one clear error)."""

from __future__ import annotations

import logging

import pytest

from mltrail.server.limits import (
    LargeBody,
    ServerLimits,
    Slots,
    ThrottledErrors,
    parse_limits,
)


def test_limits_parse_over_the_defaults_and_refuse_nonsense() -> None:
    limits = parse_limits("holds_per_user=3, error-interval=0.5,holds_per_user=4")
    assert limits.holds_per_user == 4  # the last one named wins
    assert limits.error_interval == 0.5
    assert limits.holds == ServerLimits().holds
    assert parse_limits("") == ServerLimits()
    for bad, said in (
        ("holds_per_usr=3", "unknown limit"),
        ("holds", "unknown limit"),
        ("holds=many", "is a number"),
        ("holds=0", "must be positive"),
        ("verifies=-1", "must be positive"),
        ("holds=1.5", "is a number"),
    ):
        with pytest.raises(ValueError, match=said):
            parse_limits(bad)


def _keys(ledger: str, user: str) -> dict[str, object]:
    return {"user": (ledger, user), "ledger": ledger, "server": None}


def test_slots_are_bounded_per_user_per_ledger_and_in_the_process() -> None:
    slots = Slots({"user": 2, "ledger": 3, "server": 4})
    a1, a2 = slots.take(_keys("a", "alice")), slots.take(_keys("a", "alice"))
    assert slots.take(_keys("a", "alice")) == "user"
    b1 = slots.take(_keys("a", "bob"))
    assert slots.take(_keys("a", "cy")) == "ledger"
    other = slots.take(_keys("b", "alice"))  # alice of another ledger: another user
    assert slots.take(_keys("b", "dee")) == "server"
    assert slots.held("ledger", "a") == 3
    for give_back in (a1, a1):  # giving back twice is harmless
        assert callable(give_back)
        give_back()
    assert slots.held("user", ("a", "alice")) == 1
    assert callable(slots.take(_keys("b", "dee")))
    for give_back in (a2, b1, other):
        assert callable(give_back)
        give_back()
    assert slots.held("server", None) == 1


def test_a_body_takes_its_large_slot_once_and_gives_it_back() -> None:
    taken: list[int] = []

    def take():
        taken.append(1)
        return taken.pop

    body = LargeBody(take, threshold=10)
    body.release()  # nothing taken: nothing given back
    body.need()
    body.need()
    assert taken == [1]
    body.release()
    body.release()
    assert taken == []


def _record(
    text: str, throttle: str | None = "HTTP 503", level: int = logging.ERROR
) -> logging.LogRecord:
    record = logging.LogRecord("mltrail.server", level, "", 0, text, (), None)
    if throttle is not None:
        record.throttle = throttle
    return record


def test_error_lines_are_throttled_per_status_and_the_rest_counted() -> None:
    throttled = ThrottledErrors(lines=3, interval=3600)
    passed = [throttled.filter(_record(f"refused {n}")) for n in range(10)]
    assert passed == [True] * 3 + [False] * 7
    assert throttled.filter(_record("other", "HTTP 500"))  # its own allowance
    assert throttled.filter(_record("not throttled", None))
    assert throttled.dropped() == {"HTTP 503": 7}

    throttled.interval = 0.0  # the next interval has begun
    record = _record("refused again")
    assert throttled.filter(record)
    assert record.getMessage() == "[7 more like this not logged] refused again"
    assert throttled.dropped() == {}


def test_dropped_lines_are_said_on_flush(caplog: pytest.LogCaptureFixture) -> None:
    throttled = ThrottledErrors(lines=1, interval=3600)
    for _ in range(5):
        throttled.filter(_record("refused"))
    with caplog.at_level(logging.ERROR, "mltrail.server"):
        throttled.flush(logging.getLogger("mltrail.server"))
    assert "4 more log lines (HTTP 503) were not logged" in caplog.text
    assert throttled.dropped() == {}


def test_each_report_says_the_count_not_said_yet_at_its_level(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The count of each kind is said once per report, at the level of the
    worst line left out; the interval's allowance is not given back by it."""
    logger = logging.getLogger("mltrail.server")
    throttled = ThrottledErrors(lines=1, interval=3600)
    refused = "HTTP 503 holds_per_ledger"
    for _ in range(4):
        throttled.filter(_record("refused", refused, logging.WARNING))
    for _ in range(3):
        throttled.filter(_record("database failed"))
    with caplog.at_level(logging.WARNING, "mltrail.server"):
        throttled.report(logger)
        throttled.report(logger)  # nothing new to say
    said = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert sorted(said) == [
        ("ERROR", "2 more log lines (HTTP 503) were not logged"),
        ("WARNING", f"3 more log lines ({refused}) were not logged"),
    ]
    assert not throttled.filter(_record("refused", refused, logging.WARNING))
    assert throttled.dropped() == {refused: 1}


def test_a_refusal_is_a_warning_counted_apart_from_failures() -> None:
    """A 503 for want of a slot is logged under its bound, a store's 503 under
    its status: a flood of refusals leaves every line of a failure its own."""
    from mltrail.errors import StoreError
    from mltrail.server.app import ApiError, raise_for

    refusal = ApiError(503, "full", extra={"limit": "holds_per_ledger"})
    failure = raise_for(StoreError("connection lost"))
    assert (refusal.throttle, refusal.level) == (
        "HTTP 503 holds_per_ledger",
        logging.WARNING,
    )
    assert (failure.throttle, failure.level) == ("HTTP 503", logging.ERROR)
    assert failure.logged == "connection lost"


def _busy_store(answers: list[tuple[int, dict[str, str]]]):
    httpx2 = pytest.importorskip("httpx2")
    from mltrail.storage.http import HttpStore

    def handle(request):
        status, headers = answers.pop(0) if len(answers) > 1 else answers[0]
        if status == 200:
            return httpx2.Response(200, json={"name": "team-a"})
        body = {"error": {"code": "too_many_requests", "message": "'alice' has 1 "
                "verifications running already", "hint": "try again in 5 s"}}  # fmt: skip
        return httpx2.Response(status, json=body, headers=headers)

    return HttpStore(
        "http://fake.test/ledgers/team-a",
        "tok",
        transport=httpx2.MockTransport(handle),
        backoff=0.01,
    )


def test_the_client_waits_what_retry_after_asks_then_says_the_server_is_busy(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from mltrail.errors import StoreError
    from mltrail.storage import http

    waits: list[float] = []
    monkeypatch.setattr(http.time, "sleep", waits.append)
    store = _busy_store([(429, {"Retry-After": "5"}), (200, {})])
    assert store.info()["name"] == "team-a"
    assert waits == [5.0]

    waits.clear()
    store = _busy_store([(429, {"Retry-After": "3600"})])
    with pytest.raises(StoreError, match="busy for this user: 'alice' has 1") as e:
        store.info()
    assert e.value.hint == "try again in 5 s"
    assert waits == [http.MAX_RETRY_AFTER] * store.retries  # capped


def test_server_help_names_every_bound() -> None:
    """``mltrail server --help`` says every bound ``--limit`` takes."""
    import dataclasses

    from click.testing import CliRunner

    from mltrail.cli.server_cmd import server

    shown = " ".join(CliRunner().invoke(server, ["--help"]).output.split())
    for field in dataclasses.fields(ServerLimits):
        assert field.name in shown, field.name


def test_uvicorns_tracebacks_of_failures_are_throttled_too(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Starlette re-raises each exception answered 500, and uvicorn logs it
    with its traceback: those lines count in an allowance of their own."""
    from mltrail.server.app import UNHANDLED, throttle_error_log

    throttle_error_log(ServerLimits(error_lines=2))
    try:
        logger = logging.getLogger("uvicorn.error")
        with caplog.at_level(logging.ERROR, "uvicorn.error"):
            for _ in range(5):
                try:
                    raise RuntimeError("boom")
                except RuntimeError:
                    logger.exception(UNHANDLED)
            logger.error("another line of uvicorn's")  # not throttled
        said = [r.getMessage() for r in caplog.records]
        assert said == [UNHANDLED, UNHANDLED, "another line of uvicorn's"]
    finally:
        throttle_error_log(ServerLimits()).flush(logging.getLogger("test"))


def test_a_rolled_back_database_is_refused_with_a_hint_that_runs() -> None:
    """``SignedSize`` refuses an append behind the size it signed; its hint told
    the operator to run ``mltrail verify --db ...``, an option verify lacks."""
    import re

    from click.testing import CliRunner

    from mltrail.cli.app import cli
    from mltrail.errors import IntegrityError
    from mltrail.server.ledgers import SignedSize

    signed = SignedSize()
    signed.raise_to(12)
    signed.check(12)  # the head it signed: appended to
    with pytest.raises(IntegrityError, match="rolled back") as refused:
        signed.check(11)
    commands = re.findall(r"`mltrail ([^`]*)`", refused.value.hint or "")
    assert commands
    for command in commands:
        words = command.split()
        name = [w for w in words if not w.startswith("-")][:1]
        shown = CliRunner().invoke(cli, [*name, "--help"]).output
        for option in (w.split("=")[0] for w in words if w.startswith("--")):
            assert option in shown, (command, option)
