"""``@record``: small frozen classes with slots, as ``@dataclass(frozen=True, slots=True)``
makes them, built in a tenth of the time.

Why not dataclasses: every command's start-up builds the ~30 record classes on its
import path (events, the fast path's plans, the physical map, container headers), and
``dataclass`` spends about 1 ms on each (six code generations and a class rebuilt
for its slots): 30 ms of a 120 ms budget for ``migstream info``.  ``record`` generates
only each class's constructor, on its first call.  What is kept from dataclasses: the constructor
(positional or keyword, defaults, ``field(default_factory=...)``), ``repr``, ``==`` and
``hash`` over the compared fields, ``__match_args__``, immutability (assigning raises
``FrozenRecordError``, an AttributeError), pickling; mutable records (``frozen=False``)
have no hash, as dataclasses do.  Not kept: ``dataclasses.fields``/``replace``/
``asdict`` (migstream uses none), inheritance between records.
"""

from __future__ import annotations

from collections.abc import Callable
from operator import attrgetter
from typing import Any
from typing import TypeVar
from typing import dataclass_transform
from typing import overload

T = TypeVar("T")

_MISSING: Any = object()


class FrozenRecordError(AttributeError):
    """An assignment to a field of a frozen record."""


class _Field:
    __slots__ = ("default", "default_factory", "repr", "compare")

    def __init__(self, default: Any, default_factory: Callable[[], Any] | None, repr: bool, compare: bool):
        self.default = default
        self.default_factory = default_factory
        self.repr = repr
        self.compare = compare


def field(
    *,
    default: Any = _MISSING,
    default_factory: Callable[[], Any] | None = None,
    repr: bool = True,
    compare: bool = True,
) -> Any:
    """A field's options, as ``dataclasses.field``: default, default factory, whether it
    shows in ``repr`` and takes part in ``==`` and ``hash``."""
    return _Field(default, default_factory, repr, compare)


@overload
def record(cls: type[T], /) -> type[T]: ...
@overload
def record(*, frozen: bool = True) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: Any = None, /, *, frozen: bool = True) -> Any:
    """Make ``cls`` (annotated fields, class-level defaults) a record class."""
    if cls is None:
        return lambda c: _build(c, frozen)
    return _build(cls, frozen)


def _build(cls: type, frozen: bool) -> type:
    names, specs = [], {}
    for name, annotation in cls.__dict__.get("__annotations__", {}).items():
        if str(annotation).startswith(("ClassVar", "typing.ClassVar")):
            continue
        value = cls.__dict__.get(name, _MISSING)
        specs[name] = value if isinstance(value, _Field) else _Field(value, None, True, True)
        names.append(name)
    namespace = {k: v for k, v in cls.__dict__.items() if k not in specs and k not in ("__dict__", "__weakref__")}
    namespace["__slots__"] = tuple(names)
    namespace["__match_args__"] = tuple(names)
    new = type(cls)(cls.__name__, cls.__bases__, namespace)

    for before, name in zip(names, names[1:]):
        if _has_default(specs[before]) and not _has_default(specs[name]):
            raise TypeError(f"{cls.__name__}: field {name!r} without a default follows one with a default")
    shown = tuple(n for n in names if specs[n].repr)
    compared = [n for n in names if specs[n].compare]
    generated: dict[str, Any] = {
        "__init__": _first_init,
        "__repr__": _repr,
        "__eq__": _eq,
        "__getstate__": _getstate,
        "__setstate__": _setstate,
    }
    if frozen:
        generated.update(__hash__=_hash, __setattr__=_frozen_setattr, __delattr__=_frozen_delattr)
    for method, fn in generated.items():
        if method in namespace and method not in ("__setattr__", "__delattr__"):
            continue  # the class wrote its own
        setattr(new, method, fn)
    new._record_fields = tuple(names)  # type: ignore[attr-defined]
    new._record_shown = shown  # type: ignore[attr-defined]
    new._record_key = attrgetter(*compared) if compared else _no_key  # type: ignore[attr-defined]
    new._record_setters = tuple(new.__dict__[n].__set__ for n in names)  # type: ignore[attr-defined]
    new._record_specs = specs  # type: ignore[attr-defined]
    if not frozen:
        new.__hash__ = None  # type: ignore[assignment]  # mutable and compared by value: unhashable
    return new


def _has_default(spec: _Field) -> bool:
    return spec.default is not _MISSING or spec.default_factory is not None


def _first_init(self: Any, *args: Any, **kwargs: Any) -> None:
    """A record class's first constructor call: generate its real ``__init__``, install
    it on the class, run it.  Compiling a constructor costs ~0.2 ms, and most of the
    ~30 record classes on a command's import path are never instantiated in a run."""
    cls = type(self)
    init = _make_init(cls)
    cls.__init__ = init
    init(self, *args, **kwargs)


def _make_init(cls: Any) -> Callable:
    """The constructor of a record class, generated: positional or keyword arguments,
    defaults, default factories; each field stored through its slot's descriptor (which
    bypasses a frozen ``__setattr__``), as fast as a hand-written ``__init__``."""
    env: dict[str, Any] = {"_MISSING": _MISSING}
    params, body = [], []
    for name, setter in zip(cls._record_fields, cls._record_setters):
        spec = cls._record_specs[name]
        env[f"_set_{name}"] = setter
        if spec.default_factory is not None:
            env[f"_factory_{name}"] = spec.default_factory
            params.append(f"{name}=_MISSING")
            body.append(f" _set_{name}(self, _factory_{name}() if {name} is _MISSING else {name})")
        elif spec.default is not _MISSING:
            env[f"_default_{name}"] = spec.default
            params.append(f"{name}=_default_{name}")
            body.append(f" _set_{name}(self, {name})")
        else:
            params.append(name)
            body.append(f" _set_{name}(self, {name})")
    exec("\n".join([f"def __init__(self, {', '.join(params)}):", *(body or [" pass"])]), env)
    init = env["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    return init


def _no_key(record: Any) -> tuple:
    return ()


def _repr(self: Any) -> str:
    return f"{type(self).__qualname__}(" + ", ".join(f"{n}={getattr(self, n)!r}" for n in self._record_shown) + ")"


def _eq(self: Any, other: Any) -> Any:
    if other.__class__ is not self.__class__:
        return NotImplemented
    key = self._record_key
    return key(self) == key(other)


def _hash(self: Any) -> int:
    return hash(self._record_key(self))


def _getstate(self: Any) -> tuple:
    return tuple(getattr(self, n) for n in self._record_fields)


def _setstate(self: Any, state: tuple) -> None:
    for setter, value in zip(self._record_setters, state):
        setter(self, value)


def _frozen_setattr(self: Any, name: str, value: Any) -> None:
    raise FrozenRecordError(f"cannot assign to field {name!r}")


def _frozen_delattr(self: Any, name: str) -> None:
    raise FrozenRecordError(f"cannot delete field {name!r}")
