"""What a running server's agents have done, for other processes: ``trace`` and ``ping`` wait for
a change the agents are still converging before they read the kept hosts and world.

The agents write two marks in ``$NEUTRINO_STATE/agents/``: ``changed`` (the server's pid and the
latest change's generation, on every committed API change) and ``converged`` (the generation the
last pass reached). A change is pending while the server that wrote it runs and ``converged`` is
behind it.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path


def _marks(state: Path) -> Path:
    return state / "agents"


def mark(state: Path, what: str, generation: int) -> None:
    path = _marks(state)
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / f".{what}.{os.getpid()}.{threading.get_ident()}"
    tmp.write_text(f"{os.getpid()} {generation}\n")
    os.replace(tmp, path / what)


def _read_mark(state: Path, what: str) -> tuple[int, int] | None:
    try:
        pid, gen = (_marks(state) / what).read_text().split()
        return int(pid), int(gen)
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def pending(state: Path) -> bool:
    """Whether a running server's agents have a change they have not converged yet."""
    changed = _read_mark(state, "changed")
    if changed is None or not _alive(changed[0]):
        return False
    converged = _read_mark(state, "converged")
    return converged is None or converged[0] != changed[0] or converged[1] < changed[1]


def wait_converged(state: Path, timeout: float = 30.0) -> bool:
    """Wait until a running server's agents have converged every change made so far (at once when no
    server runs here); False on timeout."""
    from neutrino.errors import ConvergenceTimeout
    from neutrino.linux.runner import wait_for

    try:
        wait_for(lambda: not pending(state), timeout=timeout, what="the agents to converge", interval=0.01)
    except ConvergenceTimeout:
        return False
    return True
