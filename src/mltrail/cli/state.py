"""The options of the top-level ``mltrail`` group, passed to every command."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pathlib import Path

__all__ = ["AppState"]


@dataclass
class AppState:
    """Options of the top-level group, passed to every command."""

    home: Path | None
    debug: bool
