"""Answering questions: the Audit API (``api``), queries, trace, refs, governance, flags.

``Audit`` and ``audit`` are loaded from ``api`` on first use. Python binds this
package to the name ``audit`` of the top-level ``mltrail`` package once any of
its modules is imported, where ``mltrail.audit`` is also the function that opens
an :class:`Audit`; so the package can be called as that function is.
"""

from __future__ import annotations

import importlib
import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from mltrail.audit.api import Audit, audit

__all__ = ["Audit", "audit"]


def __getattr__(name: str) -> Any:
    if name not in __all__:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.api"), name)
    globals()[name] = value
    return value


class _CallablePackage(types.ModuleType):
    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return __getattr__("audit")(*args, **kwargs)


sys.modules[__name__].__class__ = _CallablePackage
