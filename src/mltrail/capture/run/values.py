"""What a command-line string stands for: ``coerce_value`` (``12`` -> 12, ``1e-3`` ->
0.001, ``true`` -> True, ``[1, 2]`` -> a list, anything else the string itself).

Kept apart from :mod:`mltrail.capture.run.params` (which re-exports it) so that
``mltrail runs --param`` reads a parameter value without importing the argv and
config-file parsers (ADR 0021).
"""

from __future__ import annotations

import math
import re
from typing import Any

__all__ = ["coerce_value"]

_INT = re.compile(r"[+-]?(?:0|[1-9][0-9]*)")
_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|[0-9]+[eE][+-]?[0-9]+)"
)
_WORDS: dict[str, Any] = {
    "true": True,
    "True": True,
    "false": False,
    "False": False,
    "null": None,
    "None": None,
    "~": None,
}
_HYDRA_COLON = re.compile(r"([{,]\s*[A-Za-z_][\w.\-]*):(?=\S)")


def coerce_value(text: str) -> Any:
    """The typed value a command-line string stands for.

    ``12`` -> int (not ``007``: leading zeros stay strings), ``1e-3``/``.5``/``2.`` ->
    float (Python float syntax, no ``_``; ``nan``, ``inf`` and overflowing ``1e400``
    stay strings), ``true/True/false/False`` -> bool, ``null/None/~`` -> None,
    ``[..]``/``{..}`` -> list/dict via YAML flow syntax when it parses (Hydra's
    ``{a:1}`` is read as ``{a: 1}``), anything else the string itself.
    """
    if text in _WORDS:
        return _WORDS[text]
    if _INT.fullmatch(text):
        return _int(text)
    if _FLOAT.fullmatch(text):
        number = float(text)
        return number if math.isfinite(number) else text
    if text[:1] + text[-1:] in ("[]", "{}"):
        return _flow(text)
    return text


def _int(text: str) -> int | str:
    try:
        return int(text)
    except ValueError:  # more digits than sys.get_int_max_str_digits() allows
        return text


def _flow(text: str) -> Any:
    value = _safe_yaml(text)
    if isinstance(value, list | dict) and _has_colon_key(value):
        value = _safe_yaml(_HYDRA_COLON.sub(r"\1: ", text))
    return value if isinstance(value, list | dict) else text


def _safe_yaml(text: str) -> Any:
    import yaml  # lazily: it costs ~25 ms to import, and most commands never need it

    try:
        return yaml.safe_load(text)
    except (yaml.YAMLError, RecursionError):
        return None


def _has_colon_key(value: Any) -> bool:
    """Whether YAML read a Hydra ``{a:1}`` as the key ``"a:1"`` with no value."""
    if isinstance(value, dict):
        return any(
            (isinstance(k, str) and ":" in k and v is None) or _has_colon_key(v)
            for k, v in value.items()
        )
    return isinstance(value, list) and any(_has_colon_key(v) for v in value)
