"""The options of the top-level ``mltrail`` group, passed to every command."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mltrail.values import Value

if TYPE_CHECKING:
    from pathlib import Path

    from mltrail.ledger.home import Home

__all__ = ["AppState"]


class AppState(Value):
    """Options of the top-level group, passed to every command."""

    __match_args__ = ("home", "debug", "read_home")
    _compared = _shown = ("home", "debug")
    home: Path | None
    debug: bool
    read_home: Home | None
    """The home the command opened to read it (not to write): a store error the
    command meets is then checked against a verification of it, opened again
    (:func:`mltrail.cli.printing.verdict_of_store_error`)."""

    def __init__(
        self, home: Path | None, debug: bool, read_home: Home | None = None
    ) -> None:
        self.home = home
        self.debug = debug
        self.read_home = read_home
