"""Run a command with a pseudo-terminal as its stdout and stderr, as a person's
shell does, and return what the terminal received."""

from __future__ import annotations

import os
import pty
import select
import subprocess
from collections.abc import Mapping, Sequence


def run_on_terminal(
    args: Sequence[str], env: Mapping[str, str], *, cwd: str | None = None
) -> tuple[int, bytes]:
    """(exit code, bytes written to the terminal) of ``args``; stdin is empty."""
    leader, follower = pty.openpty()
    full = {**env, "TERM": "xterm-256color", "COLUMNS": "400", "LINES": "50"}
    full.pop("NO_COLOR", None)
    proc = subprocess.Popen(
        list(args),
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
        env=full,
        cwd=cwd,
    )
    os.close(follower)
    out = bytearray()
    try:
        while True:
            ready, _, _ = select.select([leader], [], [], 120)
            if not ready:
                proc.kill()
                raise TimeoutError(f"no output from {args!r} in 120 s")
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer closed the terminal
                break
            if not chunk:
                break
            out += chunk
    finally:
        os.close(leader)
        code = proc.wait(timeout=120)
    return code, bytes(out)
