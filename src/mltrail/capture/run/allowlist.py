"""The secret allow-list: strings the detector flags that are known not to be secrets.

A detector of credential shapes has false positives (a long random-looking test
fixture, a public sample key in a tutorial). Those are listed, one per line, in
``<home>/secret-allow.txt``, and/or in the environment variable
``MLTRAIL_SECRET_ALLOW`` (entries separated by newlines or ``,``)::

    # exact strings
    AKIAIOSFODNN7EXAMPLE
    # regular expressions (Python syntax, matched against the whole string)
    re:^sample-[0-9a-f]{32}$

An allowed string is neither masked in stored text nor counted as found. It
applies to what the *detector* finds and to values collected by name (a variable
named like a secret that holds a harmless word); a value collected by name is
still committed in entry bodies, only left readable in logs and files.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mltrail.capture.run.userfiles import read_user_file
from mltrail.errors import ConfigError, InputError

if TYPE_CHECKING:
    from collections.abc import Iterable, Mapping
    from pathlib import Path

__all__ = ["ALLOW_ENV", "ALLOW_FILE", "AllowList", "load_allow_list"]

ALLOW_ENV = "MLTRAIL_SECRET_ALLOW"
ALLOW_FILE = "secret-allow.txt"
_MAX_FILE = 1 << 20


@dataclass(frozen=True)
class AllowList:
    """Exact strings and whole-string patterns that are not secrets."""

    exact: frozenset[str] = frozenset()
    patterns: tuple[re.Pattern[str], ...] = field(default=())

    def allows(self, value: str) -> bool:
        """Whether ``value`` is listed (exactly, or matched whole by a pattern)."""
        return value in self.exact or any(p.fullmatch(value) for p in self.patterns)

    @classmethod
    def parse(cls, lines: Iterable[str], *, source: str) -> AllowList:
        """Entries one per line: ``re:<pattern>`` or an exact string; ``#`` comments.

        Raises:
            ConfigError: a pattern does not compile (naming ``source``).
        """
        exact: set[str] = set()
        patterns: list[re.Pattern[str]] = []
        for raw in lines:
            line = raw.strip()
            if not line or line.startswith("#"):
                continue
            if not line.startswith("re:"):
                exact.add(line)
                continue
            try:
                patterns.append(re.compile(line[3:]))
            except re.error as e:
                raise ConfigError(
                    f"{source}: bad pattern {line[3:]!r}: {e}",
                    hint="write re:<Python regular expression>, or an exact string",
                ) from e
        return cls(frozenset(exact), tuple(patterns))

    def __or__(self, other: AllowList) -> AllowList:
        return AllowList(self.exact | other.exact, self.patterns + other.patterns)


def load_allow_list(home: Path | None, env: Mapping[str, str]) -> AllowList:
    """The allow-list of ``home`` (its ``secret-allow.txt``) and of the environment.

    Raises:
        ConfigError: an entry is a bad pattern, or the file cannot be read.
    """
    allow = AllowList.parse(
        re.split(r"[\n,]", env.get(ALLOW_ENV, "")), source=ALLOW_ENV
    )
    if home is None or not (home / ALLOW_FILE).exists():
        return allow
    path = home / ALLOW_FILE
    try:
        data = read_user_file(path, what="secret allow-list", limit=_MAX_FILE)
    except InputError as e:
        raise ConfigError(str(e), hint=e.hint) from e
    text = data.decode("utf-8", "replace").splitlines()
    return allow | AllowList.parse(text, source=str(path))
