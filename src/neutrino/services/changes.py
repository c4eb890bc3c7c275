"""The change feed: every committed write to a cloud bumps its generation, and whoever waits on it
(the in-process agents, an agent process long-polling the server) wakes up.

Neutron's server tells its agents of changes by RPC fan-out; here the server keeps one counter and
a condition variable. A waiter asks for "anything after generation N" and gets the generation now,
so changes made while it was busy are never lost (they coalesce into one pass).

    >>> feed = ChangeFeed()
    >>> feed.bump()
    1
    >>> feed.wait(after=0, timeout=0.1)
    1
    >>> feed.wait(after=1, timeout=0.01)  # nothing new: the same generation comes back
    1
"""

from __future__ import annotations

import threading
from collections.abc import Callable


class ChangeFeed:
    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._generation = 0
        self._listeners: list[Callable[[int], None]] = []

    @property
    def generation(self) -> int:
        with self._cond:
            return self._generation

    def bump(self) -> int:
        with self._cond:
            self._generation += 1
            gen = self._generation
            self._cond.notify_all()
            listeners = list(self._listeners)
        for fn in listeners:
            fn(gen)
        return gen

    def listen(self, fn: Callable[[int], None]) -> None:
        """Call ``fn(generation)`` after every change (from the writer's thread: keep it short)."""
        with self._cond:
            self._listeners.append(fn)

    def wait(self, after: int, timeout: float) -> int:
        """Block until the generation passes ``after`` or ``timeout`` seconds pass; the generation."""
        with self._cond:
            self._cond.wait_for(lambda: self._generation > after, timeout=timeout)
            return self._generation
