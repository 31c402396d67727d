"""The ledger and its home: append, checkpoint, prove, verify; keys, witness, erasure.

The public names of the ``ledger`` module (``Ledger``, ``Draft``, ``Clock``,
``SystemClock``, ``BlobPurgedError``, ``UncoveredRecordsError``) can be imported
from this package, as before it was one. They are loaded on first use, so that
importing one of the package's other modules does not load the ledger.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mltrail.ledger.ledger import (
        BlobPurgedError,
        Clock,
        Draft,
        Ledger,
        SystemClock,
        UncoveredRecordsError,
    )

__all__ = [
    "BlobPurgedError",
    "Clock",
    "Draft",
    "Ledger",
    "SystemClock",
    "UncoveredRecordsError",
]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.ledger"), name)
    globals()[name] = value
    return value
