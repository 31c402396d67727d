"""The witness: the newest checkpoint this machine saw, kept in a file.

Every checkpoint the ledger gives out must extend the witness (an RFC 9162
consistency proof is checked before the file moves forward), and verification
checks the store against it, so a ledger rolled back to an older copy, or
forked, is caught. By default the file lies inside the home (``witness/
checkpoint``), where it only catches accidents: someone who can write the home
can delete it. ``MLTRAIL_WITNESS`` puts it elsewhere (another disk, a synced
folder, a file the auditor keeps), where it is a real trust anchor.
"""

from __future__ import annotations

import fcntl
import os
from typing import TYPE_CHECKING

from mltrail.errors import ConfigError, IntegrityError, MltrailError
from mltrail.values import Frozen

# Every home holds a Witness; what reading, checking and moving it needs is
# imported where it is done, so a reading command pays for none of it.
if TYPE_CHECKING:
    from pathlib import Path

    from mltrail.core.checkpoint import Checkpoint, SignedCheckpoint
    from mltrail.core.report import Problem, StoredCheckpoint
    from mltrail.ledger.ledger import Ledger

__all__ = ["Witness"]

_MAX_WITNESS = 64 * 2**10  # a checkpoint note, even with many cosignatures, is far less


class Witness(Frozen):
    """A witness file and where it lies.

    Args:
        path: the file.
        configured: named by ``MLTRAIL_WITNESS`` (so its absence is worth a warning
            that says so).
        external: outside the ledger home.
    """

    __match_args__ = ("path", "configured", "external")
    path: Path
    configured: bool
    external: bool

    def __init__(
        self,
        path: Path,
        configured: bool = False,
        external: bool = False,
    ) -> None:
        object.__setattr__(self, "path", path)
        object.__setattr__(self, "configured", configured)
        object.__setattr__(self, "external", external)

    @property
    def label(self) -> str:
        """How reports name it."""
        return f"witnessed checkpoint ({self.path})"

    def read(self) -> str | None:
        """The witness text, or None when there is no file.

        Raises:
            ConfigError: the file exists but cannot be read as UTF-8 text.
        """
        if not self.path.exists():
            return None
        from mltrail.capture.run.userfiles import read_user_text

        return read_user_text(
            self.path,
            what="witness",
            limit=_MAX_WITNESS,
            error=ConfigError,
            hint="the witness is damaged: restore it from a copy, or point "
            "MLTRAIL_WITNESS at a good one",
        )

    def check_writable(self) -> None:
        """Raise unless the witness file can be created or replaced.

        Raises:
            ConfigError: its folder cannot be created or written.
        """
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError(
                f"cannot write the witness {self.path}: {e.strerror or e}",
                hint="point MLTRAIL_WITNESS at a file in a folder you can write",
            ) from e
        if not os.access(self.path.parent, os.W_OK):
            raise ConfigError(
                f"cannot write the witness {self.path}: its folder is not writable",
                hint="point MLTRAIL_WITNESS at a file in a folder you can write",
            )

    def for_verification(self) -> tuple[list[StoredCheckpoint], list[Problem]]:
        """The witness as a checkpoint to verify against, or a problem saying why not.

        A file that exists but is no readable text (not UTF-8, too large, a
        named pipe) is an error of the report, as one holding other text is:
        whoever can write its folder can put anything there, and verify must
        still give its report rather than stop as at a wrong option. One the
        auditor named by ``MLTRAIL_WITNESS``, outside the home, is the auditor's
        input: a file there that cannot be read is a usage error, as before.

        Raises:
            InputError: that file (named, outside the home) cannot be read.
        """
        from mltrail.core.checkpoint import parse_signed_checkpoint
        from mltrail.core.report import Problem, Severity, StoredCheckpoint
        from mltrail.errors import InputError

        try:
            text = self.read()
        except InputError as e:
            if self.configured and self.external:
                raise  # the auditor's own MLTRAIL_WITNESS: a wrong path, exit 2
            return [], [Problem(None, "checkpoint", f"{self.label} is unreadable: {e}")]
        if text is None:
            where = (
                f"MLTRAIL_WITNESS points to {self.path}, which does not exist"
                if self.configured
                else f"there is no witness checkpoint at {self.path}"
            )
            return [], [
                Problem(
                    None,
                    "witness",
                    f"{where}: no checkpoint this machine kept was checked",
                    Severity.WARNING,
                )
            ]
        try:
            size = parse_signed_checkpoint(text).checkpoint.size
        except MltrailError:
            size = 0  # the verifier reports it unreadable
        return [
            StoredCheckpoint(
                self.label, size, text, external=self.external, in_store=False
            )
        ], []

    def check(self, ledger: Ledger) -> None:
        """Raise unless the ledger extends the witness (before anything is written).

        Raises:
            IntegrityError: the ledger was rolled back, forked, or the witness is
                forged or belongs to another ledger.
        """
        text = self.read()
        if text is None:
            return
        old = self._trusted(ledger, text)
        head = ledger.head()
        self._check_extends(ledger, old, head.size, head.root())

    def advance(self, ledger: Ledger, signed: SignedCheckpoint) -> None:
        """Move the witness to ``signed`` if it is newer, after proving consistency.

        Runs under an exclusive lock on ``<witness>.lock`` so concurrent writers
        never move it backwards. A newer witness (another writer checkpointed
        meanwhile) is kept when the ledger is consistent with it.
        """
        lock_path = self.path.with_name(self.path.name + ".lock")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            lock = open(lock_path, "a")  # noqa: SIM115 - closed by the with below
        except OSError as e:
            raise ConfigError(
                f"cannot write the witness {self.path}: {e.strerror or e}",
                hint="point MLTRAIL_WITNESS at a file in a folder you can write",
            ) from e
        with lock:
            fcntl.flock(lock.fileno(), fcntl.LOCK_EX)
            old_text = self.read()
            old = self._trusted(ledger, old_text) if old_text else None
            new = signed.checkpoint
            if old is None or old.size <= new.size:
                self._check_extends(ledger, old, new.size, new.root)
                from mltrail.config import write_atomic

                write_atomic(self.path, signed.to_text())
            else:
                head = ledger.head()
                self._check_extends(ledger, old, head.size, head.root())

    def _trusted(self, ledger: Ledger, text: str) -> Checkpoint:
        """The witness checkpoint, once its origin and signature are checked."""
        from mltrail.core.checkpoint import parse_signed_checkpoint, verify_checkpoint

        try:
            parsed = parse_signed_checkpoint(text).checkpoint
        except MltrailError as e:
            raise IntegrityError(
                f"the witness {self.path} is not a valid checkpoint: {e}",
                hint="run `mltrail verify`",
            ) from e
        if parsed.origin != ledger.origin:
            raise IntegrityError(
                f"the witness {self.path} is a checkpoint of another ledger "
                f"({parsed.origin!r}, not {ledger.origin!r}); refusing to use or "
                "overwrite it",
                hint="point MLTRAIL_WITNESS at a file of this ledger's own",
            )
        keys = list(ledger.keys().valid_keys(parsed.size).values())
        try:
            return verify_checkpoint(text, origin=ledger.origin, public_keys=keys)
        except MltrailError as e:
            raise IntegrityError(
                f"the witness {self.path} is not signed by a key of this ledger "
                f"valid at size {parsed.size}: {e}",
                hint="run `mltrail verify`",
            ) from e

    @staticmethod
    def _check_extends(
        ledger: Ledger, old: Checkpoint | None, size: int, root: bytes
    ) -> None:
        """Raise unless the tree of ``size`` records with ``root`` extends ``old``."""
        if old is None or old.size == 0:
            return
        if old.size > size:
            raise IntegrityError(
                f"the ledger has {size} records but this machine saw a checkpoint of "
                f"{old.size}: the ledger was rolled back",
                hint="run `mltrail verify`",
            )
        if old.size == size:
            if old.root != root:
                raise IntegrityError(
                    f"the ledger's tree of {size} records differs from the witness "
                    "checkpoint of the same size: the ledger was forked or rewritten",
                    hint="run `mltrail verify`",
                )
            return
        from mltrail.core.merkle import verify_consistency

        proof = ledger.prove_consistency(old.size, size)
        try:
            verify_consistency(old.size, size, old.root, root, proof.hashes)
        except MltrailError as e:
            raise IntegrityError(
                f"the ledger does not extend the witness checkpoint of {old.size} "
                f"records: it was forked or rewritten ({e})",
                hint="run `mltrail verify`",
            ) from e
