"""migstream/record.py: a record behaves as the frozen slotted dataclass it replaced,
on every behaviour the code relies on (constructor, defaults, repr, ==, hash, match,
immutability, pickling), checked side by side with a real dataclass."""

from __future__ import annotations

import dataclasses
import pickle

import pytest

from migstream.events import PageRecord
from migstream.record import FrozenRecordError
from migstream.record import field
from migstream.record import record


@record
class Point:
    x: int
    y: int = 7
    tags: list = field(default_factory=list)
    blob: bytes = field(default=b"", repr=False, compare=False)


@dataclasses.dataclass(frozen=True, slots=True)
class DPoint:
    x: int
    y: int = 7
    tags: list = dataclasses.field(default_factory=list)
    blob: bytes = dataclasses.field(default=b"", repr=False, compare=False)


@pytest.mark.parametrize("args,kwargs", [((1,), {}), ((1, 2), {}), ((), {"x": 3, "blob": b"z"}), ((1, 2, [3]), {})])
def test_same_as_a_dataclass(args, kwargs):
    r, d = Point(*args, **kwargs), DPoint(*args, **kwargs)
    assert repr(r) == repr(d).replace("DPoint", "Point")
    assert (r.x, r.y, r.tags, r.blob) == (d.x, d.y, d.tags, d.blob)
    assert Point.__match_args__ == DPoint.__match_args__
    assert Point.__slots__ == DPoint.__slots__ and not hasattr(r, "__dict__")


def test_equality_and_hash_follow_the_compared_fields():
    assert Point(1, 2, blob=b"a") == Point(1, 2, blob=b"b")  # blob: compare=False
    assert Point(1, 2) != Point(1, 3)
    assert Point(1) != DPoint(1)  # another class is never equal
    a, b = (PageRecord(1, 0x8, "pc.ram", 0, 10, b"x") for _ in range(2))
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != PageRecord(1, 0x8, "pc.ram", 4096, 10, b"x")
    with pytest.raises(TypeError):
        hash(Point(1, tags=[1]))  # a list field: unhashable, as with dataclasses


def test_default_factory_gives_each_record_its_own():
    a, b = Point(1), Point(2)
    assert a.tags == [] and a.tags is not b.tags


def test_frozen():
    p = Point(1)
    with pytest.raises(FrozenRecordError):
        p.x = 2  # type: ignore[misc]
    with pytest.raises(AttributeError):
        del p.y  # type: ignore[misc]
    assert p.x == 1


def test_match_and_pickle():
    match Point(4, 5):
        case Point(x, y):
            assert (x, y) == (4, 5)
        case _:
            pytest.fail("no match")
    p = Point(1, 2, [3], blob=b"q")
    q = pickle.loads(pickle.dumps(p))
    assert (q, q.blob) == (p, b"q")


def test_missing_argument_and_field_order_errors():
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(TypeError, match="without a default follows"):

        @record
        class Bad:
            a: int = 1
            b: int


def test_constructor_generated_on_first_use_with_its_signature():
    @record
    class Lazy:
        a: int
        b: str = "x"

    assert Lazy.__init__.__name__ == "_first_init"  # nothing compiled at class creation
    assert Lazy(1) == Lazy(a=1, b="x")
    import inspect

    assert str(inspect.signature(Lazy.__init__)) == "(self, a, b='x')"
    with pytest.raises(TypeError):
        Lazy(1, "y", 3)  # type: ignore[call-arg]
