"""Making frozen dataclasses by the million (issue #17): a constructor that skips the frozen
``__init__``'s ``object.__setattr__`` call per field.

A frozen ``slots=True`` dataclass's ``__init__`` stores each field with a call of
``object.__setattr__`` (its own ``__setattr__`` refuses). :func:`maker` gives a function that makes
the same instance about twice as fast: a *twin* class with the same ``__slots__`` and no
``__setattr__`` of its own stores the fields as plain attribute assignments, then the instance's
``__class__`` is set to the real class, which CPython allows between classes of the same slot
layout. The result is an ordinary instance of the class (``type(x) is cls``, equal, hashed,
pickled, printed as one made by ``cls(...)``); every field is passed, positionally, in field
order, and none is checked or converted (the class's ``__post_init__``, if any, does not run: see
:func:`maker`).

>>> from dataclasses import dataclass
>>> @dataclass(frozen=True, slots=True)
... class P:
...     x: int
...     y: int = 0
>>> p = maker(P)(1, 2)
>>> type(p) is P, p == P(1, 2), hash(p) == hash(P(1, 2))
(True, True, True)
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, TypeVar

_T = TypeVar("_T")


def maker(cls: type[_T], *, post_init_needed: bool = True) -> Callable[..., _T]:
    """The fast constructor of the frozen slots dataclass ``cls``: ``maker(cls)(*every_field)``
    is ``cls(*every_field)``. A class with a ``__post_init__`` only with ``post_init_needed=False``:
    the caller's word that the values it passes are those the ``__post_init__`` would leave
    (e.g. it fills a field only when it is left empty)."""
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls.__name__}: not a dataclass")
    fields = dataclasses.fields(cls)
    names = tuple(f.name for f in fields)
    if tuple(getattr(cls, "__slots__", ())) != names or cls.__bases__ != (object,):
        raise TypeError(f"{cls.__name__}: a slots dataclass of its own (no base class) whose slots are its fields")
    if (post_init_needed and hasattr(cls, "__post_init__")) or any(not f.init for f in fields):
        raise TypeError(f"{cls.__name__}: every field set by __init__, no __post_init__")
    # the twin's __init__, written out as dataclasses writes __init__: one assignment per field
    args = ", ".join(f"_{i}" for i in range(len(names)))
    body = "".join(f"    self.{name} = _{i}\n" for i, name in enumerate(names))
    source = f"def __init__(self, {args}):\n{body}    self.__class__ = _cls\n"
    scope: dict[str, Any] = {"_cls": cls}
    exec(source, scope)  # noqa: S102 -- generated from the field names above, nothing else
    twin = type(f"_{cls.__name__}Twin", (), {"__slots__": names, "__init__": scope["__init__"],
                                             "__module__": cls.__module__})
    probe = twin(*range(len(names)))  # the layout check happens here, once, not at the first use
    assert type(probe) is cls and tuple(getattr(probe, n) for n in names) == tuple(range(len(names)))
    return twin
