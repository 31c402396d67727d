"""Writing what a run must not lose: its start and, above all, its end.

A run's end is written after a command that may have run for days, so a problem
that waiting or a second look can cure must not lose it:

- another process rotated the signing key (``mltrail keys rotate``): the append
  signed by the old, now revoked key is refused. The key ``ledger.json`` names
  now is loaded (the old key file may already be gone) and the append retried
  once.
- the store is locked past its busy timeout by another process, the disk is
  full, or the store failed otherwise: the append is retried with exponential
  backoff for as long again as the busy timeout (``Home.busy_timeout``, which
  the first attempt may already have spent waiting for the lock).

What still fails is raised; the caller says what was and was not recorded.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, TypeVar

from mltrail.errors import ConfigError, StoreError

if TYPE_CHECKING:
    from collections.abc import Callable

    from mltrail.ledger.home import Home

__all__ = ["write_durably"]

T = TypeVar("T")

FIRST_WAIT_S = 0.05
MAX_WAIT_S = 5.0


def write_durably(
    home: Home,
    attempt: Callable[[], T],
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> T:
    """``attempt()`` (an append or a checkpoint of ``home``), retried where it helps.

    Raises:
        ConfigError: the signing key is refused, and ledger.json names no other.
        StoreError: the store still fails once the retry window is over.
        MltrailError: anything else ``attempt`` raised (not retried).
    """
    deadline: float | None = None
    wait = FIRST_WAIT_S
    reloaded = False
    while True:
        try:
            return attempt()
        except StoreError:
            if deadline is None:
                deadline = clock() + home.busy_timeout
            if clock() + wait > deadline:
                raise
            sleep(wait)
            wait = min(wait * 2, MAX_WAIT_S)
        except ConfigError:
            if reloaded or not home.reload_signer():
                raise
            reloaded = True
