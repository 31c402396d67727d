"""The one exception tree of mltrail.

Callers can catch broadly (``MltrailError``) or narrowly. The CLI maps each
branch to an exit code and prints ``str(error)`` plus ``error.hint``::

    MltrailError
     ├── InputError            exit 2  bad user input (JSON, kind, schema, arguments)
     │    ├── CommandNotFoundError exit 127/126  the wrapped command cannot start
     │    ├── SchemaError              bytes or objects that do not match the format
     │    └── ConfigError              missing ledger or key, optional extra
     ├── IntegrityError        exit 3  verification found tampering
     │    ├── UncoveredRecordsError    records no signed checkpoint covers
     │    ├── ChainBrokenError         seq / prev chain broken
     │    ├── ProofError               a Merkle proof does not verify
     │    └── BadSignatureError        a signature does not verify
     ├── StoreError            exit 4  storage unavailable, corrupt, full or refusing
     │    ├── AppendConflictError      the head moved under an append
     │    └── SideStoreError           a store beside the ledger's (index, seal target)
     ├── AuthError             exit 5  wrong key password; authentication or role refused
     └── CaptureError          exit 2  a collector could not read what it needs
"""

from __future__ import annotations

__all__ = [
    "AppendConflictError",
    "AuthError",
    "BadSignatureError",
    "CaptureError",
    "ChainBrokenError",
    "CommandNotFoundError",
    "ConfigError",
    "InputError",
    "IntegrityError",
    "MltrailError",
    "ProofError",
    "SchemaError",
    "SideStoreError",
    "StorageError",
    "StoreError",
    "UncoveredRecordsError",
]


class MltrailError(Exception):
    """Root of every error mltrail raises on purpose.

    Args:
        message: one line naming the problem.
        hint: one line saying what to do about it (optional).
    """

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


class InputError(MltrailError):
    """Bad input from the user: nothing was written."""

    exit_code = 2


class SchemaError(InputError):
    """Bytes or values that do not follow the published format."""


class ConfigError(InputError):
    """The ledger, a key or an optional extra is missing or wrong."""


class CaptureError(MltrailError):
    """A collector could not read what it needs from the machine."""

    exit_code = 2


class CommandNotFoundError(InputError):
    """The wrapped command cannot be found or executed.

    Found missing before the run starts, nothing is recorded; when only the
    ``exec`` fails (a missing ``#!`` interpreter), the run is recorded as failed.

    The exit code follows the shell: 127 not found, 126 found but not executable.
    """

    exit_code = 127

    def __init__(
        self, message: str, *, hint: str | None = None, code: int = 127
    ) -> None:
        super().__init__(message, hint=hint)
        self.exit_code = code


class IntegrityError(MltrailError):
    """Verification found that the ledger was altered."""

    exit_code = 3


class UncoveredRecordsError(IntegrityError):
    """Records at the end of the ledger are not covered by a signed checkpoint.

    Every append stores a checkpoint of its batch in the same transaction, so an
    uncovered tail was written without the ledger key (or by mltrail 0.1).
    """


class ChainBrokenError(IntegrityError):
    """The seq / prev hash chain is broken."""


class ProofError(IntegrityError):
    """A Merkle inclusion or consistency proof does not verify."""


class BadSignatureError(IntegrityError):
    """A signature does not verify against the key that should have made it."""


class StoreError(MltrailError):
    """The store is unavailable, unreadable, or refused the operation."""

    exit_code = 4


StorageError = StoreError


class AppendConflictError(StoreError):
    """The ledger head moved while an append was being prepared."""


class SideStoreError(StoreError):
    """A store beside the ledger's failed: the derived index (rebuilt from the
    ledger), a seal target. It says nothing of the ledger's records, so a
    reading command does not verify the ledger for it
    (``mltrail.cli.printing.raise_if_tampered``)."""


class AuthError(MltrailError):
    """Authentication failed or the role does not allow the operation."""

    exit_code = 5
