"""Running the mltrail CLI as a user would, in a subprocess, against one home.

from cli_runner import mltrail
done = mltrail(home, "runs", "--json", cwd=project)
assert done.returncode == 0, done.stderr
"""

from __future__ import annotations

import os
import subprocess
import sys
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["INHERITED_NOT", "mltrail"]

INHERITED_NOT = (
    "MLTRAIL_RUN_ID", "MLTRAIL_WITNESS", "MLTRAIL_KEY_PASSWORD", "RANK", "WORLD_SIZE",
    "MLTRAIL_ALLOW_UNSAFE_KEY_FILE",
)  # fmt: skip
"""Variables of the test process that would change what the command does: an
outer run to join, a witness file, a key password, a distributed rank, the
escape hatch for unsafe key files."""


def mltrail(
    home: Path | str,
    *args: str,
    cwd: Path | str | None = None,
    env: Mapping[str, str] | None = None,
    timeout: float = 120,
) -> subprocess.CompletedProcess[str]:
    """``python -m mltrail ARGS`` with ``MLTRAIL_HOME=home`` (text output, not
    checked: the caller asserts the exit code), ``env`` added to this
    process's environment less :data:`INHERITED_NOT`."""
    run_env = {**os.environ, "MLTRAIL_HOME": str(home)}
    for name in INHERITED_NOT:
        run_env.pop(name, None)
    run_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "mltrail", *args],
        capture_output=True,
        text=True,
        env=run_env,
        cwd=cwd,
        timeout=timeout,
        check=False,
    )
