"""Pushed windows: records of another ledger that keep their original times.

``mltrail push`` copies the entries of an embedded (offline) ledger to a team
server unchanged, so they keep the times they were signed with, which may lie
long before the server ledger's newest time. A ``ledger.pushed`` record, dated
when it is appended, announces them: the ``count`` records right after it form
its WINDOW. Each record in a window

* may be dated before the ledger's floor (the newest time since the last
  ``clock.reset``), by any amount;
* may not be dated after the header (so a window never moves the floor, and
  the floor the stores compute by scanning times agrees with the chained one);
* may not be dated more than the tolerance before the previous record of the
  window (the entries keep their local order);
* does not move the floor, and is not a key, clock-reset, purge or header.

Every other record follows the ordinary rule of :mod:`mltrail.core.chain`.
The rule is applied by appends (``seal_entries``, where a window must end in
the append that opens it) and by verification (``LedgerVerifier``), both
through :class:`PushWindow`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from mltrail.core.checkpoint import verify_checkpoint
from mltrail.core.codec import parse_time
from mltrail.core.keyring import AUTHOR_FORBIDDEN_KINDS
from mltrail.errors import MltrailError

if TYPE_CHECKING:
    from collections.abc import Mapping
    from datetime import timedelta

    from mltrail.core.keyring import KeyRing

__all__ = [
    "NOT_PUSHED_KINDS",
    "PUSHED_KIND",
    "PushWindow",
    "open_window",
    "pushed_checkpoint_problem",
]

PUSHED_KIND = "ledger.pushed"
NOT_PUSHED_KINDS = AUTHOR_FORBIDDEN_KINDS | {PUSHED_KIND}
"""Kinds never pushed, and never inside a window: the embedded ledger's own
key, clock-reset and purge records, and other headers."""


@dataclass(frozen=True, slots=True)
class PushWindow:
    """The records still to come in the window a ``ledger.pushed`` header opened.

    Args:
        header_seq: the header's seq.
        header_time: the header's time (no record of the window is later).
        remaining: records of the window not yet seen (at least 1).
        previous: time of the window's previous record (None: none yet).
    """

    header_seq: int
    header_time: str
    remaining: int
    previous: str | None = None

    def problem(self, kind: str, time: str, tolerance: timedelta) -> str | None:
        """Why a record of ``kind`` dated ``time`` cannot be the window's next,
        or None."""
        where = f"an entry pushed by the ledger.pushed at seq {self.header_seq}"
        if kind in NOT_PUSHED_KINDS:
            return f"{where} is a {kind}, which is never pushed"
        moment = parse_time(time)
        if moment > parse_time(self.header_time):
            return (
                f"{where} is dated {time}, after its header ({self.header_time}): "
                "pushed entries are older than the push"
            )
        if self.previous is not None:
            before = parse_time(self.previous)
            if before - moment > tolerance:
                return (
                    f"{where} is dated {time}, more than the tolerance before the "
                    f"previous pushed entry ({self.previous}): pushed entries keep "
                    "their order"
                )
        return None

    def after(self, time: str | None) -> PushWindow | None:
        """The window once its next record (dated ``time``; None: unreadable) is
        seen; None when that was its last."""
        if self.remaining <= 1:
            return None
        return PushWindow(
            self.header_seq,
            self.header_time,
            self.remaining - 1,
            time if time is not None else self.previous,
        )

    def overrun(self, ends: str) -> str:
        """What to say when ``ends`` (the append, the ledger) before the window does."""
        return (
            f"the ledger.pushed at seq {self.header_seq} announces "
            f"{self.remaining} more pushed entries than {ends} holds"
        )


def open_window(
    seq: int, kind: str, body: Mapping[str, Any] | None, time: str
) -> PushWindow | None:
    """The window a record opens: one for a ``ledger.pushed`` announcing a
    positive ``count``, else None (a header off its schema opens none; the
    schema check names it)."""
    if kind != PUSHED_KIND or body is None:
        return None
    count = body.get("count")
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        return None
    return PushWindow(seq, time, count)


def pushed_checkpoint_problem(
    body: Mapping[str, Any], keyring: KeyRing, signer: str | None = None
) -> str | None:
    """Why a ``ledger.pushed`` header's ``checkpoint`` does not vouch for its window,
    or None: it must be a checkpoint of the pushed ledger (its ``origin``) signed by
    the key the header names, which this ledger must hold (the pushing author's key,
    registered before the push), and cover at least ``to`` records. ``signer``:
    the id of the key that signed the header, which must belong to the same
    identity as the key named (an author pushes only its own ledger: another
    user's header naming it would move where ``mltrail push`` resumes, and put
    that user's entries in the pushed ledger's window)."""
    key_id, origin, text = body.get("key"), body.get("origin"), body.get("checkpoint")
    state = keyring.keys.get(key_id) if isinstance(key_id, str) else None
    if state is None:
        return (
            f"the header names key {str(key_id)[:16]}..., which this ledger never added"
        )
    signed_by = None if signer is None else keyring.keys.get(signer)
    if signed_by is not None and signed_by.identity != state.identity:
        return (
            f"the header names key {str(key_id)[:16]}... of "
            f"{_who(state.identity)}, but is signed by a key of "
            f"{_who(signed_by.identity)}: only the pushed ledger's author pushes it"
        )
    if not isinstance(origin, str) or not isinstance(text, str):
        return "the header carries no origin or checkpoint text"
    try:
        checkpoint = verify_checkpoint(
            text, origin=origin, public_keys=[state.public_key]
        )
    except (ValueError, MltrailError) as e:
        return f"its checkpoint of {origin} does not verify with that key: {e}"
    to = body.get("to")
    if not isinstance(to, int) or checkpoint.size < to:
        return (
            f"its checkpoint of {origin} covers {checkpoint.size} records, "
            f"the header pushed up to {to}"
        )
    return None


def _who(identity: str | None) -> str:
    return "the log" if identity is None else repr(identity)
