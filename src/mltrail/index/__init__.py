"""The derived index: tables rebuilt from the ledger, for fast questions.

>>> from mltrail.index import open_index   # doctest: +SKIP
>>> index = open_index(home)               # caught up with the ledger
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from mltrail.errors import StoreError
from mltrail.index.db import INDEX_FILE, Index
from mltrail.index.tables import INDEX_VERSION
from mltrail.storage.readonly import can_write, connect_read_only

if TYPE_CHECKING:
    from collections.abc import Callable

    from mltrail.ledger.home import Home

__all__ = ["INDEX_FILE", "Index", "open_index", "open_stored_index"]


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


def open_stored_index(home: Home) -> Index | None:
    """The home's ``index.db`` as stored, caught up with its ledger; None when
    there is none.

    Where the home may be written it is opened in place (as :func:`open_index`);
    elsewhere (a read-only home) it is read into memory through a read-only
    connection, so that what was stored in it can still be compared with the
    records (``mltrail verify``) while nothing is written into the home.

    Raises:
        StoreError: ``index.db`` cannot be read.
    """
    import sqlite3

    path = home.path / home.index_file
    if not path.exists():
        return None
    if not home.ledger.store.read_only and can_write(path):
        return open_index(home)
    index = Index(None, home.ledger)
    try:
        stored = connect_read_only(path)
        try:
            stored.conn.backup(index.conn)
        finally:
            stored.close()
        if index._stored_version() != INDEX_VERSION:
            # another version's index is rebuilt where it is opened in place:
            # its rows are no edit to report
            index.close()
            return None
        index.sync()
    except sqlite3.Error as e:
        index.close()
        raise StoreError(f"cannot read the index {path}: {e}") from e
    except BaseException:
        index.close()
        raise
    return index
