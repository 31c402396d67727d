"""What the start-up hook does once a script lies in a chosen folder.

``mltrail hook install`` (``mltrail.record.hook``) leaves a module in site-packages
(``mltrail.hook_boot``) that calls ``start_hooked`` for a ``python script.py``
in a chosen project folder. The script is recorded as ``python -m mltrail.auto``
records it (``mltrail.auto.autolog``: run started now, ended at exit with the
status of an uncaught exception or ``sys.exit``; aborted, its exit status
unknown, when a ``raise SystemExit(n)`` ended it), and ``MLTRAIL_RUN_ID`` and
``MLTRAIL_HOME`` are exported so that a child ``python`` of the run joins it
instead of starting a run of its own. ``MLTRAIL_HOOKED_RUN`` names the run a
hooked script records, so that a hooked child joining that same run records
what it logs but not its ``argparse`` arguments: they are the child's, not the
run's (the parent's are).
"""

from __future__ import annotations

import os
from pathlib import Path

from mltrail.auto import autolog
from mltrail.record.recorder import HOME_ENV, RUN_ID_ENV

__all__ = ["HOOKED_ENV", "start_hooked"]

HOOKED_ENV = "MLTRAIL_HOOKED_RUN"


def start_hooked(script: str, home: str | None = None) -> str:
    """Record this process's script as a run and return the run id."""
    above = os.environ.get(HOOKED_ENV)
    child = above is not None and above == os.environ.get(RUN_ID_ENV)
    run = autolog(Path(script).name, home=home, params=not child)
    if not run.joined:
        os.environ[RUN_ID_ENV] = run.id
        os.environ[HOME_ENV] = str(run.home.path)
    os.environ[HOOKED_ENV] = run.id
    return run.id
