"""The options of the top-level ``mltrail`` group, passed to every command."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mltrail.values import Value

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["AppState"]


class AppState(Value):
    """Options of the top-level group, passed to every command."""

    __match_args__ = ("home", "debug")
    home: Path | None
    debug: bool

    def __init__(self, home: Path | None, debug: bool) -> None:
        self.home = home
        self.debug = debug
