"""What the OVS planners keep between plans (issue #17): re-planning a host after a change remakes
only the parts of its plan the change touched.

Nothing kept can be stale: an item is found again only under a key holding everything it was made
from (plain values, strings, and :func:`content_id` numbers standing for larger contents), and
everything kept is immutable (flows, origins, ports are frozen; tuples).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Generic, TypeVar

from neutrino.plan import InputsMemo

_T = TypeVar("_T")

_CONTENT_IDS: dict[tuple[str, ...], int] = {}
_NEXT_ID = itertools.count(1)


def content_id(content: tuple[str, ...]) -> int:
    """A number for ``content``: equal contents get the same number, different ones different
    numbers, whichever snapshot they come from (numbers are never reused: when the table is
    cleared, contents seen again get new ones). Keys made of these are small and cheap to compare."""
    got = _CONTENT_IDS.get(content)
    if got is None:
        if len(_CONTENT_IDS) >= 1 << 18:
            _CONTENT_IDS.clear()
        got = _CONTENT_IDS[content] = next(_NEXT_ID)
    return got


class Kept(Generic[_T]):
    """What was last made for each slot (a host, a host's network, a host's bridge), reused while
    the key (all it was made from) is equal: :class:`neutrino.plan.InputsMemo`, for pieces made by
    a closure over the values the key holds. One item per slot, ``limit`` slots at most."""

    def __init__(self, limit: int = 1 << 16) -> None:
        self._memo: InputsMemo[tuple[object, ...], _T] = InputsMemo(limit)

    @property
    def items(self) -> dict[object, tuple[tuple[object, ...], _T]]:
        """What is kept, by slot: (key, item)."""
        return self._memo.kept

    def get(self, slot: tuple[str, ...], key: tuple[object, ...], make: Callable[[], _T]) -> _T:
        return self._memo.get(slot, key, lambda _key: make())
