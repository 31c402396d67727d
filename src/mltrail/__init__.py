"""mltrail: a tamper-evident, signed, verifiable audit log of the ML model lifecycle.

Example::

    import mltrail

    with mltrail.start_run(name="baseline", params={"lr": 0.1}) as run:
        run.log_dataset("data/train.csv", role="train")
        run.log_metrics({"loss": 0.42}, step=1)
    assert mltrail.verify().ok

Names are loaded on first use, so ``import mltrail`` stays cheap for scripts that
only need part of it.
"""

from __future__ import annotations

from mltrail.errors import (
    AuthError,
    CaptureError,
    CommandNotFoundError,
    ConfigError,
    InputError,
    IntegrityError,
    MltrailError,
    SchemaError,
    StoreError,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from pathlib import Path
    from typing import Any

    from mltrail.audit.api import Audit, audit
    from mltrail.auto import autolog
    from mltrail.core.entry import Entry, Record
    from mltrail.core.verify import Problem, VerificationReport
    from mltrail.ledger.home import Home, init_home, open_home
    from mltrail.ledger.ledger import Draft, Ledger
    from mltrail.record.runs import Run, start_run

__all__ = [
    "Audit",
    "AuthError",
    "CaptureError",
    "CommandNotFoundError",
    "ConfigError",
    "Draft",
    "Entry",
    "Home",
    "InputError",
    "IntegrityError",
    "Ledger",
    "MltrailError",
    "Problem",
    "Record",
    "Run",
    "SchemaError",
    "StoreError",
    "VerificationReport",
    "__version__",
    "audit",
    "autolog",
    "init_home",
    "open_home",
    "start_run",
    "verify",
]

__version__ = "0.1.0"

_LAZY = {
    "Audit": "mltrail.audit",
    "audit": "mltrail.audit",
    "autolog": "mltrail.auto",
    "Entry": "mltrail.core.entry",
    "Record": "mltrail.core.entry",
    "Problem": "mltrail.core.verify",
    "VerificationReport": "mltrail.core.verify",
    "Home": "mltrail.ledger.home",
    "init_home": "mltrail.ledger.home",
    "open_home": "mltrail.ledger.home",
    "Draft": "mltrail.ledger",
    "Ledger": "mltrail.ledger",
    "Run": "mltrail.record.runs",
    "start_run": "mltrail.record.runs",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mltrail' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


def verify(
    home: str | Path | None = None, *, workers: int | None = None
) -> VerificationReport:
    """Verify the ledger at ``home`` (default ``$MLTRAIL_HOME`` or ``~/.mltrail``)."""
    from mltrail.ledger.home import open_home

    opened = open_home(home, writable=False)
    try:
        return opened.verify(workers=workers)
    finally:
        opened.close()
