"""The cyclic garbage collector, paused around work that makes millions of long-lived objects and
no cycles to speak of (planning a large cloud, booting or refreshing a simulated world).

Reference counting frees those objects all the same; what the pause saves is the collector's
passes over them, each full one walking every object the process holds (a third of a large plan's
time, and more than a refresh of a big world). The collector is left as it was found: a pause
inside another, or in another thread, does not turn it back on early, and a caller that had
turned it off keeps it off.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def paused() -> Iterator[None]:
    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was:
            gc.enable()
