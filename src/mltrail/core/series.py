"""A run's metric series summed over the ``run.metrics`` batches it wrote.

Pure, and light to import (no dataclasses): ``show`` prints the merged series on
its plain read path (ADR 0038), ``diff`` compares them, and the report lists them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping

__all__ = ["merge_series"]


def merge_series(bodies: Iterable[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """Each metric series' summary over a run's ``run.metrics`` bodies, in the order
    they were recorded.

    A run writes its metrics in batches (every 10,000 points or 30 seconds), each
    body summarizing only its own batch; the run's series is their sum: every
    batch's points counted, the least and greatest of all, the last batch's last.
    """
    found: dict[str, dict[str, Any]] = {}
    for body in bodies:
        series = body.get("series")
        for name, summary in (series if isinstance(series, dict) else {}).items():
            before = found.get(name)
            if isinstance(before, dict) and isinstance(summary, dict):
                found[name] = _joined(before, summary)
            elif isinstance(summary, dict):
                found[name] = dict(summary)
    return found


def _joined(before: Mapping[str, Any], after: Mapping[str, Any]) -> dict[str, Any]:
    joined = {**before, **after}
    count = (before.get("count"), after.get("count"))
    if all(isinstance(n, int) and not isinstance(n, bool) for n in count):
        joined["count"] = count[0] + count[1]
    for stat, pick in (("min", min), ("max", max)):
        numbers = [
            v
            for v in (before.get(stat), after.get(stat))
            if isinstance(v, int | float) and not isinstance(v, bool)
        ]
        if numbers:
            joined[stat] = pick(numbers)
    if "first_step" in before:
        joined["first_step"] = before["first_step"]
    return joined
