"""The tests read only files inside the repository.

An audit hook (``sys.addaudithook``) sees every file the test process opens. A path that lies in
the folder holding the repository but not inside the repository itself (a folder of documents beside
the clone, say) is recorded, and the session fails: such a read passes only on machines that
happen to have that folder, never on a fresh clone alone.
"""

from __future__ import annotations

import os
import pathlib
import sys
from typing import Any

ROOT = pathlib.Path(__file__).resolve().parents[1]


class OutsideReads:
    """Paths opened outside ``root`` but beside it (in ``root``'s parent folder)."""

    def __init__(self, root: pathlib.Path) -> None:
        self.root = str(root)
        self.parent = str(root.parent)
        self.seen: list[str] = []

    def outside(self, path: str) -> bool:
        full = os.path.normpath(os.path.join(os.getcwd(), path))
        inside = full == self.root or full.startswith(self.root + os.sep)
        beside = full.startswith(self.parent + os.sep)
        return beside and not inside

    def hook(self, event: str, args: tuple[Any, ...]) -> None:
        if event != "open" or not args:
            return
        path = args[0]
        if isinstance(path, bytes):
            path = os.fsdecode(path)
        if isinstance(path, str) and self.outside(path):
            self.seen.append(path)


GUARD = OutsideReads(ROOT)


def install() -> None:
    sys.addaudithook(GUARD.hook)
