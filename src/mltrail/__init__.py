"""mltrail: a tamper-evident, signed, verifiable audit log of the ML model lifecycle.

Example::

    import mltrail
    mltrail.init_home("/tmp/audit")
    home = mltrail.open_home("/tmp/audit")
    home.ledger.append("note", {"text": "dataset v2 approved"})
    home.checkpoint()
    assert mltrail.verify("/tmp/audit").ok
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import TYPE_CHECKING

from mltrail.core.entry import Entry, Record
from mltrail.core.verify import Problem, VerificationReport
from mltrail.errors import (
    AuthError,
    ConfigError,
    InputError,
    IntegrityError,
    MltrailError,
    SchemaError,
    StoreError,
)
from mltrail.home import Home, init_home, open_home
from mltrail.ledger import Draft, Ledger

if TYPE_CHECKING:
    from pathlib import Path

__all__ = [
    "AuthError",
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
    "SchemaError",
    "StoreError",
    "VerificationReport",
    "__version__",
    "init_home",
    "open_home",
    "verify",
]

try:
    __version__ = version("mltrail")
except PackageNotFoundError:  # pragma: no cover - running from a source tree
    __version__ = "0.0.0"


def verify(
    home: str | Path | None = None, *, workers: int | None = None
) -> VerificationReport:
    """Verify the ledger at ``home`` (default ``$MLTRAIL_HOME`` or ``~/.mltrail``)."""
    opened = open_home(home, writable=False)
    try:
        return opened.verify(workers=workers)
    finally:
        opened.close()
