"""How a run ends when its code returned or raised (``lifecycle.ended_by``)."""

from __future__ import annotations

import pytest

from mltrail.record.lifecycle import Ended, ended_by


@pytest.mark.parametrize(
    ("error", "whole", "expected"),
    [
        (None, False, Ended("succeeded")),
        (None, True, Ended("succeeded", exit_code=0)),
        (SystemExit(), False, Ended("succeeded", exit_code=0)),
        (SystemExit(4), False, Ended("failed", exit_code=4)),
        (SystemExit("usage"), True, Ended("failed", exit_code=1)),
        (KeyboardInterrupt(), False, Ended("interrupted", "KeyboardInterrupt")),
        (KeyboardInterrupt(), True, Ended("interrupted", "KeyboardInterrupt", 130)),
        (ValueError("bad"), False, Ended("failed", "ValueError: bad")),
        (ValueError("bad"), True, Ended("failed", "ValueError: bad", 1)),
    ],
)
def test_ended_by(error, whole, expected):
    assert ended_by(error, whole_process=whole) == expected
