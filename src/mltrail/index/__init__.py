"""The derived index: tables rebuilt from the ledger, for fast questions.

>>> from mltrail.index import open_index   # doctest: +SKIP
>>> index = open_index(home)               # caught up with the ledger
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mltrail.index.db import INDEX_FILE, Index
from mltrail.storage.readonly import can_write

if TYPE_CHECKING:
    from collections.abc import Callable

    from mltrail.ledger.home import Home

__all__ = ["INDEX_FILE", "Index", "open_index"]


def open_index(
    home: Home, *, progress: Callable[[int, int], None] | None = None
) -> Index:
    """The home's index, caught up with its ledger.

    The index is kept in ``index.db`` beside the ledger; where the home is not
    writable (an auditor's read-only copy, whoever opens it) it is built in memory
    instead, and nothing is written into the home.
    """
    path = home.path / home.index_file
    writable = not home.ledger.store.read_only and can_write(path)
    index = Index(path if writable else None, home.ledger)
    index.sync(progress)
    return index
