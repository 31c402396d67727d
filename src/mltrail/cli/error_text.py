"""What mltrail prints about an error holds none of the secrets it was given.

An error message often quotes what it was handed: a URL, a path, the text of a
library's exception (``Invalid bucket name "KEY:SECRET@bucket"``). Before it is
printed, :func:`masked` replaces every secret of mltrail's own command line and
environment (found as for a run's mask set, ``capture.mask_sources``) and every
credential in the text itself (URL passwords, secret query values, credential
shapes, ``PASSWORD=…``) by ``[MASKED:<name>]``. A value that is the path of an
existing file (``--key /path/signing.key``) is not masked: the error is about it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = ["masked"]


def masked(text: str, args: Sequence[str]) -> str:
    """``text`` with the secrets of ``args``, the environment and itself masked."""
    from mltrail.capture.run.mask import MaskSet
    from mltrail.capture.run.mask_sources import named_secrets
    from mltrail.capture.run.redact import redact_tree

    named = [
        (name, value)
        for name, value in named_secrets(env=os.environ, argv=list(args))
        if not _names_a_file(value)
    ]
    found = redact_tree(text).secrets
    named += [("secret", s) for s in found if s != text]
    return MaskSet.build(named).mask_text(text)[0]


def _names_a_file(value: str) -> bool:
    """Whether ``value`` is the path of something that exists (``--key
    /path/to/signing.key``): the error is about that path, and shows it."""
    try:
        return os.path.lexists(value)
    except (OSError, ValueError):
        return False
