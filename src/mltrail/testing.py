"""Public fakes for tests and examples: fixed keys, a fixed clock, the memory store.

Fixed keys make golden files reproducible; never use them for a real ledger.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

from mltrail.core.signing import Ed25519Signer
from mltrail.ledger.stored import KIND_ROLES
from mltrail.storage import memory

__all__ = ["FixedClock", "MemoryStore", "fixed_signer"]


class MemoryStore(memory.MemoryStore):
    """The in-memory store, opened with the ledger's kind roles."""

    def __init__(self) -> None:
        super().__init__(roles=KIND_ROLES)


def fixed_signer(name: str = "mltrail-test-key-1") -> Ed25519Signer:
    """A deterministic Ed25519 key derived from ``name`` (public knowledge: tests only)."""
    return Ed25519Signer.from_seed(hashlib.sha256(name.encode()).digest())


class FixedClock:
    """A clock that starts at ``start`` and moves ``step`` forward on every read."""

    def __init__(
        self,
        start: datetime = datetime(2026, 1, 1, tzinfo=UTC),
        step: timedelta = timedelta(seconds=1),
    ) -> None:
        self._now = start
        self._step = step

    def now(self) -> datetime:
        """The current fake time; advances by ``step``."""
        current = self._now
        self._now += self._step
        return current
