"""Compare runs and rerun them from the record.

- :func:`compare_runs`: what changed between two runs (``mltrail diff``);
- :func:`write_reproduction`: a folder with everything needed to rerun a run
  (``mltrail reproduce RUN --out DIR``);
- :func:`check_reproduction`: what on this machine differs from what a run used
  (``mltrail reproduce RUN --check``).

    >>> view = load_run(home, index, resolve_run(index, "baseline"))  # doctest: +SKIP
    >>> write_reproduction(home, view, Path("repro"))  # doctest: +SKIP
    >>> check_reproduction(home, view)  # doctest: +SKIP
    []
"""

from __future__ import annotations

from mltrail.reproduce.check import Mismatch, check_reproduction
from mltrail.reproduce.facts import compare_runs, read_blob, run_facts
from mltrail.reproduce.write import ReproPlan, write_reproduction

__all__ = [
    "Mismatch",
    "ReproPlan",
    "check_reproduction",
    "compare_runs",
    "read_blob",
    "run_facts",
    "write_reproduction",
]
