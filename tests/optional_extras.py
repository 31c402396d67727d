"""Tests that need an optional extra: skip where it is missing, fail under CI.

``pip install -e '.[test]'`` gives every light extra; torch, transformers and
peft come with ``.[dev]`` (the README's test command, and CI). A test needing a
package that is not installed is skipped with a reason naming the extra to
install; under ``CI=true`` it fails instead, since CI installs every extra and a
skip there would hide a broken install.

    torch, peft = require_extra("finetune", "torch", "peft")  # at module level too
"""

from __future__ import annotations

import importlib
import os
from types import ModuleType

import pytest

__all__ = ["in_ci", "require_extra"]


def in_ci() -> bool:
    """Whether this runs under CI (``CI=true``, as CI services set it)."""
    return os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_extra(extra: str, *modules: str) -> list[ModuleType]:
    """Import ``modules`` (packages of ``mltrail[extra]``), or skip naming the extra
    (fail under CI)."""
    found, missing = [], []
    for name in modules:
        try:
            found.append(importlib.import_module(name))
        except ImportError:
            missing.append(name)
    if missing:
        message = (
            f"{', '.join(missing)} not installed: pip install -e '.[{extra}]' "
            "(or '.[dev]' for every extra)"
        )
        if in_ci():
            pytest.fail(f"{message}; CI=true installs every extra", pytrace=False)
        pytest.skip(message, allow_module_level=True)
    return found
