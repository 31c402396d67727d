"""write_durably: which failures are retried, for how long, and what gets through."""

import pytest

from mltrail.errors import ConfigError, InputError, StoreError
from mltrail.ledger.persist import MAX_WAIT_S, write_durably


class FakeHome:
    def __init__(self, busy_timeout=10.0, new_key=True):
        self.busy_timeout = busy_timeout
        self.new_key = new_key
        self.reloads = 0

    def reload_signer(self):
        self.reloads += 1
        return self.new_key


class FakeClock:
    def __init__(self):
        self.now = 0.0
        self.waits = []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.waits.append(seconds)
        self.now += seconds


def failing(*errors, result="done"):
    """An attempt that raises each of ``errors`` in turn, then returns ``result``."""
    pending = list(errors)

    def attempt():
        if pending:
            raise pending.pop(0)
        return result

    return attempt


def test_store_errors_are_retried_with_backoff_until_it_works():
    clock = FakeClock()
    attempt = failing(*[StoreError("database is locked")] * 4)
    assert write_durably(FakeHome(), attempt, sleep=clock.sleep, clock=clock) == "done"
    assert clock.waits == [0.05, 0.1, 0.2, 0.4]


def test_store_errors_give_up_after_the_busy_timeout_again():
    clock = FakeClock()
    attempt = failing(*[StoreError("database or disk is full")] * 1000)
    with pytest.raises(StoreError, match="disk is full"):
        write_durably(
            FakeHome(busy_timeout=20), attempt, sleep=clock.sleep, clock=clock
        )
    assert 15 < clock.now <= 20
    assert max(clock.waits) == MAX_WAIT_S


def test_a_refused_key_is_reloaded_and_the_append_retried_once():
    home = FakeHome()
    attempt = failing(ConfigError("signed by a revoked key"))
    assert write_durably(home, attempt) == "done"
    assert home.reloads == 1
    twice = failing(ConfigError("revoked"), ConfigError("revoked again"))
    with pytest.raises(ConfigError, match="revoked again"):
        write_durably(home, twice)


def test_the_same_key_after_reloading_is_not_retried():
    home = FakeHome(new_key=False)
    with pytest.raises(ConfigError, match="revoked"):
        write_durably(home, failing(ConfigError("revoked")))
    assert home.reloads == 1


def test_bad_input_is_never_retried():
    home = FakeHome()
    clock = FakeClock()
    with pytest.raises(InputError, match="schema"):
        write_durably(
            home, failing(InputError("schema")), sleep=clock.sleep, clock=clock
        )
    assert (home.reloads, clock.waits) == (0, [])
