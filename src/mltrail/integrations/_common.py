"""What every framework adapter shares: the run it records into, extras, values.

``open_run`` gives the adapter its run: the one passed in, else
``mltrail.start_run`` (which joins the run of this process or the one
``mltrail run`` wraps, and starts one otherwise). ``owned`` says the adapter got
it from ``start_run``, so it ends it: ending a joined handle only flushes its
metrics, ending a run it started records ``run.ended``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mltrail.errors import ConfigError

if TYPE_CHECKING:
    from pathlib import Path
    from types import ModuleType

    from mltrail.record.runs import Run

__all__ = ["RunHandle", "number_items", "open_run", "require"]


def require(module: str, extra: str) -> ModuleType:
    """Import ``module``, or raise ``ConfigError`` naming the extra to install.

    Raises:
        ConfigError: the package is not installed.
    """
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise ConfigError(
            f"this integration needs {module.split('.', maxsplit=1)[0]} ({e})",
            hint=f"pip install 'mltrail[{extra}]'",
        ) from None


@dataclass
class RunHandle:
    """The run an adapter records into, and whether the adapter ends it."""

    run: Run
    owned: bool

    def end(self, status: str = "succeeded", *, error: str | None = None) -> None:
        """Flush the metrics; end the run when the adapter opened it."""
        if self.owned:
            self.run.end(status, error=error)
        else:
            self.run.flush()


def open_run(
    run: Run | None, *, name: str | None, home: str | Path | None
) -> RunHandle:
    """``run`` itself, else the run ``mltrail.start_run`` joins or starts."""
    if run is not None:
        return RunHandle(run, owned=False)
    from mltrail.record.runs import start_run

    return RunHandle(start_run(name, home=home), owned=True)


def number_items(values: dict[str, Any]) -> dict[str, float | int]:
    """The entries of ``values`` that are numbers (one-value tensors and NumPy
    scalars included); text and other values are left out."""
    found: dict[str, float | int] = {}
    for key, raw in values.items():
        if type(raw) is float or type(raw) is int:  # the common case, fast
            found[key] = raw
            continue
        value = raw
        if hasattr(raw, "numel"):  # a torch tensor
            if raw.numel() != 1:
                continue
            value = raw.item()
        elif hasattr(raw, "item") and getattr(raw, "size", None) == 1:  # NumPy
            value = raw.item()
        if isinstance(value, int | float) and not isinstance(value, bool):
            found[key] = value
    return found
