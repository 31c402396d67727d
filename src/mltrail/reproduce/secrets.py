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

from mltrail.capture.run.commitment import (
    MARKER_PATTERN,
    CommitmentKey,
    check_commitment,
    is_guessable,
    marker_commitment,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

__all__ = ["MARKER", "Secret", "check_supplied", "variable"]

MARKER = re.compile(MARKER_PATTERN)
"""A commitment written into a string (:func:`~mltrail.capture.run.redact.redaction_marker`)."""


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


def check_supplied(
    secrets: list[Secret], env: Mapping[str, str], key: CommitmentKey | None = None
) -> None:
    """Note, for each secret, whether ``env`` sets its variable and whether the value
    matches the recorded commitment (None: not set, or nothing to check it against:
    a keyed commitment needs the home's commitment ``key``)."""
    for secret in secrets:
        value = env.get(secret.name) or ""
        secret.set = bool(value)
        secret.matches = None
        commitment = secret.commitment
        if not value or commitment is None:
            continue
        if isinstance(commitment, str):
            commitment = marker_commitment(commitment)
        if commitment is not None and (key is not None or is_guessable(commitment)):
            secret.matches = check_commitment(value, commitment, key)
