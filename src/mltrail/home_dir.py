"""Where the ledger home is: :func:`resolve_home`, re-exported by :mod:`mltrail.config`.

Apart from it so that ``mltrail data hash`` can find the hash cache without
importing ``mltrail.config``, whose dataclasses load ``inspect`` (~10 ms of a
warm run, ADR 0035).
"""

from __future__ import annotations

import os

TYPE_CHECKING = False
if TYPE_CHECKING:
    from collections.abc import Mapping
    from pathlib import Path

__all__ = ["home_folder", "resolve_home"]


def resolve_home(
    home: str | Path | None = None, env: Mapping[str, str] | None = None
) -> Path:
    """The ledger home: explicit argument, else ``$MLTRAIL_HOME``, else ``~/.mltrail``."""
    from pathlib import Path

    return Path(home_folder(home, env))


def home_folder(
    home: str | os.PathLike[str] | None = None, env: Mapping[str, str] | None = None
) -> str:
    """:func:`resolve_home` as a ``str``, without importing :mod:`pathlib` (with
    ``urllib.parse``, ~4 ms of a warm ``mltrail data hash``, ADR 0035)."""
    env = os.environ if env is None else env
    if home is not None:
        return _expanduser(os.fspath(home))
    if env.get("MLTRAIL_HOME"):
        return _expanduser(env["MLTRAIL_HOME"])
    return os.path.join(_expanduser("~"), ".mltrail")


def _expanduser(path: str) -> str:
    """``Path(path).expanduser()``, which raises rather than keep a ``~`` it cannot
    expand."""
    expanded = os.path.expanduser(path)
    if path[:1] == "~" and expanded[:1] == "~":
        raise RuntimeError("Could not determine home directory.")
    return expanded
