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


def _guard(home: Home) -> SecretGuard:
    from mltrail.record.recorder import secret_guard

    return secret_guard(home.path, os.environ, argv=sys.argv[1:])


def typed(home: Home, text: str | None) -> str | None:
    """``text`` cleaned of secrets (None and empty text as they are)."""
    if not text:
        return text
    return _guard(home).clean_text(text)


def typed_body(home: Home, body: dict[str, Any]) -> dict[str, Any]:
    """Every string of ``body`` cleaned, and every string under a secret name a
    commitment marker; its shape is kept, so it still matches its schema."""
    cleaned: dict[str, Any] = _guard(home).clean_strings(body)
    return cleaned
