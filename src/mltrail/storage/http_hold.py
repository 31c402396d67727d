"""A run held live through an mltrail server: a request kept open for the run's life.

The recorder of a run in client mode has no database session to hold its run
with, so it asks the server to hold it (``POST /ledgers/{l}/runs/{run}/hold``,
see ``mltrail.server.routes_runs``) and keeps that request open on a thread of
its own until the run ends. Closing it, or the recorder's process dying, ends
the server's hold, and every host sees the run ``stale``. The server ends the
stream itself when its lease runs out (an hour), when it restarts, or when the
network breaks: the thread then asks again, at once and then after pauses
growing to ``MAX_PAUSE``, until the run ends or the server refuses the run
(its token revoked, 401; another user's run, 403; a server without holds,
404), so other hosts see the run ``stale`` only meanwhile. A 409 (held by
another process) is final only at the first request: once this thread held
the run, the holder the server sees is most likely this thread's own earlier
stream (a network break the server has not noticed yet, an old database
session a restart left behind), so it is asked again, with the same pauses.

Liveness is advisory: a server that cannot hold runs (an older one), a refused
request or a network error leaves the run unheld (other hosts show it ``stale``)
and never stops the run from being recorded.
"""

from __future__ import annotations

import contextlib
import threading
from typing import Any

__all__ = ["HttpRunHold"]

HELD = "held"
WAIT_SECONDS = 10.0
MAX_PAUSE = 30.0
_FINAL = frozenset({401, 403, 404})
"""Answers after which asking again is pointless: the token is no longer
valid, the run is not this user's, or the server holds no runs. Every refusal
of the first request is final (409 there: another process holds the run)."""


class HttpRunHold:
    """A hold on one run, kept by a thread reading the server's held stream."""

    def __init__(self, client: Any, url: str) -> None:
        self._client = client
        self._url = url
        self._ready = threading.Event()
        self._stop = threading.Event()
        self._response: Any = None
        self.held = False
        """Whether the server held the run (its first answer)."""
        self.status: int | None = None
        """The server's status when it refused the hold (409: held already)."""
        self.problem: str | None = None
        self._thread = threading.Thread(
            target=self._keep, name="mltrail-run-hold", daemon=True
        )

    @classmethod
    def start(cls, client: Any, url: str, *, wait: float = WAIT_SECONDS) -> HttpRunHold:
        """Ask the server to hold the run; return once it says ``held`` (or
        could not, see ``held`` and ``problem``) or after ``wait`` seconds."""
        hold = cls(client, url)
        hold._thread.start()
        hold._ready.wait(wait)
        return hold

    def _keep(self) -> None:
        pause = 0.0
        try:
            while (held := self._hold_once()) is not None:
                # The stream ended (its lease, a restart, the network): ask again,
                # at once after a held stream, after growing pauses while failing.
                pause = 0.0 if held else min(max(2 * pause, 1.0), MAX_PAUSE)
                if self._stop.wait(pause):
                    return
        finally:
            self._ready.set()
            with contextlib.suppress(Exception):
                self._client.close()

    def _hold_once(self) -> bool | None:
        """Keep one held stream until it ends. None: stop (the hold was
        released, the server refused the run, or never held it); else whether
        this stream held the run before it ended."""
        held = False
        try:
            with self._client.stream("POST", self._url) as response:
                self._response = response
                if response.status_code != 200:
                    self.status = response.status_code
                    self.problem = _refusal(response)
                    final = not self.held or self.status in _FINAL
                    return None if final or self._stop.is_set() else False
                for line in response.iter_lines():
                    if line.strip() == HELD:
                        self.held = held = True
                        self._ready.set()
                    if self._stop.is_set():
                        return None
        except Exception as e:
            if not self._stop.is_set():
                self.problem = f"{type(e).__name__}: {e}"
        return None if not self.held or self._stop.is_set() else held

    def release(self) -> None:
        """End the hold: close the request (idempotent)."""
        if self._stop.is_set():
            return
        self._stop.set()
        response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()
        with contextlib.suppress(Exception):
            self._client.close()
        self._thread.join(timeout=5.0)


def _refusal(response: Any) -> str:
    """What the server said when it refused a hold (its error message)."""
    status = response.status_code
    try:
        response.read()
        message = str(response.json()["error"]["message"])[:500]
    except Exception:  # not our server's error body: the status says enough
        return f"the server answered {status}"
    return f"{message} (HTTP {status})"
