"""The values a reproduction needs that the ledger holds only as commitments.

Each redacted value of the command line or of a config file becomes a variable
``MLTRAIL_SECRET_<n>`` that ``command.sh`` refuses to run without. A value the user
supplies can be checked against the recorded commitment here, without the ledger
ever holding it (:func:`check_supplied`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mltrail.capture.redact import check_commitment, check_marker

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["MARKER", "Secret", "check_supplied", "variable"]

MARKER = re.compile(r"<redacted sha256:[0-9a-f]{64} salt:[0-9a-f]*>")
"""A commitment written into a string (:func:`~mltrail.capture.redact.redaction_marker`)."""


def variable(n: int) -> str:
    """The name of the ``n``-th variable (from 1)."""
    return f"MLTRAIL_SECRET_{n}"


@dataclass
class Secret:
    """One redacted value: the variable that supplies it and what it is.

    ``commitment`` is what the record holds for it (a commitment mapping or a marker
    string), or None when no single commitment covers it (a value inside a longer
    string of a config file: the whole file's SHA-256 is checked then).
    """

    name: str
    what: str
    commitment: Mapping[str, Any] | str | None = field(default=None, repr=False)
    set: bool = False
    matches: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON values: never the value itself, nor the commitment."""
        return {
            "name": self.name,
            "what": self.what,
            "set": self.set,
            "matches": self.matches,
            "checkable": self.commitment is not None,
        }


def check_supplied(secrets: list[Secret], env: Mapping[str, str]) -> None:
    """Note, for each secret, whether ``env`` sets its variable and whether the value
    matches the recorded commitment (None: not set, or nothing to check it against)."""
    for secret in secrets:
        value = env.get(secret.name) or ""
        secret.set = bool(value)
        secret.matches = None
        if value and secret.commitment is not None:
            secret.matches = _matches(value, secret.commitment)


def _matches(value: str, commitment: Mapping[str, Any] | str) -> bool:
    if isinstance(commitment, str):
        return check_marker(value, commitment)
    return check_commitment(value, commitment)
