"""Small value classes without :mod:`dataclasses` (ADR 0038).

Creating a dataclass compiles its methods with ``exec`` when the module is
imported: ~0.7 ms per frozen class, and ``import dataclasses`` (with inspect,
ast, dis, tokenize) ~8 ms. A read command loaded ~30 of them before asking
anything. The classes on the read path instead write their ``__init__`` by
hand and take the rest from :class:`Value` or :class:`Frozen`, generic
methods driven by the class's field names, so creating a class costs what a
plain class costs (~10 us).

A class lists its fields, in ``__init__``'s positional order, in
``__match_args__`` (as a dataclass does; ``match`` uses it too) and, where
it had ``slots=True``, in ``__slots__`` as well. Equality, hash and ``repr``
behave as the dataclass's did: equal when the classes are the same and the
compared fields are equal, ``repr`` as ``Name(field=value, ...)``; a field
the dataclass left out of comparisons or ``repr`` is left out of
``_compared`` or ``_shown``.
"""

from __future__ import annotations

from operator import attrgetter

TYPE_CHECKING = False  # not typing's: a cold `data hash` imports no typing
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any, ClassVar, TypeVar

    V = TypeVar("V", bound="Value")

__all__ = ["Frozen", "Value", "replace"]


class Value:
    """A mutable value: ``==`` over its compared fields, unhashable, a dataclass's repr."""

    __slots__ = ()
    __match_args__: ClassVar[tuple[str, ...]] = ()
    _compared: ClassVar[tuple[str, ...]] = ()
    _shown: ClassVar[tuple[str, ...]] = ()

    _key: ClassVar[Callable[[Any], tuple[Any, ...]]] = staticmethod(lambda _: ())

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        own = cls.__dict__
        if "__match_args__" in own:  # a subclass that adds no fields keeps its parent's
            if "_compared" not in own:
                cls._compared = cls.__match_args__
            if "_shown" not in own:
                cls._shown = cls.__match_args__
        if "_compared" in cls.__dict__:
            # the compared fields as a tuple, read in C (attrgetter of two names or
            # more gives one; a single field is wrapped as a dataclass's (x,) is)
            compared = cls._compared
            if len(compared) > 1:
                cls._key = attrgetter(*compared)  # type: ignore[assignment]
            elif compared:
                one = attrgetter(compared[0])
                cls._key = staticmethod(lambda value: (one(value),))  # type: ignore[assignment]
            else:
                cls._key = staticmethod(lambda _: ())  # type: ignore[assignment]

    def __eq__(self, other: object) -> bool:
        if other.__class__ is self.__class__:
            key = self._key
            return key(self) == key(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable: as a dataclass with eq

    def __repr__(self) -> str:
        shown = ", ".join(f"{name}={getattr(self, name)!r}" for name in self._shown)
        return f"{self.__class__.__qualname__}({shown})"


class Frozen(Value):
    """An immutable, hashable value: assigning a field raises ``FrozenInstanceError``.

    ``__init__`` sets fields with ``object.__setattr__``. Copies and pickles
    rebuild the value through ``__init__`` from its fields in
    ``__match_args__`` order.
    """

    __slots__ = ()

    def __hash__(self) -> int:
        return hash(self._key(self))

    def __setattr__(self, name: str, value: object) -> None:
        from dataclasses import FrozenInstanceError  # only on this error path

        raise FrozenInstanceError(f"cannot assign to field {name!r}")

    def __delattr__(self, name: str) -> None:
        from dataclasses import FrozenInstanceError

        raise FrozenInstanceError(f"cannot delete field {name!r}")

    def __reduce__(self) -> tuple[Any, ...]:
        return (self.__class__, tuple([getattr(self, n) for n in self.__match_args__]))


def replace(value: V, /, **changes: Any) -> V:
    """A copy of ``value`` with ``changes``: what ``dataclasses.replace`` does."""
    fields = {name: getattr(value, name) for name in value.__match_args__}
    unknown = changes.keys() - fields.keys()
    if unknown:
        raise TypeError(f"{value.__class__.__qualname__} has no field {min(unknown)!r}")
    fields.update(changes)
    return value.__class__(**fields)
