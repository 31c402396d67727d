"""The test suite's own rule for optional extras: skip locally, fail under CI."""

import sys

import pytest

from optional_extras import require_extra


def test_a_missing_extra_skips_locally_and_fails_under_ci(monkeypatch):
    monkeypatch.setitem(sys.modules, "mltrail_absent", None)
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"mltrail_absent not installed"):
        require_extra("remote", "json", "mltrail_absent")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"pip install -e '\.\[remote\]'"):
        require_extra("remote", "mltrail_absent")


def test_present_modules_are_returned(monkeypatch):
    monkeypatch.setenv("CI", "true")
    json, tomllib = require_extra("remote", "json", "tomllib")
    assert json.__name__ == "json"
    assert tomllib.__name__ == "tomllib"
