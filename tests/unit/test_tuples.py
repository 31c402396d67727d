"""mltrail.tuples.NamedTuple makes the class typing.NamedTuple makes (ADR 0035)."""

from __future__ import annotations

import pickle
import typing

import pytest

from mltrail.tuples import NamedTuple


class Ours(NamedTuple):
    """A doc."""

    a: int
    b: str | None
    c: int = 0
    d: tuple[int, ...] = ()

    @property
    def total(self) -> int:
        return self.a + self.c


class Theirs(typing.NamedTuple):
    """A doc."""

    a: int
    b: str | None
    c: int = 0
    d: tuple[int, ...] = ()

    @property
    def total(self) -> int:
        return self.a + self.c


def test_the_same_tuple_as_typing_named_tuple():
    ours, theirs = Ours(1, "x", c=2), Theirs(1, "x", c=2)
    assert ours == theirs == (1, "x", 2, ())
    assert repr(ours) == repr(theirs).replace("Theirs", "Ours")
    assert Ours._fields == Theirs._fields
    assert Ours._field_defaults == Theirs._field_defaults
    assert ours.total == 3
    assert ours._replace(a=5).total == 7
    assert ours._asdict() == theirs._asdict()
    assert Ours.__doc__ == "A doc."
    assert Ours.__module__ == __name__
    assert Ours.__qualname__ == "Ours"
    assert Ours.__mro__ == (Ours, tuple, object)
    assert list(Ours.__annotations__) == ["a", "b", "c", "d"]
    assert typing.get_type_hints(Ours) == typing.get_type_hints(Theirs)
    assert pickle.loads(pickle.dumps(ours)) == ours
    with pytest.raises(TypeError):
        Ours(1)  # b has no default
    with pytest.raises(AttributeError):
        ours.a = 2  # type: ignore[misc]


def test_refuses_what_typing_named_tuple_refuses():
    with pytest.raises(TypeError, match="no default after a default"):

        class _Order(NamedTuple):
            a: int = 0
            b: int  # type: ignore[misc]

    with pytest.raises(AttributeError, match="_asdict"):

        class _Own(NamedTuple):
            a: int

            def _asdict(self) -> dict[str, int]:  # type: ignore[misc]
                return {}

    with pytest.raises(TypeError, match="only inherit from NamedTuple"):

        class _Mixed(NamedTuple, int):  # type: ignore[misc]
            a: int
