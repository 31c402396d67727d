"""``mltrail.values``: the value classes that replaced dataclasses on the read path
(ADR 0038) behave as the dataclasses did."""

from __future__ import annotations

import copy
import dataclasses
import pickle

import pytest

from mltrail.config import Settings
from mltrail.core.checkpoint import Checkpoint
from mltrail.core.entry import Entry, Record, Signature
from mltrail.core.head import ChainHead
from mltrail.core.keyring import KeyRing, KeyState
from mltrail.core.lineage import Edge, LineageGraph, Node
from mltrail.core.merkle import InclusionProof
from mltrail.record.run_status import RunSummary
from mltrail.storage.base import KindRoles, StoreHead
from mltrail.values import Frozen, Value, replace

ZERO = "0" * 64


def _entry(**changes: object) -> Entry:
    fields = {"kind": "note", "time": "2026-01-01T00:00:00Z", "actor": {}, "body": {}}
    return Entry(**(fields | changes))  # type: ignore[arg-type]


def test_equality_and_hash_follow_the_compared_fields():
    head = ChainHead(1, b"h", None, (b"f",), 2)
    same = ChainHead(1, b"h", None, (b"f",), 2, floor_time="t", checkpoint="c")
    assert head == same  # floor_time and checkpoint are not compared
    assert hash(head) == hash(same)
    assert head != ChainHead(1, b"h", None, (b"f",), 3)
    # a class's own fields only: a StoreHead of the same values is not a ChainHead
    assert head != StoreHead(1, b"h", None, (b"f",), 2)
    assert _entry(signed_bytes=b"x") == _entry(signed_bytes=None)
    assert _entry() != _entry(run="r")
    assert len({Edge("a", "b", "read"), Edge("a", "b", "read")}) == 1


def test_mutable_values_compare_and_are_not_hashable():
    ring = KeyRing()
    ring.keys["k"] = KeyState(b"p", 1)
    assert ring == KeyRing({"k": KeyState(b"p", 1)})
    assert ring.keys is not KeyRing().keys  # a new dict each time, as default_factory
    with pytest.raises(TypeError):
        hash(ring)
    graph = LineageGraph()
    graph.add_edge("a", "b", "read")
    other = LineageGraph(edges=[Edge("a", "b", "read")])
    assert graph == other  # _seen is not compared


def test_repr_is_a_dataclass_repr_without_the_hidden_fields():
    assert repr(Signature("k", "v")) == "Signature(key='k', value='v', alg='ed25519')"
    assert "signed_bytes" not in repr(_entry(signed_bytes=b"x"))
    assert repr(Node("n", "model", "m")) == (
        "Node(id='n', type='model', label='m', details=())"
    )


def test_frozen_values_refuse_assignment_as_dataclasses_do():
    head = ChainHead(0, bytes(32), None, ())
    with pytest.raises(dataclasses.FrozenInstanceError):
        head.size = 1  # type: ignore[misc]
    with pytest.raises(AttributeError):  # FrozenInstanceError is an AttributeError
        del _entry().kind
    settings = Settings("o", "s", "k", "t")
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.origin = "x"  # type: ignore[misc]


def test_validation_runs_in_init():
    with pytest.raises(ValueError, match="seq must be >= 0"):
        Record(-1, ZERO, _entry())
    with pytest.raises(ValueError, match="plain dotted kind"):
        KindRoles(("key.added",), "clock.reset", "Not A Kind")
    with pytest.raises(ValueError, match="origin"):
        Checkpoint("{x", 0, bytes(32))
    proof = InclusionProof(0, 1, [bytearray(b"ab")])
    assert proof.hashes == (b"ab",)
    assert type(proof.hashes[0]) is bytes


def test_replace_copies_with_changes_and_refuses_unknown_fields():
    entry = _entry(signed_bytes=b"x")
    changed = replace(entry, body={"a": 1}, signed_bytes=None)
    assert changed.body == {"a": 1}
    assert changed.signed_bytes is None
    assert changed.kind == entry.kind
    assert entry.body == {}
    assert replace(Settings("o", "s", "k", "t"), origin="x").origin == "x"
    with pytest.raises(TypeError, match="no field 'nope'"):
        replace(entry, nope=1)


