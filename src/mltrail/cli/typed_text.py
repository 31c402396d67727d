"""What a person types into a signed entry holds none of their secrets.

A purge's reason, an approval's note, a hold's reason, a model card's fields
and the body of ``mltrail append`` are stored inline, forever: a purge cannot
erase them. Someone purging a leaked token tends to name it in the reason
(``--reason "hf_… was printed in the log"``). Before such text is appended it
goes through the home's secret guard (ADR 0013): URL passwords and values
assigned to secret names become commitments in place, credential shapes become
``[MASKED:secret]``, and so does every secret of the command line and the
environment; the rest of the text stays as typed.
"""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mltrail.capture.run.guard import SecretGuard
    from mltrail.ledger.home import Home

__all__ = ["typed", "typed_body"]


def _guard(home: Home, *, keyed: bool) -> SecretGuard:
    """The home's guard; without ``keyed``, one whose commitments no key makes,
    to find out whether there is anything to commit at all (so that a command
    whose text holds no secret does not create the commitment key)."""
    from mltrail.capture.run.allowlist import load_allow_list
    from mltrail.capture.run.guard import SecretGuard
    from mltrail.capture.run.mask_sources import collect_mask_set
    from mltrail.record.recorder import secret_guard

    argv = sys.argv[1:]
    if keyed:
        return secret_guard(home.path, os.environ, argv=argv)
    allow = load_allow_list(home.path, os.environ)
    masks = collect_mask_set(env=os.environ, argv=argv, allow=allow)
    return SecretGuard(None, masks, allow=allow)


def typed(home: Home, text: str | None) -> str | None:
    """``text`` cleaned of secrets (None and empty text as they are)."""
    if not text or _guard(home, keyed=False).clean_text(text) == text:
        return text
    return _guard(home, keyed=True).clean_text(text)


def typed_body(home: Home, body: dict[str, Any]) -> dict[str, Any]:
    """Every string of ``body`` cleaned, and every string under a secret name a
    commitment marker; its shape is kept, so it still matches its schema."""
    if _guard(home, keyed=False).clean_strings(body) == body:
        return body
    cleaned: dict[str, Any] = _guard(home, keyed=True).clean_strings(body)
    return cleaned
