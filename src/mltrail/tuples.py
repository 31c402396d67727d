"""``typing.NamedTuple``'s class syntax without importing :mod:`typing` (ADR 0035).

``import typing`` (with ``contextlib``) costs ~3 ms of a warm ``mltrail data hash``
of tens; the named tuples on that path are written as usual::

    from mltrail.tuples import NamedTuple

    class File(NamedTuple):
        full: bytes
        key: StatKey
        size: int = 0

Type checkers see :class:`typing.NamedTuple` itself. At run time the class is
made as ``typing.NamedTuple`` makes it: a :func:`collections.namedtuple` of the
annotated fields (those given a value are its defaults), with the class body's
other names (methods, properties, docstring) set on it. The annotations stay
as written (strings, under ``from __future__ import annotations``).
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple
else:
    from collections import namedtuple

    _OWN = {"_make", "_replace", "_asdict", "_fields", "_field_defaults", "_source"}
    _OWN |= {"__new__", "__init__", "__slots__", "__getnewargs__"}

    class _NamedTupleMeta(type):
        def __new__(
            mcs,
            name: str,
            bases: tuple[type, ...],
            ns: dict[str, object],
        ) -> type:
            if bases != (NamedTuple,):
                raise TypeError("a NamedTuple can only inherit from NamedTuple")
            fields: dict[str, object] = ns.get("__annotations__", {})  # type: ignore[assignment]
            defaults = []
            for field in fields:
                if field in ns:
                    defaults.append(ns[field])
                elif defaults:
                    raise TypeError(f"{name}.{field}: no default after a default")
            cls = namedtuple(name, fields, defaults=defaults, module=ns["__module__"])  # type: ignore[misc]
            cls.__annotations__ = dict(fields)
            for key, value in ns.items():
                if key in _OWN:
                    raise AttributeError(f"cannot overwrite NamedTuple attribute {key}")
                if key not in ("__module__", "__annotations__") and key not in fields:
                    setattr(cls, key, value)
            return cls

    NamedTuple = type.__new__(_NamedTupleMeta, "NamedTuple", (), {})

__all__ = ["NamedTuple"]