def test_copies_and_pickles_keep_every_field():
    head = ChainHead(3, b"h", "t", (b"a", b"b"), 1, floor_time="f", checkpoint="c")
    for made in (
        pickle.loads(pickle.dumps(head)),
        copy.copy(head),
        copy.deepcopy(head),
    ):
        assert made == head
        assert (made.floor_time, made.checkpoint) == ("f", "c")
    record = Record(0, ZERO, _entry(sig=Signature("k", "v"), extra={"x": 1}))
    assert pickle.loads(pickle.dumps(record)) == record
    ring = KeyRing({"k": KeyState(b"p", 1)}, "k", "origin")
    assert copy.deepcopy(ring) == ring


def test_instances_without_slots_keep_their_dict():
    """Classes that had no slots as dataclasses keep ``__dict__`` (``to_dict`` and
    callers read it), in field order."""
    settings = Settings("o", "s", "k", "t")
    assert list(vars(settings)) == list(Settings.__match_args__)
    summary = RunSummary("id", None, "ok", "t0", None, None, None, None, None, [], 3)
    assert list(summary.to_dict()) == list(RunSummary.__match_args__)


def test_subclasses_declare_their_fields():
    class Pair(Frozen):
        __slots__ = __match_args__ = ("a", "b")
        _compared = ("a",)

        def __init__(self, a: int, b: int = 0) -> None:
            object.__setattr__(self, "a", a)
            object.__setattr__(self, "b", b)

    class Box(Value):
        __match_args__ = ("item",)

        def __init__(self, item: object) -> None:
            self.item = item

    assert Pair(1, 2) == Pair(1, 3)
    assert repr(Pair(1, 2)).endswith(
        "<locals>.Pair(a=1, b=2)"
    )  # qualname, as dataclasses
    assert Pair._shown == ("a", "b")
    assert Box([1]) == Box([1])
    assert Box(1) != Pair(1)

    class Head(ChainHead):  # adds no field: compares what its parent compares
        __slots__ = ()

    assert Head(1, b"h", None, (), floor_time="a") == Head(1, b"h", None, ())
    assert repr(Head(1, b"h", None, ())).endswith("Head(size=1, last_hash=b'h', "
        "last_time=None, frontier=(), key_epoch=0, floor_time=None, checkpoint=None)")  # fmt: skip


def _value_classes() -> list[type[Value]]:
    """Every class of the mltrail package built on Value (modules needing an
    extra that is not installed are left out)."""
    import importlib
    import pkgutil

    import mltrail

    for info in pkgutil.walk_packages(mltrail.__path__, "mltrail."):
        if info.name.endswith("__main__"):
            continue  # runs the command line
        try:
            importlib.import_module(info.name)
        except ImportError:
            continue
    found, todo = [], [Value]
    while todo:
        for sub in todo.pop().__subclasses__():
            todo.append(sub)
            if sub.__module__.startswith("mltrail.") and sub is not Frozen:
                found.append(sub)
    return found


def _fields(cls: type) -> list[str]:
    """The annotated instance fields of ``cls`` and its bases, in order."""
    names: list[str] = []
    for klass in reversed(cls.__mro__):
        for name, note in vars(klass).get("__annotations__", {}).items():
            classvar = str(note).startswith(("ClassVar", "typing.ClassVar"))
            if not classvar and name not in names:
                names.append(name)
    return names


def test_every_value_class_lists_each_field_it_annotates_and_takes():
    """A field left out of ``__match_args__`` would be ignored by ``==``, ``repr``,
    ``replace``, copies and pickles without a word: each class's annotations,
    ``__match_args__`` and ``__init__`` parameters must name the same fields, in
    the same order (as a dataclass's would)."""
    import inspect

    classes = _value_classes()
    assert len(classes) >= 38
    for cls in classes:
        where = f"{cls.__module__}.{cls.__qualname__}"
        assert list(cls.__match_args__) == _fields(cls), where
        params = list(inspect.signature(cls.__init__).parameters)[1:]
        assert params == list(cls.__match_args__), where
        assert set(cls._compared) <= set(cls.__match_args__), where
        assert set(cls._shown) <= set(cls.__match_args__), where
        bases = [k for k in cls.__mro__ if k is not object]
        if all("__slots__" in vars(k) for k in bases):  # instances have no __dict__
            slots = {name for k in bases for name in vars(k)["__slots__"]}
            assert set(cls.__match_args__) <= slots, where
