"""Where the ledger home is: :func:`resolve_home`, re-exported by :mod:`mltrail.config`.

Apart from it so that ``mltrail data hash`` can find the hash cache without
importing ``mltrail.config``, whose dataclasses load ``inspect`` (~10 ms of a
warm run, ADR 0035).
"""

from __future__ import annotations

import os
from pathlib import Path

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["resolve_home"]


def resolve_home(
    home: str | Path | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """The ledger home: explicit argument, else ``$MLTRAIL_HOME``, else ``~/.mltrail``."""
    env = os.environ if env is None else env
    if home is not None:
        return Path(home).expanduser()
    if env.get("MLTRAIL_HOME"):
        return Path(env["MLTRAIL_HOME"]).expanduser()
    return Path.home() / ".mltrail"
