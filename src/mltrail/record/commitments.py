"""Checking a candidate secret against the commitments in a ledger (for auditors).

An auditor who holds a value (a password, a token, a file) and the home's
commitment key (``keys/commitment.hmac-key``) can confirm which commitments of
the ledger it is behind; anyone without the key can confirm none::

    matches = check_value(home, b"hunter2", run="0190…")
    for m in matches.found:
        print(m.seq, m.path, "guessable" if m.guessable else "keyed")

Commitments written before keyed commitments (salted SHA-256) are checked
without a key, and flagged ``guessable``: anyone can test a word list against
them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from mltrail.capture.run.commitment import (
    check_commitment,
    is_commitment,
    is_guessable,
    marker_commitment,
)
from mltrail.capture.run.redact import _MARKER
from mltrail.errors import ConfigError
from mltrail.ledger.keystore import load_commitment_key

if TYPE_CHECKING:
    from collections.abc import Iterator

    from mltrail.capture.run.commitment import CommitmentKey
    from mltrail.core.entry import Record
    from mltrail.ledger.home import Home

__all__ = ["CommitmentMatch", "Matches", "check_value", "commitments_in"]


@dataclass(frozen=True)
class CommitmentMatch:
    """A commitment that a value is behind: where, and whether it was guessable."""

    seq: int
    path: str
    guessable: bool


@dataclass
class Matches:
    """What a check found: the matches, how many commitments were looked at, and
    whether keyed ones could be checked at all (the key was there)."""

    found: list[CommitmentMatch] = field(default_factory=list)
    checked: int = 0
    keyed_unchecked: int = 0


def commitments_in(
    value: Any, path: str = "body"
) -> Iterator[tuple[str, dict[str, str]]]:
    """``(path, commitment)`` for every commitment in a body: objects and
    ``<redacted …>`` markers inside strings."""
    if is_commitment(value):
        yield path, dict(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            yield from commitments_in(item, f"{path}.{key}")
    elif isinstance(value, list):
        for n, item in enumerate(value):
            yield from commitments_in(item, f"{path}[{n}]")
    elif isinstance(value, str) and "<redacted " in value:
        for m in _MARKER.finditer(value):
            found = marker_commitment(m[0])
            if found is not None:
                yield path, found


def check_value(
    home: Home, value: str | bytes, *, seq: int | None = None, run: str | None = None
) -> Matches:
    """The commitments of the ledger (of record ``seq``, or of run ``run``, else
    all) that ``value`` is behind.

    Raises:
        InputError: ``seq`` is not in the ledger.
    """
    key = _key(home)
    matches = Matches()
    for record in _records(home, seq, run):
        for path, commitment in commitments_in(record.entry.body):
            matches.checked += 1
            if not is_guessable(commitment) and key is None:
                matches.keyed_unchecked += 1
            elif check_commitment(value, commitment, key):
                guessable = is_guessable(commitment)
                matches.found.append(CommitmentMatch(record.seq, path, guessable))
    return matches


def _key(home: Home) -> CommitmentKey | None:
    try:
        return load_commitment_key(home.path, create=False)
    except ConfigError:
        return None


def _records(home: Home, seq: int | None, run: str | None) -> Iterator[Record]:
    if seq is not None:
        yield home.ledger.record(seq)
        return
    for record in home.ledger.records():
        if run is None or record.entry.run == run:
            yield record
