"""``export intoto``'s own-checkpoint check against a ledger another process
appends to after the verification: the checkpoint of the verified records is
signed by the key, so the key signs (ADR 0024 amendment); an append meanwhile
is no tampering."""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from mltrail.errors import IntegrityError
from mltrail.integrations.intoto import _require_own_checkpoint
from mltrail.ledger.home import init_home, open_home, verify_pinned

if TYPE_CHECKING:
    from pathlib import Path


def test_an_append_after_the_verification_is_no_reason_to_refuse(
    tmp_path: Path,
) -> None:
    init_home(tmp_path / "home", origin="example.org/intoto-cp", env={})
    writer = open_home(tmp_path / "home", env={})
    home = open_home(tmp_path / "home", writable=False, env={})
    try:
        writer.ledger.append("note", {"text": "one"})
        verification = verify_pinned(home)
        writer.ledger.append("note", {"text": "a step of a run still going"})
        _require_own_checkpoint(home, writer.ledger.signer, verification)
    finally:
        home.close()
        writer.close()


def test_a_verification_no_checkpoint_of_the_key_covers_is_refused(
    tmp_path: Path,
) -> None:
    init_home(tmp_path / "home", origin="example.org/intoto-cp", env={})
    writer = open_home(tmp_path / "home", env={})
    home = open_home(tmp_path / "home", writable=False, env={})
    try:
        writer.ledger.append("note", {"text": "one"})
        verification = verify_pinned(home)
        verification.size -= 1  # as if it had verified records no checkpoint covers
        with pytest.raises(IntegrityError, match="signed no checkpoint"):
            _require_own_checkpoint(home, writer.ledger.signer, verification)
    finally:
        home.close()
        writer.close()
