"""A wrapped command for signal tests.

``signal_child.py term``: print "ready", wait for SIGTERM, print "got TERM", exit 7.
``signal_child.py count SIGNAME``: block SIGNAME, print "ready", wait for it,
then keep counting deliveries for a moment and print "count=N" (exit 0).
Blocking plus ``sigtimedwait`` takes each delivery off the pending set at once,
so a second copy sent a little later is counted rather than merged.
"""

from __future__ import annotations

import signal
import sys
import time


def term() -> int:
    def on_term(signum: int, frame: object) -> None:
        print("got TERM", flush=True)
        sys.exit(7)

    signal.signal(signal.SIGTERM, on_term)
    print("ready", flush=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        time.sleep(0.05)
    return 1


def count(name: str) -> int:
    signum = signal.Signals[name]
    signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
    print("ready", flush=True)
    seen = 0
    if signal.sigtimedwait({signum}, 30) is not None:
        seen += 1
        while signal.sigtimedwait({signum}, 0.5) is not None:
            seen += 1
    print(f"count={seen}", flush=True)
    return 0


if __name__ == "__main__":
    mode = sys.argv[1]
    sys.exit(term() if mode == "term" else count(sys.argv[2]))
